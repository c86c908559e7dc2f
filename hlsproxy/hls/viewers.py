"""Who watches an HLS stream: players, not requests.

An HLS player is not a connection: it asks for a playlist every target duration and for
every new segment, over one connection or several, and reconnects when it likes. So a
viewer is a player seen recently, told apart by what every request of it carries without
cookies or per-player URLs: its address and its User-Agent (the web layer makes the
identity, `web/hls_answer.viewer`). Two players of one kind on one machine count as one;
players behind one address (a NAT, a reverse proxy) count once per kind of player.

A viewer is counted until it has missed a few playlist polls (`within`, given in seconds by
the stream from its target duration). The table is bounded by age (older entries leave as
the count is read) and by size (the oldest leaves first).
"""

from __future__ import annotations

# Far more players than one channel has in a home or a small venue: past it, the ones seen
# longest ago are forgotten first, so the count stays right for those who still poll.
MAX_VIEWERS = 4096


class Viewers:
    """The players seen, each with when it was seen last; a clock reading is passed in."""

    def __init__(self, limit: int = MAX_VIEWERS) -> None:
        self._limit = limit
        # Insertion order is the order of last sight: the oldest is first.
        self._seen: dict[bytes, float] = {}

    def __repr__(self) -> str:
        return f"<Viewers {len(self._seen)}>"

    def saw(self, who: bytes, now: float) -> None:
        self._seen.pop(who, None)
        self._seen[who] = now
        if len(self._seen) > self._limit:
            del self._seen[next(iter(self._seen))]

    def count(self, now: float, within: float) -> int:
        """The players seen within the last `within` seconds; older ones are forgotten."""
        seen = self._seen
        while seen:
            oldest = next(iter(seen))
            if now - seen[oldest] <= within:
                break
            del seen[oldest]
        return len(seen)
