"""One content as HLS: its engine session, its rewritten playlists, and the resources they name.

Only resources that a playlist of this session named can be fetched: a client names a
resource by an opaque token, never by a URL, so it cannot make the proxy fetch anything else
(`names`). What players are served across engine sessions is decided in `continuity`; this
fetches the playlists and carries the decisions out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Literal

from ..content import ContentKey, StreamRequest
from ..engine.client import EngineClient, EngineSession
from ..errors import (
    ContentGone,
    EngineError,
    EngineLost,
    EngineProtocolError,
    EngineRefused,
    EngineStatus,
    NotFound,
    ProxyError,
    Unavailable,
)
from ..lifecycle import DEFAULT_WAIT, SESSION_OVER, EngineStream, Figures, StreamGaveUp
from ..sessions import Sessions
from ..state import EndReason, Event, RetryPolicy, State, WaitBounds
from . import slate
from .audience import Audience
from .cache import SegmentCache
from .continuity import Continuity, upkeep
from .feed import concatenated
from .flight import Cached, Counted, Fetch, Flight
from .names import Names
from .playlist import looks_like_playlist, rewrite
from .polled import PolledStream
from .served import DEFAULT_TARGET, Served
from .splice import Splice
from .starting import StartingSlate
from .tokens import token_for
from .uri import Uri

log = logging.getLogger(__name__)

MAX_PLAYLIST_BYTES = 4 << 20


Locator = Callable[[ContentKey, str], str]
"""The URL at which clients fetch a resource of a content, given the resource's name: what a
rewritten playlist says instead of the engine's URI."""


@dataclass(frozen=True, slots=True)
class HlsOptions:
    stream_timeout: float
    prefetch: int
    locate: Locator
    slate: slate.SlateMedia | None = None
    """What players see while the engine prebuffers; None: they wait for the channel."""


def _over(exc: EngineError) -> bool:
    """The engine answered that the session is over (stopped, superseded, expired)."""
    return isinstance(exc, EngineStatus) and exc.upstream_status in SESSION_OVER


