"""Packet alignment and join points: synthesised packets, then real media made by ffmpeg."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlsproxy.ts.packets import PACKET_SIZE, JoinPoint, PacketAligner, TsScanner

# --- builders ------------------------------------------------------------------------------------

PMT_PID = 0x1000
VIDEO_PID = 0x100
AUDIO_PID = 0x101
H264, HEVC, MPEG2, AAC = 0x1B, 0x24, 0x02, 0x0F


def crc32_mpeg(data: bytes) -> int:
    """Bit by bit, so that it checks the module's table-driven CRC rather than copying it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def packet(
    pid: int, payload: bytes, *, pusi: bool = False, cc: int = 0, rai: bool = False
) -> bytes:
    """One packet; an adaptation field carries the RAI flag and the stuffing."""
    header = bytes([0x47, (0x40 if pusi else 0) | pid >> 8, pid & 0xFF])
    room = 184 - len(payload)
    if room == 0 and not rai:
        return header + bytes([0x10 | cc]) + payload
    assert room >= 2, "payload too long for an adaptation field"
    field = bytes([room - 1, 0x40 if rai else 0x00]) + b"\xff" * (room - 2)
    return header + bytes([0x30 | cc]) + field + payload


def section(table_id: int, extension: int, body: bytes, *, version: int = 0) -> bytes:
    head = bytes([extension >> 8, extension & 0xFF, 0xC1 | version << 1, 0, 0]) + body
    length = len(head) + 4
    raw = bytes([table_id, 0xB0 | length >> 8, length & 0xFF]) + head
    return raw + crc32_mpeg(raw).to_bytes(4, "big")


def psi_packet(pid: int, sec: bytes, cc: int) -> bytes:
    payload = b"\x00" + sec
    return packet(pid, payload + b"\xff" * (184 - len(payload)), pusi=True, cc=cc)


def pat(pmt_pid: int = PMT_PID, *, cc: int = 0, version: int = 0, program: int = 1) -> bytes:
    # A network PID entry (program 0) first: it must not be taken for a program.
    body = bytes([0, 0, 0xE0, 0x10]) + bytes([program >> 8, program & 0xFF])
    body += bytes([0xE0 | pmt_pid >> 8, pmt_pid & 0xFF])
    return psi_packet(0, section(0x00, 1, body, version=version), cc)


def pmt(
    streams: Iterable[tuple[int, int] | tuple[int, int, bytes]],
    *,
    pmt_pid: int = PMT_PID,
    cc: int = 0,
    version: int = 0,
    program: int = 1,
) -> bytes:
    body = bytes([0xE1, 0x00, 0xF0, 0x00])
    for stream in streams:
        stream_type, pid = stream[0], stream[1]
        descriptors = stream[2] if len(stream) == 3 else b""
        body += bytes([stream_type, 0xE0 | pid >> 8, pid & 0xFF, 0xF0, len(descriptors)])
        body += descriptors
    return psi_packet(pmt_pid, section(0x02, program, body, version=version), cc)


def pes(
    pid: int,
    es: bytes,
    *,
    cc: int = 0,
    rai: bool = False,
    stream_id: int = 0xE0,
    header_extra: bytes = b"",
    pts: int = 0,
) -> bytes:
    """The first packet of a PES packet with a PTS; `header_extra` lengthens the header."""
    pts_field = bytes(
        [
            0x21 | (pts >> 29) & 0x0E,
            (pts >> 22) & 0xFF,
            0x01 | (pts >> 14) & 0xFE,
            (pts >> 7) & 0xFF,
            0x01 | (pts << 1) & 0xFE,
        ]
    )
    header = bytes([0, 0, 1, stream_id, 0, 0, 0x80, 0x80, 5 + len(header_extra)])
    return packet(pid, header + pts_field + header_extra + es, pusi=True, cc=cc, rai=rai)


def filler(pid: int, cc: int = 0) -> bytes:
    """A continuation packet: no PUSI, payload free of 0x47 so that no sync byte hides in it."""
    return packet(pid, bytes((i * 7 + 1) % 0x40 for i in range(184)), cc=cc)


AUD = b"\x00\x00\x00\x01\x09\xf0"
SPS = b"\x00\x00\x00\x01\x67\x64\x00\x1f\xac"
IDR = b"\x00\x00\x01\x65\x88\x84"
NON_IDR = b"\x00\x00\x01\x41\x9a\x02"
H264_PSI = pat() + pmt([(H264, VIDEO_PID), (AAC, AUDIO_PID)])
H264_PSI_PACKETS = [H264_PSI[:PACKET_SIZE], H264_PSI[PACKET_SIZE:]]


