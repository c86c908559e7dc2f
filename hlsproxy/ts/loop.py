"""An endless live channel made of a few real MPEG-TS segments, looped.

The segments are one short continuous encode cut into pieces: the simulated engine's
channel (`sim/media/`, see fixtures/make_media.sh), or the one-segment slate HLS players see
while the engine prebuffers (fixtures/make_slate.sh). Segment n of the channel is segment
n % count with every PTS, DTS and PCR moved on
by whole loops, and continuity counters carried on, so the channel never jumps back in time
however long it runs. Durations come from a scan of the video PTS at load time, so nothing
but Python is needed at run time.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Self

from .packets import NULL_PACKET, NULL_PID, PACKET_SIZE, SYNC_BYTE

CLOCK_HZ = 90_000
"""PTS, DTS and the PCR base count at 90 kHz."""

_WRAP = 1 << 33
_PAT_PID = 0x0000
_VIDEO_STREAM_TYPES = frozenset({0x01, 0x02, 0x10, 0x1B, 0x24})
_SEGMENT_NAME = re.compile(r"seg(\d+)\.ts")
_MEMO_SIZE = 8


class Timestamp(NamedTuple):
    """The timing of one PES packet start: its PID, PTS and DTS (DTS = PTS when absent)."""

    pid: int
    pts: int
    dts: int


@dataclass(frozen=True, slots=True)
class _Packet:
    pid: int
    unit_start: bool
    has_payload: bool
    payload: int
    """Offset of the payload within the packet (188 when there is none)."""
    pcr: int | None
    """Offset of the 6-byte PCR field within the packet."""


@dataclass(frozen=True, slots=True)
class _Segment:
    data: bytes
    timestamps: tuple[int, ...]
    """Offsets of the 5-byte PTS/DTS fields."""
    pcrs: tuple[int, ...]
    """Offsets of the 6-byte PCR fields."""
    pids: tuple[int, ...]
    """The PID of each packet, for continuity counters."""
    ticks: int
    """Duration in 90 kHz ticks."""


class MediaLoop:
    """Segments 0, 1, 2, ... of a live channel that never ends."""

    def __init__(self, segments: list[_Segment], loop_counts: dict[int, int]) -> None:
        if not segments:
            raise ValueError("a media loop needs at least one segment")
        self._segments = segments
        # Payload packets per PID in one loop: how far each continuity counter moves per loop.
        self._loop_counts = loop_counts
        self._loop_ticks = sum(s.ticks for s in segments)
        self._starts = [0]
        for s in segments:
            self._starts.append(self._starts[-1] + s.ticks)
        self._memo: OrderedDict[int, bytes] = OrderedDict()

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read `seg<i>.ts` from `directory`."""
        files = sorted(
            (int(m.group(1)), path)
            for path in directory.iterdir()
            if (m := _SEGMENT_NAME.fullmatch(path.name))
        )
        if not files:
            raise FileNotFoundError(f"no seg<i>.ts files in {directory}")
        raw = [path.read_bytes() for _, path in files]
        for (_, path), data in zip(files, raw, strict=True):
            _check_alignment(data, path.name)
        return cls(*_build(raw))

    @classmethod
    def of(cls, segment: bytes) -> Self:
        """One segment, repeated."""
        _check_alignment(segment, "the segment")
        return cls(*_build([segment]))

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def loop_duration(self) -> float:
        return self._loop_ticks / CLOCK_HZ

    def duration(self, n: int) -> float:
        return self._segments[n % len(self._segments)].ticks / CLOCK_HZ

    def start(self, n: int) -> float:
        """Media time at which segment n begins, segment 0 beginning at 0."""
        loops, i = divmod(n, len(self._segments))
        return (loops * self._loop_ticks + self._starts[i]) / CLOCK_HZ

    def index_at(self, t: float) -> int:
        """The segment playing at media time t (t >= 0)."""
        ticks = round(t * CLOCK_HZ)
        loops, rest = divmod(ticks, self._loop_ticks)
        return loops * len(self._segments) + bisect.bisect_right(self._starts, rest) - 1

    def segment(self, n: int) -> bytes:
        """The bytes of segment n (n >= 0); the same n always gives the same bytes."""
        if n < 0:
            raise ValueError(f"segment numbers start at 0, got {n}")
        cached = self._memo.get(n)
        if cached is not None:
            self._memo.move_to_end(n)
            return cached
        loops, i = divmod(n, len(self._segments))
        data = self._shifted(self._segments[i], loops)
        self._memo[n] = data
        if len(self._memo) > _MEMO_SIZE:
            self._memo.popitem(last=False)
        return data

    def _shifted(self, seg: _Segment, loops: int) -> bytes:
        if loops == 0:
            return seg.data
        out = bytearray(seg.data)
        shift = loops * self._loop_ticks % _WRAP
        for off in seg.timestamps:
            _write_timestamp(out, off, (_read_timestamp(out, off) + shift) % _WRAP)
        for off in seg.pcrs:
            _write_pcr_base(out, off, (_read_pcr_base(out, off) + shift) % _WRAP)
        steps = {pid: loops * count % 16 for pid, count in self._loop_counts.items()}
        for index, pid in enumerate(seg.pids):
            step = steps.get(pid, 0)
            if step:
                at = index * PACKET_SIZE + 3
                out[at] = (out[at] & 0xF0) | ((out[at] + step) & 0x0F)
        return bytes(out)

    def __repr__(self) -> str:
        return f"<MediaLoop {len(self._segments)} segments, {self.loop_duration:.3f} s per loop>"


