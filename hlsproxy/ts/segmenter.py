"""Cutting one MPEG-TS stream into HLS segments, pure: packets in, segments out.

Each segment starts where a decoder can start (a join point of `TsScanner`: a random access
point of the video, or any PES start of the audio when there is no video), with the PAT
and PMT in effect before it, so every segment decodes on its own from its first byte.

Where to cut is decided by the presentation time stamps (PTS, 90 kHz, ISO/IEC 13818-1
2.4.3.7) of the join PID: at the join point closest to `target` seconds after the
segment's start. Given the gap between the last two join points, a join point `e` seconds
in is the closest one if `e >= target - gap / 2` (the next is `gap` later). A radio
channel (no video) has a join point at every audio PES, a few per second, so it is cut by
time with the same rule. A segment's duration is the PTS difference between its start and
the next segment's start.

When the stream breaks (another upstream follows; `feed(..., discontinuity=True)`) the
segment under way ends at the last presentation time seen plus one frame, and the next
segment is marked as a discontinuity. A time stamp that goes back, or jumps more than
`MAX_JUMP` ahead, without a break is handled as one as well.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from .packets import PACKET_SIZE, TsScanner

CLOCK_HZ = 90_000
_WRAP = 1 << 33
# A jump in time stamps larger than this between two frames is a break in the stream.
MAX_JUMP = 60 * CLOCK_HZ


@dataclass(frozen=True, slots=True)
class Segment:
    data: bytes
    """PAT, PMT, then the packets from a join point on; a whole number of packets."""
    duration: float
    """Seconds, from the PTS."""
    discontinuity: bool
    """The stream broke before this segment: its time stamps do not follow the last one's."""


def read_pts(packet: bytes | memoryview) -> int | None:
    """The PTS of the PES that starts in this packet, if it says one."""
    if not packet[1] & 0x40:
        return None
    control = packet[3] & 0x30
    if not control & 0x10:
        return None
    start = 4 + (1 + packet[4] if control & 0x20 else 0)
    if start + 14 > PACKET_SIZE or bytes(packet[start : start + 3]) != b"\x00\x00\x01":
        return None
    if packet[start + 6] & 0xC0 != 0x80 or not packet[start + 7] & 0x80:
        return None  # no optional PES header, or no PTS in it
    p = start + 9
    return (
        ((packet[p] >> 1) & 0x07) << 30
        | packet[p + 1] << 22
        | (packet[p + 2] >> 1) << 15
        | packet[p + 3] << 7
        | packet[p + 4] >> 1
    )


def _ahead(later: int, earlier: int) -> int:
    """Ticks from `earlier` to `later` across the 33-bit wrap; negative if it went back."""
    delta = (later - earlier) % _WRAP
    return delta - _WRAP if delta >= _WRAP // 2 else delta


