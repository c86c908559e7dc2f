"""Every HLS answer, decided once, whichever protocol carries the request.

Players repeat two requests: the playlist and each new segment. Both HTTP paths answer
them from here (docs/ARCHITECTURE.md, principle 13): the fast path (`web/fast/`) writes the
answer as bytes straight to its transport, aiohttp's routes (`web/hls_routes.py`) through a
`StreamResponse`. A request comes in as a plain value (`Ask`) and goes out as one
(`Answer`): a status, a header block, and a body that is a text, a slice of a cached body
or a segment still arriving; or, when the answer must wait (a miss, a playlist not yet
fetched), as a function that waits for it (`Later`). The header blocks that do not change
are encoded once, so the fast path's answer to a cached segment builds no headers.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from multidict import MultiDictProxy
from yarl import URL

from ..content import StreamRequest, parse_stream_request
from ..errors import BadRequest, NotFound, ProxyError
from ..formats import AnyHls
from ..hls.body import Body
from ..hls.flight import Cached, Flight
from ..hls.media_types import MEDIA_TYPES
from ..registry import Registry
from . import hls_urls
from .access import TOKEN_PARAM, check_token
from .keys import METRICS, SETTINGS, STREAMS
from .middleware import CORS_HEADERS, ErrorAnswer, describe, error_json, report
from .urls import miss_spelt

MANIFEST = "/ace/manifest.m3u8"
RESOURCES = "/ace/hls/"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
TOKEN = re.compile(r"[0-9a-f]{20}(\.[a-z0-9]{1,8})?")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# Past this many digits a position is beyond any resource; int() would refuse 4,300 of them.
_MAX_DIGITS = 18
_MEMO_SIZE = 256


class Block:
    """Header lines as name/value pairs (for aiohttp) and as the bytes of a head (for the
    fast path), encoded once."""

    __slots__ = ("pairs", "raw")

    def __init__(self, *pairs: tuple[str, str]) -> None:
        self.pairs = pairs
        self.raw = "".join(f"{name}: {value}\r\n" for name, value in pairs).encode("latin-1")

    def plus(self, *pairs: tuple[str, str]) -> Block:
        return Block(*self.pairs, *pairs)


_CORS = tuple(CORS_HEADERS.items())
# Live playlists change every target duration: a cached copy would freeze players.
_PLAYLIST = Block(
    ("Cache-Control", "no-cache"), ("Content-Type", f"{PLAYLIST_TYPE}; charset=utf-8"), *_CORS
)
_PLAYLIST_PROBE = Block(("Cache-Control", "no-cache"), ("Content-Type", PLAYLIST_TYPE), *_CORS)
# A resource URL names immutable bytes for as long as it exists.
_RESOURCE = Block(
    ("Cache-Control", "public, max-age=86400, immutable"), ("Accept-Ranges", "bytes"), *_CORS
)
_ERROR = Block(("Content-Type", "application/json; charset=utf-8"), *_CORS)
_REDIRECT = Block(("Content-Type", "text/plain; charset=utf-8"), *_CORS)


class Ask(Protocol):
    """A request, as either protocol reads it."""

    @property
    def method(self) -> str: ...  # GET or HEAD
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> str: ...  # as sent, escapes and all
    @property
    def range(self) -> str | None: ...
    @property
    def authorization(self) -> str | None: ...
    @property
    def user_agent(self) -> str | None: ...
    @property
    def remote(self) -> str | None: ...


@dataclass(slots=True)
class Answer:
    """A status, its headers, and at most one body: `text`, `body[start:end]` or `flight`.
    A HEAD request's answer has the length of the body it does not carry; an answer with
    no body at all (`text` None) has no length."""

    status: int
    block: Block
    text: bytes | None = None
    body: Body | None = None
    start: int = 0
    end: int = 0
    flight: Flight | None = None
    head: bool = False

    @property
    def length(self) -> int | None:
        if self.body is not None:
            return self.end - self.start
        if self.flight is not None:
            return self.flight.length
        return None if self.text is None else len(self.text)


Later = Callable[[], Awaitable[Answer]]


class HlsAnswers:
    """The HLS answers of one application."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._streams = app[STREAMS]
        self._settings = app[SETTINGS]
        self._token = self._settings.access_token.get_secret_value()
        latency = app[METRICS].latency
        self._playlist_seconds = latency.labels("playlist").observe
        self._segment_seconds = latency.labels("segment").observe
        # Every viewer of a channel sends the same query every few seconds, and a fresh
        # playlist is the same str for every viewer until it is refreshed.
        self._requests: dict[str, StreamRequest | list[tuple[str, str]]] = {}
        self._encoded: dict[str, bytes] = {}
        self._resource_blocks: dict[str, Block] = {}

    def answer(self, ask: Ask) -> Answer | Later | None:
        """The answer to a request whose access nothing has checked yet; None when its path
        is no HLS path. Raises the project's errors (or aiohttp's HTTP exceptions)."""
        path = ask.path
        if path.startswith(RESOURCES):
            parts = path.split("/")
            if len(parts) != 6 or not all(parts[3:]):
                return None  # no HLS route takes it
            if self._token:
                self._check_token(ask)
            return self.resource(ask, parts[3], parts[4], parts[5])
        if path == MANIFEST:
            if self._token:
                self._check_token(ask)
            return self.manifest(ask)
        return None

    def _check_token(self, ask: Ask) -> None:
        query_token = query_of(ask.query).get(TOKEN_PARAM) if TOKEN_PARAM in ask.query else None
        check_token(self._token, ask.authorization, query_token)

    # Playlists

    def manifest(self, ask: Ask) -> Answer | Later:
        request = self._requests.get(ask.query)
        if request is None:
            request = self._read_query(ask.query)
            if len(self._requests) >= _MEMO_SIZE:
                self._requests.clear()
            self._requests[ask.query] = request
        if not isinstance(request, StreamRequest):
            location = str(URL.build(path=ask.path).with_query(request))
            return Answer(302, _REDIRECT.plus(("Location", location)), b"302: Found")
        if ask.method == "HEAD":
            # IPTV apps probe with HEAD before playing; that must not cost an engine session.
            return Answer(200, _PLAYLIST_PROBE, head=True)
        started = time.perf_counter()
        stream = self._streams.find_hls(request.key)
        if stream is not None:
            stream.seen_by(viewer(ask.remote, ask.user_agent))
            text = stream.playlist_now()
            if text is not None:
                self._playlist_seconds(time.perf_counter() - started)
                return self._playlist(ask, text)

        async def later() -> Answer:
            opened = self._streams.open_hls(request)
            if opened is not stream:
                opened.seen_by(viewer(ask.remote, ask.user_agent))
            text = await opened.playlist()
            self._playlist_seconds(time.perf_counter() - started)
            return self._playlist(ask, text)

        return later

    def _read_query(self, query: str) -> StreamRequest | list[tuple[str, str]]:
        """The stream a manifest query asks for, or the query to redirect to when it does
        not spell its content id canonically (so that a load balancer hashing on the id
        sends all of a content's requests to one instance)."""
        items = query_of(query)
        request = parse_stream_request(
            items.items(), allow_remote=self._settings.allow_remote_content
        )
        given = miss_spelt(request.key, items.get)
        if given is None:
            return request
        name, value = request.key.engine_param
        return [
            (k, value if v == given and k in (name, "content_id") else v) for k, v in items.items()
        ]

    def _playlist(self, ask: Ask, text: str) -> Answer:
        data = self._encoded.get(text)
        if data is None:
            if len(self._encoded) >= _MEMO_SIZE:
                self._encoded.clear()
            data = self._encoded[text] = text.encode()
        return Answer(200, _PLAYLIST, data, head=ask.method == "HEAD")

    # Segments, keys, init sections and variant playlists

    def resource(self, ask: Ask, kind: str, value: str, token: str) -> Answer | Later:
        if not TOKEN.fullmatch(token):
            raise NotFound("no such resource")
        stream = find_stream(self._streams, kind, value)
        stream.seen_by(viewer(ask.remote, ask.user_agent))
        started = time.perf_counter()
        if token.endswith(".m3u8"):
            text = stream.playlist_now(token)
            if text is not None:
                self._playlist_seconds(time.perf_counter() - started)
                return self._playlist(ask, text)

            async def later_playlist() -> Answer:
                text = await stream.playlist(token)
                self._playlist_seconds(time.perf_counter() - started)
                return self._playlist(ask, text)

            return later_playlist
        found = stream.resource_now(token)
        if found is not None:
            self._segment_seconds(time.perf_counter() - started)
            return self._cached(ask, stream, token, found)

        async def later_resource() -> Answer:
            found = await stream.resource(token)
            self._segment_seconds(time.perf_counter() - started)
            if isinstance(found, Flight) and (ask.method == "HEAD" or ask.range is not None):
                found = await found.result()
            if isinstance(found, Cached):
                return self._cached(ask, stream, token, found)
            stream.served(found.length or 0)
            return Answer(200, self._resource_block(token, found.content_type), flight=found)

        return later_resource

    def _cached(self, ask: Ask, stream: AnyHls, token: str, found: Cached) -> Answer:
        body = found.body
        size = len(body)
        block = self._resource_block(token, found.content_type)
        head = ask.method == "HEAD"
        if ask.range is None:
            answer = Answer(200, block, body=body, end=size, head=head)
        else:
            start, last = parse_range(ask.range, size)
            block = block.plus(("Content-Range", f"bytes {start}-{last}/{size}"))
            answer = Answer(206, block, body=body, start=start, end=last + 1, head=head)
        if not head:
            stream.served(answer.end - answer.start)
        return answer

    def _resource_block(self, token: str, upstream: str) -> Block:
        content_type = MEDIA_TYPES.get(posixpath.splitext(token)[1], upstream)
        block = self._resource_blocks.get(content_type)
        if block is None:
            if len(self._resource_blocks) >= _MEMO_SIZE:
                self._resource_blocks.clear()
            block = self._resource_blocks[content_type] = _RESOURCE.plus(
                ("Content-Type", content_type)
            )
        return block

    # Failures

    def failure(self, ask: Ask, exc: ProxyError | web.HTTPException) -> Answer:
        """The error answer aiohttp's `errors` middleware gives, logged and counted alike."""
        answer = describe(exc)
        report(self._app, ask.method, ask.path, exc)
        return error_answer(answer, head=ask.method == "HEAD")


def error_answer(answer: ErrorAnswer, *, head: bool = False) -> Answer:
    block = _ERROR.plus(*answer.headers.items()) if answer.headers else _ERROR
    return Answer(answer.status, block, error_json(answer.code, answer.message), head=head)


def query_of(query: str) -> MultiDictProxy[str]:
    """A query string read as aiohttp reads a request's (`web.Request.query`)."""
    return URL.build(query_string=query, encoded=True).query


def viewer(address: str | None, user_agent: str | None) -> bytes:
    """Who asked, as HLS viewers are told apart (`hls/viewers.py`): the client's address
    and its User-Agent, as a short digest (a table of them stays small)."""
    who = f"{address or ''}\n{user_agent or ''}".encode("utf-8", "surrogateescape")
    return hashlib.blake2b(who, digest_size=12).digest()


def find_stream(registry: Registry, kind: str, value: str) -> AnyHls:
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


# The application's answers, made once its streams exist (`web/hls_routes.setup`).
HLS_ANSWERS = web.AppKey("hls_answers", HlsAnswers)


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