def pad(packets: bytes, target_bytes: int) -> bytes:
    """Spread null packets evenly through `packets` to make them about `target_bytes` long.

    Used to raise a stream to a chosen bitrate; the result is still valid MPEG-TS and
    starts with the same packet. Nothing is added when `packets` is already that long.
    """
    if len(packets) % PACKET_SIZE:
        raise ValueError("packets must be whole 188-byte TS packets")
    real = len(packets) // PACKET_SIZE
    nulls = (target_bytes - len(packets)) // PACKET_SIZE
    if nulls <= 0:
        return packets
    if real == 0:
        return NULL_PACKET * nulls
    view = memoryview(packets)
    parts: list[bytes | memoryview] = []
    placed = 0
    for i in range(real):
        parts.append(view[i * PACKET_SIZE : (i + 1) * PACKET_SIZE])
        due = (i + 1) * nulls // real
        if due > placed:
            parts.append(NULL_PACKET * (due - placed))
            placed = due
    return b"".join(parts)


def timestamps(data: bytes) -> list[Timestamp]:
    """PID, PTS and DTS of every PES packet that starts in `data`, in stream order."""
    found: list[Timestamp] = []
    for base, packet in _walk(data):
        fields = _pes_timestamp_offsets(data, base, packet)
        if fields:
            pts = _read_timestamp(data, fields[0])
            dts = _read_timestamp(data, fields[1]) if len(fields) > 1 else pts
            found.append(Timestamp(packet.pid, pts, dts))
    return found


def pcrs(data: bytes) -> list[int]:
    """Every PCR base (90 kHz) in `data`, in stream order."""
    return [
        _read_pcr_base(data, base + packet.pcr)
        for base, packet in _walk(data)
        if packet.pcr is not None
    ]


