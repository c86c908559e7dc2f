"""A channel's bitrate from its keyframes' time stamps, with plain numbers."""

from __future__ import annotations

import pytest

from hlsproxy.sim.media import MediaLoop, pad
from hlsproxy.ts.media_rate import CLOCK_HZ, MediaRate
from hlsproxy.ts.packets import TsScanner

SECOND = CLOCK_HZ


def test_no_rate_until_two_seconds_of_media() -> None:
    rate = MediaRate()
    assert rate.bytes_per_second() is None
    rate.add(0, 10 * SECOND)
    assert rate.bytes_per_second() is None
    rate.add(500_000, 11 * SECOND)
    assert rate.bytes_per_second() is None
    rate.add(1_000_000, 12 * SECOND)
    assert rate.bytes_per_second() == 500_000


def test_bytes_per_second_of_media_however_fast_they_came() -> None:
    rate = MediaRate()
    # 0.5 MB per second of media: the same whether it came in a burst or in real time
    for n in range(40):
        rate.add(n * 1_000_000, n * 2 * SECOND)
    assert rate.bytes_per_second() == 500_000


@pytest.mark.parametrize(
    "next_pts",
    [5 * SECOND, 3600 * SECOND, 0],
    ids=["back-in-time", "an-hour-ahead", "time-stamps-wrapped"],
)
def test_a_jump_in_time_starts_the_measure_over(next_pts: int) -> None:
    rate = MediaRate()
    for n in range(5):
        rate.add(n * 1_000_000, 100 * SECOND + n * SECOND)
    rate.add(6_000_000, next_pts)
    assert rate.bytes_per_second() is None
    rate.add(6_250_000, next_pts + SECOND)
    rate.add(6_500_000, next_pts + 2 * SECOND)
    assert rate.bytes_per_second() == 250_000


def test_the_rate_follows_the_last_half_minute() -> None:
    rate = MediaRate()
    for n in range(60):  # a minute at 100 kB/s
        rate.add(n * 100_000, n * SECOND)
    for n in range(60, 120):  # then a minute at 400 kB/s
        rate.add(6_000_000 + (n - 60) * 400_000, n * SECOND)
    assert rate.bytes_per_second() == pytest.approx(400_000)


def test_the_simulated_channels_bitrate_from_its_join_points() -> None:
    loop = MediaLoop.load()
    scanner = TsScanner()
    rate = MediaRate()
    position = 0
    bitrate = 4_000_000
    for n in range(12):
        data = pad(loop.segment(n), round(bitrate * loop.duration(n) / 8))
        for join in scanner.scan(data):
            assert join.pts is not None
            rate.add(position + join.offset, join.pts)
        position += len(data)
    measured = rate.bytes_per_second()
    assert measured is not None
    assert measured * 8 == pytest.approx(bitrate, rel=0.05)
