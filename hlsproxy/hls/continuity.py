"""One HLS stream's playlists as its players see them, across the engine sessions behind it.

An engine session ends (its engine died, or said the session is over) and a new one serves
the same content under new URLs, numbering its segments afresh. Players must not notice more
than one discontinuity: they keep polling the URLs they were given, and the media sequence
numbers they read never go back. So, per upstream playlist URL, this keeps the last good copy
served, and decides:

- which copy a player gets now: a fresh one, or while the stream recovers the last good one
  (`to_serve`), and after a lost session what the recovery's first attempt brought
  (`after_loss`);
- how a new session's first playlist continues the last one served (`started`, `spliced`,
  `Splice.between`): its numbers follow on, one EXT-X-DISCONTINUITY at the break; and the
  splice that renumbers its later playlists alike (`splice`, applied as they are rewritten);
- for a multivariant stream, which new variant continues which old one: the one in the same
  place of the new multivariant playlist (`install`). A player's poll of an old variant URL
  goes to its new one (`polled`), and the new one's first playlist continues the old one's
  last (`loaded`);
- once the content is gone, the last playlist ended with EXT-X-ENDLIST (`finish`);
- after each playlist, how long the segments it named stay fetchable and which to fetch
  ahead (`upkeep`).

Pure (docs/ARCHITECTURE.md, principle 1): no I/O, no clock read, no asyncio;
`stream.HlsStream` fetches the playlists and carries these decisions out.
"""

from __future__ import annotations

from dataclasses import dataclass

from .served import Served
from .splice import Splice
from .tokens import token_for

# A segment that left the playlist stays fetchable this long at least.
MIN_SEGMENT_TTL = 30.0


class Continuity:
    """The playlists served of one stream, by upstream URL, and how they continue."""

    def __init__(self) -> None:
        self.main_url = ""
        """The session's own playlist, as the engine named it."""
        self.generation = 0
        """The engine sessions that served after the first."""
        self.final: Served | None = None
        """Once the content is gone: the ended playlist, for every poll."""
        self._playlists: dict[str, Served] = {}  # upstream URL -> last good copy
        # After a new session: how each playlist of it continues the one served before it;
        # for a multivariant stream also each old variant URL's new one, and the last
        # playlist served of each, to splice its first new one onto.
        self._splices: dict[str, Splice] = {}
        self._moved: dict[str, str] = {}
        self._continues: dict[str, Served] = {}

    def __repr__(self) -> str:
        return (
            f"<Continuity {self.main_url!r} generation={self.generation} "
            f"playlists={len(self._playlists)} moved={len(self._moved)}>"
        )

    @property
    def main(self) -> Served | None:
        """The last good copy of the session's own playlist."""
        return self._playlists.get(self.main_url)

    def last(self, url: str) -> Served | None:
        """The last good copy of the playlist at `url`."""
        return self._playlists.get(url)

    def polled(self, url: str) -> str:
        """The upstream URL a player's poll of `url` (a variant it picked) goes to: after a
        new session, the new session's variant in the same place."""
        return self._moved.get(url, url)

    def to_serve(self, url: str, now: float, *, recovering: bool) -> Served | None:
        """The copy of `url` a player may get now without a fetch: a fresh one, or while the
        stream recovers the last good one, until a new session has its own."""
        current = self._playlists.get(url)
        if current is None:
            return None
        if now - current.fetched_at < current.ttl or recovering:
            return current
        return None

    @staticmethod
    def bridges(last: Served, now: float) -> bool:
        """Whether the last good copy may stand in for a refresh that failed by a blip."""
        return now - last.fetched_at <= 2 * last.target

    def splice(self, url: str) -> Splice | None:
        """How `url`'s playlists continue the ones served before a new session, if they do."""
        return self._splices.get(url)

    def started(self, url: str, first: Served, before: str | None) -> Served:
        """The first session's first playlist, at `url`: what players get, continuing
        `before` (the last slate playlist they were served) when there was one."""
        self.main_url = url
        if before is not None:
            first = self._continuing(url, before, first)
        self._playlists[url] = first
        return first

    def loaded(self, url: str, playlist: Served, splice: Splice | None) -> Served:
        """A playlist fetched from `url` (renumbered with `splice`, which was `splice(url)`
        when the fetch began): what players get. A variant's first playlist after a new
        session continues the old variant's last."""
        before = self._continues.pop(url, None)
        if splice is None and before is not None:
            playlist = self._continuing(url, before.text, playlist)
        self._playlists[url] = playlist
        return playlist

    def spliced(self, url: str, first: Served, last: Served | None) -> Served:
        """A new session's first playlist, at `url`, continuing `last` (the old session's
        own, as last served). A multivariant playlist has no segments: its variants splice,
        each on its first load."""
        if last is None or first.info.multivariant:
            return first
        return self._continuing(url, last.text, first)

    def install(self, url: str, playlist: Served) -> None:
        """The new session serves, its own playlist at `url`. Each variant of the old
        multivariant playlist moves to the new one's in the same place, if they have as many."""
        old = self._playlists.get(self.main_url)
        if old is not None and len(old.variants) == len(playlist.variants):
            for before, after in zip(old.variants, playlist.variants, strict=True):
                self._move(before, after)
        self._playlists.pop(self.main_url, None)
        self.main_url = url
        self._playlists[url] = playlist
        self.generation += 1

    def after_loss(self, url: str, last: Served) -> Served:
        """What a poll of `url` that found the session lost gets once recovery has made its
        first attempt: the ended playlist, a new session's own media playlist (for a player
        that polled a playlist of the old one), or the last good copy of `url`."""
        if self.final is not None:
            return self.final
        current = self._playlists.get(self.main_url)
        if url != self.main_url and current is not None and not current.info.multivariant:
            return current
        return self._playlists.get(url, last)

    def finish(self, last: Served) -> None:
        """The content is gone: players get `last` ended, not a loop of errors."""
        self.final = last.ended()

    def _continuing(self, url: str, before: str, first: Served) -> Served:
        playlist, self._splices[url] = first.continuing(before)
        return playlist

    def _move(self, before: str, after: str) -> None:
        # A player may still poll a variant URL of any session before: all go to the newest.
        for first, current in list(self._moved.items()):
            if current == before:
                self._moved[first] = after
        self._moved[before] = after
        last = self._playlists.pop(before, None)
        if last is not None:
            self._continues[after] = last


@dataclass(frozen=True, slots=True)
class Upkeep:
    """What a media playlist just served decides for the segments it names."""

    segment_ttl: float
    """How long a segment stays fetchable once named."""
    forget_before: float
    """Names last given before this clock reading may be forgotten."""
    prefetch: tuple[str, ...]
    """The tokens of the newest segments, to fetch before a player asks."""


def upkeep(playlist: Served, prefetch: int) -> Upkeep | None:
    """None for a multivariant playlist, which names no segment."""
    info = playlist.info
    if info.multivariant:
        return None
    # A segment that left the playlist stays fetchable for its duration plus the
    # playlist's (RFC 8216 6.2.2); slow clients get slack on top.
    ttl = max(MIN_SEGMENT_TTL, info.duration + 3 * playlist.target)
    newest = info.segments[len(info.segments) - prefetch :]
    return Upkeep(
        segment_ttl=ttl,
        forget_before=playlist.fetched_at - 2 * ttl,
        prefetch=tuple(token_for("segment", s.url, s.byterange) for s in newest),
    )
