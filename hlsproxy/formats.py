"""Where the formats meet: which stream plays a content in each format, on one engine session.

The engine allows one session per content. Where HLS comes from is an option:
- `proxy`: HLS is cut by the proxy from the content's MPEG-TS stream (`cut_stream`); the
  engine only ever sees one MPEG-TS session per content, whoever watches.
- `engine`: HLS plays from the engine's HLS session; when a content is wanted in both
  formats, its MPEG-TS clients are fed that session's segments. An HLS player who arrives
  while the content already plays as MPEG-TS is served HLS cut from that MPEG-TS stream
  instead: handing its session over to an engine HLS session would leave its MPEG-TS clients
  a gap and time stamps that go back.

The registry (`registry.Registry`) makes each stream by these rules; this module holds what
the two formats of one content share. `ts/` and `hls/` never import each other: this is
where they meet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .cut_stream import CutHlsStream
from .hls.stream import HlsStream
from .lifecycle import EngineStream
from .ts.stream import TsStream

AnyHls = HlsStream | CutHlsStream
AnyStream = TsStream | AnyHls


@dataclass(frozen=True, slots=True)
class Channel:
    """One content as its players get it: its MPEG-TS stream and its HLS stream, each while
    it plays in that format. One of them holds the engine session (the owner); the other,
    if any, is fed from it."""

    ts: TsStream | None
    hls: AnyHls | None

    @classmethod
    def of(cls, streams: Iterable[EngineStream]) -> Channel:
        """The channel of `streams`, which are one content's (at most one of each format)."""
        ts: TsStream | None = None
        hls: AnyHls | None = None
        for stream in streams:
            if isinstance(stream, TsStream):
                ts = stream
            elif isinstance(stream, HlsStream | CutHlsStream):
                hls = stream
        if ts is None and hls is None:
            raise ValueError("a channel has a stream")
        return cls(ts, hls)

    @property
    def owner(self) -> AnyStream:
        """The stream whose engine session feeds the channel."""
        if self.ts is not None and not isinstance(self.hls, HlsStream):
            return self.ts
        assert self.hls is not None
        return self.hls

    @property
    def source(self) -> str:
        """Where the players' media comes from, in words."""
        if isinstance(self.hls, CutHlsStream):
            return "MPEG-TS session; HLS cut by the proxy"
        if self.hls is not None:
            return "HLS session" + ("; MPEG-TS from its segments" if self.ts else "")
        return "MPEG-TS session"

    def players(self) -> tuple[tuple[str, int], ...]:
        """Players by kind ("HLS", "MPEG-TS"): HLS players seen recently, MPEG-TS clients
        connected. A format nobody plays is left out (the MPEG-TS stream that HLS is cut
        from, say), unless nobody plays at all."""
        counted = tuple(
            (kind, stream.figures().clients)
            for kind, stream in (("HLS", self.hls), ("MPEG-TS", self.ts))
            if stream is not None
        )
        return tuple(entry for entry in counted if entry[1]) or counted
