"""The AceStream engine's middleware API: start, read, stat and stop a playback session.

Every aiohttp and timeout error is translated here into the project's own EngineError tree,
with messages that never carry the engine's address, a pid or a session id
(docs/ARCHITECTURE.md, principle 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from pydantic import BaseModel, ConfigDict, ValidationError
from yarl import URL

from ..content import StreamRequest
from ..errors import (
    ContentGone,
    EngineError,
    EngineProtocolError,
    EngineRedirected,
    EngineRefused,
    EngineRejected,
    EngineStatus,
    EngineTimeout,
    EngineUnreachable,
    NotAnEngine,
)
from .reader import EngineReader
from .redact import redact

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

Format = Literal["ts", "hls"]
_START_PATH: dict[Format, str] = {"ts": "/ace/getstream", "hls": "/ace/manifest.m3u8"}
# Engines answer these for media they cannot play; streaming them would show as garbage video.
_NOT_MEDIA = ("text/html", "application/json", "text/plain")
# What engines answer a start with for content they cannot find or load.
_CONTENT_GONE = "failed to load content"
# A start's answer is a small JSON envelope; anything longer is something else talking. Media
# may never end, so they are not read at all. (Other types are read: an engine's JSON may
# come under any type, so only the body tells.)
_START_ANSWER_LIMIT = 64 * 1024
_NOT_AN_ANSWER = ("video/", "audio/", "application/vnd.apple.mpegurl")
# Redirects are followed only within the engine, and this many times at most: a Location
# elsewhere would make the proxy fetch, and serve, whatever that address holds.
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# How much of a fetched resource's body may wait unread before the socket is paused
# (aiohttp pauses at twice this). aiohttp's 64 KiB default makes a 2.5 MB segment arrive in
# pause-and-resume steps, each a turn of a busy event loop, while every viewer that asked
# for it waits; the cache keeps the whole body anyway, so letting it flow costs no memory.
FETCH_READ_BUFFER = 4 * 1024 * 1024
# What a stream's problem reads when its MPEG-TS body breaks off.
_TS_DROPPED = "the engine dropped the stream"


@dataclass(frozen=True, slots=True)
class Engine:
    """Where one engine's HTTP API is reached."""

    scheme: str
    host: str
    port: int
    container_id: str | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.base_url

    def owns(self, url: URL) -> bool:
        """Whether `url` is at the address we reach this engine at: scheme, host and port."""
        return (
            url.scheme.lower() == self.scheme.lower()
            and (url.host or "").lower() == self.host.strip("[]").lower()
            and url.port == self.port
        )