class Segmenter:
    """Feed it the stream's whole packets in order; it returns each segment as it closes."""

    __slots__ = (
        "_broken",
        "_flags",
        "_gap",
        "_join_pts",
        "_last_pts",
        "_pid",
        "_pieces",
        "_prev_pts",
        "_scanner",
        "_start_pts",
        "_step",
        "target",
    )

    def __init__(self, target: float) -> None:
        if target <= 0:
            raise ValueError(f"the target duration must be positive, not {target}")
        self.target = target
        self._scanner = TsScanner()
        self._pieces: list[bytes] = []  # the segment under way; empty until a join point
        self._start_pts = 0  # of the segment under way
        self._join_pts = 0  # of the latest join point in it
        self._gap = 0  # ticks between the last two join points; 0 while unknown
        self._last_pts = 0  # the latest presentation time on the join PID
        self._prev_pts: int | None = None  # the previous PES start's, for `_step`
        self._step = 0  # the shortest step between two PES starts: a frame
        self._broken = False
        self._pid: int | None = None
        self._flags = b""

    def __repr__(self) -> str:
        held = sum(len(p) for p in self._pieces)
        return f"<Segmenter target={self.target:g}s held={held} B pid={self._pid}>"

    def feed(self, packets: bytes, *, discontinuity: bool = False) -> list[Segment]:
        """Whole, aligned packets in; the segments they complete out.

        `discontinuity`: these packets come from a new upstream (the stream broke before them).
        """
        if len(packets) % PACKET_SIZE:
            raise ValueError(f"{len(packets)} bytes is not a whole number of packets")
        out: list[Segment] = []
        if discontinuity:
            self._break(out)
        joins = self._scanner.scan(packets)
        pid = self._scanner.video_pid
        if pid is None:
            pid = self._scanner.audio_pid
        if pid != self._pid:
            self._follow(pid)
        at = 0  # packets before `at` are in the segment under way, or were dropped
        for join in joins:
            pts = read_pts(packets[join.offset : join.offset + PACKET_SIZE])
            if pts is None:
                continue
            self._track(packets, at, join.offset)
            if self._pieces:
                elapsed = _ahead(pts, self._start_pts)
                if elapsed <= 0 or elapsed > MAX_JUMP:
                    self._pieces.append(packets[at : join.offset])
                    self._break(out)
                elif 2 * elapsed < 2 * self.target * CLOCK_HZ - self._gap:
                    self._gap = _ahead(pts, self._join_pts)
                    self._join_pts = pts
                    continue
                else:
                    self._pieces.append(packets[at : join.offset])
                    out.append(self._close(elapsed))
                    self._gap = _ahead(pts, self._join_pts)
            self._pieces = [join.prefix]
            self._start_pts = self._join_pts = pts
            at = join.offset
        self._track(packets, at, len(packets))
        if self._pieces:
            self._pieces.append(packets[at:])
        return out

    def _close(self, elapsed: int) -> Segment:
        segment = Segment(b"".join(self._pieces), elapsed / CLOCK_HZ, self._broken)
        self._broken = False
        self._pieces = []
        return segment

    def _break(self, out: list[Segment]) -> None:
        """The stream breaks here: end the segment under way at its last frame's end."""
        if self._pieces:
            elapsed = _ahead(self._last_pts, self._start_pts) + self._step
            if elapsed > 0:
                out.append(self._close(elapsed))
        self._pieces = []
        self._broken = True
        self._gap = self._step = 0
        self._prev_pts = None

    def _follow(self, pid: int | None) -> None:
        self._pid = pid
        self._prev_pts = None
        if pid is None:
            self._flags = b""
            return
        high = pid >> 8
        # Second header byte of a PES start on the PID: no error, PUSI set, top PID bits.
        self._flags = bytes(1 if b & 0xC0 == 0x40 and b & 0x1F == high else 0 for b in range(256))

    def _track(self, packets: bytes, start: int, end: int) -> None:
        """Follow the presentation times of the PES starts on the join PID in [start, end),
        for where a segment ends when the stream breaks."""
        if self._pid is None or start >= end:
            return
        low = self._pid & 0xFF
        with memoryview(packets) as view:
            flags = view[start + 1 : end : PACKET_SIZE].tobytes().translate(self._flags)
        k = flags.find(1)
        while k >= 0:
            off = start + k * PACKET_SIZE
            if packets[off + 2] == low:
                pts = read_pts(packets[off : off + PACKET_SIZE])
                if pts is not None:
                    self._note(pts)
            k = flags.find(1, k + 1)

    def _note(self, pts: int) -> None:
        prev = self._prev_pts
        self._prev_pts = pts
        if prev is not None:
            step = abs(_ahead(pts, prev))
            if 0 < step <= MAX_JUMP and (self._step == 0 or step < self._step):
                self._step = step
        # Frames arrive in decoding order: the latest presentation time is the largest.
        if _ahead(pts, self._last_pts) > 0 or not self._pieces:
            self._last_pts = pts
