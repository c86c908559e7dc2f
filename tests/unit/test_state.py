"""The stream life table and its decisions, with plain data."""

from __future__ import annotations

import pytest

from hlsproxy.state import (
    TRANSITIONS,
    EndReason,
    EngineWord,
    Event,
    Failure,
    GiveUp,
    InvalidTransition,
    MediaWait,
    Retry,
    RetryPolicy,
    State,
    WaitBounds,
    Watch,
    advance,
    after_failure,
    failures_after,
    may_make_room,
    shown_state,
    takes_clients,
)


@pytest.mark.parametrize(
    ("path", "end"),
    [
        ([Event.SERVING], State.LIVE),
        ([Event.SERVING, Event.LOST, Event.LOST, Event.SERVING], State.LIVE),
        ([Event.LOST, Event.SERVING], State.LIVE),
        ([Event.SERVING, Event.LOST, Event.FINISH, Event.CLOSE], State.CLOSING),
        ([Event.CLOSE, Event.SERVING, Event.LOST, Event.CLOSE, Event.TORN_DOWN], State.CLOSED),
        ([Event.SERVING, Event.CLOSE, Event.TORN_DOWN, Event.CLOSE], State.CLOSED),
    ],
    ids=["start", "recover", "retry-start", "finish-then-close", "closing-ignores", "close-twice"],
)
def test_paths_through_the_table(path: list[Event], end: State) -> None:
    state = State.STARTING
    for event in path:
        state = advance(state, event)
    assert state is end


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (State.STARTING, Event.TORN_DOWN),
        (State.STARTING, Event.FINISH),
        (State.LIVE, Event.TORN_DOWN),
        (State.FINISHED, Event.SERVING),
        (State.CLOSED, Event.SERVING),
        (State.CLOSED, Event.TORN_DOWN),
    ],
    ids=lambda v: v.name,
)
def test_anything_else_is_a_bug(state: State, event: Event) -> None:
    with pytest.raises(InvalidTransition):
        advance(state, event)


def test_every_state_can_be_closed_and_only_closing_is_torn_down() -> None:
    for state in State:
        assert Event.CLOSE in TRANSITIONS[state], state
        assert (Event.TORN_DOWN in TRANSITIONS[state]) == (state is State.CLOSING)


def test_which_states_take_clients() -> None:
    assert {s for s in State if takes_clients(s)} == {
        State.STARTING,
        State.LIVE,
        State.RECOVERING,
        State.FINISHED,
    }


TS = RetryPolicy(retries=3)


def test_the_first_retry_is_immediate_then_backs_off() -> None:
    delays = [after_failure(TS, n, Failure.LOST) for n in (1, 2, 3)]
    assert [d.delay for d in delays if isinstance(d, Retry)] == [0.0, 0.5, 1.0]
    assert after_failure(TS, 4, Failure.LOST) == GiveUp(EndReason.ENGINE_ERROR)
    assert after_failure(TS, 4, Failure.STALLED) == GiveUp(EndReason.NO_DATA)


def test_an_ended_body_is_reopened_once_then_a_new_session_starts() -> None:
    assert after_failure(TS, 1, Failure.ENDED) == Retry(
        0.0, fresh_session=False, avoid_engine=False
    )
    second = after_failure(TS, 2, Failure.ENDED)
    assert isinstance(second, Retry) and second.fresh_session


def test_a_session_that_cannot_be_reopened_is_replaced_at_once() -> None:
    hls = RetryPolicy(retries=None, reopens=False)
    assert after_failure(hls, 1, Failure.ENDED) == Retry(
        0.0, fresh_session=True, avoid_engine=False
    )


def test_a_lost_engine_is_avoided_and_replaced_at_once() -> None:
    assert after_failure(TS, 1, Failure.LOST) == Retry(0.0, fresh_session=True, avoid_engine=True)


def test_content_gone_ends_at_once_whatever_the_policy() -> None:
    assert after_failure(RetryPolicy(retries=None), 1, Failure.GONE) == GiveUp(
        EndReason.CONTENT_GONE
    )


def test_patience_bounds_retries_in_time() -> None:
    hls = RetryPolicy(retries=None, patience=60.0)
    assert isinstance(after_failure(hls, 500, Failure.LOST, failing_for=59.0), Retry)
    assert after_failure(hls, 2, Failure.LOST, failing_for=60.0) == GiveUp(EndReason.ENGINE_ERROR)
    assert after_failure(hls, 50, Failure.LOST).delay == hls.max_delay  # type: ignore[union-attr]


