"""A body on its way from the upstream, read by every client that asked for it meanwhile.

`SegmentCache.get` hands out a `Flight` while the body is still arriving and a `Cached` once
it is complete. A flight is written by the cache's fetch task only (`_open`, `_append`,
`_complete`, `_fail`); clients only read it, and wait on its events, never on the task: a
client that disconnects cancels its own wait and nothing else. Bytes reach every client as
they arrive, from byte 0 for a late joiner, and a failure reaches them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from .body import Body


class Source(Protocol):
    """An upstream answer whose headers have arrived and whose body is being read."""

    @property
    def content_type(self) -> str: ...

    @property
    def length(self) -> int | None:
        """The announced body length (Content-Length), when the upstream sent one."""

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None:
        """Release the upstream connection; called once, whether the body was read or not."""


Fetch = Callable[[], Awaitable[Source]]
"""Opens the upstream request. It raises the project's own error when the upstream says no."""


@dataclass(frozen=True, slots=True)
class Cached:
    """A complete body. `stored_at` and `expires_at` are readings of the cache's clock."""

    body: Body
    content_type: str
    stored_at: float
    expires_at: float

    def __repr__(self) -> str:
        return f"<Cached {self.content_type} {len(self.body)} B>"


class Flight:
    """A body still arriving from the upstream, readable by any number of clients."""

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.content_type = ""
        self.length: int | None = None
        self.received = 0
        self._opened = False
        self._pieces: list[bytes] = []
        self._cached: Cached | None = None
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        # Replaced on every change; each waiter has its own future inside Event.wait(), so a
        # waiter that is cancelled takes nothing from the others.
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        if self._error is not None:
            state = f"failed {type(self._error).__name__}"
        elif self._cached is not None:
            state = "complete"
        elif self._opened:
            state = "receiving"
        else:
            state = "opening"
        total = "?" if self.length is None else str(self.length)
        return f"<Flight {self.key!r} {state} {self.received}/{total} B>"

    @property
    def settled(self) -> bool:
        return self._cached is not None or self._error is not None

    @property
    def landed(self) -> Cached | None:
        """The complete body, once it has all arrived."""
        return self._cached

    async def chunks(self) -> AsyncIterator[bytes | memoryview]:
        """The body from byte 0: what has arrived at once, then each piece as it comes.

        Raises the upstream's error, after the bytes that arrived before it.
        """
        offset = 0
        async for piece in self.arriving():
            offset += len(piece)
            yield piece
        cached = self._cached
        assert cached is not None  # arriving() ends only once the body has landed
        if offset < len(cached.body):
            yield cached.body.view[offset:]

    async def arriving(self) -> AsyncIterator[bytes]:
        """The pieces from byte 0 while the body is still arriving: what has arrived at
        once, then each piece as it comes. Ends as soon as the whole body has landed, without
        the pieces not yet read: they are in `landed`, from the offset read so far.

        Raises the upstream's error, after the pieces that arrived before it.
        """
        index = 0
        while self._cached is None:
            # `_complete` replaces the list, so this reader's index stays valid until then.
            pieces = self._pieces
            if index < len(pieces):
                index += 1
                yield pieces[index - 1]
            elif self._error is not None:
                raise self._error
            else:
                await self._changed.wait()

    async def result(self) -> Cached:
        """The complete body, once it has all arrived. Raises the upstream's error."""
        while not self.settled:
            await self._changed.wait()
        if self._error is not None:
            raise self._error
        assert self._cached is not None
        return self._cached

    async def _headers(self) -> None:
        while not (self._opened or self.settled):
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _open(self, content_type: str, length: int | None) -> None:
        self.content_type = content_type
        self.length = length
        self._opened = True
        self._notify()

    def _append(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self.received += len(piece)
        self._notify()

    def _complete(self, cached: Cached) -> None:
        self._cached = cached
        self._pieces = []  # readers still on the old list finish from `cached.body`
        self._notify()

    def _fail(self, error: BaseException) -> None:
        if not self.settled:
            self._error = error
            self._notify()


class Counted:
    """A source whose bytes are counted (`count`) as the cache reads them."""

    def __init__(self, source: Source, count: Callable[[int], None]) -> None:
        self._source = source
        self._count = count

    def __repr__(self) -> str:
        return f"<Counted {self._source!r}>"

    @property
    def content_type(self) -> str:
        return self._source.content_type

    @property
    def length(self) -> int | None:
        return self._source.length

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._source.chunks():
            self._count(len(chunk))
            yield chunk

    async def close(self) -> None:
        await self._source.close()
