"""The shell around `state`: a stream's one task, carrying out what the table decides.

MPEG-TS and HLS streams differ in how they serve; they share this. A stream never stops an
engine session itself: it hands the session to `Sessions`, in the same synchronous step as
the decision (close, fail over), so no cancellation can lose the stop and the
next start of the content is queued behind it.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .content import ContentKey, StreamRequest
from .engine.client import Engine, EngineClient, EngineSession, Format, unreachable_cause
from .errors import (
    ContentGone,
    EngineError,
    EngineLost,
    EngineStalled,
    EngineStatus,
    ProxyError,
    ShuttingDown,
)
from .sessions import Sessions
from .stat_watch import Prebuffer, StatWatch
from .state import (
    EndReason,
    EngineWord,
    Event,
    Failure,
    GiveUp,
    MediaWait,
    RetryPolicy,
    State,
    WaitBounds,
    advance,
    after_failure,
    failures_after,
    shown_state,
    takes_clients,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# HTTP statuses with which the engine says a session is over: stopped (500), superseded
# (403).
SESSION_OVER = frozenset({403, 404, 410, 500})
DEFAULT_WAIT = WaitBounds(silence=10.0, prebuffer=120.0)


@dataclass(frozen=True, slots=True)
class Figures:
    """What a stream has done so far, as the status page, /ace/status and /metrics show it."""

    bytes_in: int = 0
    bytes_out: int = 0
    clients: int = 0
    clients_cut: int = 0
    clients_moved_forward: int = 0
    playlist_fetches: int = 0
    last_data_at: float | None = None


class UpstreamEnded(EngineError):
    """The engine ended a body that should not end (a live MPEG-TS stream)."""

    code = "engine_ended"


class StreamGaveUp(EngineError):
    """The stream's retries are spent, or the content is gone."""

    def __init__(self, reason: EndReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def classify(exc: BaseException) -> Failure:
    """What kind of failure an upstream error is, for the retry policy."""
    if isinstance(exc, ContentGone):
        return Failure.GONE
    if isinstance(exc, EngineStalled):
        return Failure.STALLED
    if isinstance(exc, EngineLost):
        return Failure.LOST
    if isinstance(exc, UpstreamEnded) or (
        isinstance(exc, EngineStatus) and exc.upstream_status in SESSION_OVER
    ):
        return Failure.ENDED
    return Failure.REJECTED


class EngineStream(abc.ABC):
    def __init__(
        self,
        request: StreamRequest,
        *,
        client: EngineClient,
        sessions: Sessions,
        policy: RetryPolicy,
        wait_bounds: WaitBounds = DEFAULT_WAIT,
        on_closed: Callable[[EngineStream], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.request = request
        self.state = State.STARTING
        self.reason: EndReason | None = None
        self.problem = ""
        """The last upstream failure, in words safe to show."""
        self._client = client
        self._sessions = sessions
        self._policy = policy
        self._failures = 0
        self._failing_since = 0.0
        self._on_closed = on_closed
        self._clock = clock
        self.started_at = clock()
        self._session: EngineSession | None = None
        self._session_since = self.started_at
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stat = StatWatch(client, wait_bounds, mode=self.mode, key=self.key, clock=clock)
        self._awaiting = self._stat.awaiting
        """Set once the stream first waits for an engine session's media."""
        self._closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = False

    @property
    @abc.abstractmethod
    def mode(self) -> Format: ...

    @abc.abstractmethod
    def idle_deadline(self) -> float | None:
        """When the stream should end for want of clients, or None while it has some."""

    @abc.abstractmethod
    def may_make_room(self, now: float) -> bool:
        """Whether nobody watches it, so it may end to make room for another stream."""

    @abc.abstractmethod
    def figures(self) -> Figures: ...

    @property
    def key(self) -> ContentKey:
        return self.request.key

    @property
    def engine(self) -> Engine | None:
        """The engine of its current session, if it holds one."""
        return None if self._session is None else self._session.engine

    @property
    def closing(self) -> bool:
        return not takes_clients(self.state)

    @property
    def shown_state(self) -> str:
        """The state as the status page and /ace/status show it ("prebuffering" while the
        engine says so)."""
        return shown_state(self.state, self.waiting)

    @property
    def waiting(self) -> MediaWait | None:
        """While an engine session's first media is awaited: since when, what the engine says."""
        return self._stat.waiting

    def prebuffer(self) -> Prebuffer | None:
        """While a session's first media is awaited: how long, and what the engine says."""
        return self._stat.prebuffer()

    def engine_word(self) -> EngineWord | None:
        """What the engine's stat last said of this stream's own session (peers, download
        speed, ...); None when it holds no session or the engine has not said yet. Read only
        while someone looks (`StatWatch.engine_word`)."""
        return self._stat.engine_word(None if self.closing else self._session)

    def close(self, reason: EndReason) -> None:
        """End the stream. Synchronous: its engine session is on its way to being stopped
        when this returns; its clients end as the stream's task winds down."""
        if self.closing:
            return
        self._decide_end(reason)
        # A task that has not run yet is not cancelled: it would never run its cleanup. It
        # sees the stream closing as it starts.
        if self._task is not None and self._running:
            self._task.cancel()

    def _decide_end(self, reason: EndReason) -> None:
        self._advance(Event.CLOSE)
        self.reason = reason
        self._release(reason)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def serving(self) -> bool:
        """Ready: `ready()` would return at once."""
        ready = self._ready
        return ready.done() and not ready.cancelled() and ready.exception() is None

    async def ready(self) -> None:
        """Wait until the stream can serve; raise the engine's failure if it cannot."""
        await asyncio.shield(self._ready)

    async def ready_or_awaiting(self) -> bool:
        """Wait until the stream can serve (True), or until the engine has accepted its
        session and its media is awaited (False): a player may then be kept on the line.
        Raises the engine's failure if it comes first."""
        if not self._ready.done() and not self._awaiting.is_set():
            awaiting = asyncio.ensure_future(self._awaiting.wait())
            ready: asyncio.Future[Any] = self._ready
            try:
                await asyncio.wait({ready, awaiting}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                awaiting.cancel()
        if self._ready.done():
            self._ready.result()
            return True
        return False

    def _advance(self, event: Event) -> None:
        self.state = advance(self.state, event)

    def _launch(self) -> None:
        """Start the stream's task; subclasses call it once their own state is set."""
        self._task = asyncio.create_task(self._run(), name=f"{self.mode}-stream-{self.key}")

    @abc.abstractmethod
    async def _serve(self) -> None:
        """Run until the stream ends; raise a ProxyError to say why it failed."""

    @abc.abstractmethod
    async def _teardown(self) -> None:
        """End what the subclass holds (its clients); the engine session is already released."""

    def _serving(self) -> None:
        """The upstream delivers: the stream is (again) live."""
        if self.state is not State.LIVE:
            self._advance(Event.SERVING)
        if not self._ready.done():
            self._ready.set_result(None)

    def _fail_ready(self, exc: ProxyError) -> None:
        if not self._ready.done():
            self._ready.set_exception(exc)
            # Clients may all have left; nobody else is owed this exception.
            self._ready.exception()

    async def _start_session(self) -> EngineSession:
        session = await self._sessions.start(
            self.request, self.mode, lambda: self.reason or EndReason.ENGINE_ERROR
        )
        self._session = session
        self._session_since = self._clock()
        return session

    async def _await_media(self, session: EngineSession, opening: Awaitable[T]) -> T:
        """The first media of `session`, waited for while the engine prebuffers
        (`StatWatch.await_media`)."""
        return await self._stat.await_media(session, opening)

    def _release(self, reason: EndReason) -> None:
        """Give up the current engine session, if any; `Sessions` stops it."""
        session, self._session = self._session, None
        if session is not None:
            self._sessions.stop(session, reason)

    async def _recover(self, exc: BaseException) -> None:
        """After an upstream failure: count it, release what the policy says, wait its delay.

        Raises StreamGaveUp when the policy says the stream is over.
        """
        failure = classify(exc)
        self.problem = (
            exc.message if isinstance(exc, ProxyError) else "the engine dropped the stream"
        )
        now = self._clock()
        self._failures = failures_after(self._policy, self._failures, now - self._session_since)
        self._session_since = now  # a run proves itself once: from here on it counts anew
        if self._failures == 1:
            self._failing_since = now
        decision = after_failure(self._policy, self._failures, failure, now - self._failing_since)
        if isinstance(decision, GiveUp):
            raise StreamGaveUp(decision.reason, self.problem)
        self._advance(Event.LOST)
        if decision.avoid_engine and self.engine is not None:
            self._sessions.engine_failed(self.engine)
            log.warning(
                "%s stream %s: engine %s unreachable: %s",
                self.mode,
                self.key,
                self.engine,
                unreachable_cause(exc),
                extra={"event": "engine_unreachable", "engine_address": str(self.engine)},
            )
        if decision.fresh_session:
            self._release(EndReason.FAILED_OVER)
        log.info(
            "%s stream %s: %s; retry %d",
            self.mode,
            self.key,
            self.problem,
            self._failures,
            extra={
                "event": "stream_retry",
                "stream": self.key.value,
                "mode": self.mode,
                "reason": failure.value,
                "code": exc.code if isinstance(exc, ProxyError) else None,
                "retry": self._failures,
            },
        )
        if decision.delay:
            await asyncio.sleep(decision.delay)

    async def _run(self) -> None:
        self._running = True
        try:
            if not self.closing:
                await self._serve()
        except asyncio.CancelledError:
            pass  # close() decided, and set the reason
        except StreamGaveUp as exc:
            self._end(exc.reason, exc)
        except ProxyError as exc:
            self._end(EndReason.ENGINE_ERROR, exc)
        finally:
            self._end(EndReason.ENGINE_ERROR, EngineError("the stream ended"))
            self._fail_ready(
                ShuttingDown()
                if self.reason is EndReason.SHUTDOWN
                else EngineError(self.problem or "the stream ended")
            )
            await self._teardown()
            await self._stat.stop_looking()
            self._advance(Event.TORN_DOWN)
            self._closed.set()
            duration = self._clock() - self.started_at
            figures = self.figures()
            log.info(
                "%s stream %s ended after %.0fs: %s%s",
                self.mode,
                self.key,
                duration,
                self.reason.value if self.reason else "?",
                f" ({self.problem})" if self.problem else "",
                extra={
                    "event": "stream_ended",
                    "stream": self.key.value,
                    "mode": self.mode,
                    "reason": self.reason.value if self.reason else None,
                    "duration_s": round(duration, 3),
                    "bytes_in": figures.bytes_in,
                    "bytes_out": figures.bytes_out,
                },
            )
            self._on_closed(self)

    def _end(self, reason: EndReason, exc: ProxyError) -> None:
        if not self.closing:
            self.problem = self.problem or exc.message
            self._fail_ready(exc)
            self._decide_end(reason)
