"""Flow control of one fast-path connection: whether its transport takes more bytes now,
and a wait for the moment it does again."""

from __future__ import annotations

import asyncio


class Flow:
    """The transport's pause_writing/resume_writing, as a flag and an awaitable."""

    __slots__ = ("_drained", "paused")

    def __init__(self) -> None:
        self.paused = False
        self._drained: asyncio.Future[None] | None = None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._wake(None)

    def lost(self) -> None:
        """The connection is gone: a writer waiting for room learns it."""
        self._wake(ConnectionResetError("the client went away"))

    async def writable(self) -> None:
        """Return once the transport takes more (at once if it is not paused)."""
        if not self.paused:
            return
        self._drained = asyncio.get_running_loop().create_future()
        try:
            await self._drained
        finally:
            self._drained = None

    def _wake(self, exc: Exception | None) -> None:
        waiter = self._drained
        if waiter is None or waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)
