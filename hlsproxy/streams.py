"""The registry of live streams: one per content, created once, shared, ended when idle.

Deciding is synchronous and separate from doing (principle 2): `open` picks or creates a
stream with no await in between, and the sweeper decides which streams are due under no
await, then lets each one end itself (the engine I/O happens in the stream's own task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar, cast

from .content import ContentKey, StreamRequest
from .engine.client import Format
from .errors import ShuttingDown, Unavailable
from .state import EndReason

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


class Registry(Generic[S]):
    """Owns every stream and the task that ends idle ones."""

    def __init__(
        self,
        factory: Callable[[StreamRequest, Format, S | None], S],
        *,
        max_streams: int = 0,
        clock: Callable[[], float] = time.monotonic,
        on_ended: Callable[[S], None] = lambda _: None,
    ) -> None:
        self._factory = factory
        self._max_streams = max_streams
        self._clock = clock
        self._streams: dict[tuple[ContentKey, Format], S] = {}
        self._closing: set[S] = set()
        self._poked = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._shut = False
        self._on_ended = on_ended

    def __repr__(self) -> str:
        return f"<Registry {len(self._streams)} streams, {len(self._closing)} closing>"

    def __len__(self) -> int:
        """How many contents are playing."""
        return len({key for (key, _), s in self._streams.items() if not s.closing})

    def streams(self) -> list[S]:
        return list(self._streams.values())

    def get(self, key: ContentKey) -> S | None:
        """The content's live stream; its MPEG-TS one when it plays in both formats."""
        return self.find(key, "ts") or self.find(key, "hls")

    def find(self, key: ContentKey, mode: Format) -> S | None:
        stream = self._streams.get((key, mode))
        return None if stream is None or stream.closing else stream

    def open(self, request: StreamRequest, mode: Format) -> S:
        """The live stream of this content in this format, created if there is none. Never
        awaits, so two concurrent first requests cannot both create one."""
        if self._shut:
            raise ShuttingDown
        key = request.key
        current = self.find(key, mode)
        if current is not None:
            return current
        partner = self.find(key, "hls" if mode == "ts" else "ts")
        if partner is None:
            self._make_room()
        ending = self._streams.get((key, mode))
        if ending is not None:
            self._closing.add(ending)  # still winding down; its session's stop is queued
        stream = self._factory(request, mode, partner)
        self._streams[(key, mode)] = stream
        self.poke()  # its deadline is new to the sweeper
        log.debug("stream %s (%s) created (%d playing)", key, mode, len(self))
        return stream

    def poke(self) -> None:
        """Something changed a deadline: let the sweeper look again."""
        self._poked.set()

    def discard(self, stream: Stream) -> None:
        """Called by a stream once it has fully ended."""
        ended = cast(S, stream)
        self._closing.discard(ended)
        if self._streams.get((stream.key, stream.mode)) is stream:
            del self._streams[(stream.key, stream.mode)]
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
        streams = {*self._streams.values(), *self._closing}
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
        live = [s for s in self._streams.values() if not s.closing]
        # Only an unwatched stream gives way: a client can never knock another one off.
        unwatched = [s for s in live if s.may_make_room(now)]
        if not unwatched:
            raise Unavailable(
                f"the proxy is at its limit of {self._max_streams} streams", retry_after=10
            )
        oldest = min(unwatched, key=lambda s: s.idle_deadline() or 0.0)
        self._end(oldest, EndReason.MAKE_ROOM)

    def _end(self, stream: S, reason: EndReason) -> None:
        self._closing.add(stream)
        stream.close(reason)

    async def _sweep(self) -> None:
        while True:
            self._poked.clear()
            now = self._clock()
            for stream in due(self._streams.values(), now):
                self._end(stream, EndReason.IDLE)
            deadline = next_deadline(self._streams.values())
            wait = None if deadline is None else max(deadline - self._clock(), 0.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._poked.wait()
