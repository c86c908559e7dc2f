"""A stream's life as data: its states, the events that move it, and the decisions it takes.

Pure (docs/ARCHITECTURE.md, principle 1): no I/O, no clock reads, no asyncio.
`lifecycle.EngineStream` is the thin
shell that carries these decisions out, for MPEG-TS and HLS alike.

The rules, for both formats:

    STARTING ──SERVING──▶ LIVE ──LOST──▶ RECOVERING ──SERVING──▶ LIVE
        │                  │                 │ LOST: stays, with the next retry
        │                  └─────FINISH──────┴──▶ FINISHED
        └──────CLOSE───────┴───────CLOSE─────┴───────CLOSE──┘
                           ▼
                        CLOSING ──TORN_DOWN──▶ CLOSED

- A stream takes clients in STARTING, LIVE and RECOVERING; its clients stay attached while it
  recovers (another engine session, maybe on another engine) and see a marked discontinuity.
- FINISHED is an HLS stream whose content the engine can no longer load: it holds no engine
  session and answers with its last playlist, ended (EXT-X-ENDLIST), until nobody asks.
- CLOSE is decided once: the first reason wins, later ones change nothing.
- In CLOSING, what the upstream still does (SERVING, LOST) changes nothing: the stream is
  ending, and TORN_DOWN comes once its engine session is stopped and its clients are ended.
- Anything else is a bug in the caller and raises `InvalidTransition`.

Waiting for an engine session's first media (the MPEG-TS response head, the first HLS
playlist) is a condition of STARTING and RECOVERING, `MediaWait`, decided here too. A real
engine answers a start at once, then holds the media while it prebuffers a cold channel:
10 to 30 s, sometimes more, its stat saying `"status": "prebuf"` meanwhile (acexy issue 48:
players cut at "timeout awaiting response headers" ten seconds in, while VLC straight on the
engine plays). So the wait asks "is it still working?", not "is it done yet?": it lasts while
the engine keeps saying it prebuffers, up to a bound of its own, and ends after the
no-response timeout of silence (no stat answer saying so).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .engine.pool import OrchestratorEndReason


class State(enum.Enum):
    STARTING = "starting"
    """Waiting for its first engine session (and for older sessions of the content to stop)."""
    LIVE = "live"
    RECOVERING = "recovering"
    """Its upstream was lost; a new one is being sought while clients wait."""
    FINISHED = "finished"
    """The content is gone; the last playlist is served, ended, until the stream is idle."""
    CLOSING = "closing"
    CLOSED = "closed"


class Event(enum.Enum):
    SERVING = "serving"
    """The upstream gives data (MPEG-TS) or a playlist (HLS)."""
    LOST = "lost"
    """The upstream failed and the stream will try again."""
    FINISH = "finish"
    """The content is gone, and an ended playlist tells HLS players so."""
    CLOSE = "close"
    """The stream is to end; the reason goes with it."""
    TORN_DOWN = "torn_down"
    """Its engine session is stopped and its clients are ended."""


class EndReason(enum.Enum):
    """Why a stream, or one engine session of it, ended. Set where the decision is made and
    read by logs, metrics, orchestrator events and the status page alike."""

    IDLE = "idle"
    """No client for the linger time (MPEG-TS) or no request for the stream timeout (HLS)."""
    MAKE_ROOM = "make_room"
    """Ended, unwatched, to make room under ACEXY_MAX_STREAMS."""
    SHUTDOWN = "shutdown"
    NO_DATA = "no_data"
    """The engine sent nothing for the empty timeout, retries included."""
    ENGINE_ERROR = "engine_error"
    """The engine failed, retries included."""
    CONTENT_GONE = "content_load_failed"
    """The engine could not load the content (an id that never existed, or one gone)."""
    FAILED_OVER = "failed_over"
    """(A session only) replaced by a new session after its upstream was lost."""

    def event_reason(self, mode: str) -> OrchestratorEndReason:
        """The word the orchestrator's `stream_ended` event uses for it: an unwatched MPEG-TS
        stream ends when its last client disconnects, an HLS one after the stream timeout."""
        if self in (EndReason.IDLE, EndReason.MAKE_ROOM):
            return "client_disconnected" if mode == "ts" else "stream_timeout"
        return _EVENT_REASONS[self]


_EVENT_REASONS: dict[EndReason, OrchestratorEndReason] = {
    EndReason.SHUTDOWN: "shutdown",
    EndReason.NO_DATA: "empty_timeout",
    EndReason.ENGINE_ERROR: "engine_error",
    EndReason.CONTENT_GONE: "engine_error",
    EndReason.FAILED_OVER: "engine_error",
}


class InvalidTransition(Exception):
    pass


_OPEN = (State.STARTING, State.LIVE, State.RECOVERING, State.FINISHED)
TRANSITIONS: dict[State, dict[Event, State]] = {
    State.STARTING: {
        Event.SERVING: State.LIVE,
        Event.LOST: State.STARTING,
        Event.CLOSE: State.CLOSING,
    },
    State.LIVE: {
        Event.SERVING: State.LIVE,
        Event.LOST: State.RECOVERING,
        Event.FINISH: State.FINISHED,
        Event.CLOSE: State.CLOSING,
    },
    State.RECOVERING: {
        Event.SERVING: State.LIVE,
        Event.LOST: State.RECOVERING,
        Event.FINISH: State.FINISHED,
        Event.CLOSE: State.CLOSING,
    },
    State.FINISHED: {Event.CLOSE: State.CLOSING},
    State.CLOSING: {
        Event.SERVING: State.CLOSING,
        Event.LOST: State.CLOSING,
        Event.CLOSE: State.CLOSING,
        Event.TORN_DOWN: State.CLOSED,
    },
    State.CLOSED: {Event.CLOSE: State.CLOSED},
}


def advance(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise InvalidTransition(f"{event.name} in state {state.name}") from None


def takes_clients(state: State) -> bool:
    return state in _OPEN


PREBUFFERING = frozenset({"prebuf"})
"""Stat statuses with which an engine says it is gathering a session's media."""


