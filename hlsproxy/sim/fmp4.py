"""fMP4 media segments played in a loop: the ISO BMFF boxes whose times move on with it."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from .media import MediaLoop

_CONTAINER_BOXES = frozenset({b"moov", b"trak", b"mdia", b"moof", b"traf"})


@dataclass(frozen=True, slots=True)
class _Field:
    """A decode or presentation time in an fMP4 segment, and how far one loop moves it."""

    offset: int
    size: int
    """Bytes: 4 or 8."""
    per_loop: int
    """Ticks of the field's timescale in one loop."""


class Fmp4Loop:
    """fMP4 media segments of a loop, played forever: segment n is segment n % count with
    every `tfdt` and `sidx` time moved on by whole loops and the `mfhd` sequence number
    set to n + 1, so that decode times only grow."""

    def __init__(self, init: bytes, segments: list[bytes], timeline: MediaLoop) -> None:
        if len(segments) != timeline.segment_count:
            raise ValueError("the fMP4 media has another number of segments than the channel's")
        self.init = init
        self._segments = segments
        scales = _timescales(init)
        self._fields: list[list[_Field]] = []
        self._sequence_numbers: list[int] = []
        starts: list[dict[int, int]] = []
        for data in segments:
            fields, sequence, decode_times = _fragment_fields(data, scales, timeline.loop_duration)
            self._fields.append(fields)
            self._sequence_numbers.append(sequence)
            starts.append(decode_times)
        for i, decode_times in enumerate(starts):
            for track, ticks in decode_times.items():
                offset = (ticks - starts[0][track]) / scales[track]
                # The muxer cuts audio a few frames off the video's keyframe; a segment
                # of another length would be a second or more off.
                if abs(offset - timeline.start(i)) > 0.25:
                    raise ValueError(f"fMP4 segment {i} of track {track} is off the timeline")

    def segment(self, n: int) -> bytes:
        if n < 0:
            raise ValueError(f"segment numbers start at 0, got {n}")
        loops, i = divmod(n, len(self._segments))
        out = bytearray(self._segments[i])
        for f in self._fields[i]:
            value = int.from_bytes(out[f.offset : f.offset + f.size], "big") + loops * f.per_loop
            out[f.offset : f.offset + f.size] = (value % (1 << 8 * f.size)).to_bytes(f.size, "big")
        at = self._sequence_numbers[i]
        out[at : at + 4] = ((n + 1) % (1 << 32)).to_bytes(4, "big")
        return bytes(out)


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int]]:
    """(type, payload offset) of every ISO BMFF box in `data[start:end]`, depth first."""
    end = len(data) if end is None else end
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, at + 8)
            header = 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            raise ValueError(f"a malformed {kind!r} box at byte {at}")
        yield kind, at + header
        if kind in _CONTAINER_BOXES:
            yield from _boxes(data, at + header, at + size)
        at += size


def _timescales(init: bytes) -> dict[int, int]:
    """{track id: media timescale} from an init section."""
    scales: dict[int, int] = {}
    track: int | None = None
    for kind, at in _boxes(init):
        # Version 1 boxes have 64-bit creation and modification times ahead of the field.
        skip = 20 if init[at] == 1 else 12
        if kind == b"tkhd":
            (track,) = struct.unpack_from(">I", init, at + skip)
        elif kind == b"mdhd" and track is not None:
            (scales[track],) = struct.unpack_from(">I", init, at + skip)
    if not scales:
        raise ValueError("the fMP4 init section has no tracks")
    return scales


def _fragment_fields(
    data: bytes, scales: Mapping[int, int], loop_seconds: float
) -> tuple[list[_Field], int, dict[int, int]]:
    """The time fields of a media segment, the offset of its sequence number, and each
    track's base decode time."""

    def per_loop(timescale: int) -> int:
        ticks = loop_seconds * timescale
        if abs(ticks - round(ticks)) > 1e-6:
            raise ValueError(f"a loop of {loop_seconds} s is no whole number of 1/{timescale} s")
        return round(ticks)

    fields: list[_Field] = []
    sequence: int | None = None
    decode_times: dict[int, int] = {}
    track: int | None = None
    for kind, at in _boxes(data):
        size = 8 if data[at] == 1 else 4
        if kind == b"mfhd":
            sequence = at + 4
        elif kind == b"tfhd":
            (track,) = struct.unpack_from(">I", data, at + 4)
        elif kind == b"tfdt" and track is not None and track in scales:
            fields.append(_Field(at + 4, size, per_loop(scales[track])))
            decode_times[track] = int.from_bytes(data[at + 4 : at + 4 + size], "big")
        elif kind == b"sidx":
            (timescale,) = struct.unpack_from(">I", data, at + 8)
            fields.append(_Field(at + 12, size, per_loop(timescale)))
    if sequence is None or decode_times.keys() != scales.keys():
        raise ValueError("an fMP4 media segment without mfhd or a tfdt for every track")
    return fields, sequence, decode_times
