"""Cutting MPEG-TS into HLS segments: the simulator's real media, cut and decoded by ffmpeg."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache

import pytest

from hlsproxy.sim.media import MediaLoop
from hlsproxy.ts.packets import PACKET_SIZE, TsScanner
from hlsproxy.ts.segmenter import Segment, Segmenter, read_pts
from tests.helpers import decode_warnings

AUDIO_ONLY = ("-map", "0:a", "-c", "copy", "-f", "mpegts", "pipe:1")
CHUNK = 64 * 1024 // PACKET_SIZE * PACKET_SIZE


@cache
def channel(loops: int = 2) -> bytes:
    """`loops` times the simulator's 16 s loop, time stamps running on (1 s between keyframes)."""
    media = MediaLoop.load()
    return b"".join(media.segment(n) for n in range(loops * media.segment_count))


@cache
def radio() -> bytes:
    """The same channel's audio alone, as a radio channel would send it."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is missing: ./scripts/test installs it"
    done = subprocess.run(
        [ffmpeg, "-v", "error", "-f", "mpegts", "-i", "pipe:0", *AUDIO_ONLY],
        input=channel(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def video_times(data: bytes) -> tuple[int, int]:
    """The first and the latest presentation time of the video in `data`."""
    scanner = TsScanner()
    scanner.scan(data)
    times = [
        pts
        for i in range(0, len(data), PACKET_SIZE)
        if ((data[i + 1] & 0x1F) << 8 | data[i + 2]) == scanner.video_pid
        and (pts := read_pts(data[i : i + PACKET_SIZE])) is not None
    ]
    return times[0], max(times)


def cut(data: bytes, target: float, chunk: int = CHUNK) -> list[Segment]:
    segmenter = Segmenter(target)
    out: list[Segment] = []
    for i in range(0, len(data), chunk):
        out += segmenter.feed(data[i : i + chunk])
    return out


def pids(segment: Segment, count: int) -> list[int]:
    data = segment.data
    return [((data[i + 1] & 0x1F) << 8) | data[i + 2] for i in range(0, count * PACKET_SIZE, 188)]


@pytest.mark.parametrize("target", [2.0, 3.0, 4.0, 6.0], ids=["2s", "3s", "4s", "6s"])
def test_segments_are_cut_near_the_target_at_keyframes(target: float) -> None:
    segments = cut(channel(), target)
    # 32 s of media: the segment under way at the end is not out yet.
    assert 32 - 1.5 * target <= sum(s.duration for s in segments) <= 32
    for segment in segments[1:]:
        assert abs(segment.duration - target) <= target / 2
    for segment in segments:
        assert len(segment.data) % PACKET_SIZE == 0
        pat, pmt, first = pids(segment, 3)
        assert pat == 0 and pmt != 0
        scanner = TsScanner()
        joins = scanner.scan(segment.data)
        assert joins and joins[0].offset == 2 * PACKET_SIZE  # a keyframe right after them
        assert first == scanner.video_pid
        assert not segment.discontinuity


def test_the_chunking_of_the_input_changes_nothing() -> None:
    whole = cut(channel(), 2.0, chunk=len(channel()))
    small = cut(channel(), 2.0, chunk=7 * PACKET_SIZE)
    assert [s.data for s in whole] == [s.data for s in small]


def test_every_segment_decodes_on_its_own_and_all_of_them_in_a_row() -> None:
    segments = cut(channel(), 2.0)
    for segment in segments:
        assert decode_warnings(segment.data) == ""
    # Nothing lost or doubled between segments: the concatenation is the stream itself.
    joined = b"".join(s.data[2 * PACKET_SIZE :] for s in segments)
    assert joined in channel()


def test_durations_add_up_to_the_presentation_times() -> None:
    segments = cut(channel(), 2.0)
    starts = [read_pts(s.data[2 * PACKET_SIZE : 3 * PACKET_SIZE]) for s in segments]
    assert None not in starts
    for segment, start, following in zip(segments, starts, starts[1:], strict=False):
        assert segment.duration == pytest.approx((following - start) / 90_000)  # type: ignore[operator]


def test_a_radio_channel_is_cut_by_time() -> None:
    segments = cut(radio(), 2.0)
    assert len(segments) >= 12
    for segment in segments:
        assert abs(segment.duration - 2.0) <= 0.1  # an AAC PES is a few frames long
        assert decode_warnings(segment.data) == ""
        assert TsScanner().scan(segment.data)[0].offset == 2 * PACKET_SIZE


def test_a_break_ends_the_segment_under_way_and_marks_the_next() -> None:
    data = channel()
    half = len(data) // 2 // PACKET_SIZE * PACKET_SIZE
    segmenter = Segmenter(2.0)
    before = segmenter.feed(data[: half // 2])
    # Another upstream: the stream from its start again, time stamps going back.
    at_break = segmenter.feed(data[:half], discontinuity=True)
    assert at_break[0].discontinuity is False  # the segment cut short by the break
    assert 0 < at_break[0].duration <= 2.0 + 1
    assert at_break[1].discontinuity is True
    assert not any(s.discontinuity for s in at_break[2:])
    # It ends where the last frame fed before the break ends: one frame (40 ms) after it.
    first, last = video_times(data[: half // 2])
    cut_off = sum(s.duration for s in before + at_break[:1])
    assert cut_off == pytest.approx((last - first) / 90_000 + 0.04)
    for segment in at_break:
        assert decode_warnings(segment.data) == ""


def test_time_stamps_that_go_back_unannounced_are_a_break() -> None:
    data = channel()
    quarter = len(data) // 4 // PACKET_SIZE * PACKET_SIZE
    segments = cut(data[:quarter] + data[:quarter], 2.0)
    marked = [i for i, s in enumerate(segments) if s.discontinuity]
    assert len(marked) == 1
    assert all(0 < s.duration <= 3.0 for s in segments)


def test_packets_must_be_whole() -> None:
    with pytest.raises(ValueError, match="whole number of packets"):
        Segmenter(2.0).feed(b"\x47" * 100)
