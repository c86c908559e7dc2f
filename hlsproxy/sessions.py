"""Engine sessions: the one place that starts and stops them, and reports them to the pool.

A stop ends every session of its content on that engine, even one opened with another pid,
and a start supersedes any other session of it there (engine reference). So on one engine, a
content has one session at a time: a start waits for every earlier start or stop of the same
content there, and for any live session of it to be given up (stopped) by its owner. A start
on another engine does not wait: failing over from a dead engine must not wait for a stop
that cannot reach it.

Stopping a session, releasing its engine slot and reporting its end are one unit, run as a
task this object owns: it completes exactly once per session, whatever is cancelled around
the caller, and `aclose` waits for every one still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from .content import ContentKey, StreamRequest
from .engine import pool as engine_pool
from .engine.client import Engine, EngineClient, EngineSession, Format, unreachable_cause
from .engine.pool import EnginePool
from .errors import EngineLost, EngineRefused, ShuttingDown
from .state import EndReason

log = logging.getLogger(__name__)

T = TypeVar("T")
_Slot = tuple[Engine, ContentKey]


class _Ticket:
    """One start: whether its caller left before it landed, and with which end reason."""

    __slots__ = ("abandoned",)

    def __init__(self) -> None:
        self.abandoned: Callable[[], EndReason] | None = None


class Sessions:
    def __init__(self, client: EngineClient, pool: EnginePool) -> None:
        self._client = client
        self._pool = pool
        self._live: dict[str, EngineSession] = {}  # by pid, unique per session
        self._busy: dict[_Slot, list[asyncio.Task[Any]]] = {}
        self._released = asyncio.Event()  # replaced each time a live session is given up
        self._closed = False

    def __repr__(self) -> str:
        return f"<Sessions {len(self._live)} live, {len(self._running())} starting or stopping>"

    @property
    def live(self) -> int:
        return len(self._live)

    async def start(
        self, request: StreamRequest, fmt: Format, abandoned: Callable[[], EndReason]
    ) -> EngineSession:
        """A new session of the content, on the engine the pool picks.

        An engine that refuses the connection has started nothing: the pool, told so, picks
        again (another of its engines, or the fixed one when its orchestrator is away too),
        until it offers an engine already refused.

        Cancelling the caller does not abandon a start in flight: the engine would keep a
        session nobody stops. It lands, and is stopped with the reason `abandoned()` gives.
        """
        refused: dict[Engine, EngineRefused] = {}
        while True:
            offered: list[Engine] = []
            try:
                session = await self._start_on_one(request, fmt, abandoned, offered, refused)
            except EngineRefused as exc:
                if not offered:
                    raise
                refused[offered[0]] = exc
                log.info("engine %s refused %s; asking the pool again", offered[0], request.key)
                continue
            if session is None:
                raise refused[offered[0]]
            return session

    async def _start_on_one(
        self,
        request: StreamRequest,
        fmt: Format,
        abandoned: Callable[[], EndReason],
        offered: list[Engine],
        refused: Mapping[Engine, EngineRefused],
    ) -> EngineSession | None:
        """A session on the engine the pool offers (put in `offered`); None when it offers
        one that refused already."""
        if self._closed:
            raise ShuttingDown()
        key = request.key
        engine = await self._pool.acquire(key)
        offered.append(engine)
        if engine in refused:
            self._pool.release(engine, key)
            return None
        slot = (engine, key)
        try:
            while True:
                if earlier := self._busy.get(slot):
                    await asyncio.wait(list(earlier))
                elif self._holds(slot):
                    await self._released.wait()
                else:
                    break
            if self._closed:
                raise ShuttingDown()
        except BaseException:
            self._pool.release(engine, key)
            raise
        ticket = _Ticket()
        task = self._spawn(slot, self._land(engine, request, fmt, ticket))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            ticket.abandoned = abandoned
            if task.done() and not task.cancelled() and task.exception() is None:
                # It landed just as the caller left: nobody holds it but us.
                self.stop(task.result(), abandoned())
            raise

    def stop(self, session: EngineSession, reason: EndReason) -> None:
        """Stop the session in the background; a second call for it does nothing. Never
        awaits: a caller decides and moves on, and the next start of the content on that
        engine waits for this stop."""
        if self._live.pop(session.pid, None) is None:
            return
        self._spawn((session.engine, session.request.key), self._stop(session, reason))
        released, self._released = self._released, asyncio.Event()
        released.set()

    def _holds(self, slot: _Slot) -> bool:
        """Whether a live session of the content plays on the engine."""
        return any((s.engine, s.request.key) == slot for s in self._live.values())

    def engine_failed(self, engine: Engine) -> None:
        self._pool.engine_failed(engine)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop every live session and wait for every start and stop still running."""
        self._closed = True
        for session in list(self._live.values()):
            self.stop(session, EndReason.SHUTDOWN)
        while running := self._running():
            _, pending = await asyncio.wait(running, timeout=timeout)
            if pending:
                log.warning("%d engine requests did not finish within %gs", len(pending), timeout)
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending)

    def _running(self) -> list[asyncio.Task[Any]]:
        """The starts and stops under way."""
        return [task for queue in self._busy.values() for task in queue]

    def _started(self, session: EngineSession) -> None:
        self._live[session.pid] = session
        self._pool.session_started(session)
        log.info(
            "%s session of %s started on %s",
            session.fmt,
            session.request.key,
            session.engine,
            extra=self._fields(session, "session_started"),
        )

    async def _land(
        self, engine: Engine, request: StreamRequest, fmt: Format, ticket: _Ticket
    ) -> EngineSession:
        key = request.key
        try:
            session = await self._client.start(engine, request, fmt)
        except BaseException as exc:
            if isinstance(exc, EngineLost):
                self._pool.engine_failed(engine)
                self._unreachable(engine, key, fmt, exc)
            self._pool.release(engine, key)
            raise
        self._started(session)
        if ticket.abandoned is not None or self._closed:
            # Nobody is owed this session any more: stopped here, in this task, so that a
            # closing proxy waits for it like for every other stop.
            reason = ticket.abandoned() if ticket.abandoned else EndReason.SHUTDOWN
            self._live.pop(session.pid, None)
            await self._stop(session, reason)
            raise ShuttingDown()
        return session

    async def _stop(self, session: EngineSession, reason: EndReason) -> None:
        try:
            await self._client.stop(session)
        finally:
            self._pool.session_ended(session, reason.event_reason(session.fmt))
            self._pool.release(session.engine, session.request.key)
            fields = self._fields(session, "session_stopped")
            fields["reason"] = reason.value
            fields["duration_s"] = round(session.age, 3)
            log.info(
                "%s session of %s stopped: %s",
                session.fmt,
                session.request.key,
                reason.value,
                extra=fields,
            )

    def _unreachable(self, engine: Engine, key: ContentKey, fmt: Format, exc: EngineLost) -> None:
        """The operator's line: which address, and why (clients are told neither)."""
        cause = unreachable_cause(exc)
        log.warning(
            "engine %s unreachable starting %s: %s",
            engine,
            key,
            cause,
            extra={
                **self._fields_of(key, fmt, engine, "engine_unreachable"),
                "engine_address": str(engine),
                "reason": cause,
                "code": exc.code,
            },
        )

    def _fields(self, session: EngineSession, event: str) -> dict[str, object]:
        """A session's log fields (hlsproxy.logs.FIELDS)."""
        return self._fields_of(session.request.key, session.fmt, session.engine, event)

    def _fields_of(
        self, key: ContentKey, fmt: Format, engine: Engine, event: str
    ) -> dict[str, object]:
        return {
            "event": event,
            "stream": key.value,
            "mode": fmt,
            "engine": engine_pool.label_of(engine, self._pool.engines()),
        }

    def _spawn(self, slot: _Slot, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work, name=f"engine {slot[1]} on {slot[0]}")
        self._busy.setdefault(slot, []).append(task)

        def done(task: asyncio.Task[T]) -> None:
            queue = self._busy.get(slot)
            if queue is not None:
                with contextlib.suppress(ValueError):
                    queue.remove(task)
                if not queue:
                    del self._busy[slot]
            # A start's outcome is its caller's to read; a stop never raises. Either may
            # have nobody left to read it.
            if not task.cancelled():
                task.exception()

        task.add_done_callback(done)
        return task
