"""Answers to the requests every HLS viewer repeats, built without aiohttp's request objects.

Each viewer asks for a playlist every target duration and for every new segment; the
answers are the same bytes for everyone. Here they are made from the stream's current
playlist and the segment cache with response heads that only need a length and a date
filled in. Only successes are answered here: for anything else (a miss that fails, an
unknown token, a range that cannot be met, a redirect to the canonical URL) this returns
None or raises, and the connection hands the request to aiohttp, whose routes say what is
wrong. Those routes (web/hls_routes.py) stay the reference: the heads here carry the same
headers theirs do.
"""

from __future__ import annotations

import json
import posixpath
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qsl

from aiohttp import web

from ...content import StreamRequest, parse_stream_request
from ...errors import NotFound, ProxyError
from ...formats import AnyHls
from ...hls.body import Body
from ...hls.cache import Cached, Flight
from ...hls.media_types import MEDIA_TYPES
from ..access import TOKEN_PARAM, allowed, token_in, token_matches
from ..hls_routes import (
    PLAYLIST_HEADERS,
    PLAYLIST_TYPE,
    RESOURCE_HEADERS,
    TOKEN,
    find_stream,
    parse_range,
    viewer,
)
from ..keys import METRICS, SETTINGS, STREAMS
from ..middleware import CORS_HEADERS, ErrorAnswer, describe, report
from ..urls import miss_spelt
from .head import Head

MANIFEST = "/ace/manifest.m3u8"
_RESOURCES = "/ace/hls/"
_MEMO_SIZE = 256
_UNREAD = object()


@dataclass(slots=True)
class Reply:
    """A whole answer: `head`, then `text`, then `body[start:end]` when there is a body."""

    head: bytes
    text: bytes = b""
    body: Body | None = None
    start: int = 0
    end: int = 0
    status: int = 200  # for the access log


@dataclass(slots=True)
class Streamed:
    """A segment still arriving: `head`, then the flight's bytes as they come."""

    head: bytes
    flight: Flight
    chunked: bool
    close: bool = False  # the body ends with the connection (HTTP/1.0, no length)
    status: int = 200  # for the access log


Later = Callable[[], Awaitable[Reply | Streamed]]