class HlsStream(PolledStream):
    def __init__(
        self,
        request: StreamRequest,
        *,
        client: EngineClient,
        sessions: Sessions,
        cache: SegmentCache,
        options: HlsOptions,
        wait_bounds: WaitBounds = DEFAULT_WAIT,
        on_closed: Callable[[EngineStream], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Recovery goes on while viewers ask, for at most the stream timeout in a row.
        policy = RetryPolicy(retries=None, patience=options.stream_timeout, reopens=False)
        super().__init__(
            request,
            client=client,
            sessions=sessions,
            policy=policy,
            wait_bounds=wait_bounds,
            on_closed=on_closed,
            clock=clock,
        )
        self.audience = Audience(self.started_at, options.stream_timeout)
        self.bytes_in = 0
        """Every byte read from the engine: playlists, and segments as the cache reads them
        (once, however many players get them)."""
        self.playlist_fetches = 0
        self.last_data_at: float | None = None
        self._cache = cache
        self._options = options
        self._names = Names()  # only these can be fetched
        self._continuity = Continuity()
        self._refreshes: dict[str, asyncio.Task[Served]] = {}
        self._segment_ttl = 60.0
        # What players see while the engine holds the first playlist back.
        self._slate = StartingSlate(
            options.slate,
            functools.partial(options.locate, request.key),
            label=f"hls stream {request.key}",
            clock=clock,
        )
        loop = asyncio.get_running_loop()
        self._lost: asyncio.Future[EngineError] = loop.create_future()
        self._attempted: asyncio.Future[None] = loop.create_future()
        self._launch()

    def __repr__(self) -> str:
        return f"<HlsStream {self.key} {self.state.value} names={len(self._names)}>"

    @property
    def mode(self) -> Literal["hls"]:
        return "hls"

    def figures(self) -> Figures:
        return Figures(
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            clients=self.clients(),
            playlist_fetches=self.playlist_fetches,
            last_data_at=self.last_data_at,
        )

    async def playlist(self, token: str | None = None) -> str:
        """The rewritten playlist: the session's own (token None) or one it named; the
        slate's while the engine prebuffers."""
        self.touch()
        if token is None and not self.serving:
            text = await self._slate.playlist(
                accepted=self.ready_or_awaiting, media=self.ready, live=lambda: self.serving
            )
            if text is not None:
                return text
        await self.ready()
        url, text = self._known_playlist(token)
        if text is not None:
            return text
        refresh = self._refreshes.get(url)
        if refresh is None:
            refresh = asyncio.create_task(self._refresh(url), name=f"hls-playlist-{self.key}")
            # Its waiters may all leave; the outcome is then nobody's to report.
            refresh.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._refreshes[url] = refresh
        return (await asyncio.shield(refresh)).text

    def playlist_now(self, token: str | None = None) -> str | None:
        """`playlist()` when it needs no waiting (the stream is serving and the copy is
        fresh), else None. Raises NotFound as `playlist()` does."""
        if not self.serving:
            return None
        text = self._known_playlist(token)[1]
        if text is not None:
            self.touch()
        return text

    def _known_playlist(self, token: str | None) -> tuple[str, str | None]:
        """The playlist's engine URL, and its text when what we hold may be served."""
        continuity = self._continuity
        if continuity.final is not None:
            return "", continuity.final.text
        if token is None:
            url = continuity.main_url
        else:
            uri = self._names.lookup(token, self._clock())
            if uri.kind != "playlist":
                raise NotFound("no such playlist")
            # Players keep polling the variant they picked.
            url = continuity.polled(uri.url)
        recovering = self.state is State.RECOVERING
        current = continuity.to_serve(url, self._clock(), recovering=recovering)
        return url, None if current is None else current.text

    async def resource(self, token: str) -> Cached | Flight:
        """A segment, key or init section that a playlist of this session named."""
        self.touch()
        fetch: Fetch | None = self._slate.fetch(token)
        if fetch is None:
            fetch = functools.partial(self._open, self._resource_uri(token))
            await self.ready()
        found = await self._cache.get((self.key, token), fetch, self._segment_ttl)
        self.audience.looked_up(isinstance(found, Cached))
        return found

    def resource_now(self, token: str) -> Cached | None:
        """`resource()` when the body is cached and the stream serving, else None.
        Raises NotFound as `resource()` does."""
        if not self._slate.lists(token):
            self._resource_uri(token)
            if not self.serving:
                return None
        found = self._cache.cached((self.key, token))
        if found is not None:
            self.touch()
            self.audience.looked_up(True)
        return found

    def _resource_uri(self, token: str) -> Uri:
        uri = self._names.lookup(token, self._clock())
        if uri.kind == "playlist":
            raise NotFound("that is a playlist")
        return uri

    def ts_feed(self, empty_timeout: float) -> AsyncGenerator[bytes | memoryview | None, None]:
        """The session's segments in order, as one MPEG-TS stream."""
        return concatenated(self, empty_timeout=empty_timeout)

    def _target(self) -> float:
        current = self._continuity.main
        return current.target if current is not None else DEFAULT_TARGET

    async def _open(self, uri: Uri) -> Counted:
        session = self._session
        if session is None:
            raise Unavailable("the stream is changing engines; retry", retry_after=1)
        byte_range = None
        if uri.byterange is not None:
            byte_range = (uri.byterange.offset, uri.byterange.length)
        try:
            resource = await self._client.fetch(session, uri.url, byte_range)
        except EngineStatus as exc:
            if exc.upstream_status == 404:
                raise NotFound("the engine no longer has this segment") from exc
            raise
        # Each byte counts once, as the cache reads it, however many players get it.
        return Counted(resource, self._read)

    def _read(self, size: int) -> None:
        self.bytes_in += size

    async def _refresh(self, url: str) -> Served:
        last = self._continuity.last(url)
        splice = self._continuity.splice(url)
        try:
            playlist = self._continuity.loaded(url, await self._load(url, splice), splice)
        except EngineError as exc:
            if last is None:
                raise
            # A slow or dropped answer may be a blip; a refused connection is a dead engine:
            # move now.
            blip = isinstance(exc, EngineLost) and not isinstance(exc, EngineRefused)
            if blip and self._continuity.bridges(last, self._clock()):
                log.info("stream %s: the last playlist bridges a blip (%s)", self.key, exc.message)
                return last
            if not (isinstance(exc, EngineLost) or _over(exc)):
                raise
            return await self._after_loss(url, last, exc)
        finally:
            self._refreshes.pop(url, None)
        self._after_refresh(playlist)
        return playlist

    async def _after_loss(self, url: str, last: Served, exc: EngineError) -> Served:
        """The session is lost: wake the stream's task to recover, and answer with what its
        first attempt brings (a spliced playlist, or an ended one), or else the last good one."""
        if not self._lost.done():
            self._lost.set_result(exc)
        attempt = self._attempted
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(last.target):
                await asyncio.shield(attempt)
        return self._continuity.after_loss(url, last)

    async def _load(self, url: str, splice: Splice | None, *, bounded: bool = True) -> Served:
        """A playlist, rewritten; `bounded=False`: its wait is the caller's to bound (a
        session's first playlist, which the engine holds while it prebuffers)."""
        session = self._session
        if session is None:
            raise Unavailable("the stream is changing engines; retry", retry_after=1)
        resource = await self._client.fetch(session, url, bounded=bounded)
        try:
            body = await resource.read(MAX_PLAYLIST_BYTES)
            base = resource.url
        finally:
            await resource.close()
        self.playlist_fetches += 1
        self.bytes_in += len(body)
        self.last_data_at = self._clock()
        if not looks_like_playlist(body):
            raise EngineProtocolError("the engine's playlist is not a playlist")
        text = body.decode("utf-8", errors="replace")
        playlists: list[str] = []

        def name(uri: Uri) -> str:
            if uri.kind == "playlist":
                playlists.append(uri.url)
            return self._name(uri)

        try:
            rewritten = rewrite(text, base, name, splice)
        except ValueError as exc:
            raise EngineProtocolError("the engine's playlist cannot be read") from exc
        offset = 0 if splice is None else splice.media_offset
        variants = tuple(playlists) if rewritten.info.multivariant else ()
        return Served(rewritten.text, rewritten.info, self._clock(), offset, variants)

    async def _serve(self) -> None:
        session = await self._start_session()
        url = self._continuity.main_url = session.info.playback_url
        # The engine holds the first playlist back while it prebuffers; players meanwhile
        # get the slate, which the channel then follows.
        first = await self._await_media(session, self._load(url, None, bounded=False))
        first = self._continuity.started(url, first, self._slate.last)
        self._after_refresh(first)
        self._serving()
        loop = asyncio.get_running_loop()
        while True:
            failure = await self._lost
            await self._recover_session(failure)
            self._lost = loop.create_future()

    async def _recover_session(self, failure: BaseException) -> None:
        """New engine sessions (on another engine, if this one died) until one serves a
        playlist that players follow across one discontinuity; meanwhile they get the last
        good playlist. Gives up, with an ended playlist, only when the content is gone."""
        log.warning("hls stream %s: %s; starting a new engine session", self.key, failure)
        last = self._continuity.main
        while True:
            try:
                await self._recover(failure)
                session = await self._start_session()
                playlist = await self._spliced(session, last)
            except StreamGaveUp as gave_up:
                await self._give_up(gave_up, last)
            except ContentGone as exc:
                await self._give_up(StreamGaveUp(EndReason.CONTENT_GONE, exc.message), last)
            except (ProxyError, ValueError) as exc:
                log.info("hls stream %s: no new session yet: %s", self.key, exc)
                failure = exc
                self._attempt_done()
                continue
            self._install(session, playlist)
            self._attempt_done()
            return

    async def _give_up(self, gave_up: StreamGaveUp, last: Served | None) -> None:
        self._attempt_done()
        if last is None or gave_up.reason is not EndReason.CONTENT_GONE:
            raise gave_up
        self._finish(last)
        await asyncio.Event().wait()  # answers with the ended playlist until idle

    async def _spliced(self, session: EngineSession, last: Served | None) -> Served:
        url = session.info.playback_url
        first = await self._await_media(session, self._load(url, None, bounded=False))
        return self._continuity.spliced(url, first, last)

    def _install(self, session: EngineSession, playlist: Served) -> None:
        self._continuity.install(session.info.playback_url, playlist)
        self._after_refresh(playlist)
        self._serving()

    def _attempt_done(self) -> None:
        attempt, self._attempted = self._attempted, asyncio.get_running_loop().create_future()
        attempt.set_result(None)

    def _finish(self, last: Served) -> None:
        """The content is gone: tell players the stream ended, not a loop of errors."""
        self._continuity.finish(last)
        self._advance(Event.FINISH)
        log.warning("hls stream %s: the engine cannot load the content; playlist ended", self.key)

    def _after_refresh(self, playlist: Served) -> None:
        kept = upkeep(playlist, self._options.prefetch)
        if kept is None:
            return
        self._segment_ttl = kept.segment_ttl
        self._names.forget_before(kept.forget_before)
        for token in kept.prefetch:
            uri = self._names.get(token)
            if uri is not None:
                fetch = functools.partial(self._open, uri)
                self._cache.prefetch((self.key, token), fetch, self._segment_ttl)

    async def segments(self) -> tuple[float, int, list[tuple[int, str]]]:
        """The session's target duration, its generation and its live segments as (media
        sequence, token), for feeding MPEG-TS clients from this session."""
        await self.ready()  # the channel's own playlist: never the slate
        await self.playlist()
        continuity = self._continuity
        current = continuity.final or continuity.main
        assert current is not None  # the playlist above was served
        if current.info.multivariant:
            raise EngineProtocolError("the engine's playlist has variants; pick one to play")
        return (
            current.target,
            continuity.generation,
            [
                (
                    segment.sequence + current.offset,
                    token_for("segment", segment.url, segment.byterange),
                )
                for segment in current.info.segments
            ],
        )

    def _name(self, uri: Uri) -> str:
        return self._options.locate(self.key, self._names.name(uri, self._clock()))

    async def _teardown(self) -> None:
        if not self._attempted.done():
            self._attempted.set_result(None)
        refreshes = list(self._refreshes.values())
        for task in refreshes:
            task.cancel()
        await asyncio.gather(*refreshes, return_exceptions=True)
        self._cache.drop(lambda k: isinstance(k, tuple) and k[0] == self.key)