def _build(raw: list[bytes]) -> tuple[list[_Segment], dict[int, int]]:
    pmt_pids, streams = _program(raw[0])
    video = [pid for pid, kind in streams.items() if kind in _VIDEO_STREAM_TYPES]
    if not video:
        raise ValueError("the media has no video stream to time segments by")
    video_pid = video[0]

    counters: dict[int, int] = {}
    loop_counts: dict[int, int] = {}
    prepared: list[tuple[bytes, list[int], list[int], list[int], list[int]]] = []
    for data in raw:
        out = bytearray(_tables_first(data, pmt_pids, set(streams)))
        stamps: list[int] = []
        pcr_fields: list[int] = []
        pids: list[int] = []
        video_pts: list[int] = []
        for base, packet in _walk(out):
            pids.append(packet.pid)
            if packet.pid != NULL_PID:
                # ffmpeg restarts the counters in every segment file; carry them on instead.
                last = counters.get(packet.pid)
                if last is None:
                    value = out[base + 3] & 0x0F
                else:
                    value = (last + 1) % 16 if packet.has_payload else last
                counters[packet.pid] = value
                if packet.has_payload:
                    loop_counts[packet.pid] = loop_counts.get(packet.pid, 0) + 1
                out[base + 3] = (out[base + 3] & 0xF0) | value
            if packet.pcr is not None:
                pcr_fields.append(base + packet.pcr)
            fields = _pes_timestamp_offsets(out, base, packet)
            stamps.extend(fields)
            if fields and packet.pid == video_pid:
                video_pts.append(_read_timestamp(out, fields[0]))
        if not video_pts:
            raise ValueError("a segment has no video frame")
        prepared.append((bytes(out), stamps, pcr_fields, pids, video_pts))

    every_pts = sorted(p for *_, video_pts in prepared for p in video_pts)
    frame = min((b - a for a, b in itertools.pairwise(every_pts) if b > a), default=0)
    if frame <= 0:
        raise ValueError("cannot tell the frame interval from the video timestamps")
    segments = [
        _Segment(
            data=data,
            timestamps=tuple(stamps),
            pcrs=tuple(pcr_fields),
            pids=tuple(pids),
            ticks=max(video_pts) - min(video_pts) + frame,
        )
        for data, stamps, pcr_fields, pids, video_pts in prepared
    ]
    return segments, loop_counts


def _check_alignment(data: bytes, name: str) -> None:
    if not data or len(data) % PACKET_SIZE:
        raise ValueError(f"{name} is not a whole number of 188-byte TS packets")
    if any(data[i] != SYNC_BYTE for i in range(0, len(data), PACKET_SIZE)):
        raise ValueError(f"{name} has a TS packet without the 0x47 sync byte")


def _walk(data: bytes | bytearray) -> Iterator[tuple[int, _Packet]]:
    for base in range(0, len(data) - PACKET_SIZE + 1, PACKET_SIZE):
        yield base, _parse(data, base)


def _parse(data: bytes | bytearray, base: int) -> _Packet:
    pid = ((data[base + 1] & 0x1F) << 8) | data[base + 2]
    unit_start = bool(data[base + 1] & 0x40)
    control = (data[base + 3] >> 4) & 0x3
    payload = 4
    pcr = None
    if control & 0x2:
        length = data[base + 4]
        if length and data[base + 5] & 0x10 and length >= 7:
            pcr = 6
        payload = 5 + length
    has_payload = bool(control & 0x1) and payload < PACKET_SIZE
    return _Packet(pid, unit_start, has_payload, payload if has_payload else PACKET_SIZE, pcr)


def _pes_timestamp_offsets(data: bytes | bytearray, base: int, packet: _Packet) -> list[int]:
    """Absolute offsets of the PTS (and DTS) fields of a PES header starting in this packet."""
    if not (packet.unit_start and packet.has_payload) or packet.pid in (_PAT_PID, NULL_PID):
        return []
    at = base + packet.payload
    end = base + PACKET_SIZE
    if at + 9 > end or data[at : at + 3] != b"\x00\x00\x01":
        return []
    flags = data[at + 7] >> 6
    if flags == 2 and at + 14 <= end:
        return [at + 9]
    if flags == 3 and at + 19 <= end:
        return [at + 9, at + 14]
    return []


