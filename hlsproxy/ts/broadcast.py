"""A ring of MPEG-TS chunks that one upstream reader fills and many clients read.

The reader never waits for a client (docs/ARCHITECTURE.md, principle 3): `publish` is
synchronous. Each client reads at its own cursor. The ring keeps what the slowest client
still needs, up to its `limit`: `seconds` of the channel's own media, measured by its
bitrate (bytes per second of media, from its keyframes' time stamps), and never more than
`capacity` bytes. Memory per stream is bounded by `capacity` plus the newest chunk, whoever
reads, plus each client's prefix (PAT, PMT and marks: a few packets). When no one lags, it
keeps only what a joining client needs: the chunks since the most recent join point (PAT,
PMT, keyframe).

A client that falls more than `limit` behind has not always done wrong. An engine, once
prebuffered, first sends what it has cached as fast as it can (tens of seconds of media in
a few seconds), then real time; a player reading in real time is then that far behind for
as long as it plays. So a client that still reads (it took bytes within `stall_after`
seconds) is moved forward to the newest join point instead: it gets the join's PAT and PMT,
a discontinuity mark for each PID (what `marks` makes of the bytes at the join), then the
stream from the keyframe on, and plays on from near the live edge, the skipped media lost.
It is counted in `skipped`. A client that took nothing for `stall_after` (a paused player,
a dead connection) is cut, and counted in `lagged`, as is one with no join point to go to.

A client that is caught up can take new chunks through a sink: `publish` hands the chunk
straight to it, and its reader sleeps on. Only a client whose sink refuses (its connection
is full) is woken, to catch up from the ring at its own pace.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

from .media_rate import MediaRate
from .packets import JoinPoint

Chunk = bytes | memoryview
Sink = Callable[[bytes], bool]
"""Hands a chunk to a client now; False when its connection cannot take more yet."""
Marks = Callable[[memoryview], bytes]
"""What a client moved forward gets before the stream at a join point: given the bytes from
the join point on, a discontinuity mark for each PID in them."""

STALL_AFTER = 10.0
"""Seconds without taking a byte that make a lagging client stalled, not just behind.
A player reading in real time takes bytes every few seconds at most: the catch-up reads
hand it up to 1 MiB at a time, 2 s of a 4 Mbit/s stream."""

MIN_LIMIT = 1 << 20
"""The least a ring sized by time holds: a few GOPs of a low-bitrate channel."""


def _no_marks(_: memoryview) -> bytes:
    return b""


class ClientLagged(Exception):
    """The client was cut: it fell more than the ring's limit behind the live edge and had
    taken nothing for `stall_after` seconds, or there was no join point to move it to."""


class Ring:
    def __init__(
        self,
        capacity: int,
        *,
        seconds: float | None = None,
        marks: Marks = _no_marks,
        stall_after: float = STALL_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.limit = capacity
        self._seconds = seconds
        self._rate = MediaRate()
        self._marks = marks
        self._stall_after = stall_after
        self._clock = clock
        self._chunks: deque[bytes] = deque()
        self._first_seq = 0  # sequence number of _chunks[0]
        self._size = 0
        # (chunk seq, offset in chunk, PSI prefix), oldest first
        self._joins: deque[tuple[int, int, bytes]] = deque()
        self._last_prefix = b""
        self._cursors: set[Cursor] = set()
        self.closed = False
        self.bytes_in = 0
        self.last_publish: float | None = None
        self.lagged = 0
        self.skipped = 0

    @property
    def _next_seq(self) -> int:
        return self._first_seq + len(self._chunks)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (
            f"<Ring {state} {len(self._chunks)} chunks {self._size}/{self.limit} B "
            f"{len(self._cursors)} cursors lagged={self.lagged} skipped={self.skipped}>"
        )

    @property
    def held_bytes(self) -> int:
        return self._size

    def sent_to_readers(self) -> int:
        """Bytes taken so far by the clients reading now."""
        return sum(cursor.sent for cursor in self._cursors)

    def publish(self, chunk: bytes, joins: Sequence[JoinPoint] = ()) -> None:
        if self.closed or not chunk:
            return
        seq = self._next_seq
        self._chunks.append(chunk)
        self._size += len(chunk)
        now = self.last_publish = self._clock()
        for join in joins:
            self._joins.append((seq, join.offset, join.prefix))
            self._last_prefix = join.prefix
            if join.pts is not None and self._seconds is not None:
                self._rate.add(self.bytes_in + join.offset, join.pts)
        if joins and self._seconds is not None:
            rate = self._rate.bytes_per_second()
            if rate is not None:
                self.limit = min(self.capacity, max(MIN_LIMIT, round(self._seconds * rate)))
        self.bytes_in += len(chunk)
        self._trim()
        size = len(chunk)
        # A copy: a sink may end a connection, and so detach its cursor, as it goes.
        for cursor in tuple(self._cursors):
            sink = cursor._sink
            if cursor._seq == seq and sink is not None and not cursor._prefix and sink(chunk):
                cursor._seq = seq + 1
                cursor.sent += size
                cursor._took_at = now
            else:
                cursor._wake()

    def close(self) -> None:
        """End of stream: clients drain what they have not read yet, then get EOF."""
        if not self.closed:
            self.closed = True
            for cursor in self._cursors:
                cursor._wake()

    def attach(self, on_cut: Callable[[], None] | None = None) -> Cursor:
        """A new client, placed where its decoder can start cleanly."""
        if self._joins:
            seq, offset, prefix = self._joins[-1]
        elif self._first_seq == 0:
            seq, offset, prefix = 0, 0, b""  # the stream's own start is still here
        else:
            seq, offset, prefix = self._next_seq, 0, self._last_prefix
        cursor = Cursor(self, seq, offset, prefix, on_cut, now=self._clock())
        self._cursors.add(cursor)
        return cursor

    def _trim(self) -> None:
        keep_from = self._joins[-1][0] if self._joins else self._first_seq
        if self._cursors:
            keep_from = min(keep_from, *(c._seq for c in self._cursors))
        evicted = False
        while len(self._chunks) > 1 and (self._size > self.limit or self._first_seq < keep_from):
            self._size -= len(self._chunks.popleft())
            self._first_seq += 1
            evicted = True
        if not evicted:
            return
        while self._joins and self._joins[0][0] < self._first_seq:
            self._joins.popleft()
        lagging = [c for c in self._cursors if c._seq < self._first_seq]
        if not lagging:
            return
        now = self._clock()
        forward: tuple[int, int, bytes] | None = None
        for cursor in lagging:
            if self._joins and now - cursor._took_at < self._stall_after:
                if forward is None:
                    seq, offset, prefix = self._joins[-1]
                    at = memoryview(self._chunks[seq - self._first_seq])[offset:]
                    forward = (seq, offset, prefix + self._marks(at))
                self.skipped += 1
                cursor._seq, cursor._offset, cursor._prefix = forward
                cursor.skips += 1
                cursor._wake()
            else:
                self.lagged += 1
                cursor._cut()


class Cursor:
    """One client's position in the ring."""

    __slots__ = (
        "_offset",
        "_on_cut",
        "_prefix",
        "_ring",
        "_seq",
        "_sink",
        "_took_at",
        "_waiter",
        "cut",
        "sent",
        "skips",
    )

    def __init__(
        self,
        ring: Ring,
        seq: int,
        offset: int,
        prefix: bytes,
        on_cut: Callable[[], None] | None,
        *,
        now: float,
    ) -> None:
        self._ring = ring
        self._took_at = now
        self.skips = 0
        self._seq = seq
        self._offset = offset
        self._prefix = prefix
        self._on_cut = on_cut
        self._sink: Sink | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.cut = False
        self.sent = 0

    def __repr__(self) -> str:
        return (
            f"<Cursor seq={self._seq}+{self._offset} behind={self.behind} cut={self.cut} "
            f"skips={self.skips}>"
        )

    @property
    def behind(self) -> int:
        """Chunks published that this client has not taken yet."""
        return self._ring._next_seq - self._seq

    async def read(self, limit: int = 1 << 20) -> list[Chunk] | None:
        """The next chunks (up to about `limit` bytes), or None at end of stream.

        Raises ClientLagged once the ring has dropped data this client had not read.
        """
        ring = self._ring
        while True:
            if self.cut:
                raise ClientLagged
            if self._seq < ring._next_seq:
                return self._take(limit)
            if ring.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def direct(self, sink: Sink | None) -> None:
        """From now on, hand new chunks to `sink` while this client is caught up."""
        self._sink = sink

    def close(self) -> None:
        self._sink = None
        self._ring._cursors.discard(self)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _take(self, limit: int) -> list[Chunk]:
        ring = self._ring
        out: list[Chunk] = []
        total = 0
        if self._prefix:
            out.append(self._prefix)
            total = len(self._prefix)
            self._prefix = b""
        while self._seq < ring._next_seq and total < limit:
            chunk = ring._chunks[self._seq - ring._first_seq]
            piece: Chunk = memoryview(chunk)[self._offset :] if self._offset else chunk
            out.append(piece)
            total += len(piece)
            self._seq += 1
            self._offset = 0
        self.sent += total
        self._took_at = ring._clock()
        return out

    def _cut(self) -> None:
        self.cut = True
        self._sink = None
        self._ring._cursors.discard(self)
        self._wake()
        if self._on_cut is not None:
            self._on_cut()
