"""What one HLS run measured, in figures: the records of the engine and of the viewers
matched up per segment (`analyse`), and several runs' figures pooled into one."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from report import percentile


def _first(values: list[Any]) -> Any:
    return values[0]


def _sum_each(values: list[list[float]]) -> list[float]:
    return [sum(w) for w in zip(*values, strict=True)]


def _count(values: list[dict[str, int]]) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for value in values:
        counts.update(value)
    return dict(counts)


def _join(values: list[str]) -> str:
    return "\n\n".join(v for v in values if v)


@dataclass
class RunResult:
    """One run's figures, or several runs' pooled: numbers summed and samples concatenated,
    but for the fields whose metadata names another way ("pool")."""

    name: str = field(metadata={"pool": _first})
    viewers: int = field(metadata={"pool": _first})
    started: int = field(metadata={"pool": min})
    """Viewers started (the fewest of the pooled runs)."""
    never_stalled: int = field(metadata={"pool": min})
    """Viewers whose playback never stalled (the fewest of the pooled runs)."""
    stalls: int
    window: float
    """Seconds measured (summed over pooled runs); every CPU figure is divided by it."""
    cpu: float
    """Seconds of CPU the server used in the window."""
    cpu_runs: list[float]
    """The server's CPU in each run, % of one core."""
    rss_max: int = field(metadata={"pool": max})
    engine_cpu: float
    worker_cpu: list[float] = field(metadata={"pool": _sum_each})
    machine_busy: float
    """Seconds of CPU every process on the machine used in the window, ours included."""
    lags_ms: list[float]
    upstream: list[int]
    """Upstream fetches of each segment the engine served (200), for the whole run."""
    upstream_missing: int
    playlist_fetches_window: int
    target: float = field(metadata={"pool": _first})
    playlist_reloads_window: int
    window_received: int
    """Segment responses for the segments published in the window..."""
    window_expected: int
    """...and how many there would be if every viewer had every one of them."""
    window_bytes: int
    window_media_seconds: float
    hit_ms: list[float]
    miss_ms: list[float]
    miss_ttfb_ms: list[float]
    first_ms: list[float]
    engine_ms: list[float]
    paired_ms: list[float]
    """Per segment: its first request's latency through the server minus the probe's."""
    playlist_ms: list[float]
    size_mismatch: int
    segment_requests: int
    errors: dict[str, int] = field(metadata={"pool": _count})
    profile: str = field(default="", metadata={"pool": _join})

    @property
    def cpu_pct(self) -> float:
        """The median run's CPU: one run disturbed by the rest of the machine does not move it."""
        return statistics.median(self.cpu_runs)

    @classmethod
    def pool(cls, runs: Sequence[RunResult]) -> RunResult:
        pooled: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            values = [getattr(r, f.name) for r in runs]
            how = f.metadata.get("pool")
            if how is not None:
                pooled[f.name] = how(values)
            elif isinstance(values[0], list):
                pooled[f.name] = [x for value in values for x in value]
            else:
                pooled[f.name] = sum(values)
        return cls(**pooled)


def miss_overhead(r: RunResult) -> tuple[float, float]:
    """How much a coalesced miss adds to the engine's own latency for the same segment, at
    p50 and p99 (ms)."""
    if not r.paired_ms:
        return math.nan, math.nan
    return percentile(r.paired_ms, 0.5), percentile(r.paired_ms, 0.99)


def others_pct(r: RunResult) -> float:
    """CPU that processes other than the benchmark's used in the window, % of one core."""
    ours = r.cpu + r.engine_cpu + sum(r.worker_cpu)
    # Readings of different counters at slightly different times: "none" may come out < 0.
    return max(0.0, 100 * (r.machine_busy - ours) / r.window)


def _segment_path(infohash: str) -> re.Pattern[str]:
    return re.compile(rf"/ace/c/{infohash}/(\d+)\.ts(\?.*)?")


