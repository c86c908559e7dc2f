"""The life of a stream that owns an engine session: wait its turn, serve, stop exactly once.

MPEG-TS and HLS streams differ in how they serve; they share this: one task owns the
engine session from start to stop, so the stop happens once, in one place, whatever ended
the stream (idle, engine failure, shutdown).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from .content import ContentKey, StreamRequest
from .engine.client import Engine, EngineClient, EngineSession, Format
from .engine.pool import EndReason, EnginePool
from .errors import EngineError, EngineTimeout, EngineUnreachable, ProxyError, ShuttingDown

log = logging.getLogger(__name__)

State = Literal["starting", "live", "closing", "closed"]


@dataclass(frozen=True, slots=True)
class Figures:
    """What a stream has done so far, for status and metrics."""

    bytes_in: int = 0
    bytes_out: int = 0
    clients: int = 0
    clients_cut: int = 0
    playlist_fetches: int = 0
    last_data_at: float | None = None


class EngineStream(abc.ABC):
    def __init__(
        self,
        request: StreamRequest,
        *,
        pool: EnginePool,
        client: EngineClient,
        waits: Sequence[Callable[[], Awaitable[None]]] = (),
        on_closed: Callable[[EngineStream], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.request = request
        self.engine: Engine | None = None  # while it holds an engine session
        self._pool = pool
        self.state: State = "starting"
        self.reason: str | None = None
        self._client = client
        self._waits = list(waits)
        self._on_closed = on_closed
        self._clock = clock
        self.started_at = clock()
        self._session: EngineSession | None = None
        self._released = asyncio.Event()  # set while this stream holds no engine session
        self._released.set()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    @abc.abstractmethod
    def mode(self) -> Format: ...

    @abc.abstractmethod
    def idle_deadline(self) -> float | None:
        """When the stream should end for want of clients, or None while it has some."""

    @abc.abstractmethod
    def figures(self) -> Figures: ...

    @property
    def key(self) -> ContentKey:
        return self.request.key

    @property
    def closing(self) -> bool:
        return self.state in ("closing", "closed")

    def close(self, reason: str) -> None:
        if self.closing:
            return
        self.state = "closing"
        self.reason = reason
        if self._task is not None:
            self._task.cancel()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def wait_released(self) -> None:
        """Until this stream holds no engine session (another one may then start)."""
        await self._released.wait()

    async def ready(self) -> None:
        """Wait until the stream can serve; raise the engine's failure if it cannot."""
        await asyncio.shield(self._ready)

    def _launch(self) -> None:
        """Start the stream's task; subclasses call it once their own state is set."""
        self._task = asyncio.create_task(self._run(), name=f"{self.mode}-stream-{self.key}")

    @abc.abstractmethod
    async def _serve(self) -> None:
        """Run until the stream ends; raise a ProxyError to say why it failed."""

    @abc.abstractmethod
    async def _teardown(self) -> None:
        """Release what the subclass holds, before the engine session is stopped."""

    def _mark_live(self) -> None:
        if not self._ready.done():
            self.state = "live"
            self._ready.set_result(None)

    def _fail_ready(self, exc: ProxyError) -> None:
        if not self._ready.done():
            self._ready.set_exception(exc)
            # Clients may all have left; nobody else is owed this exception.
            self._ready.exception()

    async def _start_session(self) -> EngineSession:
        self._released.clear()
        try:
            engine = await self._pool.acquire(self.key)
        except BaseException:
            self._released.set()
            raise
        # A start in flight is not abandoned on close: the engine would keep a session
        # nobody can stop. Let it land, then the stream's cleanup stops it.
        start = asyncio.ensure_future(self._client.start(engine, self.request, self.mode))
        try:
            self._session = await asyncio.shield(start)
        except asyncio.CancelledError:
            with contextlib.suppress(ProxyError):
                self._session = await start
            if self._session is None:
                self._pool.release(engine, self.key)
            else:
                self.engine = engine
                self._pool.session_started(self._session)
            raise
        except ProxyError as exc:
            if isinstance(exc, EngineUnreachable | EngineTimeout):
                self._pool.engine_failed(engine)
            self._pool.release(engine, self.key)
            self._released.set()
            raise
        self.engine = engine
        self._pool.session_started(self._session)
        log.info("%s stream %s started on %s", self.mode, self.key, engine)
        return self._session

    async def _stop_session(self, reason: EndReason | None = None) -> None:
        session, self._session = self._session, None
        engine, self.engine = self.engine, None
        if session is not None:
            await self._client.stop(session)
            self._pool.session_ended(session, reason or self._end_reason())
        if engine is not None:
            self._pool.release(engine, self.key)
        self._released.set()

    def _end_reason(self) -> EndReason:
        if self.reason == "shutdown":
            return "shutdown"
        if self.reason == "idle" or (self.reason or "").startswith("make room"):
            return "stream_timeout" if self.mode == "hls" else "client_disconnected"
        if (self.reason or "").startswith("no data"):
            return "empty_timeout"
        return "engine_error"

    async def _run(self) -> None:
        try:
            # Other sessions of this content end first: the engine allows one at a time.
            for wait in self._waits:
                await wait()
            self._waits.clear()
            await self._serve()
        except asyncio.CancelledError:
            pass  # close() decided, and set the reason
        except ProxyError as exc:
            self.reason = self.reason or exc.message
            self._fail_ready(exc)
        finally:
            self.state = "closing"
            self._fail_ready(
                ShuttingDown() if self.reason == "shutdown" else EngineError("the stream ended")
            )
            await self._teardown()
            await self._stop_session()
            self.state = "closed"
            self._closed.set()
            log.info(
                "%s stream %s ended after %.0fs: %s",
                self.mode,
                self.key,
                self._clock() - self.started_at,
                self.reason,
            )
            self._on_closed(self)
