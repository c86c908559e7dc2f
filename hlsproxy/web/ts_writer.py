"""One MPEG-TS client's answer: kept on the line while the engine prebuffers, then fed each
chunk as the stream's reader publishes it.

A caught-up client takes chunks through a sink that the reader calls (`ts/broadcast.Cursor`),
each framed once as an HTTP chunk for every client it goes to; a client whose connection
is full catches up from the ring at its own pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable

from aiohttp import web

from ..errors import ProxyError
from ..ts.broadcast import ClientLagged
from ..ts.stream import KEEPALIVE, KEEPALIVE_INTERVAL, TsStream

log = logging.getLogger(__name__)

# A client cut for lagging gets this long to take its clean EOF before it is dropped:
# one stuck in a blocked write would otherwise stay connected and silent.
CUT_GRACE = 2.0
# New chunks go straight into a client's connection while less than this waits in it
# unsent; past it the client is left to catch up from the ring at its own pace.
DIRECT_HIGH_WATER = 64 * 1024


async def serve_ts(
    request: web.Request, response: web.StreamResponse, stream: TsStream
) -> web.StreamResponse:
    """Play `stream` to one client on `response` (prepared here) until either ends."""
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