def analyse(
    name: str,
    *,
    viewers: int,
    warmup: float,
    content_id: str,
    window: tuple[float, float],
    engine_log: dict[str, Any],
    workers: list[dict[str, Any]],
    meter: dict[str, Any],
) -> RunResult:
    w0, w1 = window
    infohash = hashlib.sha1(content_id.lower().encode()).hexdigest()
    seg_re = _segment_path(infohash)
    upstream: collections.Counter[int] = collections.Counter()
    published: dict[int, float] = {}
    missing = 0
    playlist_fetches = 0
    for t, path_qs, status in engine_log["requests"]:
        m = seg_re.fullmatch(path_qs)
        if m is not None:
            if m.group(2) and "probe=1" in m.group(2):
                continue
            if status == 200:
                upstream[int(m.group(1))] += 1
                published.setdefault(int(m.group(1)), t)
            else:
                missing += 1
        elif path_qs.startswith("/ace/m/") and w0 <= t < w1:
            playlist_fetches += 1

    segments = [tuple(s) for w in workers for s in w["segments"]]
    by_seq: dict[int, list[tuple[Any, ...]]] = collections.defaultdict(list)
    for s in segments:
        if s[5] == 200:
            by_seq[s[0]].append(s)
    ramp_end = w0 - warmup
    probes = {
        p[0]: 1000 * (p[3] - p[1])
        for w in workers
        for p in w["probes"]
        if p[5] == 200 and p[1] >= ramp_end
    }
    hit_ms: list[float] = []
    miss_ms: list[float] = []
    miss_ttfb: list[float] = []
    paired_ms: list[float] = []
    first_ms: list[float] = []
    mismatch = 0
    for seq, reqs in by_seq.items():
        first_done = min(r[3] for r in reqs)
        sizes = collections.Counter(r[4] for r in reqs)
        mismatch += len(reqs) - sizes.most_common(1)[0][1]
        first = min(reqs, key=lambda r: r[1])
        if first[1] >= ramp_end:
            first_ms.append(1000 * (first[3] - first[1]))
        for r in reqs:
            if r[1] < ramp_end:
                continue  # the join bursts of the ramp are not steady state
            latency = 1000 * (r[3] - r[1])
            if r[1] < first_done:
                miss_ms.append(latency)
                miss_ttfb.append(1000 * (r[2] - r[1]))
                # The probe of this segment ran at the same moment, so a stall of the whole
                # machine delays both: the difference is the server's own share, where two
                # percentiles compared would count such stalls as overhead.
                if seq in probes:
                    paired_ms.append(latency - probes[seq])
            else:
                hit_ms.append(latency)
    engine_ms = list(probes.values())
    playlist_ms = [
        1000 * (p[1] - p[0]) for w in workers for p in w["playlists"] if p[0] >= ramp_end
    ]
    reloads = sum(1 for w in workers for p in w["playlists"] if w0 <= p[0] < w1)
    # Segments that reached the server in the window, with time left to reach every viewer.
    window_segments = [
        k for k, t in published.items() if w0 <= t < w1 - 2 * meter["target"] and k in by_seq
    ]
    received = sum(len(by_seq[k]) for k in window_segments)
    window_bytes = sum(r[4] for k in window_segments for r in by_seq[k])
    media_seconds = sum(by_seq[k][0][6] for k in window_segments)
    lags = [1000 * x for w in workers for x in w["lags"]]
    errors: collections.Counter[str] = collections.Counter()
    for w in workers:
        errors.update(w["errors"])
    if engine_log.get("unexpected"):
        errors["engine: unexpected requests"] += len(engine_log["unexpected"])
    return RunResult(
        name=name,
        viewers=viewers,
        started=sum(w["started"] for w in workers),
        never_stalled=sum(w["never_stalled"] for w in workers),
        stalls=sum(w["stalls"] for w in workers),
        window=w1 - w0,
        cpu=meter["server_cpu"],
        cpu_runs=[100 * meter["server_cpu"] / (w1 - w0)],
        rss_max=meter["server_rss"],
        engine_cpu=meter["engine_cpu"],
        worker_cpu=meter["worker_cpu"],
        machine_busy=meter["machine_busy"],
        lags_ms=lags,
        upstream=[upstream[n] for n in sorted(upstream)],
        upstream_missing=missing,
        playlist_fetches_window=playlist_fetches,
        target=meter["target"],
        playlist_reloads_window=reloads,
        window_received=received,
        window_expected=len(window_segments) * sum(w["started"] for w in workers),
        window_bytes=window_bytes,
        window_media_seconds=media_seconds,
        hit_ms=hit_ms,
        miss_ms=miss_ms,
        miss_ttfb_ms=miss_ttfb,
        first_ms=first_ms,
        engine_ms=engine_ms,
        paired_ms=paired_ms,
        playlist_ms=playlist_ms,
        size_mismatch=mismatch,
        segment_requests=len(segments),
        errors=dict(errors),
    )
