"""Who an HLS stream serves, as one table for both kinds of it (the engine's and the cut one).

An HLS stream has no connection to count: its players poll. What it knows of them is when
one last asked (which sets its idle deadline), how many asked (`requests`), the players seen
lately (`viewers.Viewers`), what went out to them, and how often the segment cache answered.

Pure: no I/O, no clock read (each reading is passed in).
"""

from __future__ import annotations

from ..state import Watch, may_make_room
from .viewers import Viewers

# Players poll about once per target duration: this many polls missed and nobody watches.
QUIET_POLLS = 3


class Audience:
    def __init__(self, since: float, stream_timeout: float) -> None:
        self.requests = 0
        self.lookups = 0
        self.hits = 0
        self.bytes_out = 0
        self.viewers = Viewers()
        self._last_used = since
        self._timeout = stream_timeout

    def __repr__(self) -> str:
        return f"<Audience {self.requests} requests {self.viewers!r}>"

    def touch(self, now: float) -> None:
        """A player asked for something."""
        self._last_used = now
        self.requests += 1

    def used(self, now: float) -> None:
        """A player was served just now, within a request already counted."""
        self._last_used = now

    def seen_by(self, viewer: bytes, now: float) -> None:
        """A player asked for something (`web/hls_answer.viewer` names it)."""
        self.viewers.saw(viewer, now)

    def served(self, size: int) -> None:
        """A segment, key or init section of `size` bytes went to a player."""
        self.bytes_out += size

    def looked_up(self, hit: bool) -> None:
        """A segment was asked of the cache: it was there (`hit`), or had to be fetched."""
        self.lookups += 1
        self.hits += hit

    def idle_deadline(self) -> float:
        """When the stream has been idle too long, unless a player asks before."""
        return self._last_used + self._timeout

    def may_make_room(self, now: float, target: float) -> bool:
        """Nobody polled the last few target durations: the stream may go for another."""
        return may_make_room(Watch(0, self._last_used, QUIET_POLLS * target), now)

    def clients(self, now: float, target: float) -> int:
        """The players that polled within the last few target durations."""
        return self.viewers.count(now, QUIET_POLLS * target)
