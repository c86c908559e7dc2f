"""One content as MPEG-TS: the single upstream read that fills its ring, and its clients.

The upstream is the stream's own engine session, or, when the content also plays as HLS,
that HLS session's segments (the engine allows one session per content).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import aiohttp

from ..content import StreamRequest
from ..engine.client import EngineClient, EngineSession
from ..engine.pool import EnginePool
from ..errors import EngineError, EngineTimeout, EngineUnreachable
from ..hls.feed import EmptyFeed, concatenated
from ..lifecycle import EngineStream, Figures
from .broadcast import Cursor, Ring
from .packets import PacketAligner, TsScanner

if TYPE_CHECKING:
    from ..hls.channel import HlsStream

log = logging.getLogger(__name__)

# Chunks this large keep the per-client write cost low (acexy writes 64 KiB too); the
# flush delay bounds the latency a chunk adds while it fills: 64 KiB take 130 ms at
# 4 Mbit/s. A stream's first bytes go out at once.
CHUNK_BYTES = 64 * 1024
FLUSH_DELAY = 0.15
# A connection that streamed this long proved the engine healthy: its failure starts a
# fresh count of retries.
HEALTHY_RUN = 10.0


@dataclass(frozen=True, slots=True)
class TsOptions:
    ring_bytes: int
    empty_timeout: float
    retries: int
    linger: float


class EmptyUpstream(Exception):
    pass


class TsStream(EngineStream):
    def __init__(
        self,
        request: StreamRequest,
        *,
        pool: EnginePool,
        client: EngineClient,
        options: TsOptions,
        waits: Sequence[Callable[[], Awaitable[None]]] = (),
        partner: HlsStream | None = None,
        on_idle: Callable[[], None] = lambda: None,
        on_closed: Callable[[EngineStream], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            request, pool=pool, client=client, waits=waits, on_closed=on_closed, clock=clock
        )
        self.ring = Ring(options.ring_bytes)
        self.clients = 0
        self.bytes_out = 0
        self._options = options
        self._partner = partner
        self._handed_over = asyncio.Event()
        self._on_idle = on_idle
        self._idle_since: float | None = self.started_at
        self._launch()

    def __repr__(self) -> str:
        return f"<TsStream {self.key} {self.state} clients={self.clients} {self.ring!r}>"

    @property
    def mode(self) -> Literal["ts"]:
        return "ts"

    def idle_deadline(self) -> float | None:
        if self._idle_since is None or self.closing:
            return None
        return self._idle_since + self._options.linger

    def attach(self, on_cut: Callable[[], None] | None = None) -> Cursor:
        self.clients += 1
        self._idle_since = None
        return self.ring.attach(on_cut)

    def detach(self, cursor: Cursor) -> None:
        cursor.close()
        self.bytes_out += cursor.sent
        self.clients -= 1
        if self.clients == 0:
            self._idle_since = self._clock()
            self._on_idle()

    def figures(self) -> Figures:
        return Figures(
            bytes_in=self.ring.bytes_in,
            bytes_out=self.bytes_out + self.ring.sent_to_readers(),
            clients=self.clients,
            clients_cut=self.ring.lagged,
            last_data_at=self.ring.last_publish,
        )

    def hand_over(self, hls: HlsStream) -> None:
        """The content is now wanted as HLS too: give up this stream's own engine session
        and feed the clients from the HLS session's segments instead."""
        self._partner = hls
        self._handed_over.set()

    async def _teardown(self) -> None:
        self.ring.close()

    async def _serve(self) -> None:
        failures = 0
        while True:
            opened = self._clock()
            partner = self._partner
            try:
                if partner is not None and not partner.closing:
                    # The HLS session now plays the content.
                    await self._stop_session("client_disconnected")
                    await self._ride(partner)
                    problem = "the HLS session ended"
                else:
                    self._partner = None
                    self._handed_over.clear()
                    if self._session is None or failures > 1:
                        # Reopening the same playback URL did not help: start afresh. The old
                        # session is stopped first, as a stop ends every session of the content.
                        await self._stop_session()
                        await self._start_session()
                    assert self._session is not None
                    if not await self._own(self._session):
                        continue  # handed over to an HLS session: not a failure
                    problem = "the engine ended the stream"
            except EngineError as exc:
                if isinstance(exc, EngineUnreachable | EngineTimeout) and self.engine:
                    self._pool.engine_failed(self.engine)
                if not self._ready.done():
                    raise
                problem = exc.message
            except (aiohttp.ClientError, OSError):
                problem = "the engine dropped the stream"
            except (EmptyUpstream, EmptyFeed):
                # acexy gave up on a stall; a fresh read often revives a live channel.
                problem = f"no data from the engine for {self._options.empty_timeout:g}s"
            if self._clock() - opened >= HEALTHY_RUN:
                failures = 0
            failures += 1
            if failures > self._options.retries:
                raise EngineError(f"{problem}; gave up after {self._options.retries} retries")
            log.info("stream %s: %s; retry %d", self.key, problem, failures)
            await asyncio.sleep(min(0.25 * 2**failures, 4.0))

    async def _own(self, session: EngineSession) -> bool:
        """Read our own engine session until it ends (True) or is handed over (False)."""
        pump = asyncio.create_task(self._pump(session), name=f"ts-pump-{self.key}")
        handover = asyncio.create_task(self._handed_over.wait())
        try:
            await asyncio.wait({pump, handover}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            handover.cancel()
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
        if pump.cancelled():
            return False
        pump.result()  # raises what ended the read
        return True

    async def _ride(self, hls: HlsStream) -> None:
        await hls.ready()
        aligner = PacketAligner()
        scanner = TsScanner()
        feed = concatenated(hls, empty_timeout=self._options.empty_timeout)
        try:
            async for chunk in feed:
                packets = aligner.feed(bytes(chunk))
                if packets:
                    self._mark_live()
                    self.ring.publish(packets, scanner.scan(packets))
        finally:
            await feed.aclose()

    async def _pump(self, session: EngineSession) -> None:
        aligner = PacketAligner()
        scanner = TsScanner()
        ring = self.ring
        loop = asyncio.get_running_loop()
        async with self._client.open_stream(session) as body:
            self._mark_live()
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
                        raise EmptyUpstream from None
                    data = None
                if data:
                    last_data = loop.time()
                    packets = aligner.feed(data)
                    if packets:
                        if not pending:
                            flush_at = last_data + FLUSH_DELAY
                        pending.append(packets)
                        size += len(packets)
                if pending and (not data or first or size >= CHUNK_BYTES):
                    chunk = pending[0] if len(pending) == 1 else b"".join(pending)
                    ring.publish(chunk, scanner.scan(chunk))
                    pending, size, first = [], 0, False
                if data == b"":
                    return  # the engine closed the stream
