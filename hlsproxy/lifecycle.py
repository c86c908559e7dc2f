"""The shell around `state`: a stream's one task, carrying out what the table decides.

MPEG-TS and HLS streams differ in how they serve; they share this. A stream never stops an
engine session itself: it hands the session to `Sessions`, in the same synchronous step as
the decision (close, fail over), so no cancellation can lose the stop and the
next start of the content is queued behind it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
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
    EnginePrebuffering,
    EngineStalled,
    EngineStatus,
    EngineTimeout,
    ProxyError,
    ShuttingDown,
)
from .sessions import Sessions
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

# Statuses with which the engine says a session is over: stopped (500), superseded (403).
SESSION_OVER = frozenset({403, 404, 410, 500})
# A session whose media is awaited has its stat read this often, and never more often.
STAT_INTERVAL = 1.0
DEFAULT_WAIT = WaitBounds(silence=10.0, prebuffer=120.0)


@dataclass(frozen=True, slots=True)
class Figures:
    """What a stream has done so far, for status and metrics."""

    bytes_in: int = 0
    bytes_out: int = 0
    clients: int = 0
    clients_cut: int = 0
    playlist_fetches: int = 0
    last_data_at: float | None = None


@dataclass(frozen=True, slots=True)
class Prebuffer:
    """A wait for an engine session's first media, for status and metrics."""

    waited: float
    """Seconds so far."""
    engine_status: str | None
    """What the engine's stat last said ("prebuf", ...); None before it said anything."""
    peers: int
    speed_down: int
    """KB/s, as the engine counts."""
    progress: int
    """Percent, when the engine reports it."""

    def as_json(self) -> dict[str, object]:
        return {
            "waited": round(self.waited, 1),
            "engine_status": self.engine_status,
            "peers": self.peers,
            "speed_down_kbps": self.speed_down,
            "progress": self.progress,
        }


class UpstreamEnded(EngineError):
    """The engine ended a body that should not end (a live MPEG-TS stream)."""

    code = "engine_ended"


