"""Where the formats meet: which stream plays a content in each format, on one engine session.

The engine allows one session per content. HLS plays from the engine's HLS session; when a
content is wanted in both formats, its MPEG-TS clients are fed that session's segments, and
an MPEG-TS stream that had its own session hands it over. `ts/` and `hls/` never import each
other: this is the one place that knows both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .content import StreamRequest
from .engine.client import EngineClient
from .hls.cache import SegmentCache
from .hls.channel import HlsOptions, HlsStream
from .lifecycle import EngineStream
from .sessions import Sessions
from .state import WaitBounds
from .streams import Registry
from .ts.stream import TsOptions, TsStream

AnyStream = TsStream | HlsStream


@dataclass(frozen=True, slots=True)
class StreamFactory:
    client: EngineClient
    sessions: Sessions
    segments: SegmentCache
    ts_options: TsOptions
    hls_options: HlsOptions
    wait_bounds: WaitBounds
    on_idle: Callable[[], None]
    on_closed: Callable[[EngineStream], None]

    def ts(self, request: StreamRequest, partner: HlsStream | None) -> TsStream:
        """An MPEG-TS stream: it rides the content's HLS session when there is one."""
        return TsStream(
            request,
            client=self.client,
            sessions=self.sessions,
            options=self.ts_options,
            wait_bounds=self.wait_bounds,
            partner=partner,
            on_idle=self.on_idle,
            on_closed=self.on_closed,
        )

    def hls(self, request: StreamRequest, partner: TsStream | None) -> HlsStream:
        """An HLS stream: an MPEG-TS stream of the content hands its session over to it."""
        hls = HlsStream(
            request,
            client=self.client,
            sessions=self.sessions,
            cache=self.segments,
            options=self.hls_options,
            wait_bounds=self.wait_bounds,
            on_closed=self.on_closed,
        )
        if partner is not None:
            partner.hand_over(hls)
        return hls


Streams = Registry[TsStream, HlsStream]
