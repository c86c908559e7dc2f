"""HLS over HTTP: playlists and the resources they name, with the headers real players need."""

from __future__ import annotations

import hashlib
import posixpath
import re

from aiohttp import web

from ..content import parse_stream_request
from ..errors import BadRequest, NotFound
from ..formats import AnyHls
from ..hls.body import Body
from ..hls.flight import Cached, Flight
from ..hls.media_types import MEDIA_TYPES
from ..registry import Registry as Streams
from . import hls_urls, sendfile
from .keys import METRICS, SETTINGS, STALLS, STREAMS
from .unmatched import expect
from .urls import canonical_redirect

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
# Live playlists change every target duration: a cached copy would freeze players.
PLAYLIST_HEADERS = {"Cache-Control": "no-cache"}
# A resource URL names immutable bytes for as long as it exists.
RESOURCE_HEADERS = {"Cache-Control": "public, max-age=86400, immutable", "Accept-Ranges": "bytes"}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# Past this many digits a position is beyond any resource; int() would refuse 4,300 of them.
_MAX_DIGITS = 18
TOKEN = re.compile(r"[0-9a-f]{20}(\.[a-z0-9]{1,8})?")


# What browser players fetch: the only answers other web pages may read (CORS).
PLAYER_PATHS = (
    "/ace/manifest.m3u8",
    hls_urls.PATH,
    "/ace/getstream",
    "/ace/getstream/",
)


def setup(app: web.Application) -> None:
    app.router.add_get("/ace/manifest.m3u8", manifest, expect_handler=expect)
    app.router.add_get(hls_urls.PATH, hls_resource, name=hls_urls.ROUTE, expect_handler=expect)
    for path in PLAYER_PATHS:
        app.router.add_route("OPTIONS", path, preflight, expect_handler=expect)


async def manifest(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    stream_request = parse_stream_request(
        request.query.items(), allow_remote=settings.allow_remote_content
    )
    canonical_redirect(request, stream_request.key)
    if request.method == "HEAD":
        return web.Response(content_type=PLAYLIST_TYPE, headers=PLAYLIST_HEADERS)
    stream = request.app[STREAMS].open_hls(stream_request)
    stream.seen_by(viewer(request.remote, request.headers.get("User-Agent")))
    with request.app[METRICS].time("playlist"):
        return _playlist_response(request, await stream.playlist())


async def hls_resource(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    if not TOKEN.fullmatch(token):
        raise NotFound("no such resource")
    kind, value = request.match_info["kind"], request.match_info["value"]
    stream = find_stream(request.app[STREAMS], kind, value)
    stream.seen_by(viewer(request.remote, request.headers.get("User-Agent")))
    if token.endswith(".m3u8"):
        with request.app[METRICS].time("playlist"):
            return _playlist_response(request, await stream.playlist(token))
    with request.app[METRICS].time("segment"):
        found = await stream.resource(token)
    content_type = MEDIA_TYPES.get(posixpath.splitext(token)[1], found.content_type)
    if isinstance(found, Flight) and (request.method == "HEAD" or "Range" in request.headers):
        found = await found.result()
    if isinstance(found, Cached):
        response = await _send_cached(request, found.body, content_type)
        if request.method != "HEAD":
            stream.served(response.content_length or 0)
        return response
    stream.served(found.length or 0)
    return await _stream_flight(request, found, content_type)


async def preflight(request: web.Request) -> web.Response:
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
            "Access-Control-Allow-Headers": "Range",
            "Access-Control-Max-Age": "86400",
        },
    )


def viewer(address: str | None, user_agent: str | None) -> bytes:
    """Who asked, as HLS viewers are told apart on both paths (`hls/viewers.py`): the
    client's address and its User-Agent, as a short digest (a table of them stays small)."""
    who = f"{address or ''}\n{user_agent or ''}".encode("utf-8", "surrogateescape")
    return hashlib.blake2b(who, digest_size=12).digest()


def find_stream(registry: Streams, kind: str, value: str) -> AnyHls:
    """The live HLS stream a resource path names: a direct lookup on every segment request,
    except for url=/magnet= content, whose paths carry only a digest of the key."""
    key = hls_urls.plain_key(kind, value)
    if key is not None:
        stream = registry.find_hls(key)
        if stream is not None:
            return stream
    else:
        for candidate in registry.hls_streams():
            if hls_urls.path_parts(candidate.key) == (kind, value):
                return candidate
    raise NotFound("this stream is not playing; reload its playlist")


def _playlist_response(request: web.Request, text: str) -> web.Response:
    return web.Response(
        text=text,
        content_type=PLAYLIST_TYPE,
        charset="utf-8",
        headers=PLAYLIST_HEADERS,
    )


async def _send_cached(request: web.Request, body: Body, content_type: str) -> web.StreamResponse:
    status, headers, start, end = 200, RESOURCE_HEADERS, 0, len(body)
    header = request.headers.get("Range")
    if header is not None:
        start, last = parse_range(header, len(body))
        status, end = 206, last + 1
        headers = {**RESOURCE_HEADERS, "Content-Range": f"bytes {start}-{last}/{len(body)}"}
    if request.method == "HEAD":
        return web.Response(
            status=status,
            body=bytes(body.view[start:end]),
            content_type=content_type,
            headers=headers,
        )
    # Content type and length as plain headers: their setters parse and format each value.
    headers = {**headers, "Content-Type": content_type, "Content-Length": str(end - start)}
    response = web.StreamResponse(status=status, headers=headers)
    # A StreamResponse writes its headers as it is prepared, so the body may follow straight
    # onto the socket; what the socket does not take at once goes the ordinary way.
    await response.prepare(request)
    start += sendfile.send_now(request.transport, body, start, end)
    if start < end:
        _watch(request)
        await response.write(body.view[start:end])
    await response.write_eof()
    return response


def parse_range(header: str, size: int) -> tuple[int, int]:
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise BadRequest("only a single bytes=start-end range is supported")
    first, last = (_position(group) for group in match.groups())
    if first is None:  # a suffix: the last N bytes
        start, end = max(0, size - (last or 0)), size - 1
    else:
        start, end = first, size - 1 if last is None else min(last, size - 1)
    if start >= size or start > end:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, end


def _position(digits: str) -> int | None:
    if not digits:
        return None
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


async def _stream_flight(
    request: web.Request, flight: Flight, content_type: str
) -> web.StreamResponse:
    """A coalesced miss: bytes go out as the engine sends them, not once it has finished."""
    response = web.StreamResponse(headers=RESOURCE_HEADERS)
    response.content_type = content_type
    if flight.length is not None:
        response.content_length = flight.length
    await response.prepare(request)
    async for chunk in flight.chunks():
        _watch(request)
        await response.write(chunk)
    await response.write_eof()
    return response


def _watch(request: web.Request) -> None:
    """A client that stops reading is cut after the send timeout (web/stalls.py)."""
    if request.transport is not None:
        request.app[STALLS].watch(request.transport)
