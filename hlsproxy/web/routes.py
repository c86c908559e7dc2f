"""The HTTP surface: acexy's URLs, plus a liveness probe."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable

from aiohttp import web

from ..content import ContentKey, parse_stream_request
from ..errors import NotFound, ProxyError
from ..formats import AnyStream, Channel
from ..ts.broadcast import ClientLagged
from ..ts.stream import KEEPALIVE, KEEPALIVE_INTERVAL, TsStream
from . import hls_routes
from .keys import METRICS, SETTINGS, STREAMS
from .unmatched import expect
from .urls import canonical_redirect

log = logging.getLogger(__name__)

TS_HEADERS = {
    "Content-Type": "video/mp2t",
    "Cache-Control": "no-cache, no-store",
    # A reverse proxy in front must not hold a live stream back to fill its buffers.
    "X-Accel-Buffering": "no",
}
# A client cut for lagging gets this long to take its clean EOF before it is dropped:
# one stuck in a blocked write would otherwise stay connected and silent.
CUT_GRACE = 2.0
# New chunks go straight into a client's connection while less than this waits in it
# unsent; past it the client is left to catch up from the ring at its own pace.
DIRECT_HIGH_WATER = 64 * 1024


def setup(app: web.Application) -> None:
    app.router.add_get("/ace/getstream", getstream, expect_handler=expect)
    app.router.add_get("/ace/getstream/", getstream, expect_handler=expect)
    app.router.add_get("/ace/status", status, expect_handler=expect)
    app.router.add_get("/healthz", healthz, expect_handler=expect)
    app.router.add_get("/metrics", metrics, expect_handler=expect)


async def getstream(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if settings.m3u8:
        return await hls_routes.manifest(request)
    stream_request = parse_stream_request(
        request.query.items(), allow_remote=settings.allow_remote_content
    )
    canonical_redirect(request, stream_request.key)
    response = web.StreamResponse(headers=TS_HEADERS)
    if request.method == "HEAD":
        # IPTV apps probe with HEAD before playing; that must not cost an engine session.
        await response.prepare(request)
        return response
    stream = request.app[STREAMS].open_ts(stream_request)
    return await _serve_ts(request, response, stream)


async def _serve_ts(
    request: web.Request, response: web.StreamResponse, stream: TsStream
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    abort_later: asyncio.TimerHandle | None = None

    def on_cut() -> None:
        nonlocal abort_later
        transport = request.transport
        if transport is not None:
            abort_later = loop.call_later(CUT_GRACE, transport.abort)

    cursor = stream.attach(on_cut)
    try:
        ready = await _ready_soon(stream)
        writer = await response.prepare(request)
        transport = request.transport
        if writer is None or transport is None:
            return response  # the client left before the first byte
        frame = _chunked if response.headers.get("Transfer-Encoding") == "chunked" else _plain
        if not ready and not await _hold_the_line(stream, transport, frame):
            return response

        def sink(chunk: bytes) -> bool:
            # The reader's write, for every caught-up client: no coroutine wakes per chunk.
            if transport.get_write_buffer_size() >= DIRECT_HIGH_WATER or transport.is_closing():
                return False
            transport.write(frame(chunk))
            return True

        cursor.direct(sink)
        skips = 0
        while (chunks := await cursor.read()) is not None:
            if transport.is_closing():
                return response  # the client left: its sink refused, and woke this
            if cursor.skips != skips:
                skips = cursor.skips
                log.info(
                    "client %s moved forward in %s: it fell behind while reading",
                    request.remote,
                    stream.key,
                )
            # Catching up: all that is due as one HTTP chunk, then wait for room.
            size = sum(map(len, chunks))
            transport.writelines(
                [b"%x\r\n" % size, *chunks, b"\r\n"] if frame is _chunked else chunks
            )
            await writer.drain()
        await response.write_eof()
    except ClientLagged:
        log.info(
            "client %s cut from %s: it fell behind",
            request.remote,
            stream.key,
            extra={
                "event": "client_cut",
                "stream": stream.key.value,
                "mode": "ts",
                "client": request.remote,
            },
        )
        await response.write_eof()
    except ConnectionError:
        pass  # the client left
    finally:
        stream.detach(cursor)
        if abort_later is not None:
            abort_later.cancel()
    return response


async def _ready_soon(stream: TsStream) -> bool:
    """Whether the stream serves within KEEPALIVE_INTERVAL of the engine accepting its session
    (a warm channel's media comes within moments); False: the player is to be held on the
    line. Raises the stream's failure if it comes first, while an error can still be
    answered as one."""
    if await stream.ready_or_awaiting():
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KEEPALIVE_INTERVAL):
            await stream.ready()
            return True
    return False


async def _hold_the_line(
    stream: TsStream, transport: asyncio.Transport, frame: Callable[[bytes], bytes]
) -> bool:
    """Keep a player waiting while the engine prebuffers (`ts.stream.KEEPALIVE`). True once
    the stream serves; False if the player left, or the stream failed
    after the head went out (the connection is then aborted: a started answer cannot
    become an error)."""
    while True:
        if transport.is_closing():
            return False
        transport.write(frame(KEEPALIVE))
        try:
            async with asyncio.timeout(KEEPALIVE_INTERVAL):
                await stream.ready()
        except TimeoutError:
            continue
        except ProxyError as exc:
            log.info("stream %s failed while a client waited: %s", stream.key, exc.message)
            transport.abort()
            return False
        return True


@functools.lru_cache(maxsize=8)
def _chunked(chunk: bytes) -> bytes:
    """One HTTP/1.1 chunk, framed once and shared by every client the chunk goes to."""
    return b"%x\r\n%b\r\n" % (len(chunk), chunk)


def _plain(chunk: bytes) -> bytes:
    return chunk  # an HTTP/1.0 client: the body ends when the connection does


async def status(request: web.Request) -> web.Response:
    registry = request.app[STREAMS]
    query = request.query
    if "id" not in query and "infohash" not in query and "content_id" not in query:
        return web.json_response({"streams": len(registry)})
    key = parse_stream_request(query.items()).key
    stream = registry.get(key)
    if stream is None:
        raise NotFound("Stream not found")
    return web.json_response(_stream_status(key, stream, Channel.of(registry.streams_of(key))))


def _stream_status(key: ContentKey, stream: AnyStream, channel: Channel) -> dict[str, object]:
    figures = stream.figures()
    now = time.monotonic()
    status: dict[str, object] = {
        "stream_id": key.value,
        "key_type": key.kind,
        "mode": stream.mode,
        "state": stream.shown_state,
        # Which engine, by position only: clients never learn an engine's address.
        "engine": "default",
        "started_at": round(time.time() - (now - stream.started_at), 3),
        "uptime": round(now - stream.started_at, 1),
        "bytes_in": figures.bytes_in,
        "bytes_out": figures.bytes_out,
        "last_data_age": None
        if figures.last_data_at is None
        else round(now - figures.last_data_at, 1),
    }
    prebuffer = stream.prebuffer()
    if prebuffer is not None:
        status["prebuffer"] = prebuffer.as_json()
    # The channel as a whole: its players in each format, and the engine's view of the
    # session that feeds them all.
    status["players"] = {
        mode: member.figures().clients
        for mode, member in (("hls", channel.hls), ("ts", channel.ts))
        if member is not None
    }
    status["source"] = channel.source
    word = channel.owner.engine_word()
    if word is not None and word.status:
        status["engine_stat"] = {
            "status": word.status,
            "peers": word.peers,
            "speed_down_kbps": word.speed_down,
        }
    if isinstance(stream, TsStream):
        status["clients"] = figures.clients
        status["clients_cut"] = figures.clients_cut
        status["clients_moved_forward"] = stream.ring.skipped
    else:
        status["viewers"] = figures.clients
        status["requests"] = stream.requests
        status["playlist_fetches"] = figures.playlist_fetches
    return status


async def metrics(request: web.Request) -> web.Response:
    return request.app[METRICS].render()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
