"""An HLS stream's players, with plain data: requests, figures, the idle deadline, and
whether the stream may make room for another."""

from __future__ import annotations

from hlsproxy.hls.audience import QUIET_POLLS, Audience


def test_a_request_moves_the_idle_deadline_and_counts() -> None:
    audience = Audience(since=100.0, stream_timeout=60.0)
    assert audience.idle_deadline() == 160.0
    audience.touch(130.0)
    audience.touch(140.0)
    assert audience.idle_deadline() == 200.0
    assert audience.requests == 2
    audience.used(150.0)  # served within a request already counted
    assert audience.idle_deadline() == 210.0
    assert audience.requests == 2


def test_bytes_out_and_cache_lookups_add_up() -> None:
    audience = Audience(since=0.0, stream_timeout=60.0)
    audience.served(1000)
    audience.served(500)
    audience.looked_up(True)
    audience.looked_up(False)
    audience.looked_up(True)
    assert (audience.bytes_out, audience.lookups, audience.hits) == (1500, 3, 2)


def test_a_player_counts_until_it_misses_a_few_polls() -> None:
    audience = Audience(since=0.0, stream_timeout=60.0)
    audience.seen_by(b"hls.js", 10.0)
    audience.seen_by(b"hls.js", 11.0)
    audience.seen_by(b"mpv", 12.0)
    assert audience.clients(12.0, target=2.0) == 2
    assert audience.clients(11.0 + QUIET_POLLS * 2.0 + 0.5, target=2.0) == 1


def test_a_stream_nobody_polled_for_a_few_target_durations_may_make_room() -> None:
    audience = Audience(since=0.0, stream_timeout=60.0)
    audience.touch(100.0)
    assert not audience.may_make_room(100.0 + QUIET_POLLS * 6.0 - 1, target=6.0)
    assert audience.may_make_room(100.0 + QUIET_POLLS * 6.0 + 1, target=6.0)
