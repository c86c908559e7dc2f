"""The registry of live streams: one per content and format, created once, shared, ended when
idle. It makes the streams itself, each knowing the live stream of the other format, if any.

Deciding is synchronous and separate from doing (docs/ARCHITECTURE.md, principle 2): `open`
picks or creates a stream with no await in between, and the sweeper decides which streams
are due under no await, then lets each one end itself (the engine I/O happens in the
stream's own task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Literal, Protocol, TypeVar

from .content import ContentKey, StreamRequest
from .cut_stream import CutHlsStream, CutOptions
from .engine.client import EngineClient, Format
from .errors import ShuttingDown, Unavailable
from .formats import AnyHls, AnyStream
from .hls.cache import SegmentCache
from .hls.stream import HlsOptions, HlsStream
from .sessions import Sessions
from .state import EndReason, WaitBounds
from .ts.stream import TsOptions, TsStream

log = logging.getLogger(__name__)

MODES: tuple[Format, ...] = ("ts", "hls")


class Stream(Protocol):
    @property
    def key(self) -> ContentKey: ...

    @property
    def mode(self) -> Format: ...

    @property
    def closing(self) -> bool:
        """True once the stream decided to end; it takes no new clients from then on."""
        ...

    def idle_deadline(self) -> float | None:
        """When the stream should end for want of clients, or None while it has some."""
        ...

    def may_make_room(self, now: float) -> bool:
        """Whether nobody watches it, so it may end to make room for another stream."""
        ...

    def close(self, reason: EndReason) -> None: ...

    async def wait_closed(self) -> None: ...


S = TypeVar("S", bound=Stream)


def due(streams: Iterable[S], now: float) -> list[S]:
    """The streams whose idle deadline has passed."""
    return [s for s in streams if (d := s.idle_deadline()) is not None and d <= now]


def next_deadline(streams: Iterable[Stream]) -> float | None:
    deadlines = [d for s in streams if (d := s.idle_deadline()) is not None]
    return min(deadlines, default=None)


class Registry:
    """Owns every stream, at most one per content and format, and the task that ends idle
    ones."""

    def __init__(
        self,
        *,
        client: EngineClient,
        sessions: Sessions,
        segments: SegmentCache,
        ts_options: TsOptions,
        hls_options: HlsOptions,
        wait_bounds: WaitBounds,
        cut_options: CutOptions,
        hls_source: Literal["engine", "proxy"],
        max_streams: int = 0,
        on_ended: Callable[[AnyStream], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._sessions = sessions
        self._segments = segments
        self._ts_options = ts_options
        self._hls_options = hls_options
        self._wait_bounds = wait_bounds
        self._cut_options = cut_options
        self._hls_source = hls_source
        self._max_streams = max_streams
        self._clock = clock
        self._ts: dict[ContentKey, TsStream] = {}
        self._hls: dict[ContentKey, AnyHls] = {}
        self._closing: set[AnyStream] = set()
        self._poked = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._shut = False
        self._on_ended = on_ended

    def __repr__(self) -> str:
        return f"<Registry {len(self.streams())} streams, {len(self._closing)} closing>"

    def __len__(self) -> int:
        """How many contents are playing."""
        return len({s.key for s in self.streams() if not s.closing})

    def streams(self) -> list[AnyStream]:
        return [*self._ts.values(), *self._hls.values()]

    def hls_streams(self) -> list[AnyHls]:
        """The live HLS streams."""
        return [s for s in self._hls.values() if not s.closing]

    def get(self, key: ContentKey) -> AnyStream | None:
        """The content's live stream; its MPEG-TS one when it plays in both formats."""
        return self.find_ts(key) or self.find_hls(key)

    def streams_of(self, key: ContentKey) -> list[AnyStream]:
        """The content's live streams: its MPEG-TS one and its HLS one, each if it plays."""
        return [s for s in (self.find_ts(key), self.find_hls(key)) if s is not None]

    def find_ts(self, key: ContentKey) -> TsStream | None:
        stream = self._ts.get(key)
        return None if stream is None or stream.closing else stream

    def find_hls(self, key: ContentKey) -> AnyHls | None:
        stream = self._hls.get(key)
        return None if stream is None or stream.closing else stream

    def open_ts(self, request: StreamRequest) -> TsStream:
        """The content's live MPEG-TS stream, created if there is none. Never awaits, so two
        concurrent first requests cannot both create one."""
        self._check_open()
        current = self.find_ts(request.key)
        if current is not None:
            return current
        self._retire(self._ts.get(request.key))
        partner = self.find_hls(request.key)
        self._room_unless(partner)
        stream = self._ts[request.key] = self._make_ts(request, partner)
        self._added(stream)
        return stream

    def open_hls(self, request: StreamRequest) -> AnyHls:
        """The content's live HLS stream, created if there is none; never awaits."""
        self._check_open()
        current = self.find_hls(request.key)
        if current is not None:
            return current
        self._retire(self._hls.get(request.key))
        partner = self.find_ts(request.key)
        self._room_unless(partner)
        stream = self._hls[request.key] = self._make_hls(request, partner)
        self._added(stream)
        return stream

    def _make_ts(self, request: StreamRequest, partner: AnyHls | None) -> TsStream:
        """An MPEG-TS stream: it rides the content's engine HLS session when there is one."""
        if isinstance(partner, CutHlsStream):
            partner = None  # that one rides this stream, not the other way round
        return TsStream(
            request,
            client=self._client,
            sessions=self._sessions,
            options=self._ts_options,
            wait_bounds=self._wait_bounds,
            partner=partner,
            on_idle=self.poke,
            on_closed=self.discard,
        )

    def _make_hls(self, request: StreamRequest, partner: TsStream | None) -> AnyHls:
        """An HLS stream: cut from the content's MPEG-TS stream with the `proxy` source, or
        when one plays already; otherwise the engine's HLS session."""
        if self._hls_source == "proxy" or partner is not None:
            return CutHlsStream(
                request,
                source=partner if partner is not None else self.open_ts(request),
                client=self._client,
                sessions=self._sessions,
                cache=self._segments,
                options=self._cut_options,
                on_idle=self.poke,
                on_closed=self.discard,
            )
        return HlsStream(
            request,
            client=self._client,
            sessions=self._sessions,
            cache=self._segments,
            options=self._hls_options,
            wait_bounds=self._wait_bounds,
            on_closed=self.discard,
        )

    def _check_open(self) -> None:
        if self._shut:
            raise ShuttingDown

    def _retire(self, ending: AnyStream | None) -> None:
        if ending is not None:
            self._closing.add(ending)  # still winding down; its session's stop is queued

    def _room_unless(self, partner: AnyStream | None) -> None:
        """A content that plays already in the other format takes no more room."""
        if partner is None:
            self._make_room()

    def _added(self, stream: AnyStream) -> None:
        key = stream.key
        self.poke()  # its deadline is new to the sweeper
        log.info(
            "%s stream %s started (%d playing)",
            stream.mode,
            key,
            len(self),
            extra={"event": "stream_started", "stream": key.value, "mode": stream.mode},
        )

    def poke(self) -> None:
        """Something changed a deadline: let the sweeper look again."""
        self._poked.set()

    def discard(self, stream: Stream) -> None:
        """Called by a stream once it has fully ended."""
        for ended in (*self.streams(), *self._closing):
            if ended is stream:
                break
        else:
            return  # told twice
        self._closing.discard(ended)
        if self._ts.get(ended.key) is ended:
            del self._ts[ended.key]
        if self._hls.get(ended.key) is ended:
            del self._hls[ended.key]
        self._on_ended(ended)

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="hlsproxy-sweeper")

    async def aclose(self, timeout: float = 5.0) -> None:
        """End every stream (their engine sessions are stopped) and the sweeper. Idempotent."""
        if self._shut:
            return
        self._shut = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        streams = {*self.streams(), *self._closing}
        for stream in streams:
            stream.close(EndReason.SHUTDOWN)
        if streams:
            waits = [asyncio.ensure_future(s.wait_closed()) for s in streams]
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                log.warning("%d streams did not end within %gs", len(pending), timeout)

    def _make_room(self) -> None:
        if not self._max_streams or len(self) < self._max_streams:
            return
        now = self._clock()
        live = [s for s in self.streams() if not s.closing]
        # Only an unwatched stream gives way: a client can never knock another one off.
        unwatched = [s for s in live if s.may_make_room(now)]
        if not unwatched:
            raise Unavailable(
                f"the proxy is at its limit of {self._max_streams} streams", retry_after=10
            )
        oldest = min(unwatched, key=lambda s: s.idle_deadline() or 0.0)
        self._end(oldest, EndReason.MAKE_ROOM)

    def _end(self, stream: AnyStream, reason: EndReason) -> None:
        self._closing.add(stream)
        stream.close(reason)

    async def _sweep(self) -> None:
        while True:
            self._poked.clear()
            now = self._clock()
            for stream in due(self.streams(), now):
                self._end(stream, EndReason.IDLE)
            deadline = next_deadline(self.streams())
            wait = None if deadline is None else max(deadline - self._clock(), 0.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._poked.wait()