def offsets(joins: Sequence[JoinPoint]) -> list[int]:
    return [j.offset for j in joins]


def stream_of(count: int, pid: int = VIDEO_PID) -> list[bytes]:
    return [filler(pid, cc % 16) for cc in range(count)]


# --- PacketAligner -------------------------------------------------------------------------------

PACKETS = [*stream_of(6), *stream_of(3, AUDIO_PID)]
STREAM = b"".join(PACKETS)
# Garbage never holds a sync byte, so where sync is found again is certain.
garbage_bytes = st.binary(min_size=1, max_size=600).map(lambda b: b.replace(b"\x47", b"\x46"))


def feed_all(aligner: PacketAligner, chunks: Iterable[bytes]) -> bytes:
    out = []
    for chunk in chunks:
        got = aligner.feed(chunk)
        assert len(got) % PACKET_SIZE == 0
        out.append(got)
    return b"".join(out)


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def test_aligned_input_passes_through_without_a_copy() -> None:
    aligner = PacketAligner()
    first = aligner.feed(STREAM)
    again = aligner.feed(STREAM)
    assert first == STREAM
    assert again is STREAM
    assert aligner.dropped == 0


def test_first_packet_is_passed_on_at_once() -> None:
    aligner = PacketAligner()
    assert aligner.feed(PACKETS[0]) == PACKETS[0]
    assert aligner.feed(PACKETS[1][:100]) == b""
    assert aligner.feed(PACKETS[1][100:] + PACKETS[2][:5]) == PACKETS[1]


def test_every_single_split_gives_the_stream_back() -> None:
    for cut in range(len(STREAM) + 1):
        aligner = PacketAligner()
        assert feed_all(aligner, [STREAM[:cut], STREAM[cut:]]) == STREAM, f"cut at {cut}"
        assert aligner.dropped == 0, f"cut at {cut}"


@given(st.lists(st.integers(min_value=0), max_size=30))
def test_any_chunking_gives_the_stream_back(cuts: list[int]) -> None:
    aligner = PacketAligner()
    assert feed_all(aligner, split(STREAM, cuts)) == STREAM
    assert aligner.dropped == 0


