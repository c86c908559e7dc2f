"""Joining upstreams: a clean join point, and a discontinuity mark per PID after a break."""

from __future__ import annotations

from hlsproxy.sim.media import MediaLoop
from hlsproxy.ts.packets import PACKET_SIZE, TsScanner
from hlsproxy.ts.splice import MARK_WINDOW, Splicer, discontinuity_marks, discontinuity_packet
from tests.helpers import decode_warnings


def pids(data: bytes) -> list[int]:
    return [((data[i + 1] & 0x1F) << 8) | data[i + 2] for i in range(0, len(data), PACKET_SIZE)]


def marks(data: bytes) -> dict[int, int]:
    """PID -> offset of its discontinuity mark."""
    found = {}
    for i in range(0, len(data), PACKET_SIZE):
        if data[i + 3] & 0x30 == 0x20 and data[i + 5] & 0x80:
            found[pids(data[i : i + PACKET_SIZE])[0]] = i
    return found


def media() -> bytes:
    loop = MediaLoop.load()
    data = b"".join(loop.segment(n) for n in range(4))
    return data[: len(data) - len(data) % PACKET_SIZE]


def test_a_discontinuity_packet_is_a_valid_adaptation_only_packet() -> None:
    packet = discontinuity_packet(0x100, 0x15)
    assert len(packet) == PACKET_SIZE
    assert packet[0] == 0x47
    assert pids(packet) == [0x100]
    assert packet[3] == 0x25  # adaptation field only, counter 5
    assert packet[4] == PACKET_SIZE - 5
    assert packet[5] == 0x80


def test_without_a_break_packets_pass_unchanged() -> None:
    data = media()
    splicer = Splicer()
    out, joins = splicer.feed(data)
    assert out == data
    assert [j.offset for j in joins] == [j.offset for j in TsScanner().scan(data)]


def test_after_a_break_the_stream_resumes_at_a_join_point_with_marks() -> None:
    data = media()
    splicer = Splicer()
    first, _ = splicer.feed(data[: 400 * PACKET_SIZE])
    splicer.restart()
    cut = 777 * PACKET_SIZE  # the middle of a picture
    second, joins = splicer.feed(data[cut:])
    assert splicer.breaks == 1
    found = marks(second)
    streams = set(pids(second)) - {0x1FFF}
    assert set(found) == streams, "every PID is marked before its first packet"
    for pid, at in found.items():
        assert pids(second).index(pid) * PACKET_SIZE == at, "the mark comes first on its PID"
        # the mark's counter lets the next payload packet continue without a gap
        mark_cc = second[at + 3] & 0x0F
        following = next(
            i
            for i in range(at + PACKET_SIZE, len(second), PACKET_SIZE)
            if pids(second[i : i + PACKET_SIZE])[0] == pid
        )
        assert second[following + 3] & 0x0F == (mark_cc + 1) & 0x0F
    # a joining client starts at a mark or PSI, never mid-picture
    assert joins and all(j.offset % PACKET_SIZE == 0 for j in joins)
    # what a client saw across the break decodes cleanly from the break on
    assert decode_warnings(second) == ""
    assert first == data[: 400 * PACKET_SIZE]


def without(data: bytes, pid: int) -> bytes:
    return b"".join(
        data[i : i + PACKET_SIZE]
        for i in range(0, len(data), PACKET_SIZE)
        if pids(data[i : i + PACKET_SIZE])[0] != pid
    )


def test_a_pid_first_seen_past_the_window_is_not_marked() -> None:
    data = media()
    audio = TsScanner()
    audio.scan(data)
    late = audio.audio_pid
    assert late is not None
    for first_stretch, marked in ((MARK_WINDOW + 50, False), (MARK_WINDOW // 4, True)):
        splicer = Splicer()
        splicer.feed(data[: 10 * PACKET_SIZE])
        splicer.restart()
        head = without(data, late)
        splicer.feed((head * 4)[: first_stretch * PACKET_SIZE])  # no audio for this long
        out, _ = splicer.feed(data)
        assert (late in marks(out)) is marked, first_stretch


def test_a_client_moved_forward_decodes_cleanly_from_the_keyframe_it_lands_on() -> None:
    data = media()
    joins = TsScanner().scan(data)
    join = joins[len(joins) // 2]
    rest = data[join.offset :]
    moved = join.prefix + discontinuity_marks(memoryview(rest)) + rest
    found = marks(moved)
    assert set(found) == set(pids(rest)) - {0x1FFF}, "each PID of the stream is marked once"
    for pid, at in found.items():
        # the mark's counter lets the PID's next payload packet continue without a gap
        following = pids(rest).index(pid) * PACKET_SIZE
        assert rest[following + 3] & 0x0F == (moved[at + 3] + 1) & 0x0F
    # PAT, PMT and marks before the keyframe: a decoder starts cleanly there
    assert decode_warnings(moved) == ""
