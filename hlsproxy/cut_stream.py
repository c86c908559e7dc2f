"""One content as HLS cut by the proxy from the content's one MPEG-TS stream.

The engine only ever sees the MPEG-TS session: this stream starts none of its own. It taps
the content's `TsStream` (opening it if nobody watches it yet), cuts what the MPEG-TS clients
get into segments at keyframes (`ts.segmenter`), keeps each one in the shared segment cache
under its byte budget, and lists the newest in a live playlist (`hls.window`). When the
MPEG-TS stream moves to another engine or reopens its read, its `Splicer` counts a break:
the next segment is marked `EXT-X-DISCONTINUITY`, and players carry on across it.

While the engine prebuffers a cold channel (the MPEG-TS stream waits for its first media,
10 to 30 s), players are shown the starting slate as the engine's HLS shows it
(`hls.starting`): a player's first playlist request is answered within `SLATE_AFTER`
seconds rather than when the first segment is cut, which not every player waits for (mpv
and GStreamer gave up after 10 and 15 s, docs/ARCHITECTURE.md). The window's playlists then
continue the last slate playlist served, across one EXT-X-DISCONTINUITY (`splice.Splice`).

The window is what a player can pause within, or seek back over: its segments are kept
for `Window.retention()`, for as long as the cache's byte budget allows (a window of
minutes takes, per channel, minutes of its bitrate: 10 minutes at 5 Mbit/s is 375 MB).

`ts/` and `hls/` never import each other: like `formats`, this module is where they meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from .content import ContentKey, StreamRequest
from .engine.client import Engine, EngineClient
from .errors import NotFound, Unavailable
from .hls import slate
from .hls.audience import Audience
from .hls.body import Body
from .hls.cache import SegmentCache
from .hls.flight import Cached, Flight
from .hls.polled import PolledStream
from .hls.splice import Splice, mark_discontinuity
from .hls.starting import StartingSlate
from .hls.stream import Locator
from .hls.window import Window
from .lifecycle import EngineStream, Figures, UpstreamEnded
from .sessions import Sessions
from .stat_watch import Prebuffer
from .state import RetryPolicy
from .ts.segmenter import Segment, Segmenter
from .ts.stream import TsStream

SEGMENT_TYPE = "video/mp2t"
# How many target durations of a delivering stream a player waits for its first segment.
FIRST_SEGMENT_TARGETS = 4


@dataclass(frozen=True, slots=True)
class CutOptions:
    target: float
    """Seconds each segment is cut near."""
    window: int
    """Segments listed in the playlist."""
    stream_timeout: float
    locate: Locator
    slate: slate.SlateMedia | None = None
    """What players see while the engine prebuffers; None: they wait for the first segment."""


class CutHlsStream(PolledStream):
    def __init__(
        self,
        request: StreamRequest,
        *,
        source: TsStream,
        client: EngineClient,
        sessions: Sessions,
        cache: SegmentCache,
        options: CutOptions,
        on_idle: Callable[[], None] = lambda: None,
        on_closed: Callable[[EngineStream], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            request,
            client=client,
            sessions=sessions,
            policy=RetryPolicy(retries=0),
            on_closed=on_closed,
            clock=clock,
        )
        self.source = source
        self.audience = Audience(self.started_at, options.stream_timeout)
        self.last_data_at: float | None = None
        self._cache = cache
        self._options = options
        self._cutter = Cutter(request.key, cache, options, source.breaks, wall)
        self._slate = StartingSlate(
            options.slate,
            functools.partial(options.locate, request.key),
            label=f"cut hls stream {request.key}",
            clock=clock,
        )
        self._waiting = 0  # requests waiting for the first segment
        self._on_idle = on_idle
        # At once: an MPEG-TS stream nobody watches would end before this stream's task runs.
        source.tap(self._on_packets)
        self._launch()

    def __repr__(self) -> str:
        return f"<CutHlsStream {self.key} {self.state.value} {self._cutter.window!r}>"

    @property
    def mode(self) -> Literal["hls"]:
        return "hls"

    @property
    def engine(self) -> Engine | None:
        return self.source.engine

    @property
    def shown_state(self) -> str:
        """While the MPEG-TS stream waits for the engine's media, its state ("prebuffering"
        while the engine says so): that wait is this stream's too."""
        if self.closing or self.source.prebuffer() is None:
            return super().shown_state
        return self.source.shown_state

    def prebuffer(self) -> Prebuffer | None:
        return None if self.closing else self.source.prebuffer()

    def idle_deadline(self) -> float | None:
        return None if self._waiting else super().idle_deadline()

    def _target(self) -> float:
        return self._cutter.window.target_duration

    def figures(self) -> Figures:
        # Nothing comes in from an engine: the MPEG-TS stream counts what it reads, and the
        # cache what was cut.
        return Figures(
            bytes_out=self.bytes_out,
            clients=self.clients(),
            last_data_at=self.last_data_at,
        )

    async def playlist(self, token: str | None = None) -> str:
        self.touch()
        if token is not None:
            raise NotFound("no such playlist")
        if not self.serving:
            with self._watched():
                text = await self._slate.playlist(
                    accepted=self.source.ready_or_awaiting,
                    media=self.source.ready,
                    live=lambda: self.serving,
                )
            if text is not None:
                return text
        await self._first_segment()
        return self._cutter.playlist()

    async def _first_segment(self) -> None:
        """Wait for the stream to serve.

        The engine's start has bounds of its own; once it delivers, a stream in which no
        segment can be cut (no keyframe or time stamp to be found: scrambled, say) answers
        503 after a few target durations rather than holding players forever."""
        with self._watched():
            try:
                await self.source.ready()
                async with asyncio.timeout(FIRST_SEGMENT_TARGETS * self._options.target + 10):
                    await self.ready()
            except TimeoutError:
                raise Unavailable("no segment could be cut from the stream yet", 2.0) from None

    @contextlib.contextmanager
    def _watched(self) -> Iterator[None]:
        """A player waiting for the stream is watching it: no idle deadline meanwhile."""
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1
            self.audience.used(self._clock())
            if not self._waiting:
                self._on_idle()  # it has a deadline again

    def playlist_now(self, token: str | None = None) -> str | None:
        if token is not None:
            raise NotFound("no such playlist")
        if not self.serving:
            return None
        self.touch()
        return self._cutter.playlist()

    async def resource(self, token: str) -> Cached | Flight:
        self.touch()
        fetch = self._slate.fetch(token)
        if fetch is not None:
            found = await self._cache.get((self.key, token), fetch, self._cutter.window.retention())
            self.audience.looked_up(isinstance(found, Cached))
            return found
        await self._first_segment()
        return self._segment(token)

    def resource_now(self, token: str) -> Cached | None:
        if self._slate.lists(token):
            if self._cache.peek((self.key, token)) is None:
                return None  # not made yet: `resource()` makes it
        elif not self.serving:
            return None
        self.touch()
        return self._segment(token)

    def _segment(self, token: str) -> Cached:
        found = self._cache.cached((self.key, token))
        self.audience.looked_up(found is not None)
        if found is None:
            raise NotFound("this segment is no longer held; reload the playlist")
        return found

    def _on_packets(self, chunk: bytes, breaks: int) -> None:
        """What the MPEG-TS clients get, as they get it: cut it."""
        if self._cutter.feed(chunk, breaks):
            self.last_data_at = self._clock()
            before = self._slate.last
            if before is not None and not self.serving:
                # In the same step as going live: no slate playlist is served after it.
                self._cutter.continuing(before)
            self._serving()

    async def _serve(self) -> None:
        await self.source.ready()
        await self.source.wait_closed()
        raise UpstreamEnded("the channel's MPEG-TS stream ended")

    async def _teardown(self) -> None:
        self.source.untap(self._on_packets)
        self._cutter.forget()
        key, shown = self.key, self._slate
        self._cache.drop(lambda k: isinstance(k, tuple) and k[0] == key and shown.lists(str(k[1])))


