"""One content as MPEG-TS: the single upstream read that fills its ring, and its clients.

The upstream is the stream's own engine session, or, when the content also plays in another
format, a `SharedUpstream` that another stream's session feeds (the engine allows one session
per content). Either may be replaced while clients stay connected: a `Splicer` joins the next
upstream on at a clean join point, marked as a discontinuity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from ..content import StreamRequest
from ..engine.client import EngineClient, EngineSession
from ..errors import EngineStalled, ProxyError
from ..lifecycle import EngineStream, Figures, UpstreamEnded
from ..sessions import Sessions
from ..state import RetryPolicy, WaitBounds, Watch, may_make_room
from .broadcast import Cursor, Ring
from .packets import NULL_PACKET, PacketAligner
from .splice import Splicer, discontinuity_marks

log = logging.getLogger(__name__)

# Chunks this large keep the per-client write cost low (acexy writes 64 KiB too); the
# flush delay bounds the latency a chunk adds while it fills: 64 KiB take 130 ms at
# 4 Mbit/s. A stream's first bytes go out at once.
CHUNK_BYTES = 64 * 1024
FLUSH_DELAY = 0.15
# While the engine prebuffers, players get this every KEEPALIVE_INTERVAL seconds: null
# packets, which every demuxer skips, enough for a demuxer's probe to find the 188-byte
# rhythm soon, too few to matter; so that no player's read timeout runs out (mpv's 10 s,
# GStreamer's souphttpsrc 15 s).
KEEPALIVE = NULL_PACKET * 7
KEEPALIVE_INTERVAL = 1.0


Tap = Callable[[bytes, int], None]
"""Takes each chunk clients get, with the count of upstream breaks so far, in the reader's
own step: it must not block (see `TsStream.tap`)."""


@dataclass(frozen=True, slots=True)
class TsOptions:
    ring_bytes: int
    ring_seconds: float
    empty_timeout: float
    retries: int
    linger: float


class SharedUpstream(Protocol):
    """Another stream's engine session, read as MPEG-TS (an HLS session's segments)."""

    @property
    def closing(self) -> bool: ...

    def ts_feed(self, empty_timeout: float) -> AsyncGenerator[bytes | memoryview | None, None]:
        """The content's bytes in order, from near the live edge, with None where another
        engine session's bytes begin; raises EngineStalled when nothing new comes for
        `empty_timeout`, and ProxyError when the session is over."""
        ...


class TsStream(EngineStream):
    def __init__(
        self,
        request: StreamRequest,
        *,
        client: EngineClient,
        sessions: Sessions,
        options: TsOptions,
        wait_bounds: WaitBounds,
        partner: SharedUpstream | None = None,
        on_idle: Callable[[], None] = lambda: None,
        on_closed: Callable[[EngineStream], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            request,
            client=client,
            sessions=sessions,
            policy=RetryPolicy(retries=options.retries),
            wait_bounds=wait_bounds,
            on_closed=on_closed,
            clock=clock,
        )
        self.ring = Ring(
            options.ring_bytes, seconds=options.ring_seconds, marks=discontinuity_marks
        )
        self.clients = 0
        self.bytes_out = 0
        self.bytes_in = 0
        """Bytes read from the engine by this stream's own session: what it got riding
        another stream's session, that one counts."""
        self._options = options
        self._partner = partner
        self._splicer = Splicer()
        self._taps: list[Tap] = []
        self._on_idle = on_idle
        self._idle_since: float | None = self.started_at
        self._launch()

    def __repr__(self) -> str:
        return f"<TsStream {self.key} {self.state.value} clients={self.clients} {self.ring!r}>"

    @property
    def mode(self) -> Literal["ts"]:
        return "ts"

    @property
    def breaks(self) -> int:
        """Upstreams replaced under connected clients."""
        return self._splicer.breaks

    def idle_deadline(self) -> float | None:
        if self._idle_since is None or self.closing:
            return None
        return self._idle_since + self._options.linger

    def may_make_room(self, now: float) -> bool:
        since = self._idle_since if self._idle_since is not None else now
        return may_make_room(Watch(self.clients + len(self._taps), since, quiet=0.0), now)

    def tap(self, tap: Tap) -> None:
        """Feed `tap` every chunk from now on, as clients get it; the stream is watched (it
        does not linger out) until `untap`."""
        self._taps.append(tap)
        self._idle_since = None

    def untap(self, tap: Tap) -> None:
        if tap in self._taps:
            self._taps.remove(tap)
            self._maybe_idle()

    def attach(self, on_cut: Callable[[], None] | None = None) -> Cursor:
        self.clients += 1
        self._idle_since = None
        return self.ring.attach(on_cut)

    def detach(self, cursor: Cursor) -> None:
        cursor.close()
        self.bytes_out += cursor.sent
        self.clients -= 1
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self.clients == 0 and not self._taps and self._idle_since is None:
            self._idle_since = self._clock()
            self._on_idle()

    def figures(self) -> Figures:
        return Figures(
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out + self.ring.sent_to_readers(),
            clients=self.clients,
            clients_cut=self.ring.lagged,
            clients_moved_forward=self.ring.skipped,
            last_data_at=self.ring.last_publish,
        )

    async def _teardown(self) -> None:
        self.ring.close()

    async def _serve(self) -> None:
        while True:
            partner = self._partner
            try:
                if partner is not None and not partner.closing:
                    await self._ride(partner)
                    if partner.closing:
                        continue  # its stream ended: play from our own session again
                    raise UpstreamEnded("the shared session ended")
                self._partner = None
                session = self._session or await self._start_session()
                await self._pump(session)
                raise UpstreamEnded("the engine ended the stream")
            except ProxyError as exc:
                if not self._ready.done():
                    raise  # the first start failed: its clients hear why
                if partner is not None and partner.closing:
                    continue
                await self._recover(exc)
                # What comes next is another upstream: clients get it from a clean start.
                self._splicer.restart()

    def _publish(self, packets: bytes) -> None:
        chunk, joins = self._splicer.feed(packets)
        if chunk:
            self._serving()
            self.ring.publish(chunk, joins)
            for tap in self._taps:
                tap(chunk, self._splicer.breaks)

    async def _ride(self, partner: SharedUpstream) -> None:
        # The other stream's session is started or starting, and may be prebuffering:
        # clients are kept on the line meanwhile, as for a session of our own.
        self._awaiting.set()
        aligner = PacketAligner()
        feed = partner.ts_feed(self._options.empty_timeout)
        try:
            async for piece in feed:
                if piece is None:
                    aligner = PacketAligner()
                    self._splicer.restart()
                    continue
                packets = aligner.feed(bytes(piece))
                if packets:
                    self._publish(packets)
        finally:
            await feed.aclose()

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_INTERVAL)
            self.ring.publish(KEEPALIVE)

    async def _pump(self, session: EngineSession) -> None:
        aligner = PacketAligner()
        loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:
            # Clients already connected (a new session after a failure) are kept on the
            # line while it prebuffers; new ones are, by their request's handler.
            keepalive = (
                asyncio.create_task(self._keep_alive(), name=f"ts-keepalive-{self.key}")
                if self.serving
                else None
            )
            try:
                body = await self._await_media(
                    session, stack.enter_async_context(self._client.open_stream(session))
                )
            finally:
                if keepalive is not None:
                    keepalive.cancel()
            self._serving()
            pending: list[bytes] = []
            size = 0
            flush_at = 0.0
            last_data = loop.time()
            first = True
            while True:
                now = loop.time()
                deadline = flush_at if pending else last_data + self._options.empty_timeout
                try:
                    async with asyncio.timeout(max(deadline - now, 0.0)):
                        data = await body.readany()
                except TimeoutError:
                    if not pending:
                        raise EngineStalled(
                            f"no data from the engine for {self._options.empty_timeout:g}s"
                        ) from None
                    data = None
                if data:
                    self.bytes_in += len(data)
                    last_data = loop.time()
                    packets = aligner.feed(data)
                    if packets:
                        if not pending:
                            flush_at = last_data + FLUSH_DELAY
                        pending.append(packets)
                        size += len(packets)
                if pending and (not data or first or size >= CHUNK_BYTES):
                    self._publish(pending[0] if len(pending) == 1 else b"".join(pending))
                    pending, size, first = [], 0, False
                if data == b"":
                    return  # the engine closed the stream
