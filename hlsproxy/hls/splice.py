"""What players are served when the upstream session behind a media playlist changes.

A proxy that switches to a new upstream session mid-stream keeps its players going with
`Splice.between` (once, at the break) and `mark_discontinuity` (on every playlist of the new
session): media sequence numbers keep growing and the break carries EXT-X-DISCONTINUITY.
When the session ends for good, `end_playlist` tells players so.
"""

from __future__ import annotations

from dataclasses import dataclass

from .emit import Renumbering, emit
from .info import PlaylistInfo, playlist_info
from .lines import line_end, split_lines, tag_name
from .scan import scan_playlist
from .tags import Scan

# Sequence numbers do not depend on where the URIs point, so any base serves to count them.
_ANY_BASE = "http://playlist.invalid/"


def end_playlist(text: str) -> str:
    """The same media playlist with EXT-X-ENDLIST appended, unless it already has one.

    Served when a live stream ends, so that players stop instead of retrying a dead
    playlist. A multivariant playlist cannot carry the tag (players do not reload it
    anyway): it comes back unchanged.
    """
    lines = split_lines(text)
    names = {tag_name(line.text.strip()) for line in lines}
    if "#EXT-X-ENDLIST" in names or "#EXT-X-STREAM-INF" in names:
        return text
    end = line_end(lines)
    if text and not text.endswith("\n"):
        text += end
    return f"{text}#EXT-X-ENDLIST{end}"


@dataclass(frozen=True, slots=True)
class Splice:
    """How a new upstream session's playlists continue the playlist already served.

    The new session numbers its segments afresh; players need media sequence numbers that
    only grow, and a discontinuity at the break, or they stall (hls.js) or replay. Made once
    at the break with `between`; `mark_discontinuity` then applies it to every playlist of
    the new session. Each segment keeps its discontinuity sequence number across reloads,
    counted as players do: EXT-X-DISCONTINUITY-SEQUENCE plus the EXT-X-DISCONTINUITY tags up
    to and including the segment's own.

    Not for LL-HLS: LAST-MSN, `_HLS_msn` and the like are not renumbered.
    """

    media_offset: int
    """Added to the new session's media sequence numbers."""
    discontinuity_offset: int
    """Added to the new session's discontinuity sequence numbers."""
    first_sequence: int
    """The media sequence number (as served) of the new session's first segment, the one
    that carries the EXT-X-DISCONTINUITY."""

    @classmethod
    def between(cls, served: str, new: str) -> Splice:
        """`served`: the last playlist served to players (itself possibly spliced);
        `new`: the first playlist of the new session."""
        before = playlist_info(scan_playlist(served, _ANY_BASE))
        if before.segments:
            last = before.segments[-1]
            next_sequence = last.sequence + 1
            next_discontinuity = _discontinuity_numbers(before)[-1] + 1
        else:
            next_sequence = before.media_sequence
            next_discontinuity = before.discontinuity_sequence + 1
        after = playlist_info(scan_playlist(new, _ANY_BASE))
        if after.segments:
            first = after.segments[0]
            first_sequence = first.sequence
            first_discontinuity = after.discontinuity_sequence + int(first.discontinuity)
        else:
            # The next segment the session adds will carry the media sequence number.
            first_sequence = after.media_sequence
            first_discontinuity = after.discontinuity_sequence
        return cls(
            media_offset=next_sequence - first_sequence,
            discontinuity_offset=next_discontinuity - first_discontinuity,
            first_sequence=next_sequence,
        )


def _discontinuity_numbers(info: PlaylistInfo) -> list[int]:
    numbers: list[int] = []
    current = info.discontinuity_sequence
    for segment in info.segments:
        current += int(segment.discontinuity)
        numbers.append(current)
    return numbers


def mark_discontinuity(text: str, splice: Splice) -> str:
    """A playlist of the new session, renumbered to continue the served one (see `Splice`).

    Sets EXT-X-MEDIA-SEQUENCE and EXT-X-DISCONTINUITY-SEQUENCE (adding them after #EXTM3U
    if missing), and puts EXT-X-DISCONTINUITY before the break segment while it is still
    in the playlist. Every other line is kept byte for byte.
    """
    scan = scan_playlist(text, _ANY_BASE)
    return emit(scan, None, renumbering(scan, splice, playlist_info(scan)))


def renumbering(scan: Scan, splice: Splice, info: PlaylistInfo) -> Renumbering:
    """The header values to set, the header lines to add, and the line before which the
    break's EXT-X-DISCONTINUITY goes."""
    if info.multivariant:
        raise ValueError("only a media playlist can be spliced")
    if scan.head is None:
        raise ValueError("not a playlist: no #EXTM3U line")
    break_at: int | None = None
    for segment, read in zip(scan.segments, info.segments, strict=True):
        if read.sequence + splice.media_offset == splice.first_sequence:
            if not read.discontinuity:
                break_at = segment.start
            break
    discontinuity_sequence = info.discontinuity_sequence + splice.discontinuity_offset
    if break_at is not None:
        # The inserted tag counts towards the break segment's number: start one lower.
        discontinuity_sequence -= 1
    headers = {
        "#EXT-X-MEDIA-SEQUENCE": info.media_sequence + splice.media_offset,
        "#EXT-X-DISCONTINUITY-SEQUENCE": discontinuity_sequence,
    }
    present = {line.name for line in scan.lines}
    end = line_end(scan.lines)
    # Headers missing from the text go right after #EXTM3U, which is before any segment and
    # any EXT-X-DISCONTINUITY, as RFC 8216 requires.
    missing = [f"{name}:{value}{end}" for name, value in headers.items() if name not in present]
    return Renumbering(headers, missing, break_at)
