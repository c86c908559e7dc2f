"""The HTTP surface: acexy's URLs, plus a liveness probe."""

from __future__ import annotations

import time

from aiohttp import web

from ..content import ContentKey, parse_stream_request
from ..errors import NotFound
from ..formats import AnyStream, Channel
from ..ts.stream import TsStream
from . import hls_routes
from .keys import METRICS, SETTINGS, STREAMS
from .ts_writer import serve_ts
from .unmatched import expect
from .urls import canonical_redirect

TS_HEADERS = {
    "Content-Type": "video/mp2t",
    "Cache-Control": "no-cache, no-store",
    # A reverse proxy in front must not hold a live stream back to fill its buffers.
    "X-Accel-Buffering": "no",
}


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
    return await serve_ts(request, response, stream)


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
    answer: dict[str, object] = {
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
        answer["prebuffer"] = prebuffer.as_json()
    # The channel as a whole: its players in each format, and the engine's view of the
    # session that feeds them all.
    answer["players"] = {
        mode: member.figures().clients
        for mode, member in (("hls", channel.hls), ("ts", channel.ts))
        if member is not None
    }
    answer["source"] = channel.source
    word = channel.owner.engine_word()
    if word is not None and word.status:
        answer["engine_stat"] = {
            "status": word.status,
            "peers": word.peers,
            "speed_down_kbps": word.speed_down,
        }
    if isinstance(stream, TsStream):
        answer["clients"] = figures.clients
        answer["clients_cut"] = figures.clients_cut
        answer["clients_moved_forward"] = figures.clients_moved_forward
    else:
        answer["viewers"] = figures.clients
        answer["requests"] = stream.requests
        answer["playlist_fetches"] = figures.playlist_fetches
    return answer


async def metrics(request: web.Request) -> web.Response:
    return request.app[METRICS].render()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
