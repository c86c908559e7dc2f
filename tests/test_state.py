"""The stream life table and its decisions, with plain data."""

from __future__ import annotations

import pytest

from hlsproxy.state import (
    TRANSITIONS,
    EndReason,
    Event,
    Failure,
    GiveUp,
    InvalidTransition,
    Retry,
    RetryPolicy,
    State,
    Watch,
    advance,
    after_failure,
    failures_after,
    may_make_room,
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
