"""Clients that stop reading an answer: cut once nothing of it moved for the send timeout.

An answer larger than the socket takes at once waits in its connection's write buffer: a
copy of a segment, or a view of the segment's memory file, held outside the segment cache's
byte budget. A client that stops reading would keep it for as long as it keeps the
connection open, and neither path's keep-alive time ends that: a close waits for the
buffer to drain. So a connection whose unsent bytes stay put for `SEND_TIMEOUT` is
aborted and counted, as an MPEG-TS client that falls behind the ring is cut
(docs/ARCHITECTURE.md, principle 3). One owner decides this for both HTTP paths: each
registers a connection when it writes a body, and the sweep drops it once its buffer is
empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Like nginx's send_timeout (whose default is 60 s), it bounds the time between two moves
# of the answer, not the whole answer: a slow reader that keeps reading is never cut. A
# live player that took nothing for this long has stalled longer than its own buffer.
SEND_TIMEOUT = 30.0


@dataclass(slots=True)
class _Pending:
    size: int  # unsent bytes when last seen
    since: float  # when that count was first seen


class Stalls:
    """The connections with an answer still unsent, and the sweep that cuts stalled ones."""

    def __init__(
        self,
        on_cut: Callable[[], None],
        *,
        timeout: float = SEND_TIMEOUT,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._on_cut = on_cut
        self._timeout = timeout
        self._clock = clock
        # Bounded by the open connections: an entry goes when its buffer empties.
        self._pending: dict[asyncio.WriteTransport, _Pending] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<Stalls {len(self._pending)} pending, timeout {self._timeout:g}s>"

    def watch(self, transport: asyncio.WriteTransport) -> None:
        """Call as a body is written (before awaiting room for more, too): a connection
        whose unsent bytes then stay put for the timeout is aborted."""
        if transport in self._pending or self._closed:
            return
        loop = asyncio.get_running_loop()
        now = (self._clock or loop.time)()
        self._pending[transport] = _Pending(transport.get_write_buffer_size(), now)
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(), name="send timeout")

    def stalled(self, now: float) -> list[asyncio.WriteTransport]:
        """Forget the connections whose buffers emptied; those whose unsent bytes have not
        moved for the timeout are returned (and forgotten) for the caller to abort."""
        cut = []
        for transport, pending in list(self._pending.items()):
            size = transport.get_write_buffer_size()
            if size == 0:
                del self._pending[transport]
            elif size != pending.size:
                pending.size, pending.since = size, now
            elif now - pending.since >= self._timeout:
                del self._pending[transport]
                cut.append(transport)
        return cut

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        clock = self._clock or loop.time
        try:
            while self._pending:
                await asyncio.sleep(self._timeout / 4)
                for transport in self.stalled(clock()):
                    log.info("client cut: it took nothing of its answer for %gs", self._timeout)
                    self._on_cut()
                    transport.abort()
        finally:
            self._sweeper = None

    async def aclose(self) -> None:
        self._closed = True
        self._pending.clear()
        sweeper = self._sweeper
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
