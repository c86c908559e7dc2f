"""A ring of MPEG-TS chunks that one upstream reader fills and many clients read.

The reader never waits for a client (docs/ARCHITECTURE.md, principle 3): `publish` is
synchronous. Each client
reads at its own cursor. The ring keeps what the slowest client still needs, up to
`capacity` bytes; a client that falls further behind than that is cut, and counted.
When no one lags, it keeps only what a joining client needs: the chunks since the most
recent join point (PAT, PMT, keyframe).

A client that is caught up can take new chunks through a sink: `publish` hands the chunk
straight to it, and its reader sleeps on. Only a client whose sink refuses (its connection
is full) is woken, to catch up from the ring at its own pace.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

from .packets import JoinPoint

Chunk = bytes | memoryview
Sink = Callable[[bytes], bool]
"""Hands a chunk to a client now; False when its connection cannot take more yet."""


class ClientLagged(Exception):
    """The client fell more than the ring's capacity behind the live edge."""


class Ring:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
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

    @property
    def _next_seq(self) -> int:
        return self._first_seq + len(self._chunks)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (
            f"<Ring {state} {len(self._chunks)} chunks {self._size}/{self.capacity} B "
            f"{len(self._cursors)} cursors lagged={self.lagged}>"
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
        self.bytes_in += len(chunk)
        self.last_publish = time.monotonic()
        for join in joins:
            self._joins.append((seq, join.offset, join.prefix))
            self._last_prefix = join.prefix
        self._trim()
        size = len(chunk)
        # A copy: a sink may end a connection, and so detach its cursor, as it goes.
        for cursor in tuple(self._cursors):
            sink = cursor._sink
            if cursor._seq == seq and sink is not None and not cursor._prefix and sink(chunk):
                cursor._seq = seq + 1
                cursor.sent += size
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
        cursor = Cursor(self, seq, offset, prefix, on_cut)
        self._cursors.add(cursor)
        return cursor

    def _trim(self) -> None:
        keep_from = self._joins[-1][0] if self._joins else self._first_seq
        if self._cursors:
            keep_from = min(keep_from, *(c._seq for c in self._cursors))
        evicted = False
        while len(self._chunks) > 1 and (self._size > self.capacity or self._first_seq < keep_from):
            self._size -= len(self._chunks.popleft())
            self._first_seq += 1
            evicted = True
        if not evicted:
            return
        while self._joins and self._joins[0][0] < self._first_seq:
            self._joins.popleft()
        lagging = [c for c in self._cursors if c._seq < self._first_seq]
        for cursor in lagging:
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
        "_waiter",
        "cut",
        "sent",
    )

    def __init__(
        self,
        ring: Ring,
        seq: int,
        offset: int,
        prefix: bytes,
        on_cut: Callable[[], None] | None,
    ) -> None:
        self._ring = ring
        self._seq = seq
        self._offset = offset
        self._prefix = prefix
        self._on_cut = on_cut
        self._sink: Sink | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.cut = False
        self.sent = 0

    def __repr__(self) -> str:
        return f"<Cursor seq={self._seq}+{self._offset} behind={self.behind} cut={self.cut}>"

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
        return out

    def _cut(self) -> None:
        self.cut = True
        self._sink = None
        self._ring._cursors.discard(self)
        self._wake()
        if self._on_cut is not None:
            self._on_cut()
