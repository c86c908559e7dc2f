"""A playlist as the proxy serves it: the rewritten text, what it says, and how it continues.

Pure: no I/O, no clock (the time it was fetched is given).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .info import PlaylistInfo
from .splice import Splice, end_playlist, mark_discontinuity

DEFAULT_TARGET = 6.0


@dataclass(frozen=True, slots=True)
class Served:
    text: str
    info: PlaylistInfo
    fetched_at: float
    offset: int = 0
    """Added to the engine's media sequence numbers: nonzero after a restarted session."""
    variants: tuple[str, ...] = ()
    """A multivariant playlist's variant and rendition playlists, upstream, in order."""

    @property
    def target(self) -> float:
        return self.info.target_duration or DEFAULT_TARGET

    @property
    def ttl(self) -> float:
        if self.info.ended or self.info.playlist_type == "VOD":
            return 3600.0
        # Never longer than half a target duration: players refresh about once per target.
        return max(0.5, self.target / 2)

    def ended(self) -> Served:
        """The same playlist, telling players that no segment will follow."""
        return replace(self, text=end_playlist(self.text))

    def continuing(self, before: str) -> tuple[Served, Splice]:
        """This first playlist of a new session, renumbered to follow `before` (the text of
        the last one served before it: the old session's, or the slate's) across one
        discontinuity; and the splice, for the new session's later playlists."""
        splice = Splice.between(before, self.text)
        text = mark_discontinuity(self.text, splice)
        return replace(self, text=text, offset=splice.media_offset), splice