class Cutter:
    """The cutting, synchronous: a content's MPEG-TS chunks in, segments out into the cache
    and the window."""

    def __init__(
        self,
        key: ContentKey,
        cache: SegmentCache,
        options: CutOptions,
        breaks: int = 0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.window = Window(options.window, options.target)
        self._cache = cache
        self._locate = options.locate
        self._wall = wall
        self._segmenter = Segmenter(options.target)
        self._breaks = breaks
        # Tokens are this prefix and the segment's number: unguessable across streams, and
        # every cache entry of this stream is found by it.
        self._prefix = secrets.token_hex(4)
        self._text: str | None = None
        self._splice: Splice | None = None  # how the window continues the slate

    def __repr__(self) -> str:
        return f"<Cutter {self.key} {self.window!r} {self._segmenter!r}>"

    def feed(self, chunk: bytes, breaks: int) -> int:
        """A chunk, with the count of upstream breaks before it; how many segments it closed."""
        broke, self._breaks = breaks != self._breaks, breaks
        segments = self._segmenter.feed(chunk, discontinuity=broke)
        for segment in segments:
            self._add(segment)
        return len(segments)

    def playlist(self) -> str:
        if self._text is None:
            text = self.window.render()
            self._text = text if self._splice is None else mark_discontinuity(text, self._splice)
        return self._text

    def continuing(self, before: str) -> None:
        """From now on the playlist continues `before` (the last slate playlist players were
        served): its numbers follow on, and one EXT-X-DISCONTINUITY stands at the break."""
        self._splice = Splice.between(before, self.window.render())
        self._text = None

    def forget(self) -> None:
        """Drop this content's segments from the cache."""
        key, prefix = self.key, self._prefix
        self._cache.drop(
            lambda k: isinstance(k, tuple) and k[0] == key and str(k[1]).startswith(prefix)
        )

    def _add(self, segment: Segment) -> None:
        entries = self.window.entries
        if entries and not segment.discontinuity:
            started_at = entries[-1].started_at + entries[-1].duration
        else:
            started_at = self._wall() - segment.duration
        token = f"{self._prefix}{self.window.next_sequence:012x}.ts"
        body = Body([segment.data])
        self._cache.store((self.key, token), body, SEGMENT_TYPE, self.window.retention())
        self.window.add(
            segment.duration, started_at, segment.discontinuity, self._locate(self.key, token)
        )
        self._text = None