def _block(headers: dict[str, str]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")


_PLAYLIST_BLOCK = _block(
    {
        **PLAYLIST_HEADERS,
        "Content-Type": f"{PLAYLIST_TYPE}; charset=utf-8",
        **CORS_HEADERS,
    }
)
_RESOURCE_BLOCK = _block({**RESOURCE_HEADERS, **CORS_HEADERS})
_ERROR_BLOCK = _block({"Content-Type": "application/json; charset=utf-8", **CORS_HEADERS})


class Answers:
    """What the fast path can answer for one application, and the answers."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._streams = app[STREAMS]
        self._settings = app[SETTINGS]
        self._token = self._settings.access_token.get_secret_value()
        latency = app[METRICS].latency
        self._playlist_seconds = latency.labels("playlist").observe
        self._segment_seconds = latency.labels("segment").observe
        self._date = b""
        self._date_second = 0
        # A fresh playlist is the same str for every viewer until it is refreshed.
        self._encoded: dict[str, bytes] = {}
        self._queries: dict[str, StreamRequest | object | None] = {}

    def admits(self, remote: str | None) -> bool:
        """Whether a client at `remote` may be answered here (the allowed networks)."""
        networks = self._settings.allow_networks
        return not networks or allowed(remote, networks)

    def answer(self, head: Head, remote: str | None = None) -> Reply | Later | None:
        """The answer, now or later, to a client at `remote`; None when aiohttp should
        answer. Raises the project's errors (or aiohttp's HTTP exceptions) for a request
        that fails."""
        if self._token and not self._authorised(head):
            return None  # aiohttp's access control refuses it, and says how to get in
        if head.path.startswith(_RESOURCES):
            return self._resource(head, remote)
        if head.path == MANIFEST and head.method == "GET":
            return self._manifest(head, remote)
        return None

    # Manifests

    def _manifest(self, head: Head, remote: str | None) -> Reply | Later | None:
        # Every viewer of a channel sends the same query every few seconds.
        request = self._queries.get(head.query, _UNREAD)
        if request is _UNREAD:
            request = self._read_query(head.query)
            if len(self._queries) >= _MEMO_SIZE:
                self._queries.clear()
            self._queries[head.query] = request
        if not isinstance(request, StreamRequest):
            return None
        started = time.perf_counter()
        stream = self._streams.find_hls(request.key)
        if stream is not None:
            stream.seen_by(viewer(remote, head.user_agent))
            text = stream.playlist_now()
            if text is not None:
                self._playlist_seconds(time.perf_counter() - started)
                return self._playlist_reply(head, text)

        async def later() -> Reply:
            opened = self._streams.open_hls(request)
            if opened is not stream:
                opened.seen_by(viewer(remote, head.user_agent))
            text = await opened.playlist()
            self._playlist_seconds(time.perf_counter() - started)
            return self._playlist_reply(head, text)

        return later

    def _authorised(self, head: Head) -> bool:
        query_token = None
        if TOKEN_PARAM in head.query:
            if not _plain(head.query):
                return False  # aiohttp's query parser decides what was presented
            query_token = _first_of(parse_qsl(head.query))(TOKEN_PARAM)
        return token_matches(token_in(head.authorization, query_token), self._token)

    def _read_query(self, query: str) -> StreamRequest | None:
        """The stream a manifest query asks for; None when aiohttp should read the query
        (escapes, odd separators) or redirect it (a content id not spelt canonically)."""
        if not _plain(query):
            return None
        pairs = parse_qsl(query, keep_blank_values=True)
        request = parse_stream_request(pairs, allow_remote=self._settings.allow_remote_content)
        first = _first_of(pairs)
        return None if miss_spelt(request.key, first) is not None else request

    def _playlist_reply(self, head: Head, text: str) -> Reply:
        data = self._encoded.get(text)
        if data is None:
            if len(self._encoded) >= _MEMO_SIZE:
                self._encoded.clear()
            data = self._encoded[text] = text.encode()
        status = _head(head, _OK, _PLAYLIST_BLOCK, len(data), self._now())
        return Reply(status, b"" if head.method == "HEAD" else data)

    # Segments, keys, init sections and variant playlists

    def _resource(self, head: Head, remote: str | None) -> Reply | Later | None:
        parts = head.path.split("/")
        if len(parts) != 6:
            return None
        kind, value, token = parts[3:]
        if not TOKEN.fullmatch(token):
            raise NotFound("no such resource")
        stream = find_stream(self._streams, kind, value)
        stream.seen_by(viewer(remote, head.user_agent))
        started = time.perf_counter()
        if token.endswith(".m3u8"):
            if head.method != "GET":
                return None
            text = stream.playlist_now(token)
            if text is not None:
                self._playlist_seconds(time.perf_counter() - started)
                return self._playlist_reply(head, text)

            async def later_playlist() -> Reply:
                text = await stream.playlist(token)
                self._playlist_seconds(time.perf_counter() - started)
                return self._playlist_reply(head, text)

            return later_playlist
        found = stream.resource_now(token)
        if found is not None:
            self._segment_seconds(time.perf_counter() - started)
            return self._cached_reply(head, stream, token, found)

        async def later_resource() -> Reply | Streamed:
            found = await stream.resource(token)
            self._segment_seconds(time.perf_counter() - started)
            if isinstance(found, Flight) and (head.method == "HEAD" or head.range is not None):
                found = await found.result()
            if isinstance(found, Cached):
                return self._cached_reply(head, stream, token, found)
            return self._streamed_reply(head, stream, token, found)

        return later_resource

    def _cached_reply(self, head: Head, stream: AnyHls, token: str, found: Cached) -> Reply:
        body = found.body
        size = len(body)
        status, start, end, block = _OK, 0, size, _RESOURCE_BLOCK
        if head.range is not None:
            start, last = parse_range(head.range, size)
            status, end = _PARTIAL, last + 1
            block += f"Content-Range: bytes {start}-{last}/{size}\r\n".encode()
        block += b"Content-Type: " + _media_type(token, found.content_type) + b"\r\n"
        reply = Reply(_head(head, status, block, end - start, self._now()))
        if status is _PARTIAL:
            reply.status = 206
        if head.method != "HEAD":
            reply.body, reply.start, reply.end = body, start, end
            stream.served(end - start)
        return reply

    def _streamed_reply(self, head: Head, stream: AnyHls, token: str, flight: Flight) -> Streamed:
        block = _RESOURCE_BLOCK + b"Content-Type: " + _media_type(token, flight.content_type)
        block += b"\r\n"
        stream.served(flight.length or 0)
        if flight.length is not None:
            return Streamed(_head(head, _OK, block, flight.length, self._now()), flight, False)
        if head.http10:  # no chunked framing in HTTP/1.0: the end of the body is the close
            status = _head(head, _OK, block, None, self._now(), close=True)
            return Streamed(status, flight, False, close=True)
        block += b"Transfer-Encoding: chunked\r\n"
        return Streamed(_head(head, _OK, block, None, self._now()), flight, True)

    def failure(self, head: Head, exc: ProxyError | web.HTTPException) -> Reply:
        """The error answer aiohttp's error middleware would give, logged and counted alike."""
        answer = describe(exc)
        report(self._app, head.method, head.path, exc)
        return self.error_reply(head, answer)

    def error_reply(self, head: Head, answer: ErrorAnswer) -> Reply:
        body = json.dumps({"error": answer.code, "message": answer.message}).encode()
        block = _ERROR_BLOCK + _block(answer.headers)
        reason = f"{answer.status} {HTTPStatus(answer.status).phrase}".encode()
        status = _head(head, reason, block, len(body), self._now())
        return Reply(status, b"" if head.method == "HEAD" else body, status=answer.status)

    def _now(self) -> bytes:
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self._date = b"Date: " + formatdate(second, usegmt=True).encode() + b"\r\n"
        return self._date


_OK = b"200 OK"
_PARTIAL = b"206 Partial Content"


def _head(
    head: Head, status: bytes, block: bytes, length: int | None, date: bytes, *, close: bool = False
) -> bytes:
    version = b"HTTP/1.0 " if head.http10 else b"HTTP/1.1 "
    parts = [version, status, b"\r\n", block]
    if length is not None:
        parts.append(b"Content-Length: %d\r\n" % length)
    keep_alive = head.keep_alive and not close
    if head.http10 and keep_alive:
        parts.append(b"Connection: keep-alive\r\n")
    elif not keep_alive and (close or not head.http10):
        parts.append(b"Connection: close\r\n")
    parts += [date, b"\r\n"]
    return b"".join(parts)


def _plain(query: str) -> bool:
    """A query with no escapes or odd separators, which parse_qsl reads as aiohttp does."""
    return not any(mark in query for mark in "%+;")


def _first_of(pairs: list[tuple[str, str]]) -> Callable[[str], str | None]:
    """The first value of a name, as a multidict's get() gives it."""
    return lambda name: next((v for k, v in pairs if k == name), None)


def _media_type(token: str, upstream: str) -> bytes:
    return MEDIA_TYPES.get(posixpath.splitext(token)[1], upstream).encode("latin-1")