@given(
    st.lists(
        st.one_of(st.sampled_from(PACKETS), st.binary(max_size=400), st.just(b"\x47")),
        max_size=12,
    ),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_whatever_comes_in_only_packets_go_out(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    aligner = PacketAligner()
    out = feed_all(aligner, split(data, cuts))
    assert out[::PACKET_SIZE].count(0x47) == len(out) // PACKET_SIZE
    # Nothing is lost without being counted, and little is held back.
    assert 0 <= len(data) - len(out) - aligner.dropped < 4 * PACKET_SIZE


@pytest.mark.parametrize(
    "garbage",
    [b"\x00" * 5, b"\x12" * 187, b"\x47\x01\x02" * 50, bytes(range(256)) * 2],
    ids=["short", "almost-a-packet", "sync-bytes-inside", "every-byte-value"],
)
def test_leading_garbage_is_dropped(garbage: bytes) -> None:
    aligner = PacketAligner()
    assert aligner.feed(garbage + STREAM) == STREAM
    assert aligner.dropped == len(garbage)


def test_leading_garbage_in_small_chunks_is_dropped() -> None:
    garbage = b"\x47" + bytes(range(48, 48 + 100))
    aligner = PacketAligner()
    assert feed_all(aligner, split(garbage + STREAM, range(0, 2000, 50))) == STREAM
    assert aligner.dropped == len(garbage)


@given(
    garbage=garbage_bytes,
    where=st.integers(min_value=2, max_value=len(PACKETS) - 3),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
)
def test_garbage_in_the_middle_is_dropped(garbage: bytes, where: int, cuts: list[int]) -> None:
    before, after = b"".join(PACKETS[:where]), b"".join(PACKETS[where:])
    aligner = PacketAligner()
    assert feed_all(aligner, split(before + garbage + after, cuts)) == STREAM
    assert aligner.dropped == len(garbage)


def test_first_packet_followed_by_garbage_is_trusted_only_when_alone() -> None:
    garbage = b"\x00" * 10
    # Arriving alone, the stream's first packet goes out at once; what follows cannot undo that.
    aligner = PacketAligner()
    assert feed_all(aligner, [PACKETS[0], garbage + STREAM[PACKET_SIZE:]]) == STREAM
    assert aligner.dropped == len(garbage)
    # Arriving with the garbage after it, it is shown to be no packet and is dropped.
    aligner = PacketAligner()
    assert aligner.feed(PACKETS[0] + garbage + STREAM[PACKET_SIZE:]) == STREAM[PACKET_SIZE:]
    assert aligner.dropped == PACKET_SIZE + len(garbage)


@pytest.mark.parametrize("kept", [1, 4, 100, 187])
def test_packet_cut_short_is_dropped(kept: int) -> None:
    where = 3
    data = b"".join(PACKETS[:where]) + PACKETS[where][:kept] + b"".join(PACKETS[where + 1 :])
    aligner = PacketAligner()
    assert aligner.feed(data) == b"".join(PACKETS[:where] + PACKETS[where + 1 :])
    assert aligner.dropped == kept


def test_sync_is_confirmed_by_three_packets_after_a_loss() -> None:
    aligner = PacketAligner()
    assert aligner.feed(STREAM) == STREAM
    # Two packets after garbage are not yet proof of sync; the third packet's sync byte is.
    assert aligner.feed(b"\x01\x02\x03" + PACKETS[0] + PACKETS[1]) == b""
    assert aligner.feed(PACKETS[2][:1]) == PACKETS[0] + PACKETS[1]
    assert aligner.feed(PACKETS[2][1:]) == PACKETS[2]
    assert aligner.dropped == 3


def test_stray_sync_byte_in_garbage_after_a_loss_is_not_trusted() -> None:
    aligner = PacketAligner()
    aligner.feed(STREAM)
    # A fake packet start whose next boundary holds 0x47 too, but the one after does not.
    fake = b"\x47" + b"\x00" * 187 + b"\x47" + b"\x00" * 187 + b"\x00" * 20
    assert aligner.feed(b"\x00" + fake + STREAM) == STREAM
    assert aligner.dropped == 1 + len(fake)


# --- TsScanner: synthesised packets ---------------------------------------------------------------


def test_a_join_point_carries_the_time_stamp_of_its_pes() -> None:
    pts = 2**32 + 123_456_789  # all 33 bits in play
    data = H264_PSI + pes(VIDEO_PID, IDR, pts=pts) + filler(VIDEO_PID, 1)
    (join,) = TsScanner().scan(data)
    assert join.pts == pts
    # a join point the adaptation field names, with no PES header after it: no time
    no_pes = H264_PSI + packet(VIDEO_PID, NON_IDR, pusi=True, rai=True) + filler(VIDEO_PID, 1)
    assert [j.pts for j in TsScanner().scan(no_pes)] == [None]


def test_random_access_indicator_marks_a_join_point() -> None:
    data = H264_PSI + pes(VIDEO_PID, NON_IDR, rai=True) + filler(VIDEO_PID, 1)
    scanner = TsScanner()
    assert scanner.scan(data) == [JoinPoint(2 * PACKET_SIZE, H264_PSI)]
    assert scanner.video_pid == VIDEO_PID
    assert scanner.psi == H264_PSI


@pytest.mark.parametrize(
    ("es", "is_join"),
    [
        (AUD + SPS + b"\x00\x00\x00\x01\x68\xee" + IDR, True),
        (AUD + IDR, True),
        (AUD + SPS, True),
        (IDR, True),
        (AUD + NON_IDR, False),
        (b"\x00\x00\x01\x61\x00\x00\x01\x41", False),
        (b"", False),
    ],
    ids=["aud-sps-pps-idr", "aud-idr", "aud-sps", "idr", "non-idr", "two-slices", "empty"],
)
def test_h264_random_access_is_found_in_the_pes_payload(es: bytes, is_join: bool) -> None:
    data = H264_PSI + filler(VIDEO_PID) + pes(VIDEO_PID, es, cc=1)
    joins = TsScanner().scan(data)
    assert offsets(joins) == ([3 * PACKET_SIZE] if is_join else [])


def test_pes_header_length_is_honoured() -> None:
    # Bytes inside the PES header that look like an IDR start code are not payload.
    fake = b"\x00\x00\x01\x65" + b"\xff" * 8
    no_join = pes(VIDEO_PID, NON_IDR, header_extra=fake)
    join = pes(VIDEO_PID, IDR, header_extra=b"\xff" * 40, cc=1)
    assert offsets(TsScanner().scan(H264_PSI + no_join + join)) == [3 * PACKET_SIZE]


@pytest.mark.parametrize(
    ("stream_type", "es", "is_join"),
    [
        (HEVC, b"\x00\x00\x00\x01\x46\x01\x50" + b"\x00\x00\x01\x26\x01", True),  # AUD, IDR_W_RADL
        (HEVC, b"\x00\x00\x01\x40\x01\x0c", True),  # VPS
        (HEVC, b"\x00\x00\x01\x42\x01\x01", True),  # SPS
        (HEVC, b"\x00\x00\x01\x2a\x01", True),  # CRA
        (HEVC, b"\x00\x00\x01\x46\x01\x50\x00\x00\x01\x02\x01", False),  # AUD, TRAIL_R
        (HEVC, b"\x00\x00\x01\x44\x01", False),  # PPS alone
        (MPEG2, b"\x00\x00\x01\xb3\x14\x00\xb4", True),  # sequence header
        (0x01, b"\x00\x00\x01\xb3\x14\x00\xb4", True),  # MPEG-1 video uses the same
        (MPEG2, b"\x00\x00\x01\x00\x00\x0f\xff", False),  # picture header only
    ],
    ids=[
        "hevc-idr",
        "hevc-vps",
        "hevc-sps",
        "hevc-cra",
        "hevc-trail",
        "hevc-pps",
        "mpeg2-seq",
        "mpeg1-seq",
        "mpeg2-picture",
    ],
)
def test_other_codecs(stream_type: int, es: bytes, is_join: bool) -> None:
    psi = pat() + pmt([(stream_type, VIDEO_PID)])
    joins = TsScanner().scan(psi + pes(VIDEO_PID, es))
    assert offsets(joins) == ([2 * PACKET_SIZE] if is_join else [])


def test_only_pes_starts_of_the_video_pid_are_join_points() -> None:
    data = H264_PSI + b"".join(
        [
            pes(AUDIO_PID, b"\xff\xf1\x50\x80", stream_id=0xC0, rai=True),
            packet(VIDEO_PID, b"\x00" * 4 + IDR + b"\x00" * 160, rai=True),  # no PUSI
            pes(0x300, IDR, rai=True),  # not in the PMT
            pes(VIDEO_PID, IDR),
        ]
    )
    assert offsets(TsScanner().scan(data)) == [5 * PACKET_SIZE]


def test_no_join_point_before_pat_and_pmt() -> None:
    key = pes(VIDEO_PID, IDR, rai=True)
    scanner = TsScanner()
    assert scanner.scan(key + pat() + key) == []
    assert scanner.psi == b""
    joins = scanner.scan(key + H264_PSI[PACKET_SIZE:] + key)
    assert offsets(joins) == [2 * PACKET_SIZE]
    assert scanner.psi == H264_PSI


def test_psi_updates_within_one_buffer_give_each_join_point_its_own_prefix() -> None:
    pat0, pat1 = pat(cc=0), pat(cc=1)
    pmt0 = pmt([(H264, VIDEO_PID), (AAC, AUDIO_PID)], cc=0)
    pmt1 = pmt([(H264, VIDEO_PID), (AAC, AUDIO_PID)], cc=1)
    pmt2 = pmt([(H264, 0x200), (AAC, AUDIO_PID)], cc=2, version=1)  # video moves to PID 0x200
    key_old, key_new = pes(VIDEO_PID, IDR), pes(0x200, IDR)
    data = [pat0, pmt0, key_old, pat1, key_old, pmt1, key_old, pmt2, key_old, key_new]
    scanner = TsScanner()
    joins = scanner.scan(b"".join(data))
    assert joins == [
        JoinPoint(2 * PACKET_SIZE, pat0 + pmt0),
        JoinPoint(4 * PACKET_SIZE, pat1 + pmt0),
        JoinPoint(6 * PACKET_SIZE, pat1 + pmt1),
        JoinPoint(9 * PACKET_SIZE, pat1 + pmt2),
    ]
    assert scanner.video_pid == 0x200
    assert scanner.psi == pat1 + pmt2


def test_pat_moving_the_pmt_waits_for_the_new_pmt() -> None:
    key = pes(VIDEO_PID, IDR)
    moved_pat = pat(0x1100, cc=1, version=1)
    moved_pmt = pmt([(H264, VIDEO_PID)], pmt_pid=0x1100)
    data = [*H264_PSI_PACKETS, key, moved_pat, key, pmt([(H264, 0x1FF)]), key, moved_pmt, key]
    scanner = TsScanner()
    joins = scanner.scan(b"".join(data))
    assert joins == [
        JoinPoint(2 * PACKET_SIZE, H264_PSI),
        JoinPoint(8 * PACKET_SIZE, moved_pat + moved_pmt),
    ]


def test_damaged_pmt_is_ignored() -> None:
    good = pmt([(H264, VIDEO_PID)])
    damaged = bytearray(pmt([(H264, 0x200)], cc=1, version=1))
    damaged[20] ^= 0x01  # inside the section, so its CRC no longer fits
    key_old, key_new = pes(VIDEO_PID, IDR), pes(0x200, IDR)
    scanner = TsScanner()
    joins = scanner.scan(pat() + good + bytes(damaged) + key_old + key_new)
    assert joins == [JoinPoint(3 * PACKET_SIZE, pat() + good)]


def test_other_tables_on_the_psi_pids_are_ignored() -> None:
    body = bytes([0xE1, 0x00, 0xF0, 0x00, H264, 0xE2, 0x00, 0xF0, 0x00])
    not_a_pmt = psi_packet(PMT_PID, section(0x03, 1, body), cc=1)
    not_a_pat = psi_packet(0, section(0x02, 1, bytes([0, 1, 0xE0, 0x20])), cc=1)
    scanner = TsScanner()
    joins = scanner.scan(H264_PSI + not_a_pmt + not_a_pat + pes(0x200, IDR) + pes(VIDEO_PID, IDR))
    assert offsets(joins) == [5 * PACKET_SIZE]
    assert scanner.psi == H264_PSI


def test_pmt_of_another_program_is_ignored() -> None:
    other = pmt([(H264, 0x200)], program=2, cc=1)
    scanner = TsScanner()
    joins = scanner.scan(H264_PSI + other + pes(0x200, IDR) + pes(VIDEO_PID, IDR))
    assert offsets(joins) == [4 * PACKET_SIZE]
    assert scanner.psi == H264_PSI


@pytest.mark.parametrize(
    "audio",
    [(AAC, AUDIO_PID), (0x03, AUDIO_PID), (0x06, AUDIO_PID, b"\x6a\x01\x00")],
    ids=["aac", "mp2", "dvb-ac3"],
)
def test_audio_only_stream_joins_at_every_pes_start(
    audio: tuple[int, int] | tuple[int, int, bytes],
) -> None:
    psi = pat() + pmt([(0x06, 0x300, b"\x56\x00"), audio])  # teletext first: not audio
    frame = b"\xff\xf1\x50\x80\x02\x1f\xfc"
    data = psi + b"".join(
        [
            pes(AUDIO_PID, frame, stream_id=0xC0),
            filler(AUDIO_PID, 1),
            pes(0x300, frame, stream_id=0xBD),
            pes(AUDIO_PID, frame, stream_id=0xC0, cc=2),
        ]
    )
    scanner = TsScanner()
    assert offsets(scanner.scan(data)) == [2 * PACKET_SIZE, 5 * PACKET_SIZE]
    assert (scanner.video_pid, scanner.audio_pid) == (None, AUDIO_PID)


def test_state_carries_across_buffers_and_memoryviews_are_read() -> None:
    data = (
        H264_PSI
        + filler(VIDEO_PID)
        + pes(VIDEO_PID, IDR)
        + filler(AUDIO_PID)
        + pes(VIDEO_PID, AUD + SPS)
    )
    whole = offsets(TsScanner().scan(data))
    scanner = TsScanner()
    one_by_one = []
    for off in range(0, len(data), PACKET_SIZE):
        view = memoryview(data)[off : off + PACKET_SIZE]
        one_by_one += [off + j.offset for j in scanner.scan(view)]
    assert whole == one_by_one == [3 * PACKET_SIZE, 5 * PACKET_SIZE]


def test_unaligned_buffer_is_refused() -> None:
    with pytest.raises(ValueError, match="whole number of packets"):
        TsScanner().scan(H264_PSI[:-1])


# --- real media -----------------------------------------------------------------------------------

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
SECONDS = 6


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    assert FFMPEG is not None
    out = tmp_path_factory.mktemp("media") / "out.ts"
    # A keyframe every 25 frames at 25 fps: one join point a second.
    subprocess.run(
        [
            *(FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"),
            *("-f", "lavfi", "-i", "sine", "-t", str(SECONDS), "-c:v", "libx264", "-g", "25"),
            *("-sc_threshold", "0", "-c:a", "aac", "-f", "mpegts", str(out)),
        ],
        check=True,
        timeout=60,
    )
    return Path(out).read_bytes()


def decode(data: bytes) -> tuple[int, str, int]:
    """Decode with ffmpeg: exit status, warnings, and how many video frames came out."""
    assert FFMPEG is not None
    done = subprocess.run(
        [FFMPEG, "-v", "warning", "-i", "pipe:", "-map", "0:v", "-f", "framecrc", "-"],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    frames = sum(1 for line in done.stdout.splitlines() if line.startswith(b"0,"))
    return done.returncode, done.stderr.decode(errors="replace"), frames


def pes_pts(pkt: bytes) -> int:
    start = 4 + (1 + pkt[4] if pkt[3] & 0x20 else 0)
    p = pkt[start + 9 : start + 14]
    return (p[0] >> 1 & 7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1


def video_pes_starts(data: bytes, pid: int) -> list[int]:
    return [
        off
        for off in range(0, len(data), PACKET_SIZE)
        if data[off + 1] & 0x40 and ((data[off + 1] & 0x1F) << 8 | data[off + 2]) == pid
    ]


@needs_ffmpeg
def test_real_stream_has_a_join_point_every_second(media: bytes) -> None:
    scanner = TsScanner()
    joins = scanner.scan(media)
    assert len(joins) == SECONDS
    pts = [pes_pts(media[j.offset : j.offset + PACKET_SIZE]) for j in joins]
    assert all(abs(b - a - 90_000) <= 3_600 for a, b in itertools.pairwise(pts))
    assert len({j.prefix for j in joins}) > 1  # ffmpeg repeats PAT and PMT, counting up
    for join in joins:
        # The prefix is the last PAT and PMT packet before the join packet, not just any.
        before = [media[off : off + PACKET_SIZE] for off in range(0, join.offset, PACKET_SIZE)]
        last_pat = [p for p in before if p[1:3] == b"\x40\x00"][-1]
        last_pmt = [p for p in before if p[1:3] == scanner.psi[PACKET_SIZE + 1 : PACKET_SIZE + 3]]
        assert join.prefix == last_pat + last_pmt[-1]


@needs_ffmpeg
def test_real_stream_keyframes_are_found_without_the_rai_flag(media: bytes) -> None:
    cleared = bytearray(media)
    for off in range(0, len(cleared), PACKET_SIZE):
        if cleared[off + 3] & 0x20 and cleared[off + 4]:
            cleared[off + 5] &= 0xBF
    assert bytes(cleared) != media
    assert offsets(TsScanner().scan(bytes(cleared))) == offsets(TsScanner().scan(media))


@needs_ffmpeg
def test_joining_mid_stream_decodes_cleanly(media: bytes) -> None:
    join = TsScanner().scan(media)[SECONDS // 2]
    status, warnings, frames = decode(join.prefix + media[join.offset :])
    assert (status, warnings) == (0, "")
    assert frames >= (SECONDS - SECONDS // 2 - 1) * 25


@needs_ffmpeg
def test_joining_between_keyframes_is_visibly_broken(media: bytes) -> None:
    scanner = TsScanner()
    joins = scanner.scan(media)
    later = joins[SECONDS // 2].offset
    assert scanner.video_pid is not None
    start = next(off for off in video_pes_starts(media, scanner.video_pid) if off > later)
    _, warnings, _ = decode(joins[0].prefix + media[start:])
    assert warnings != ""


@needs_ffmpeg
def test_real_stream_through_the_aligner_in_odd_chunks(media: bytes) -> None:
    garbage = b"\x47\x00\x47" + bytes(range(200))
    data = garbage + media
    aligner = PacketAligner()
    out = feed_all(aligner, [data[i : i + 1000] for i in range(0, len(data), 1000)])
    assert out == media
    assert aligner.dropped == len(garbage)
    scanner = TsScanner()
    joins: list[int] = []
    done = 0
    for chunk in split(out, range(0, len(out), 7 * PACKET_SIZE * 13)):
        joins += [done + j.offset for j in scanner.scan(chunk)]
        done += len(chunk)
    assert joins == offsets(TsScanner().scan(media))