def _program(data: bytes) -> tuple[set[int], dict[int, int]]:
    """PMT PIDs and {elementary PID: stream type}, from the first PAT and PMT in `data`."""
    pmt_pids: set[int] = set()
    streams: dict[int, int] = {}
    for base, packet in _walk(data):
        if not (packet.unit_start and packet.has_payload):
            continue
        section = base + packet.payload + 1 + data[base + packet.payload]
        if packet.pid == _PAT_PID and not pmt_pids:
            for number, pid in _section_entries(data, section, 8, 4):
                if number:
                    pmt_pids.add(pid)
        elif packet.pid in pmt_pids and not streams:
            info_length = ((data[section + 10] & 0x0F) << 8) | data[section + 11]
            for kind, pid in _section_entries(data, section, 12 + info_length, 5, es=True):
                streams[pid] = kind
        if pmt_pids and streams:
            return pmt_pids, streams
    raise ValueError("the first segment has no PAT and PMT")


def _section_entries(
    data: bytes, start: int, header: int, size: int, *, es: bool = False
) -> Iterator[tuple[int, int]]:
    """(program number or stream type, PID) pairs of the PAT or PMT section at `start`.

    Entries begin `header` bytes into the section; its last 4 bytes are the CRC.
    """
    length = ((data[start + 1] & 0x0F) << 8) | data[start + 2]
    end = min(start + 3 + length - 4, len(data))
    at = start + header
    while at + size <= end:
        if es:
            pid = ((data[at + 1] & 0x1F) << 8) | data[at + 2]
            yield data[at], pid
            at += size + (((data[at + 3] & 0x0F) << 8) | data[at + 4])
        else:
            pid = ((data[at + 2] & 0x1F) << 8) | data[at + 3]
            yield (data[at] << 8) | data[at + 1], pid
            at += size


def _tables_first(data: bytes, pmt_pids: set[int], elementary: set[int]) -> bytes:
    """Reorder the tables ahead of the first media packet to PAT, PMT, then the rest (SDT).

    ffmpeg writes the SDT first; a segment that opens with PAT and PMT can be decoded by
    a player that joins right there, and readers that look for a PAT at the start work.
    """
    lead: list[bytes] = []
    for base, packet in _walk(data):
        if packet.pid in elementary:
            break
        lead.append(data[base : base + PACKET_SIZE])

    def rank(packet: bytes) -> int:
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        return 0 if pid == _PAT_PID else 1 if pid in pmt_pids else 2

    ordered = sorted(lead, key=rank)
    return b"".join(ordered) + data[len(lead) * PACKET_SIZE :]


def _read_timestamp(data: bytes | bytearray, at: int) -> int:
    return (
        ((data[at] >> 1) & 0x07) << 30
        | data[at + 1] << 22
        | (data[at + 2] >> 1) << 15
        | data[at + 3] << 7
        | data[at + 4] >> 1
    )


def _write_timestamp(out: bytearray, at: int, value: int) -> None:
    out[at] = (out[at] & 0xF1) | ((value >> 29) & 0x0E)
    out[at + 1] = (value >> 22) & 0xFF
    out[at + 2] = ((value >> 14) & 0xFE) | 0x01
    out[at + 3] = (value >> 7) & 0xFF
    out[at + 4] = ((value << 1) & 0xFE) | 0x01


def _read_pcr_base(data: bytes | bytearray, at: int) -> int:
    return (
        data[at] << 25
        | data[at + 1] << 17
        | data[at + 2] << 9
        | data[at + 3] << 1
        | data[at + 4] >> 7
    )


def _write_pcr_base(out: bytearray, at: int, value: int) -> None:
    out[at] = (value >> 25) & 0xFF
    out[at + 1] = (value >> 17) & 0xFF
    out[at + 2] = (value >> 9) & 0xFF
    out[at + 3] = (value >> 1) & 0xFF
    out[at + 4] = ((value & 0x01) << 7) | (out[at + 4] & 0x7F)
