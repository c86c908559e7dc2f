"""The figures of one MPEG-TS fan-out run, and the tables they make: one row per client
count, the run with the median CPU, and the proxy's cost against the reference's."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from report import machine


@dataclass
class Result:
    server: str
    clients: int
    workers: int
    sustained: int = 0
    dropped: int = 0
    window: float = 0.0
    aggregate_bps: float = 0.0
    ingest_bps: float | None = None
    proxy_cpu: float = 0.0
    proxy_cpu_system: float = 0.0
    proxy_rss: int = 0
    engine_cpu: float = 0.0
    load_cpu: float = 0.0
    ramp_ttfb_p50: float = math.nan
    ramp_ttfb_p95: float = math.nan
    join_ttfb: list[float] = field(default_factory=list)
    new_ttfb_idle: list[float] = field(default_factory=list)
    new_ttfb_loaded: list[float] = field(default_factory=list)
    per_client_p5_bps: float = math.nan

    @property
    def cpu_per_gbps(self) -> float:
        """% of a core per Gbit/s sent: what a fan-out costs, whatever its load."""
        return self.proxy_cpu / (self.aggregate_bps / 1e9) if self.aggregate_bps else math.nan


def fmt_ms(values: Sequence[float]) -> str:
    """The median, in ms."""
    return f"{statistics.median(values) * 1000:.1f}" if values else "-"


def fmt_rate(bps: float | None) -> str:
    return "n/a" if bps is None else f"{bps / 1e6:,.0f}"


def median_run(runs: Sequence[Result]) -> Result:
    return sorted(runs, key=lambda r: r.proxy_cpu)[(len(runs) - 1) // 2]


def report(runs: dict[tuple[str, int], list[Result]], servers: dict[str, str], setup: str) -> str:
    """`setup` says how the runs were made: the stream, the window, the clients."""
    lines = [
        f"{setup}; the run with the median CPU of {max(len(r) for r in runs.values())}.",
        f"Machine: {machine()}.",
    ]
    for server, cmd in servers.items():
        lines += [
            "",
            f"{server}: `{cmd}`",
            "",
            "| clients | sustained >= 95 % | dropped | aggregate Mbit/s | ingest Mbit/s "
            "| slowest 5 % Mbit/s | proxy CPU % of a core | CPU % per Gbit/s (runs) "
            "| proxy RSS MB | join TTFB ms | new stream TTFB ms (idle / loaded) "
            "| ramp TTFB ms (p50 / p95) | engine CPU % | clients' CPU % |",
            "|" + "---:|" * 14,
        ]
        for (name, _), results in runs.items():
            if name != server:
                continue
            r = median_run(results)
            each = ", ".join(f"{x.cpu_per_gbps:.1f}" for x in results)
            lines.append(
                f"| {r.clients} | {r.sustained} | {r.dropped} "
                f"| {fmt_rate(r.aggregate_bps)} | {fmt_rate(r.ingest_bps)} "
                f"| {r.per_client_p5_bps / 1e6:.2f} "
                f"| {r.proxy_cpu:.1f} ({r.proxy_cpu_system:.0f} sys) "
                f"| {r.cpu_per_gbps:.1f} ({each}) | {r.proxy_rss / 2**20:.0f} "
                f"| {fmt_ms(r.join_ttfb)} "
                f"| {fmt_ms(r.new_ttfb_idle)} / {fmt_ms(r.new_ttfb_loaded)} "
                f"| {r.ramp_ttfb_p50 * 1000:.0f} / {r.ramp_ttfb_p95 * 1000:.0f} "
                f"| {r.engine_cpu:.0f} | {r.load_cpu:.0f} ({r.workers} proc) |"
            )
    if "reference" in servers:
        lines += [
            "",
            "| clients | Gbit/s out | hlsproxy CPU % per Gbit/s | reference CPU % per Gbit/s "
            "| hlsproxy / reference |",
            "|---:|---:|---:|---:|---:|",
        ]
        for (name, clients), results in runs.items():
            if name != "hlsproxy" or ("reference", clients) not in runs:
                continue
            ours = statistics.median(r.cpu_per_gbps for r in results)
            theirs = statistics.median(r.cpu_per_gbps for r in runs["reference", clients])
            gbps = statistics.median(r.aggregate_bps for r in results) / 1e9
            lines.append(
                f"| {clients} | {gbps:.2f} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |"
            )
    return "\n".join(lines)
