"""The segment cache: one upstream fetch per key, however many clients ask at once.

A body is either complete (`Cached`, kept for its own TTL within a byte budget) or still
arriving (`flight.Flight`). The first `get()` for a key registers a flight before it awaits
anything, so every later `get()` for that key joins it rather than fetching again.

The fetch runs as a task the cache owns, never inside a client's request. Clients only
wait on the flight's events, which is what `asyncio.shield` would give them: a client
that disconnects cancels its own wait and nothing else, and the body is still cached for
the next one. Bytes reach every client as they arrive, from byte 0 for a late joiner.

A failure, before the headers or in the middle of the body, reaches every client of the
flight and is not cached: the flight leaves the table in the same step as it fails, so
the next `get()` fetches again. That is also how a caller does negative caching: its
fetch raises (say `NotFound` for an upstream 404), and the one upstream request answers
every client that asked meanwhile; nothing about the 404 outlives the flight. A caller
that wants to remember a 404 for a while keeps that memory itself.

The cache sets no timeout of its own: the fetch and its `Source` carry the upstream's
(aiohttp's `ClientTimeout`), and a source that raises ends the flight.

Memory is bounded by size. Bodies still arriving count against the byte budget as they
grow, pushing out the least recently used cached ones. One body may take at most
`max_segment_bytes` (by default a quarter of the budget, and at least 32 MiB): a flight that
announces more, or receives more, fails for every client and is not cached, so an upstream
that never ends a body costs no more than that.

A caller serves an entry like this:

    entry = await cache.get(url, fetch, ttl)
    if isinstance(entry, Cached):
        ...  # entry.body, with its exact Content-Length
    else:
        ...  # headers from entry.content_type and entry.length, then
        async for chunk in entry.chunks(): ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

from cachetools import TLRUCache

from ..errors import EngineProtocolError, ShuttingDown, Unavailable
from .body import Body
from .flight import Cached, Fetch, Flight, Source

log = logging.getLogger(__name__)

MIN_SEGMENT_CAP = 32 * 1024 * 1024

Clock = Callable[[], float]


@dataclass(slots=True)
class CacheStats:
    hits: int = 0  # get() answered from the cache
    misses: int = 0  # get() that started an upstream fetch
    coalesced: int = 0  # get() that joined a fetch already under way
    errors: int = 0  # fetches that failed (one per fetch, however many waited)
    aborted: int = 0  # fetches cancelled by drop() or aclose()
    upstream_fetches: int = 0
    bytes_fetched: int = 0
    evicted: int = 0  # removed to make room within the byte budget
    expired: int = 0  # removed because their TTL ran out
    oversize: int = 0  # complete bodies served but larger than the whole budget
    too_large: int = 0  # fetches failed for a body beyond max_segment_bytes
    stored: int = 0  # bodies the proxy made itself (segments cut from MPEG-TS)
    bytes_stored: int = 0
    entries: int = 0
    current_bytes: int = 0
    flights: int = 0
    flight_bytes: int = 0  # received so far by the flights under way


def _expiry(_key: Hashable, value: Cached, _now: float) -> float:
    return value.expires_at


def _size(value: Cached) -> float:
    return len(value.body)


class _Store(TLRUCache[Hashable, Cached, float]):
    """cachetools' TLRU cache, counting what leaves it on its own."""

    def __init__(self, max_bytes: int, clock: Clock) -> None:
        super().__init__(max_bytes, _expiry, clock, _size)
        self.evicted = 0
        self.expired = 0

    def expire(self, time: float | None = None) -> list[tuple[Hashable, Cached]]:
        gone = super().expire(time)
        self.expired += len(gone)
        return gone

    def popitem(self) -> tuple[Hashable, Cached]:
        # Only called to make room: TLRUCache expires first, then takes the least recently used.
        item = super().popitem()
        self.evicted += 1
        return item


