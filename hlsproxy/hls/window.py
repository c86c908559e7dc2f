"""The live media playlist of segments the proxy cut itself: a sliding window, pure.

What RFC 8216 asks of it, and how this window keeps it:
- `EXT-X-TARGETDURATION` (4.3.3.1) is an integer at least as large as every `EXTINF`
  rounded to the nearest integer, and does not change (6.2.1). The window declares the
  configured target rounded up, or the longest segment it ever held if that rounds higher:
  it grows only for a stream whose keyframes are further apart than the target, which no
  cut could fix.
- `EXT-X-MEDIA-SEQUENCE` (4.3.3.2) is the number of the first segment listed; segment
  numbers only grow, so it never goes back.
- `EXT-X-DISCONTINUITY` (4.3.2.3) stands before a segment whose time stamps do not follow
  the previous one's; `EXT-X-DISCONTINUITY-SEQUENCE` (4.3.3.3) counts those that left the
  window, so a player matches segments across reloads.
- `EXT-X-PROGRAM-DATE-TIME` (4.3.2.6) on every segment: the wall-clock time of its first
  frame, which players use to line up reloads and to show the time of day.
- `EXT-X-INDEPENDENT-SEGMENTS` (4.3.5.1): every segment starts with a keyframe.
- A segment that left the playlist must stay fetchable for its duration plus the
  playlist's (6.2.2): see `retention`.

Version 3 covers every tag used (decimal `EXTINF` durations, 7 of RFC 8216).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class Entry:
    sequence: int
    duration: float
    """Seconds."""
    started_at: float
    """Wall-clock time (Unix seconds) of its first frame."""
    discontinuity: bool
    uri: str


def _rounded(seconds: float) -> int:
    """What RFC 8216 4.3.3.1 compares against the target duration: the nearest integer."""
    return math.floor(seconds + 0.5)


class Window:
    """The newest `size` segments, and what the playlist says about them."""

    __slots__ = ("_discontinuities", "_entries", "_next", "size", "target_duration")

    def __init__(self, size: int, target: float) -> None:
        if size < 1:
            raise ValueError(f"a window holds at least one segment, not {size}")
        self.size = size
        self.target_duration = max(1, math.ceil(target))
        self._entries: deque[Entry] = deque()
        self._next = 0
        self._discontinuities = 0  # discontinuities that left the window

    def __repr__(self) -> str:
        return f"<Window {len(self._entries)}/{self.size} next={self._next}>"

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries)

    @property
    def next_sequence(self) -> int:
        return self._next

    def add(
        self, duration: float, started_at: float, discontinuity: bool, uri: str
    ) -> tuple[Entry, list[Entry]]:
        """A new segment at the live end; returns it and the segments it pushed out."""
        entry = Entry(self._next, duration, started_at, discontinuity and bool(self._next), uri)
        self._next += 1
        self._entries.append(entry)
        self.target_duration = max(self.target_duration, _rounded(duration))
        gone = []
        while len(self._entries) > self.size:
            old = self._entries.popleft()
            self._discontinuities += old.discontinuity
            gone.append(old)
        return entry, gone

    def duration(self) -> float:
        return sum(e.duration for e in self._entries)

    def retention(self) -> float:
        """How long a segment stays fetchable after it was cut: the window's span while
        listed, then its own duration plus the playlist's (RFC 8216 6.2.2), with slack for a
        player that paused at the window's start."""
        span = self.size * self.target_duration
        return 2 * span + 3 * self.target_duration

    def render(self, *, ended: bool = False) -> str:
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{self._entries[0].sequence if self._entries else self._next}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuities}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        for entry in self._entries:
            if entry.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(entry.started_at)}")
            lines.append(f"#EXTINF:{entry.duration:.3f},")
            lines.append(entry.uri)
        if ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
