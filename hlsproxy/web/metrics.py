"""Prometheus metrics at /metrics.

Most figures are read from live state when Prometheus scrapes, so the hot path (every
chunk to every client) pays nothing; ended streams hand their totals over first. Labels
are bounded: mode, route, reason, error code. Never a client, a content or a URL.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..hls.cache import SegmentCache
from ..lifecycle import EngineStream, Figures
from ..registry import MODES
from ..stat_watch import Prebuffer
from ..state import EndReason, EngineWord

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "hlsproxy_request_seconds",
            "Time to answer a request (to the first byte of a streamed body).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.engine_errors = Counter(
            "hlsproxy_engine_errors",
            "Engine failures that reached a client, by error code.",
            ["code"],
            registry=self.registry,
        )
        self.stalled_clients = Counter(
            "hlsproxy_stalled_clients",
            "Clients cut for taking nothing of an answer for the send timeout (HLS segments).",
            registry=self.registry,
        )
        self._ended: Tally[tuple[str, str]] = Tally()
        self._ended_totals: dict[str, Tally[str]] = {mode: Tally() for mode in MODES}

    def stream_ended(self, stream: EngineStream) -> None:
        self._ended[(stream.mode, (stream.reason or EndReason.ENGINE_ERROR).value)] += 1
        totals = self._ended_totals[stream.mode]
        figures = stream.figures()
        totals["bytes_in"] += figures.bytes_in
        totals["bytes_out"] += figures.bytes_out
        totals["clients_cut"] += figures.clients_cut
        totals["clients_moved_forward"] += figures.clients_moved_forward
        totals["playlist_fetches"] += figures.playlist_fetches

    def watch(self, streams: Callable[[], Iterable[EngineStream]], cache: SegmentCache) -> None:
        self.registry.register(_Live(self, streams, cache))

    def time(self, route: str) -> _Timer:
        return _Timer(self.latency.labels(route).observe)

    def render(self) -> web.Response:
        # The content type names the exposition format version generate_latest writes.
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


class _Timer:
    def __init__(self, observe: Callable[[float], None]) -> None:
        self._observe = observe
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._observe(time.perf_counter() - self._started)


class _Live(Collector):
    def __init__(
        self,
        metrics: Metrics,
        streams: Callable[[], Iterable[EngineStream]],
        cache: SegmentCache,
    ) -> None:
        self._metrics = metrics
        self._streams = streams
        self._cache = cache

    def _prebuffering(self) -> Iterator[Metric]:
        """Streams by state, and the waits for engines that prebuffer, by mode: labels name
        no content (`/ace/status?id=` gives each stream's own)."""
        by_state = GaugeMetricFamily(
            "hlsproxy_streams_by_state",
            "Streams by state (prebuffering: the engine says it is gathering the media).",
            labels=["mode", "state"],
        )
        waited = GaugeMetricFamily(
            "hlsproxy_prebuffer_longest_wait_seconds",
            "The longest wait of a stream for its engine session's first media.",
            labels=["mode"],
        )
        peers = GaugeMetricFamily(
            "hlsproxy_prebuffer_peers",
            "Peers the engines have for the streams whose first media is awaited.",
            labels=["mode"],
        )
        speed = GaugeMetricFamily(
            "hlsproxy_prebuffer_download_bytes_per_second",
            "The engines' download speed for the streams whose first media is awaited.",
            labels=["mode"],
        )
        counts: dict[tuple[str, str], int] = {}
        waits: dict[str, list[Prebuffer]] = {mode: [] for mode in MODES}
        for stream in self._streams():
            if stream.closing:
                continue
            shown = (stream.mode, stream.shown_state)
            counts[shown] = counts.get(shown, 0) + 1
            prebuffer = stream.prebuffer()
            if prebuffer is not None:
                waits[stream.mode].append(prebuffer)
        for (mode, state), n in sorted(counts.items()):
            by_state.add_metric([mode, state], n)
        for mode, found in waits.items():
            waited.add_metric([mode], max((p.waited for p in found), default=0.0))
            peers.add_metric([mode], sum(p.peers for p in found))
            speed.add_metric([mode], sum(p.speed_down for p in found) * 1024)
        yield from (by_state, waited, peers, speed)
        yield from self._engines()

    def _engines(self) -> Iterator[Metric]:
        """What the engines' stats say of the proxy's sessions, by mode. Read while someone
        scrapes: each scrape asks each session's stat again, at most once a second
        (`EngineStream.engine_word`), and shows the answers to the previous asks."""
        peers = GaugeMetricFamily(
            "hlsproxy_engine_peers",
            "Peers the engines report for the proxy's sessions (their stat, read while "
            "/metrics is scraped, at most once a second per session).",
            labels=["mode"],
        )
        speed = GaugeMetricFamily(
            "hlsproxy_engine_download_bytes_per_second",
            "The engines' download speed for the proxy's sessions (their stat, read while "
            "/metrics is scraped, at most once a second per session).",
            labels=["mode"],
        )
        found: dict[str, list[EngineWord]] = {mode: [] for mode in MODES}
        for stream in self._streams():
            word = None if stream.closing else stream.engine_word()
            if word is not None:
                found[stream.mode].append(word)
        for mode, words in found.items():
            peers.add_metric([mode], sum(w.peers for w in words))
            speed.add_metric([mode], sum(w.speed_down for w in words) * 1024)
        yield from (peers, speed)

    def collect(self) -> Iterator[Metric]:
        live: dict[str, list[Figures]] = {mode: [] for mode in MODES}
        for stream in self._streams():
            if not stream.closing:
                live[stream.mode].append(stream.figures())
        ended = self._metrics._ended_totals

        active = GaugeMetricFamily("hlsproxy_streams", "Streams playing.", labels=["mode"])
        clients = GaugeMetricFamily(
            "hlsproxy_clients",
            "Players: MPEG-TS clients connected (ts); HLS players seen within the last three "
            "target durations, one per address and User-Agent (hls).",
            labels=["mode"],
        )
        bytes_in = CounterMetricFamily(
            "hlsproxy_upstream_bytes",
            "Bytes read from engines, each once however many players get them: MPEG-TS "
            "bodies (ts); HLS playlists and segments (hls). Under the mode of the engine "
            "session that read them: HLS cut by the proxy counts under ts, MPEG-TS fed from "
            "an HLS session under hls.",
            labels=["mode"],
        )
        bytes_out = CounterMetricFamily(
            "hlsproxy_client_bytes", "Bytes sent to clients.", labels=["mode"]
        )
        for mode in MODES:
            figures = live[mode]
            active.add_metric([mode], len(figures))
            clients.add_metric([mode], sum(f.clients for f in figures))
            bytes_in.add_metric([mode], ended[mode]["bytes_in"] + sum(f.bytes_in for f in figures))
            bytes_out.add_metric(
                [mode], ended[mode]["bytes_out"] + sum(f.bytes_out for f in figures)
            )
        yield from (active, clients, bytes_in, bytes_out)
        yield from self._prebuffering()

        cut = CounterMetricFamily(
            "hlsproxy_clients_cut", "MPEG-TS clients disconnected for falling behind."
        )
        cut.add_metric([], ended["ts"]["clients_cut"] + sum(f.clients_cut for f in live["ts"]))
        yield cut
        moved = CounterMetricFamily(
            "hlsproxy_clients_moved_forward",
            "MPEG-TS clients still reading that fell a whole buffer behind and were moved "
            "forward to the newest keyframe instead of being cut.",
        )
        moved.add_metric(
            [],
            ended["ts"]["clients_moved_forward"] + sum(f.clients_moved_forward for f in live["ts"]),
        )
        yield moved

        stats = self._cache.stats
        fetches = CounterMetricFamily(
            "hlsproxy_upstream_fetches", "HLS fetches from engines.", labels=["kind"]
        )
        fetches.add_metric(["segment"], stats.upstream_fetches)
        fetches.add_metric(
            ["playlist"],
            ended["hls"]["playlist_fetches"] + sum(f.playlist_fetches for f in live["hls"]),
        )
        yield fetches
        lookups = CounterMetricFamily(
            "hlsproxy_cache_requests", "Segment cache lookups by outcome.", labels=["outcome"]
        )
        lookups.add_metric(["hit"], stats.hits)
        lookups.add_metric(["miss"], stats.misses)
        lookups.add_metric(["coalesced"], stats.coalesced)
        yield lookups
        removed = CounterMetricFamily(
            "hlsproxy_cache_evictions", "Segments removed from the cache.", labels=["why"]
        )
        removed.add_metric(["budget"], stats.evicted)
        removed.add_metric(["expired"], stats.expired)
        yield removed
        held = GaugeMetricFamily("hlsproxy_cache_bytes", "Bytes held by the segment cache.")
        held.add_metric([], stats.current_bytes)
        yield held
        fetched = CounterMetricFamily(
            "hlsproxy_cache_fetched_bytes", "Segment bytes fetched from engines."
        )
        fetched.add_metric([], stats.bytes_fetched)
        yield fetched
        cut_segments = CounterMetricFamily(
            "hlsproxy_segments_cut", "HLS segments the proxy cut from MPEG-TS streams."
        )
        cut_segments.add_metric([], stats.stored)
        yield cut_segments
        cut_bytes = CounterMetricFamily(
            "hlsproxy_segments_cut_bytes", "Bytes of the HLS segments the proxy cut."
        )
        cut_bytes.add_metric([], stats.bytes_stored)
        yield cut_bytes

        sessions = CounterMetricFamily(
            "hlsproxy_streams_started",
            "Streams started; each holds one engine session unless it rides another format's.",
            labels=["mode"],
        )
        ended_sessions = CounterMetricFamily(
            "hlsproxy_streams_ended",
            "Streams ended (their engine sessions stopped), by reason; engine_error = failed.",
            labels=["mode", "reason"],
        )
        for (ended_mode, cause), n in sorted(self._metrics._ended.items()):
            ended_sessions.add_metric([ended_mode, cause], n)
        for mode in MODES:
            done = sum(n for (m, _), n in self._metrics._ended.items() if m == mode)
            sessions.add_metric([mode], done + len(live[mode]))
        yield sessions
        yield ended_sessions