def test_a_healthy_run_starts_the_count_anew() -> None:
    assert failures_after(TS, 3, served_for=10.0) == 1
    assert failures_after(TS, 3, served_for=9.9) == 4


@pytest.mark.parametrize(
    ("watch", "now", "may"),
    [
        (Watch(clients=1, last_request=0.0, quiet=0.0), 100.0, False),
        (Watch(clients=0, last_request=0.0, quiet=0.0), 0.0, True),
        (Watch(clients=0, last_request=90.0, quiet=15.0), 100.0, False),
        (Watch(clients=0, last_request=85.0, quiet=15.0), 100.0, True),
    ],
    ids=["connected", "lingering", "polled-lately", "quiet"],
)
def test_only_an_unwatched_stream_may_make_room(watch: Watch, now: float, may: bool) -> None:
    assert may_make_room(watch, now) is may


@pytest.mark.parametrize(
    ("reason", "mode", "word"),
    [
        (EndReason.IDLE, "ts", "client_disconnected"),
        (EndReason.IDLE, "hls", "stream_timeout"),
        (EndReason.NO_DATA, "ts", "empty_timeout"),
        (EndReason.FAILED_OVER, "hls", "engine_error"),
        (EndReason.SHUTDOWN, "ts", "shutdown"),
    ],
    ids=lambda v: getattr(v, "value", v),
)
def test_end_reasons_in_the_orchestrators_words(reason: EndReason, mode: str, word: str) -> None:
    assert reason.event_reason(mode) == word


BOUNDS = WaitBounds(silence=10.0, prebuffer=120.0)
PREBUF = EngineWord("prebuf", peers=3, speed_down=200, progress=20)


def _heard(*words: tuple[float, EngineWord]) -> MediaWait:
    wait = MediaWait(since=100.0)
    for at, word in words:
        wait = wait.heard(word, at)
    return wait


@pytest.mark.parametrize(
    ("words", "deadline"),
    [
        pytest.param((), (110.0, False), id="silence-from-the-start"),
        pytest.param(((101.0, EngineWord("")),), (110.0, False), id="an-empty-stat-is-no-word"),
        pytest.param(((101.0, EngineWord("dl")),), (110.0, False), id="dl-without-media"),
        pytest.param(((105.0, PREBUF),), (115.0, False), id="prebuf-extends"),
        pytest.param(
            ((105.0, PREBUF), (112.0, EngineWord("dl"))), (115.0, False), id="dl-after-prebuf"
        ),
        pytest.param(((150.0, PREBUF), (215.0, PREBUF)), (220.0, True), id="capped-by-prebuffer"),
    ],
)
def test_a_media_wait_lasts_while_the_engine_says_it_prebuffers(
    words: tuple[tuple[float, EngineWord], ...], deadline: tuple[float, bool]
) -> None:
    assert _heard(*words).deadline(BOUNDS) == deadline


def test_a_prebuffer_bound_below_the_silence_bound_never_shortens_the_wait() -> None:
    assert MediaWait(since=0.0).deadline(WaitBounds(silence=10.0, prebuffer=3.0)) == (10.0, False)


def test_the_last_word_is_kept_and_prebuffering_remembered() -> None:
    wait = _heard((101.0, PREBUF), (102.0, EngineWord("idle")))
    assert wait.word == EngineWord("idle")
    assert wait.prebuffering
    assert not _heard((101.0, EngineWord("idle"))).prebuffering


@pytest.mark.parametrize(
    ("state", "wait", "shown"),
    [
        pytest.param(State.STARTING, None, "starting", id="starting"),
        pytest.param(State.STARTING, MediaWait(0.0), "starting", id="waiting-not-yet-prebuf"),
        pytest.param(State.STARTING, _heard((101.0, PREBUF)), "prebuffering", id="prebuffering"),
        pytest.param(
            State.RECOVERING, _heard((101.0, PREBUF)), "prebuffering", id="recovering-prebuf"
        ),
        pytest.param(State.CLOSING, _heard((101.0, PREBUF)), "closing", id="closing"),
    ],
)
def test_a_prebuffering_stream_is_shown_as_such(
    state: State, wait: MediaWait | None, shown: str
) -> None:
    assert shown_state(state, wait) == shown