class StreamGaveUp(EngineError):
    """The stream's retries are spent, or the content is gone."""

    def __init__(self, reason: EndReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _word(answer: dict[str, Any]) -> EngineWord:
    """What a stat answer says, as far as waiting for media goes."""
    return EngineWord(
        status=str(answer.get("status", "")),
        peers=_count(answer.get("peers")),
        speed_down=_count(answer.get("speed_down")),
        progress=_count(answer.get("progress", answer.get("total_progress"))),
    )


def _count(value: object) -> int:
    if isinstance(value, int | float | str):
        try:
            return max(0, int(value))
        except ValueError:
            return 0
    return 0


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
        self._wait_bounds = wait_bounds
        self.waiting: MediaWait | None = None
        """While an engine session's first media is awaited: since when, what the engine says."""
        self._awaiting = asyncio.Event()
        """Set once the stream first waits for an engine session's media."""
        self._closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        # The engine's last word on the session, read while someone looks (`engine_word`).
        self._heard: tuple[EngineSession, EngineWord] | None = None
        self._looked_at = float("-inf")
        self._look: asyncio.Task[None] | None = None

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
        """The state as status pages show it ("prebuffering" while the engine says so)."""
        return shown_state(self.state, self.waiting)

    def prebuffer(self) -> Prebuffer | None:
        """While a session's first media is awaited: how long, and what the engine says."""
        wait = self.waiting
        if wait is None:
            return None
        word = wait.word
        return Prebuffer(
            waited=max(0.0, self._clock() - wait.since),
            engine_status=word.status if word else None,
            peers=word.peers if word else 0,
            speed_down=word.speed_down if word else 0,
            progress=word.progress if word else 0,
        )

    def engine_word(self) -> EngineWord | None:
        """What the engine last said of this stream's own session (status, peers, download
        speed); None when it holds no session or the engine has not said yet.

        The stat is read only while someone looks (the status page, /metrics, /ace/status):
        a look asks again, in the background, once the last ask is `STAT_INTERVAL` old, so
        the engine hears at most one stat a second per stream, and the answer shows at the
        next look. While the session's first media is awaited, the wait's own watch reads the
        stat (`_watch_media`) and its word is the one given."""
        wait = self.waiting
        if wait is not None:
            return wait.word
        session = self._session
        if session is None or self.closing:
            return None
        now = self._clock()
        if self._look is None and now - self._looked_at >= STAT_INTERVAL:
            self._looked_at = now
            self._look = asyncio.create_task(self._read_stat(session), name=f"stat-{self.key}")
        heard = self._heard
        return heard[1] if heard is not None and heard[0] is session else None

    async def _read_stat(self, session: EngineSession) -> None:
        try:
            # The client bounds the read; a failed one leaves the last word standing.
            with contextlib.suppress(EngineError):
                self._heard = (session, _word(await self._client.stat(session)))
        finally:
            self._look = None

    async def _stop_looking(self) -> None:
        look = self._look
        if look is not None:
            look.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await look

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
        """The first media of `session` (what `opening` waits for), waited for while the
        engine says it is prebuffering (see `state.MediaWait`). Raises EngineTimeout after
        the no-response timeout of silence, EnginePrebuffering past the prebuffer bound.

        `opening` is awaited in the caller's task, under a timeout that the engine's stat,
        read beside it, moves: the caller reads the media the moment it comes (aiohttp drops
        what a response had buffered once its connection fails, so a late first read may
        lose it).
        """
        loop = asyncio.get_running_loop()
        # On the loop's clock, which the timeout keeps; `self.waiting` is what status shows.
        wait = [MediaWait(loop.time())]
        self.waiting = MediaWait(self._clock())
        self._awaiting.set()
        deadline, _ = wait[0].deadline(self._wait_bounds)
        try:
            async with asyncio.timeout_at(deadline) as timeout:
                watch = asyncio.create_task(
                    self._watch_media(session, wait, timeout), name=f"wait-{self.key}"
                )
                try:
                    result = await opening
                finally:
                    # Cancelled, not awaited: the caller must read the media at once (see
                    # above), and a stat read still under way has nobody to tell.
                    watch.cancel()
        except TimeoutError:
            if not timeout.expired():
                raise
            raise self._wait_failure(wait[0].deadline(self._wait_bounds)[1]) from None
        finally:
            shown, self.waiting = self.waiting, None
        if shown is not None and shown.prebuffering:
            log.info(
                "%s stream %s: waited %.0f s for the engine to prebuffer, %d peers",
                self.mode,
                self.key,
                self._clock() - shown.since,
                shown.word.peers if shown.word else 0,
            )
        return result

    async def _watch_media(
        self, session: EngineSession, wait: list[MediaWait], timeout: asyncio.Timeout
    ) -> None:
        """Read the engine's stat once a second while the media is awaited, and move the
        wait's deadline by what it says. `wait[0]` holds the wait as last heard."""
        loop = asyncio.get_running_loop()
        while not timeout.expired():
            asked = loop.time()
            word: EngineWord | None = None
            with contextlib.suppress(EngineError):
                word = _word(await self._client.stat(session))
            if word is not None and not timeout.expired():
                if word.prebuffering and not wait[0].prebuffering:
                    log.info(
                        "%s stream %s: the engine is prebuffering (%d peers); waiting",
                        self.mode,
                        self.key,
                        word.peers,
                    )
                wait[0] = wait[0].heard(word, loop.time())
                timeout.reschedule(wait[0].deadline(self._wait_bounds)[0])
                shown = self.waiting
                if shown is not None:
                    self.waiting = shown.heard(word, self._clock())
            # At most one stat a second: the engine is busy enough.
            await asyncio.sleep(max(0.0, asked + STAT_INTERVAL - loop.time()))

    def _wait_failure(self, prebuffer_bound: bool) -> EngineError:
        if prebuffer_bound:
            return EnginePrebuffering(
                "the engine was still prebuffering after "
                f"{self._wait_bounds.prebuffer:g}s (ACEXY_PREBUFFER_TIMEOUT)"
            )
        return EngineTimeout(
            f"the engine did not answer within {self._wait_bounds.silence:g}s "
            "while opening the stream"
        )

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
            await self._stop_looking()
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