class PlaybackInfo(BaseModel):
    """The `response` object of a `format=json` start."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    playback_url: str
    stat_url: str
    command_url: str
    infohash: str = ""
    playback_session_id: str = ""
    is_live: int = 1


@dataclass(slots=True)
class EngineSession:
    engine: Engine
    request: StreamRequest
    fmt: Format
    pid: str
    info: PlaybackInfo
    started_at: float = field(default_factory=time.monotonic)

    def url(self, engine_url: str) -> str:
        """Re-home a URL the engine gave us onto the address we reach the engine at.

        Engines build their URLs from the Host header, or from their container port when
        behind a port forward; the path and query are what identify the resource.
        """
        parts = urlsplit(engine_url)
        path = parts.path or "/"
        return f"{self.engine.base_url}{path}" + (f"?{parts.query}" if parts.query else "")

    def __repr__(self) -> str:
        return f"<EngineSession {self.request.key} {self.fmt} on {self.engine}>"

    @property
    def age(self) -> float:
        """Seconds since the session was started."""
        return time.monotonic() - self.started_at


class EngineClient:
    """Talks to engines. Owns no session state: callers own the EngineSessions it returns."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        response_timeout: float,
        stop_timeout: float = 3.0,
    ) -> None:
        self._http = http
        self._response_timeout = response_timeout
        self._stop_timeout = stop_timeout

    async def start(self, engine: Engine, request: StreamRequest, fmt: Format) -> EngineSession:
        pid = str(uuid.uuid4())
        query = [*request.params, request.key.engine_param, ("format", "json"), ("pid", pid)]
        url = engine.base_url + _START_PATH[fmt]
        async with (
            self._errors("starting the stream"),
            asyncio.timeout(self._response_timeout),
            self._http.get(url, params=query, allow_redirects=False) as resp,
        ):
            try:
                body = await _envelope(resp, engine)
            except NotAnEngine:
                _misconfigured(engine, request, fmt)
                raise
        info = _unwrap(body, PlaybackInfo, engine)
        return EngineSession(engine, request, fmt, pid, info)

    @property
    def response_timeout(self) -> float:
        return self._response_timeout

    @contextlib.asynccontextmanager
    async def open_stream(self, session: EngineSession) -> AsyncIterator[EngineReader]:
        """The MPEG-TS body of a session; the engine allows one such read at a time.

        Not bounded in time: the engine holds the head back while it prebuffers, which may
        take minutes, and only its stat tells a working engine from a dead one. The caller
        bounds the wait (`stat_watch.StatWatch.await_media`), and each read.
        """
        async with contextlib.AsyncExitStack() as stack:
            async with self._errors("opening the stream"):
                resp = await stack.enter_async_context(
                    await self._get(session.engine, session.url(session.info.playback_url))
                )
                _check_media(resp)
            yield EngineReader(resp.content, read_timeout=None, dropped=_TS_DROPPED)

    async def fetch(
        self,
        session: EngineSession,
        engine_url: str,
        byte_range: tuple[int, int] | None = None,
        *,
        bounded: bool = True,
    ) -> EngineResource:
        """Open a resource the engine named (a playlist, a segment); its headers have arrived.

        `byte_range` is (offset, length). Raises EngineStatus for an answer other than 200/206.
        `bounded=False` leaves the wait for the headers to the caller: a session's first
        playlist comes once the engine has prebuffered (see `open_stream`).
        """
        headers = {}
        if byte_range is not None:
            offset, length = byte_range
            headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        async with (
            self._errors("fetching from the engine"),
            asyncio.timeout(self._response_timeout if bounded else None),
        ):
            resp = await self._get(
                session.engine,
                session.url(engine_url),
                headers=headers,
                read_bufsize=FETCH_READ_BUFFER,
            )
        if resp.status not in (200, 206):
            resp.release()
            raise EngineStatus(resp.status)
        return EngineResource(resp, self._response_timeout)

    async def stat(self, session: EngineSession) -> dict[str, Any]:
        async with (
            self._errors("reading stream statistics"),
            asyncio.timeout(self._response_timeout),
            await self._get(session.engine, session.url(session.info.stat_url)) as resp,
        ):
            body = await self._json(resp)
        if body.get("error"):
            raise EngineRejected(str(body["error"]))
        response = body.get("response")
        return response if isinstance(response, dict) else {}

    async def stop(self, session: EngineSession) -> bool:
        """Ask the engine to end the session. Never raises: the engine also ends idle
        sessions by itself, so a failed stop is logged, not escalated."""
        try:
            async with (
                self._errors("stopping the stream"),
                asyncio.timeout(self._stop_timeout),
                await self._get(
                    session.engine, session.url(session.info.command_url), {"method": "stop"}
                ) as resp,
            ):
                body = await self._json(resp)
        except EngineError as exc:
            log.warning("stop of %s failed: %s", session.request.key, exc.message)
            return False
        if body.get("error"):
            log.info("stop of %s: engine says %s", session.request.key, body["error"])
            return False
        return True

    async def _get(
        self,
        engine: Engine,
        url: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        read_bufsize: int | None = None,
    ) -> aiohttp.ClientResponse:
        """GET with redirects followed by hand, only while they stay on `engine`."""
        target = URL(url).extend_query(params or {})
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self._http.get(
                target, headers=headers, allow_redirects=False, read_bufsize=read_bufsize
            )
            if resp.status not in _REDIRECTS:
                return resp
            resp.release()
            target = _location(resp.url, resp.headers)
            if not engine.owns(target):
                raise EngineRedirected("the engine redirected to another address")
        raise EngineRedirected(f"the engine redirected more than {MAX_REDIRECTS} times")

    @contextlib.asynccontextmanager
    async def _errors(self, doing: str) -> AsyncIterator[None]:
        try:
            yield
        except EngineError:
            raise
        except TimeoutError as exc:
            raise EngineTimeout(
                f"the engine did not answer within {self._response_timeout:g}s while {doing}"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise EngineRefused(f"the engine is unreachable ({doing})") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineUnreachable(f"the engine dropped the connection while {doing}") from exc

    @staticmethod
    async def _json(resp: aiohttp.ClientResponse) -> dict[str, Any]:
        if resp.status != 200:
            raise EngineRejected(f"the engine answered HTTP {resp.status}")
        try:
            body = await resp.json(content_type=None)
        except ValueError as exc:
            raise EngineProtocolError("the engine answered something that is not JSON") from exc
        if not isinstance(body, dict):
            raise EngineProtocolError("the engine answered JSON of an unexpected shape")
        return body


class EngineResource:
    """A resource the engine is sending: what the segment cache reads (hls.cache.Source)."""

    def __init__(self, response: aiohttp.ClientResponse, read_timeout: float) -> None:
        self._response = response
        self._body = EngineReader(
            response.content,
            read_timeout=read_timeout,
            dropped="the engine dropped the connection mid-answer",
        )

    def __repr__(self) -> str:
        return f"<EngineResource {self._response.status} {self.content_type} {self.length}>"

    @property
    def content_type(self) -> str:
        return self._response.content_type

    @property
    def length(self) -> int | None:
        return self._response.content_length

    @property
    def url(self) -> str:
        """Where the resource was found, after redirects: the base for its relative URIs."""
        return str(self._response.url)

    def chunks(self) -> AsyncIterator[bytes]:
        """The body in the pieces it was read in (`EngineReader.chunks`)."""
        return self._body.chunks()

    async def read(self, limit: int) -> bytes:
        body = bytearray()
        async for chunk in self.chunks():
            body += chunk
            if len(body) > limit:
                raise EngineProtocolError("the engine's answer is larger than expected")
        return bytes(body)

    async def close(self) -> None:
        self._response.release()


async def _envelope(resp: aiohttp.ClientResponse, engine: Engine) -> dict[str, Any]:
    """A start's answer, which an engine sends as `{"response": ..., "error": ...}` (with HTTP
    200 even for an error). Anything else (a web page, a 404, a stream, another proxy's
    refusal) says the address is not an engine's; reading it stops early, so that a server
    sending video forever is told apart without waiting for the timeout."""
    if (resp.content_length or 0) > _START_ANSWER_LIMIT or resp.content_type.startswith(
        _NOT_AN_ANSWER
    ):
        raise NotAnEngine(configured=engine.container_id is None)
    raw = bytearray()
    while chunk := await resp.content.readany():
        raw += chunk
        if len(raw) > _START_ANSWER_LIMIT:
            raise NotAnEngine(configured=engine.container_id is None)
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict) or "response" not in body:
        raise NotAnEngine(configured=engine.container_id is None)
    if resp.status != 200 and not body.get("error"):
        raise EngineRejected(f"the engine answered HTTP {resp.status}")
    return body


