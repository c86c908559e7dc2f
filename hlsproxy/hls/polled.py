"""What every HLS stream is to its players, whatever its source (the engine's HLS session,
or segments the proxy cuts from MPEG-TS): players poll it, so it keeps an `Audience`
instead of connections, and it ends once nobody has polled for the stream timeout."""

from __future__ import annotations

import abc

from ..lifecycle import EngineStream
from .audience import Audience


class PolledStream(EngineStream):
    audience: Audience  # made by the subclass, which knows the stream timeout

    @abc.abstractmethod
    def _target(self) -> float:
        """The target duration players poll at, in seconds."""

    @property
    def requests(self) -> int:
        return self.audience.requests

    @property
    def lookups(self) -> int:
        return self.audience.lookups

    @property
    def hits(self) -> int:
        return self.audience.hits

    @property
    def bytes_out(self) -> int:
        return self.audience.bytes_out

    def idle_deadline(self) -> float | None:
        return None if self.closing else self.audience.idle_deadline()

    def may_make_room(self, now: float) -> bool:
        return self.audience.may_make_room(now, self._target())

    def clients(self) -> int:
        """The players that polled lately."""
        return self.audience.clients(self._clock(), self._target())

    def served(self, size: int) -> None:
        """A segment, key or init section of `size` bytes went to a player."""
        self.audience.served(size)

    def touch(self) -> None:
        self.audience.touch(self._clock())

    def seen_by(self, viewer: bytes) -> None:
        """A player asked for something of this stream (`web/hls_answer.viewer` names it)."""
        self.audience.seen_by(viewer, self._clock())
