"""The simulator's live channel: real segments looped forever with continuous timing."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from hlsproxy.sim.media import (
    CLOCK_HZ,
    MEDIA_DIR,
    NULL_PID,
    PACKET_SIZE,
    MediaLoop,
    pad,
    pcrs,
    timestamps,
)

WRAP = 1 << 33
PMT_PID = 0x1000
VIDEO_PID = 0x100

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg is not installed",
)


@pytest.fixture(scope="module")
def media() -> MediaLoop:
    return MediaLoop.load()


def pids(data: bytes) -> list[int]:
    return [((data[i + 1] & 0x1F) << 8) | data[i + 2] for i in range(0, len(data), PACKET_SIZE)]


def first_pes(data: bytes, pid: int) -> bytes:
    """The payload of the first PES packet on `pid`, across TS packets."""
    out = bytearray()
    started = False
    for i in range(0, len(data), PACKET_SIZE):
        packet = data[i : i + PACKET_SIZE]
        if ((packet[1] & 0x1F) << 8 | packet[2]) != pid:
            continue
        unit_start = bool(packet[1] & 0x40)
        if unit_start and started:
            break
        started = started or unit_start
        if not started:
            continue
        control = packet[3] >> 4 & 0x3
        start = 5 + packet[4] if control & 0x2 else 4
        out += packet[start:]
    return bytes(out)


def nal_types(es: bytes) -> list[int]:
    types = []
    at = es.find(b"\x00\x00\x01")
    while at != -1:
        types.append(es[at + 3] & 0x1F)
        at = es.find(b"\x00\x00\x01", at + 3)
    return types


def continuity_errors(data: bytes) -> int:
    last: dict[int, int] = {}
    errors = 0
    for i in range(0, len(data), PACKET_SIZE):
        pid = ((data[i + 1] & 0x1F) << 8) | data[i + 2]
        has_payload = bool(data[i + 3] & 0x10)
        cc = data[i + 3] & 0x0F
        if pid in last and pid != NULL_PID:
            expected = (last[pid] + 1) % 16 if has_payload else last[pid]
            errors += cc != expected
        last[pid] = cc
    return errors


def test_the_fixture_is_four_segments_of_exactly_four_seconds(media: MediaLoop) -> None:
    assert media.segment_count == 4
    assert [media.duration(n) for n in range(8)] == [4.0] * 8
    assert media.loop_duration == 16.0
    assert sum(len(media.segment(n)) for n in range(4)) < 1_000_000


def test_start_and_index_at_agree(media: MediaLoop) -> None:
    assert [media.start(n) for n in (0, 1, 4, 9)] == [0.0, 4.0, 16.0, 36.0]
    assert [media.index_at(t) for t in (0.0, 3.999, 4.0, 17.0, 36.0)] == [0, 0, 1, 4, 9]


@pytest.mark.parametrize("n", [0, 1, 3, 4, 7, 1001], ids=lambda n: f"segment{n}")
def test_every_segment_opens_with_pat_pmt_and_an_idr(media: MediaLoop, n: int) -> None:
    data = media.segment(n)
    assert len(data) % PACKET_SIZE == 0
    assert all(data[i] == 0x47 for i in range(0, len(data), PACKET_SIZE))
    assert pids(data)[:2] == [0x0000, PMT_PID]
    types = nal_types(first_pes(data, VIDEO_PID))
    assert 5 in types, f"no IDR slice in the first video frame: NAL types {types}"
    assert 1 not in types[: types.index(5)]


def test_the_same_number_gives_the_same_bytes(media: MediaLoop) -> None:
    wanted = media.segment(13)
    for n in range(20):  # more than the memo holds
        media.segment(n)
    assert media.segment(13) == wanted
    assert MediaLoop.load().segment(13) == wanted


def test_a_later_loop_is_shifted_by_whole_loops(media: MediaLoop) -> None:
    shift = round(media.loop_duration * CLOCK_HZ)
    for n in range(4):
        early, late = timestamps(media.segment(n)), timestamps(media.segment(n + 8))
        assert [(t.pid, t.pts + 2 * shift, t.dts + 2 * shift) for t in early] == late
        assert [p + 2 * shift for p in pcrs(media.segment(n))] == pcrs(media.segment(n + 8))


def test_timing_and_counters_run_on_through_ten_segments(media: MediaLoop) -> None:
    data = b"".join(media.segment(n) for n in range(10))
    by_pid: dict[int, list[int]] = defaultdict(list)
    for t in timestamps(data):
        by_pid[t.pid].append(t.dts)
    assert set(by_pid) == {VIDEO_PID, VIDEO_PID + 1}
    for dts in by_pid.values():
        assert all(b > a for a, b in itertools.pairwise(dts))
    video = by_pid[VIDEO_PID]
    assert video[-1] - video[0] == 10 * 4 * CLOCK_HZ - CLOCK_HZ // 25
    clock = pcrs(data)
    assert all(b > a for a, b in itertools.pairwise(clock))
    assert continuity_errors(data) == 0


def test_timestamps_wrap_at_33_bits(media: MediaLoop) -> None:
    loops_to_wrap = WRAP // round(media.loop_duration * CLOCK_HZ)
    first = loops_to_wrap * media.segment_count - 2
    data = b"".join(media.segment(n) for n in range(first, first + 6))
    video = [t.dts for t in timestamps(data) if t.pid == VIDEO_PID]
    assert max(video) < WRAP
    assert video[-1] < video[0], "the stream should have wrapped"
    steps = {(b - a) % WRAP for a, b in itertools.pairwise(video)}
    assert steps == {CLOCK_HZ // 25}
    assert continuity_errors(data) == 0


@needs_ffmpeg
def test_ffmpeg_decodes_ten_segments_without_a_warning(media: MediaLoop) -> None:
    data = b"".join(media.segment(n) for n in range(10))
    run = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "warning", "-i", "-", "-f", "null", "-"],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0
    assert run.stderr.decode() == ""


@needs_ffmpeg
def test_ffprobe_sees_monotonic_pts_and_both_streams(media: MediaLoop) -> None:
    data = b"".join(media.segment(n) for n in range(10))
    run = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts,dts:stream=codec_name",
            "-of",
            "csv=p=0",
            "-",
        ],
        input=data,
        capture_output=True,
        timeout=60,
        check=True,
    )
    lines = [line.strip(",") for line in run.stdout.decode().split()]
    assert {"h264", "aac"} <= set(lines)
    pts: dict[str, list[int]] = defaultdict(list)
    dts: dict[str, list[int]] = defaultdict(list)
    for line in lines:
        parts = line.split(",")
        if len(parts) == 3:
            pts[parts[0]].append(int(parts[1]))
            dts[parts[0]].append(int(parts[2]))
    for values in dts.values():
        assert all(b > a for a, b in itertools.pairwise(values))
    # Audio is presented in decode order; video frames, once reordered, follow each other
    # one frame apart for 40 s with no gap and no repeat.
    assert all(b > a for a, b in zip(pts["1"], pts["1"][1:], strict=False))
    video = sorted(pts["0"])
    assert len(video) == 10 * 100
    assert {b - a for a, b in itertools.pairwise(video)} == {CLOCK_HZ // 25}


def test_pad_spreads_null_packets_and_keeps_the_media(media: MediaLoop) -> None:
    segment = media.segment(0)
    padded = pad(segment, 3 * len(segment))
    assert len(padded) == 3 * len(segment)
    assert padded[:PACKET_SIZE] == segment[:PACKET_SIZE]
    packets = [padded[i : i + PACKET_SIZE] for i in range(0, len(padded), PACKET_SIZE)]
    real = [p for p, pid in zip(packets, pids(padded), strict=True) if pid != NULL_PID]
    assert b"".join(real) == segment
    # Twice as many nulls as media packets, spread evenly: two after each media packet.
    runs = "".join("n" if pid == NULL_PID else "m" for pid in pids(padded)).split("m")
    assert {len(run) for run in runs[1:]} == {2}


def test_pad_leaves_a_long_enough_stream_alone(media: MediaLoop) -> None:
    segment = media.segment(1)
    assert pad(segment, len(segment) - 1000) is segment
    with pytest.raises(ValueError, match="188"):
        pad(segment[:-1], 10 * len(segment))


@needs_ffmpeg
def test_a_padded_stream_still_decodes(media: MediaLoop) -> None:
    data = b"".join(pad(media.segment(n), 2 * len(media.segment(n))) for n in range(3))
    run = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "warning", "-i", "-", "-f", "null", "-"],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (run.returncode, run.stderr.decode()) == (0, "")


def test_load_reads_any_directory_in_segment_order(tmp_path: Path) -> None:
    for n in (0, 1):
        shutil.copy(MEDIA_DIR / f"seg{n}.ts", tmp_path / f"seg{n}.ts")
    (tmp_path / "notes.txt").write_text("not a segment")
    loop = MediaLoop.load(tmp_path)
    assert loop.segment_count == 2
    assert loop.loop_duration == 8.0
    assert loop.segment(1) == MediaLoop.load().segment(1)
    video = [t.dts for t in timestamps(loop.segment(1) + loop.segment(2)) if t.pid == VIDEO_PID]
    assert all(b > a for a, b in itertools.pairwise(video))


def test_load_refuses_what_is_not_ts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        MediaLoop.load(tmp_path)
    (tmp_path / "seg0.ts").write_bytes(b"\x47" + b"\x00" * 200)
    with pytest.raises(ValueError, match="188"):
        MediaLoop.load(tmp_path)