class SegmentCache:
    def __init__(
        self,
        *,
        max_bytes: int,
        max_segment_bytes: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        if max_segment_bytes is None:
            max_segment_bytes = max(max_bytes // 4, MIN_SEGMENT_CAP)
        if max_segment_bytes < 1:
            raise ValueError(f"max_segment_bytes must be >= 1, not {max_segment_bytes}")
        self.max_bytes = max_bytes
        self.max_segment_bytes = max_segment_bytes
        self._clock = clock
        self._store = _Store(max_bytes, clock)
        self._flights: dict[Hashable, Flight] = {}
        self._flight_bytes = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._counts = CacheStats()
        self.closed = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (
            f"<SegmentCache {state} {len(self._store)} entries "
            f"{int(self._store.currsize)}/{self.max_bytes} B {len(self._flights)} flights>"
        )

    @property
    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        self._store.expire()
        return replace(
            self._counts,
            evicted=self._store.evicted,
            expired=self._store.expired,
            entries=len(self._store),
            current_bytes=int(self._store.currsize),
            flights=len(self._flights),
            flight_bytes=self._flight_bytes,
        )

    def peek(self, key: Hashable) -> Cached | None:
        """The complete body for `key` if it is cached; no fetch, not counted."""
        self._store.expire()
        return self._store.get(key)

    def cached(self, key: Hashable) -> Cached | None:
        """`get()` for a body that is cached: it, counted as a hit; None otherwise."""
        cached = None if self.closed else self.peek(key)
        if cached is not None:
            self._counts.hits += 1
        return cached

    async def get(self, key: Hashable, fetch: Fetch, ttl: float) -> Cached | Flight:
        """The body for `key`: cached, or a flight (started by this call or joined).

        Returns once the upstream's headers have arrived, so the caller can answer with
        `content_type` and `length`. Raises the upstream's error if it comes before them.
        `ttl` applies to the body this call's fetch stores; a joined flight keeps its own.
        """
        if self.closed:
            raise ShuttingDown()
        cached = self.cached(key)
        if cached is not None:
            return cached
        flight = self._flights.get(key)
        if flight is None:
            self._counts.misses += 1
            flight = self._launch(key, fetch, ttl)
        else:
            self._counts.coalesced += 1
        await flight._headers()
        if flight._error is not None:
            raise flight._error
        return flight._cached or flight

    def prefetch(self, key: Hashable, fetch: Fetch, ttl: float) -> Flight | None:
        """Start fetching `key` unless it is cached or already coming; nobody waits for it.

        Returns the flight for `key`, or None when it is cached or the cache is closed.
        """
        if self.closed or self.peek(key) is not None:
            return None
        return self._flights.get(key) or self._launch(key, fetch, ttl)

    def store(self, key: Hashable, body: Body, content_type: str, ttl: float) -> Cached | None:
        """Keep a body the proxy made itself, under the same budget and TTL rules as a
        fetched one; None when the cache is closed or the body is larger than the budget."""
        if self.closed:
            return None
        now = self._clock()
        cached = Cached(body=body, content_type=content_type, stored_at=now, expires_at=now + ttl)
        self._counts.stored += 1
        self._counts.bytes_stored += len(body)
        if len(body) > self.max_bytes:
            self._counts.oversize += 1
            return None
        self._store[key] = cached
        return cached

    def drop(self, predicate: Callable[[Hashable], bool]) -> int:
        """Forget every entry and cancel every flight whose key matches; how many there were.

        The clients of a cancelled flight get `Unavailable`.
        """
        self._store.expire()
        keys = [key for key in self._store if predicate(key)]
        for key in keys:
            # TLRUCache raises KeyError for an entry that expired since expire() above.
            with contextlib.suppress(KeyError):
                del self._store[key]
        flights = [flight for key, flight in self._flights.items() if predicate(key)]
        for flight in flights:
            self._abort(flight, Unavailable("the segment's stream was stopped"))
        return len(keys) + len(flights)

    async def aclose(self) -> None:
        """Cancel every flight and wait for its task; clients of a flight get `ShuttingDown`.

        Idempotent. The cached bodies are released.
        """
        self.closed = True
        for flight in list(self._flights.values()):
            self._abort(flight, ShuttingDown())
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._store.clear()

    def _launch(self, key: Hashable, fetch: Fetch, ttl: float) -> Flight:
        # Registered before anything awaits: a get() in the same loop iteration joins it.
        flight = Flight(key)
        self._flights[key] = flight
        self._counts.upstream_fetches += 1
        task = asyncio.get_running_loop().create_task(
            self._fly(flight, fetch, ttl), name=f"segment fetch {key!r}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        flight._task = task
        return flight

    def _abort(self, flight: Flight, error: Exception) -> None:
        # One synchronous step: clients see the error and a new get() starts afresh even
        # if the task has not reached its next await yet (or has never run at all).
        self._forget(flight)
        if not flight.settled:
            self._counts.aborted += 1
        flight._fail(error)
        if flight._task is not None:
            flight._task.cancel()

    def _forget(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    async def _fly(self, flight: Flight, fetch: Fetch, ttl: float) -> None:
        source: Source | None = None
        try:
            source = await fetch()
            if source.length is not None and source.length > self.max_segment_bytes:
                raise self._too_large()
            flight._open(source.content_type, source.length)
            async for piece in source.chunks():
                if not piece:
                    continue
                if flight.received + len(piece) > self.max_segment_bytes:
                    raise self._too_large()
                flight._append(piece)
                self._flight_bytes += len(piece)
                self._make_room()
                self._counts.bytes_fetched += len(piece)
                if source.length is not None and flight.received > source.length:
                    raise EngineProtocolError(
                        f"the upstream sent more than the {source.length} bytes it announced"
                    )
            if source.length is not None and flight.received != source.length:
                raise EngineProtocolError(
                    f"the upstream body ended after {flight.received} of {source.length} bytes"
                )
            self._land(flight, ttl)
        except asyncio.CancelledError:
            flight._fail(Unavailable("the segment fetch was cancelled"))
            raise
        except Exception as error:
            self._counts.errors += 1
            flight._fail(error)
        finally:
            self._forget(flight)
            self._flight_bytes -= flight.received
            if source is not None:
                await self._close(source)

    def _too_large(self) -> EngineProtocolError:
        self._counts.too_large += 1
        return EngineProtocolError(
            f"the segment is larger than {self.max_segment_bytes} bytes, the most one may take"
        )

    def _make_room(self) -> None:
        """Push out the least recently used bodies until the flights' bytes fit as well."""
        while self._store.currsize + self._flight_bytes > self.max_bytes:
            try:
                self._store.popitem()
            except KeyError:  # nothing cached is left; a flight is never cut for the budget
                return

    @staticmethod
    async def _close(source: Source) -> None:
        # The body is settled by now either way; a connection that will not close cleanly
        # changes nothing for the clients.
        try:
            await source.close()
        except Exception:
            log.debug("closing an upstream source failed", exc_info=True)

    def _land(self, flight: Flight, ttl: float) -> None:
        now = self._clock()
        cached = Cached(
            body=Body(flight._pieces),
            content_type=flight.content_type,
            stored_at=now,
            expires_at=now + ttl,
        )
        # The body is stored, the flight leaves the table and its clients learn the end in
        # one step, so no get() can find neither.
        if len(cached.body) > self.max_bytes:
            self._counts.oversize += 1
        else:
            self._store[flight.key] = cached
        self._forget(flight)
        flight._complete(cached)