@dataclass(frozen=True, slots=True)
class WaitBounds:
    silence: float
    """How long the engine may say nothing about a session it is opening: the no-response
    timeout."""
    prebuffer: float
    """How long it may keep saying it prebuffers (never less than `silence`)."""


@dataclass(frozen=True, slots=True)
class EngineWord:
    """What a stat answer said about a session whose media has not come yet."""

    status: str
    peers: int = 0
    speed_down: int = 0
    """KB/s, as the engine counts."""
    progress: int = 0
    """Percent, when the engine reports it."""

    @property
    def prebuffering(self) -> bool:
        return self.status in PREBUFFERING


@dataclass(frozen=True, slots=True)
class MediaWait:
    """A wait for a session's first media, begun at `since`; times are one clock's readings."""

    since: float
    word: EngineWord | None = None
    """The engine's last stat answer, if any came."""
    prebuffering_at: float | None = None
    """When the engine last said it prebuffers."""

    def heard(self, word: EngineWord, now: float) -> MediaWait:
        return MediaWait(self.since, word, now if word.prebuffering else self.prebuffering_at)

    @property
    def prebuffering(self) -> bool:
        return self.prebuffering_at is not None

    def deadline(self, bounds: WaitBounds) -> tuple[float, bool]:
        """When to stop waiting, and whether it is the prebuffer bound (True) rather than
        silence (False) that ends it then."""
        heard = self.since if self.prebuffering_at is None else self.prebuffering_at
        silent_at = heard + bounds.silence
        cap = self.since + max(bounds.prebuffer, bounds.silence)
        return (cap, True) if cap < silent_at else (silent_at, False)


def shown_state(state: State, wait: MediaWait | None) -> str:
    """The state as status pages show it: a stream whose engine says it is prebuffering
    is "prebuffering", whether it is starting or recovering."""
    if wait is not None and wait.prebuffering and state in (State.STARTING, State.RECOVERING):
        return "prebuffering"
    return state.value


class Failure(enum.Enum):
    """What went wrong with an upstream, as the retry policy tells the cases apart."""

    ENDED = "ended"
    """The engine ended the body or the session answered 'over': reopening may do."""
    LOST = "lost"
    """The engine did not answer: a new session, on another engine if the pool has one."""
    STALLED = "stalled"
    """No data for the empty timeout."""
    REJECTED = "rejected"
    """The engine refused this start, or answered something unreadable."""
    GONE = "gone"
    """The engine cannot load the content."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int | None
    """Failures in a row before the stream ends; None: no limit by count."""
    patience: float | None = None
    """Seconds of failures in a row before the stream ends; None: no limit by time."""
    reopens: bool = True
    """An ended upstream is first reopened, then replaced: an MPEG-TS read can be opened
    again; an HLS session whose playlist says it is over cannot."""
    healthy_run: float = 10.0
    """An upstream that served this long proved itself: its failure starts a fresh count."""
    first_delay: float = 0.25
    max_delay: float = 4.0


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float
    fresh_session: bool
    """Start a new engine session rather than reopen the current one."""
    avoid_engine: bool
    """The engine looks dead: tell the pool, so the new session goes elsewhere."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: EndReason


def failures_after(policy: RetryPolicy, failures: int, served_for: float) -> int:
    """The count of failures in a row, this one included."""
    return 1 if served_for >= policy.healthy_run else failures + 1


def after_failure(
    policy: RetryPolicy, failures: int, failure: Failure, failing_for: float = 0.0
) -> Retry | GiveUp:
    """What to do about the `failures`-th failure in a row (counted by `failures_after`),
    `failing_for` seconds after the first of them.

    The first retry is immediate, so a player barely notices a dead engine; later ones back
    off exponentially. A lost or stalled engine gets a new session at once; an ended body
    first gets its playback URL reopened, then a new session.
    """
    if failure is Failure.GONE:
        return GiveUp(EndReason.CONTENT_GONE)
    spent = (policy.retries is not None and failures > policy.retries) or (
        policy.patience is not None and failing_for >= policy.patience
    )
    if spent:
        return GiveUp(EndReason.NO_DATA if failure is Failure.STALLED else EndReason.ENGINE_ERROR)
    delay = (
        0.0 if failures <= 1 else min(policy.first_delay * 2 ** (failures - 1), policy.max_delay)
    )
    fresh = failure is not Failure.ENDED or failures > 1 or not policy.reopens
    return Retry(delay, fresh_session=fresh, avoid_engine=failure is Failure.LOST)


@dataclass(frozen=True, slots=True)
class Watch:
    """How a stream is watched right now, for the choice of which may make room."""

    clients: int
    """Connected clients (MPEG-TS); HLS has none to count."""
    last_request: float
    """When a client last asked anything of it."""
    quiet: float
    """How long without a request makes an HLS stream unwatched: about three playlist polls."""


def unwatched_since(watch: Watch) -> float | None:
    """Since when nobody watches, or None while somebody does (connected, or polling within
    `quiet`). Read against the same clock as `last_request`."""
    if watch.clients:
        return None
    return watch.last_request


def may_make_room(watch: Watch, now: float) -> bool:
    """Only a stream nobody is connected to and nobody asked anything of for `quiet` may be
    ended to make room for another: a watched stream is never knocked off."""
    since = unwatched_since(watch)
    return since is not None and now - since >= watch.quiet
