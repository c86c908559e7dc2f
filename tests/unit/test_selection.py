"""Engine choice with plain data."""

from __future__ import annotations

import pytest

from hlsproxy.engine.selection import Candidate, choose


def engine(name: str, **kw: object) -> Candidate:
    return Candidate(engine_id=name, host=name, port=6878, **kw)  # type: ignore[arg-type]


def test_fewest_sessions_wins_among_healthy() -> None:
    pool = [engine("a", health="healthy", sessions=1), engine("b", health="healthy")]
    assert choose(pool, ours={}, max_per_engine=2) == pool[1]


def test_our_own_counts_win_between_refreshes() -> None:
    pool = [engine("a", health="healthy"), engine("b", health="healthy")]
    first = choose(pool, ours={}, max_per_engine=3)
    assert first is not None
    second = choose(pool, ours={first.engine_id: 1}, max_per_engine=3)
    assert second is not None and second.engine_id != first.engine_id


def test_full_engines_are_skipped_and_none_when_all_are_full() -> None:
    pool = [engine("a", health="healthy", sessions=1), engine("b", health="healthy")]
    assert choose(pool, ours={"b": 1}, max_per_engine=1) is None
    assert choose(pool, ours={}, max_per_engine=1) == pool[1]


@pytest.mark.parametrize(
    ("pool", "expected"),
    [
        ([engine("a", health="unknown"), engine("b", health="healthy", sessions=1)], "b"),
        ([engine("a", health="unhealthy"), engine("b", health="unknown")], "b"),
        ([engine("a", health="healthy"), engine("b", health="healthy", forwarded=True)], "b"),
        (
            [
                engine("a", health="healthy", last_used=20),
                engine("b", health="healthy", last_used=10),
            ],
            "b",
        ),
    ],
    ids=["healthy-before-load", "never-unhealthy", "forwarded-first", "least-recently-used"],
)
def test_ordering(pool: list[Candidate], expected: str) -> None:
    chosen = choose(pool, ours={}, max_per_engine=5)
    assert chosen is not None and chosen.engine_id == expected


def test_nothing_to_choose_from() -> None:
    assert choose([], ours={}, max_per_engine=1) is None
    assert choose([engine("a", health="unhealthy")], ours={}, max_per_engine=1) is None


def test_engines_that_take_nothing_new_are_skipped() -> None:
    pool = [engine("a", health="healthy", accepts=False), engine("b", health="healthy", sessions=1)]
    assert choose(pool, ours={}, max_per_engine=2) == pool[1]
    assert choose(pool[:1], ours={}, max_per_engine=2) is None
