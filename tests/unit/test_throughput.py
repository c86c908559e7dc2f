"""Bit rates from byte counters, with time passed in by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlsproxy.throughput import RateMeter, Sample, Throughput

MBIT = 1_000_000
# Bytes per second for one megabit per second.
MBIT_BYTES = MBIT // 8


def feed(
    meter: Throughput, *, start: float, end: float, step: float, bytes_in: int, bytes_out: int
) -> tuple[int, int]:
    """Readings every `step` seconds from `start` to `end` inclusive, at constant byte rates
    from totals of zero; returns the last totals."""
    total_in = total_out = 0
    n = 0
    while start + n * step <= end + 1e-9:
        now = start + n * step
        total_in = round((now - start) * bytes_in)
        total_out = round((now - start) * bytes_out)
        meter.record(now, total_in, total_out)
        n += 1
    return total_in, total_out


# --- Throughput ----------------------------------------------------------------------------------


def test_a_first_reading_is_only_a_start() -> None:
    meter = Throughput(interval=5)
    meter.record(100.0, 10_000_000, 20_000_000)
    assert meter.samples() == []
    assert meter.rate(100.0) == (0.0, 0.0)


def test_steady_traffic_gives_one_sample_per_interval_at_its_rate() -> None:
    meter = Throughput(interval=5)
    feed(meter, start=0, end=20, step=1, bytes_in=MBIT_BYTES, bytes_out=3 * MBIT_BYTES)

    assert meter.samples() == [
        Sample(at=at, bits_in=MBIT, bits_out=3 * MBIT) for at in (5.0, 10.0, 15.0, 20.0)
    ]
    assert meter.rate(20.0) == (MBIT, 3 * MBIT)


def test_a_sample_covers_the_time_it_pooled_when_readings_come_late() -> None:
    meter = Throughput(interval=5)
    meter.record(0.0, 0, 0)
    meter.record(3.0, 300, 600)  # not an interval yet: pooled
    meter.record(12.0, 1_200, 2_400)

    assert meter.samples() == [Sample(at=12.0, bits_in=800.0, bits_out=1_600.0)]


def test_frequent_readings_give_the_same_rate_as_sparse_ones() -> None:
    often, seldom = Throughput(interval=5), Throughput(interval=5)
    feed(often, start=0, end=10, step=0.25, bytes_in=40_000, bytes_out=8_000)
    feed(seldom, start=0, end=10, step=5, bytes_in=40_000, bytes_out=8_000)

    assert [s.at for s in often.samples()] == [s.at for s in seldom.samples()] == [5.0, 10.0]
    for a, b in zip(often.samples(), seldom.samples(), strict=True):
        assert a.bits_in == pytest.approx(b.bits_in) == 320_000
        assert a.bits_out == pytest.approx(b.bits_out) == 64_000


def test_the_rate_follows_the_newest_sample() -> None:
    meter = Throughput(interval=1)
    meter.record(0.0, 0, 0)
    meter.record(1.0, 1_000, 0)
    meter.record(2.0, 11_000, 500)
    assert meter.rate(2.0) == (80_000.0, 4_000.0)


@pytest.mark.parametrize(
    ("which", "totals"),
    [
        ("in", [(0, 0), (5_000, 5_000), (1_000, 10_000), (2_000, 15_000)]),
        ("out", [(0, 0), (5_000, 5_000), (10_000, 1_000), (15_000, 2_000)]),
        ("both", [(0, 0), (5_000, 5_000), (0, 0), (1_000, 1_000)]),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_total_that_goes_down_starts_afresh_without_a_negative_rate(
    which: str, totals: list[tuple[int, int]]
) -> None:
    """A stream ending takes its bytes out of the sum: the drop is neither negative traffic
    nor a burst of the whole new total."""
    meter = Throughput(interval=1)
    for t, (total_in, total_out) in enumerate(totals):
        meter.record(float(t), total_in, total_out)

    samples = meter.samples()
    assert len(samples) == 3
    assert all(s.bits_in >= 0 and s.bits_out >= 0 for s in samples)
    dropped, after = samples[1], samples[2]
    if which in ("in", "both"):
        assert dropped.bits_in == 0
        assert after.bits_in == 1_000 * 8
    else:
        assert dropped.bits_in == 5_000 * 8
    if which in ("out", "both"):
        assert dropped.bits_out == 0
        assert after.bits_out == 1_000 * 8
    else:
        assert dropped.bits_out == 5_000 * 8


def test_a_drop_inside_an_interval_keeps_the_bytes_before_and_after_it() -> None:
    meter = Throughput(interval=10)
    meter.record(0.0, 0, 0)
    meter.record(4.0, 4_000, 0)
    meter.record(5.0, 500, 0)  # a stream ended: its 4 000 bytes left the sum
    meter.record(10.0, 1_500, 0)

    # 4 000 before the drop and 1 000 after it, over ten seconds.
    assert meter.samples() == [Sample(at=10.0, bits_in=5_000 * 8 / 10, bits_out=0.0)]


def test_history_keeps_at_most_keep_over_interval_samples_oldest_first() -> None:
    meter = Throughput(interval=1, keep=10)
    feed(meter, start=0, end=100, step=1, bytes_in=1_000, bytes_out=0)

    samples = meter.samples()
    assert [s.at for s in samples] == [float(t) for t in range(91, 101)]


def test_samples_older_than_keep_go_after_a_gap_in_readings() -> None:
    meter = Throughput(interval=1, keep=10)
    feed(meter, start=0, end=8, step=1, bytes_in=1_000, bytes_out=0)
    assert len(meter.samples()) == 8

    meter.record(500.0, 9_000, 0)

    # One sample spans the silence; nothing from before it is within the last ten seconds.
    assert meter.samples() == [Sample(at=500.0, bits_in=1_000 * 8 / 492, bits_out=0.0)]


def test_retention_counts_whole_intervals_despite_float_rounding() -> None:
    meter = Throughput(interval=0.1, keep=0.3)
    for n in range(20):
        meter.record(n / 10, n * 100, 0)
    assert len(meter.samples()) == 3


def test_the_rate_is_zero_once_the_sampler_stops_being_fed() -> None:
    meter = Throughput(interval=5)
    feed(meter, start=0, end=10, step=5, bytes_in=1_000, bytes_out=1_000)

    assert meter.rate(20.0) == (8_000.0, 8_000.0)
    assert meter.rate(20.1) == (0.0, 0.0)
    # The history itself is kept for the graph.
    assert len(meter.samples()) == 2


def test_a_clock_that_goes_back_starts_the_history_afresh() -> None:
    meter = Throughput(interval=1)
    meter.record(10.0, 0, 0)
    meter.record(11.0, 1_000, 1_000)
    meter.record(3.0, 2_000, 2_000)
    assert meter.samples() == []
    meter.record(3.5, 3_000, 3_000)
    meter.record(4.0, 3_500, 3_500)

    assert meter.samples() == [Sample(at=4.0, bits_in=12_000.0, bits_out=12_000.0)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"interval": -1},
        {"interval": math.nan},
        {"keep": 0},
        {"keep": math.inf},
        {"interval": 10, "keep": 5},
    ],
    ids=["zero-interval", "negative-interval", "nan-interval", "zero-keep", "inf-keep", "keep<int"],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"interval|keep"):
        Throughput(**kwargs)


readings = st.lists(
    st.tuples(
        st.floats(min_value=0.01, max_value=7, allow_nan=False),
        st.integers(min_value=0, max_value=10**7),
        st.integers(min_value=0, max_value=10**7),
    ),
    min_size=1,
    max_size=60,
)


@given(readings)
def test_monotonic_totals_are_accounted_for_to_the_byte(
    steps: list[tuple[float, int, int]],
) -> None:
    """Every byte between the first reading and the last sample is in exactly one sample."""
    meter = Throughput(interval=2, keep=10**6)
    now, total_in, total_out = 0.0, 0, 0
    meter.record(now, 0, 0)
    totals_at: dict[float, tuple[int, int]] = {}
    for dt, add_in, add_out in steps:
        now += dt
        total_in += add_in
        total_out += add_out
        meter.record(now, total_in, total_out)
        totals_at[now] = (total_in, total_out)

    samples = meter.samples()
    start = 0.0
    counted_in = counted_out = 0.0
    for s in samples:
        assert s.at - start >= 2
        counted_in += s.bits_in * (s.at - start) / 8
        counted_out += s.bits_out * (s.at - start) / 8
        start = s.at
    if samples:
        expect_in, expect_out = totals_at[samples[-1].at]
        assert counted_in == pytest.approx(expect_in, rel=1e-9, abs=1e-6)
        assert counted_out == pytest.approx(expect_out, rel=1e-9, abs=1e-6)


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=-1, max_value=3, allow_nan=False),
            st.integers(min_value=0, max_value=10**9),
            st.integers(min_value=0, max_value=10**9),
        ),
        max_size=80,
    )
)
def test_any_totals_give_finite_non_negative_rates_within_retention(
    steps: list[tuple[float, int, int]],
) -> None:
    meter = Throughput(interval=1, keep=8)
    rates = RateMeter(window=2)
    now = 0.0
    for dt, total_in, total_out in steps:
        now += dt
        meter.record(now, total_in, total_out)
        rates.update(now, total_in, total_out)
        for value in (*meter.rate(now), *rates.rate(now)):
            assert math.isfinite(value)
            assert value >= 0

    samples = meter.samples()
    assert len(samples) <= 8
    assert [s.at for s in samples] == sorted(s.at for s in samples)
    assert all(math.isfinite(s.bits_in) and s.bits_in >= 0 for s in samples)
    assert all(math.isfinite(s.bits_out) and s.bits_out >= 0 for s in samples)


# --- RateMeter -----------------------------------------------------------------------------------


def test_a_meter_needs_two_readings() -> None:
    meter = RateMeter(window=5)
    assert meter.rate(0.0) == (0.0, 0.0)
    meter.update(0.0, 1_000_000, 1_000_000)
    assert meter.rate(0.0) == (0.0, 0.0)
    meter.update(1.0, 1_125_000, 1_250_000)
    assert meter.rate(1.0) == (MBIT, 2 * MBIT)


def test_a_meter_averages_over_its_window_and_forgets_what_came_before() -> None:
    meter = RateMeter(window=5)
    total = 0
    for t in range(21):
        meter.update(float(t), total, 2 * total)
        if t == 10:
            assert meter.rate(10.0) == (MBIT, 2 * MBIT)
        if t == 12:
            # The 5 s from 7 to 12: three at 1 Mbit/s, then two at 3 Mbit/s.
            assert meter.rate(12.0)[0] == pytest.approx((3 * 1 + 2 * 3) / 5 * MBIT)
        # Traffic triples from the tenth second on.
        total += MBIT_BYTES if t < 10 else 3 * MBIT_BYTES
    assert meter.rate(20.0) == (3 * MBIT, 6 * MBIT)


def test_a_meter_counts_a_new_session_from_its_first_reading() -> None:
    meter = RateMeter(window=10)
    meter.update(0.0, 0, 0)
    meter.update(1.0, 50_000, 80_000)
    meter.update(2.0, 1_000, 2_000)  # the session restarted its counts
    meter.update(3.0, 21_000, 42_000)

    rate_in, rate_out = meter.rate(3.0)
    # 50 000 + 0 + 20 000 bytes in three seconds; the drop itself adds nothing.
    assert rate_in == pytest.approx(70_000 * 8 / 3)
    assert rate_out == pytest.approx(120_000 * 8 / 3)


def test_a_meter_reads_zero_once_readings_stop() -> None:
    meter = RateMeter(window=5)
    meter.update(0.0, 0, 0)
    meter.update(5.0, 5_000, 5_000)
    assert meter.rate(10.0) == (8_000.0, 8_000.0)
    assert meter.rate(10.5) == (0.0, 0.0)


def test_a_stalled_stream_decays_to_zero_within_a_window() -> None:
    meter = RateMeter(window=3)
    for t in range(5):
        meter.update(float(t), t * 1_000, t * 1_000)
    for t in range(5, 9):
        meter.update(float(t), 4_000, 4_000)
    assert meter.rate(8.0) == (0.0, 0.0)


def test_readings_a_moment_apart_do_not_make_a_wild_rate() -> None:
    meter = RateMeter(window=5)
    meter.update(0.0, 0, 0)
    meter.update(0.001, 64_000, 0)
    # Measured over half a second (a tenth of the window), not one millisecond.
    assert meter.rate(0.001) == (64_000 * 8 / 0.5, 0.0)
    meter.update(1.0, 125_000, 0)
    assert meter.rate(1.0) == (1_000_000.0, 0.0)


def test_a_meter_refuses_a_window_of_no_time() -> None:
    with pytest.raises(ValueError, match="window"):
        RateMeter(window=0)
