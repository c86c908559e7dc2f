"""What a scanned playlist states: its numbers, its media segments (`PlaylistInfo`)."""

from __future__ import annotations

from dataclasses import dataclass

from .tags import Scan
from .uri import ByteRange


@dataclass(frozen=True, slots=True)
class MediaSegment:
    url: str
    """As `Uri.url`; a URI that is not http(s) (left alone by rewriting) is given as written."""
    duration: float
    sequence: int
    byterange: ByteRange | None
    discontinuity: bool
    """An EXT-X-DISCONTINUITY precedes this segment."""


@dataclass(frozen=True, slots=True)
class PlaylistInfo:
    multivariant: bool
    target_duration: float | None
    media_sequence: int
    discontinuity_sequence: int
    segments: tuple[MediaSegment, ...]
    ended: bool
    """EXT-X-ENDLIST is present: no segment will be added."""
    playlist_type: str | None
    """"VOD", "EVENT" or None."""

    @property
    def duration(self) -> float:
        return sum(segment.duration for segment in self.segments)


def playlist_info(scan: Scan) -> PlaylistInfo:
    """The playlist's numbers. Raises ValueError if one cannot be read."""
    values = scan.values

    def number(name: str) -> int:
        try:
            return int(values.get(name, "0"))
        except ValueError as exc:
            raise ValueError(f"unreadable {name}: {values[name]!r}") from exc

    target = values.get("#EXT-X-TARGETDURATION")
    try:
        target_duration = None if target is None else float(target)
    except ValueError as exc:
        raise ValueError(f"unreadable EXT-X-TARGETDURATION: {target!r}") from exc
    media_sequence = 0 if scan.multivariant else number("#EXT-X-MEDIA-SEQUENCE")
    # In a delta update (EXT-X-SKIP) the first segment listed follows the skipped ones.
    first = media_sequence + number("SKIPPED-SEGMENTS")
    segments: list[MediaSegment] = []
    for sequence, segment in enumerate(scan.segments, start=first):
        try:
            duration = float(segment.duration.partition(",")[0])
        except ValueError as exc:
            raise ValueError(f"unreadable EXTINF: {segment.duration!r}") from exc
        segments.append(
            MediaSegment(segment.url, duration, sequence, segment.byterange, segment.discontinuity)
        )
    playlist_type = values.get("#EXT-X-PLAYLIST-TYPE")
    return PlaylistInfo(
        multivariant=scan.multivariant,
        target_duration=target_duration,
        media_sequence=media_sequence,
        discontinuity_sequence=number("#EXT-X-DISCONTINUITY-SEQUENCE"),
        segments=tuple(segments),
        ended=scan.ended,
        playlist_type=None if playlist_type is None else playlist_type.upper(),
    )
