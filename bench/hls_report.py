"""The HLS benchmark's report: one table per viewer count with a column per server, each
run's figures when there were several, and the CPU of every server against nginx's."""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Sequence

from hls_results import RunResult, miss_overhead, others_pct
from report import percentile

BUSY_PCT = 20.0
"""Other processes' CPU in a run above which its figures are flagged."""


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"{percentile(values, 0.5):.1f} / {percentile(values, 0.99):.1f} (n={len(values)})"


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def _cpu(r: RunResult) -> str:
    text = f"{r.cpu_pct:.1f} %"
    if len(r.cpu_runs) > 1:
        text += " (" + ", ".join(f"{c:.1f}" for c in r.cpu_runs) + ")"
    return text


def _cpu_ratio(r: RunResult, ref: RunResult) -> str:
    if r is ref:
        return "1"
    if ref.cpu <= 0:
        return "n/a"
    text = f"{r.cpu_pct / ref.cpu_pct:.2f}x"
    pairs = [a / b for a, b in zip(r.cpu_runs, ref.cpu_runs, strict=False) if b > 0]
    if len(pairs) > 1:
        text += f" ({min(pairs):.2f} to {max(pairs):.2f})"
    return text


def upstream(r: RunResult) -> str:
    return f"{sum(r.upstream)} for {len(r.upstream)} segments, max {max(r.upstream, default=0)}"


def _errors(r: RunResult) -> str:
    items = [f"{k}: {v}" for k, v in sorted(r.errors.items())]
    if r.size_mismatch:
        items.append(f"segments of the wrong size: {r.size_mismatch}")
    if r.upstream_missing:
        items.append(f"engine 404s for segments: {r.upstream_missing}")
    return "; ".join(items) or "none"


def _delivered(r: RunResult) -> str:
    if not r.window_expected:
        return "n/a"
    share = 100 * r.window_received / r.window_expected
    rate = 8 * r.window_bytes / r.window_media_seconds if r.window_media_seconds else 0.0
    return f"{share:.1f} % ({rate / 1e9:.2f} Gbit/s of media time)"


def _others(r: RunResult) -> str:
    return f"{others_pct(r):.0f} %"


def _overhead(r: RunResult) -> str:
    p50, p99 = miss_overhead(r)
    return "n/a" if math.isnan(p50) else f"{p50:+.1f} / {p99:+.1f} (n={len(r.paired_ms)})"


def _per_run(order: Sequence[RunResult], loads: Sequence[float]) -> list[str]:
    lines = [
        "| run | server CPU | coalesced miss, ms p50 / p99 | engine direct, ms p50 / p99 "
        "| miss minus engine, same segment | other processes' CPU | load average before "
        "| load loop lag max |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    seen: collections.Counter[str] = collections.Counter()
    for r, load in zip(order, loads, strict=True):
        seen[r.name] += 1
        lines.append(
            f"| {r.name} #{seen[r.name]} | {r.cpu_pct:.1f} % | {_ms(r.miss_ms)} "
            f"| {_ms(r.engine_ms)} | {_overhead(r)} | {others_pct(r):.0f} % | {load:.1f} "
            f"| {max(r.lags_ms, default=math.nan):.0f} ms |"
        )
    return lines


def report(
    results: Sequence[RunResult],
    heading: str,
    targets: Sequence[str],
    order: Sequence[RunResult],
    loads: Sequence[float],
) -> str:
    """`results` pooled per server, `order` each run as it came, `loads` the load average
    before each; `heading` says how the runs were made, `targets` what they met."""
    nginx = next((r for r in results if r.name == "nginx"), None)
    rows: list[tuple[str, Callable[[RunResult], str]]] = [
        ("viewers started", lambda r: f"{r.started} / {r.viewers}"),
        (
            "viewers that never stalled (stalls)",
            lambda r: f"{r.never_stalled} ({r.stalls})",
        ),
        ("segments of the window received, of viewers x segments", _delivered),
        ("**server CPU, % of one core**", _cpu),
    ]
    if nginx is not None:
        rows.append(("**CPU / nginx's**", lambda r: _cpu_ratio(r, nginx)))
    rows += [
        ("server RSS (max)", lambda r: _mib(r.rss_max)),
        ("**upstream fetches per segment**", upstream),
        (
            "engine playlist fetches per target duration",
            lambda r: f"{r.playlist_fetches_window / (r.window / r.target):.2f}",
        ),
        (
            "viewer playlist reloads per target duration",
            lambda r: f"{r.playlist_reloads_window / (r.window / r.target):.0f}",
        ),
        ("segment hit, ms p50 / p99", lambda r: _ms(r.hit_ms)),
        ("coalesced miss, ms p50 / p99", lambda r: _ms(r.miss_ms)),
        ("coalesced miss, first byte, ms p50 / p99", lambda r: _ms(r.miss_ttfb_ms)),
        ("first request of a segment, ms p50 / p99", lambda r: _ms(r.first_ms)),
        ("engine direct (probe), ms p50 / p99", lambda r: _ms(r.engine_ms)),
        ("**coalesced miss minus engine, same segment, ms p50 / p99**", _overhead),
        ("playlist, ms p50 / p99", lambda r: _ms(r.playlist_ms)),
        ("errors", _errors),
        ("engine CPU", lambda r: f"{100 * r.engine_cpu / r.window:.1f} %"),
        (
            "load workers CPU",
            lambda r: " + ".join(f"{100 * c / r.window:.0f} %" for c in r.worker_cpu),
        ),
        ("other processes' CPU", _others),
        (
            "load loop lag, ms p99 / max",
            lambda r: f"{percentile(r.lags_ms, 0.99):.0f} / {max(r.lags_ms, default=math.nan):.0f}",
        ),
    ]
    lines = [
        heading,
        "",
        "| | " + " | ".join(r.name for r in results) + " |",
        "| --- |" + " ---: |" * len(results),
    ]
    lines += [f"| {label} | " + " | ".join(fn(r) for r in results) + " |" for label, fn in rows]
    busy = [r for r in order if others_pct(r) > BUSY_PCT]
    if busy:
        lines += [
            "",
            f"Warning: other processes used more than {BUSY_PCT:g} % of a core in "
            f"{len(busy)} of {len(order)} runs; their latencies (and less so their CPU "
            "figures) are not to be trusted.",
        ]
    if len(order) > len(results):
        lines += ["", "Each run:", "", *_per_run(order, loads)]
    lines += ["", "Targets:", *targets]
    for r in results:
        if r.profile:
            lines += [
                "",
                f"Where {r.name} spends its CPU (py-spy --native, window):",
                "",
                r.profile,
            ]
    return "\n".join(lines)


def summary(pooled: dict[int, list[RunResult]]) -> str:
    """Median CPU per server and viewer count, against nginx's in the same command."""
    lines = [
        "| viewers | server | CPU, % of one core (runs) | CPU / nginx's (run by run) "
        "| miss minus engine, ms p50 / p99 | upstream fetches per segment |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for count, results in pooled.items():
        nginx = next(r for r in results if r.name == "nginx")
        for r in results:
            p50, p99 = miss_overhead(r)
            lines.append(
                f"| {count} | {r.name} | {_cpu(r)} | {_cpu_ratio(r, nginx)} "
                f"| {p50:+.1f} / {p99:+.1f} | {upstream(r)} |"
            )
    return "\n".join(lines)