def _misconfigured(engine: Engine, request: StreamRequest, fmt: Format) -> None:
    """The operator's line for an address that answers as no engine: which address, and the
    likely mistake (a client is told neither)."""
    log.error(
        "engine %s is not an AceStream engine (%s)",
        engine,
        "is ACEXY_HOST/ACEXY_PORT this proxy itself, or another server?"
        if engine.container_id is None
        else "the orchestrator listed it",
        extra={
            "event": "engine_misconfigured",
            "stream": request.key.value,
            "mode": fmt,
            "engine_address": str(engine),
        },
    )


def unreachable_cause(exc: BaseException) -> str:
    """Why an engine could not be reached, in the words an operator acts on: for the log,
    next to the engine's address (a client's error names neither)."""
    cause = exc.__cause__ if isinstance(exc, EngineError) and exc.__cause__ else exc
    if isinstance(cause, aiohttp.ClientConnectorDNSError):
        return f"its name does not resolve (DNS: {cause.os_error.strerror or cause.os_error})"
    if isinstance(cause, aiohttp.ClientConnectorError):
        if isinstance(cause.os_error, ConnectionRefusedError):
            return "connection refused: nothing listens there"
        return f"cannot connect: {cause.os_error.strerror or cause.os_error}"
    if isinstance(cause, TimeoutError):
        return "no answer in time" + (f" ({exc.message})" if isinstance(exc, EngineError) else "")
    if isinstance(exc, EngineError):
        return exc.message
    return repr(exc)


def _unwrap(body: dict[str, Any], model: type[M], engine: Engine) -> M:
    if body.get("error"):
        error = str(body["error"])
        said = redact(error, engine.host)
        if _CONTENT_GONE in error.lower():
            raise ContentGone(f"the engine says: {said}")
        raise EngineRejected(f"the engine says: {said}")
    try:
        return model.model_validate(body.get("response"))
    except ValidationError as exc:
        raise EngineProtocolError("the engine answered JSON of an unexpected shape") from exc


def _location(base: URL, headers: CIMultiDictProxy[str]) -> URL:
    try:
        return base.join(URL(headers.get("Location", "")))
    except ValueError as exc:
        raise EngineRedirected("the engine redirected to an unreadable address") from exc


def _check_media(resp: aiohttp.ClientResponse) -> None:
    if resp.status != 200:
        raise EngineRejected(f"the engine answered HTTP {resp.status} for the stream")
    if resp.content_type.startswith(_NOT_MEDIA):
        raise EngineRejected(f"the engine answered {resp.content_type} instead of video")
