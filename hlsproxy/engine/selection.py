"""Which engine plays a new content: pure data in, a choice out.

Rules, in order:
1. Content affinity: a content already playing stays on its engine (every client of a
   content shares one engine session, whatever its format).
2. Only engines that take new streams (not draining; in v2.1's API, past their startup
   probe) and with room: fewer sessions than the per-engine maximum, where a session is
   a distinct content, not a client.
3. Among those: healthy first, then the fewest sessions, then forwarded ones (reachable
   from outside through a VPN port forward), then the least recently used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Health = Literal["healthy", "unhealthy", "unknown"]


@dataclass(frozen=True, slots=True)
class Candidate:
    engine_id: str  # the container id, or host:port when there is none
    host: str
    port: int
    health: Health = "unknown"
    forwarded: bool = False
    last_used: float = 0.0  # when it last started a stream (any clock; 0 = never)
    sessions: int = 0  # what the orchestrator last reported
    accepts: bool = True  # False: the orchestrator says it takes no new stream


def choose(
    candidates: Sequence[Candidate],
    *,
    ours: Mapping[str, int],
    max_per_engine: int,
) -> Candidate | None:
    """The engine for a new content, or None when every engine is full.

    `ours` counts the sessions this proxy holds per engine. Between refreshes of the
    orchestrator's list it is the better figure, so a burst of new contents spreads over
    the engines instead of piling onto the one that looked emptiest.
    """
    usable = [c for c in candidates if c.accepts and c.health != "unhealthy"]
    load = {c.engine_id: max(c.sessions, ours.get(c.engine_id, 0)) for c in usable}
    with_room = [c for c in usable if load[c.engine_id] < max_per_engine]
    if not with_room:
        return None
    return min(
        with_room,
        key=lambda c: (c.health != "healthy", load[c.engine_id], not c.forwarded, c.last_used),
    )
