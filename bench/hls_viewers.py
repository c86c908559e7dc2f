"""HLS benchmark: many viewers of one live stream, through hlsproxy and through nginx.

Each run starts a fresh simulated AceStream engine, one server in front of it, and virtual
viewers that behave like players: they load the playlist, start three segments from the
live edge, fetch every new segment once, and reload the playlist every half to one target
duration. Runs, one after the other (interleaved when repeated):

- `hlsproxy`: `python -m hlsproxy` with its defaults (it prefetches the two newest segments);
- `hlsproxy-p0`: the same with `-hls-prefetch 0`, so that viewers meet real misses;
- `hlsproxy-base`: hlsproxy as `--base-cmd` starts it (another tree, say), to compare two
  versions in one command;
- `nginx`: nginx with `proxy_cache` and `proxy_cache_lock on` (bench/nginx.conf.template),
  fronting the engine's own HLS session, with the engine's absolute segment URLs rewritten
  to nginx's by `sub_filter`.

What the engine saw comes from the engine itself: the engine process here is the project's
`SimEngine` served by bench/recording_engine.py, which records every request it answers
and writes the record out when it stops (`python -m hlsproxy.sim` keeps no access log).

The engine's own segment latency comes from a probe: when a viewer first sees a new
segment, one direct request for it goes to the engine (tagged `?probe=1`, not counted as
a fetch). A segment request through the server is a coalesced miss when it started before
any viewer had received that segment whole, a hit otherwise; what a miss adds is its
latency minus the probe's for the same segment. Each viewer also plays its segments on a
model player's clock, which counts stalls.

It prints one Markdown table and exits 0 when it could measure (the targets may still be
missed). Everything it starts is stopped at the end, on error too, every wait is bounded,
and it touches only 127.0.0.1.

    .venv/bin/python bench/hls_viewers.py --viewers 1000 --seconds 30 --repeat 3
    .venv/bin/python bench/hls_viewers.py --runs hlsproxy --profile /tmp/hlsproxy-profile.md
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import (
    HOST,
    REPO,
    BenchError,
    Child,
    free_ports,
    parse_rate,
    time_budget,
    wait_answering,
)
from hls_load import LoadPlan
from hls_report import report, summary, upstream
from hls_results import RunResult, analyse, miss_overhead
from http_client import REQUEST_TIMEOUT
from nginx import ensure_nginx, nginx_version, start_nginx
from profiling import finish_profiler, start_profiler
from recording_engine import start_engine
from report import machine
from sampling import cpu_delta, cpu_seconds, machine_busy, rss_bytes

BENCH = Path(__file__).resolve().parent

RUNS = ("hlsproxy", "hlsproxy-p0", "hlsproxy-base", "nginx")
DEFAULT_RUNS = ("hlsproxy", "nginx")
# Targets.
MISS_BUDGET_MS = 20.0
CPU_RATIO_BUDGET = 1.5


@dataclass
class Options:
    viewers: int
    counts: list[int]
    seconds: float
    ramp: float
    warmup: float
    workers: int
    bitrate: int
    runs: list[str]
    repeat: int
    hlsproxy_cmd: str
    base_cmd: str | None
    profile: Path | None
    keep: bool
    json_out: Path | None


def plain_content_id() -> str:
    """A fresh content id that the engine serves as plain MPEG-TS HLS: some prefixes choose
    other HLS flavours (fMP4, AES-128, multivariant) in the simulated engine."""
    sys.path.insert(0, str(REPO))
    from hlsproxy.sim import engine  # noqa: PLC0415 - only for its flavour table

    flavoured = tuple(getattr(engine, "FLAVOUR_PREFIXES", {}))
    while True:
        content_id = hashlib.sha1(f"hls-viewers {time.time_ns()}".encode()).hexdigest()
        if not content_id.startswith(flavoured):
            return content_id


def start_server(
    name: str, opts: Options, workdir: Path, engine_port: int, nginx: str | None
) -> tuple[Child, int]:
    port = free_ports(1)[0]
    if name == "nginx":
        assert nginx is not None
        return start_nginx(nginx, workdir, port, engine_port), port
    command = opts.base_cmd if name == "hlsproxy-base" else opts.hlsproxy_cmd
    assert command is not None
    argv = [
        *shlex.split(command.format(python=sys.executable)),
        "-addr",
        f"{HOST}:{port}",
        "-acestream-host",
        HOST,
        "-acestream-port",
        str(engine_port),
    ]
    if name == "hlsproxy-p0":
        argv += ["-hls-prefetch", "0"]
    child = Child(name, argv, workdir / f"{name}.log")
    wait_answering(child, port, "/healthz")
    return child, port


def run_once(
    name: str, opts: Options, workdir: Path, nginx: str | None, *, profile: bool
) -> RunResult:
    workdir.mkdir(parents=True)
    content_id = plain_content_id()
    children: list[Child] = []
    profiler: subprocess.Popen[bytes] | None = None
    try:
        engine, engine_port, engine_out = start_engine(opts.bitrate, workdir)
        children.append(engine)
        server, port = start_server(name, opts, workdir, engine_port, nginx)
        children.append(server)

        start_at = time.monotonic() + 1.0
        w0 = start_at + opts.ramp + opts.warmup
        w1 = w0 + opts.seconds
        workers: list[Child] = []
        outs: list[Path] = []
        for k in range(opts.workers):
            out = workdir / f"viewers-{k}.json"
            plan = LoadPlan(
                mode="nginx" if name == "nginx" else "hlsproxy",
                port=port,
                engine_port=engine_port,
                content_id=content_id,
                indices=list(range(k, opts.viewers, opts.workers)),
                total=opts.viewers,
                start_at=start_at,
                ramp=opts.ramp,
                end_at=w1,
                probe=k == 0,
                seed=k,
                out=str(out),
            )
            plan_path = workdir / f"plan-{k}.json"
            plan_path.write_text(json.dumps(plan.__dict__))
            argv = [sys.executable, str(BENCH / "hls_load.py"), str(plan_path)]
            workers.append(Child(f"viewers-{k}", argv, workdir / f"viewers-{k}.log"))
            outs.append(out)
        children.extend(workers)

        def cpu_now() -> list[dict[int, float]]:
            return [cpu_seconds(c.tree()) for c in (server, engine, *workers)]

        time.sleep(max(0.0, w0 - time.monotonic()))
        for c in (engine, server, *workers):
            if not c.alive():
                raise BenchError(f"{c.name} exited early:\n{c.tail()}")
        before, busy_before = cpu_now(), machine_busy()
        if profile and name.startswith("hlsproxy"):
            profiler = start_profiler(server.pid, opts.seconds, workdir / "py-spy.txt")
        rss_max = rss_bytes(server.tree())
        while time.monotonic() < w1:
            time.sleep(min(1.0, max(0.0, w1 - time.monotonic())))
            rss_max = max(rss_max, rss_bytes(server.tree()))
        after, busy_after = cpu_now(), machine_busy()
        window_wall = time.monotonic() - w0

        for w in workers:
            try:
                w.popen.wait(timeout=REQUEST_TIMEOUT + 15)
            except subprocess.TimeoutExpired as exc:
                raise BenchError(f"{w.name} did not finish:\n{w.tail()}") from exc
            if w.popen.returncode != 0:
                raise BenchError(f"{w.name} failed:\n{w.tail()}")
        profile_text = ""
        if profiler is not None:
            profile_text = finish_profiler(profiler, workdir / "py-spy.txt")
        server.stop()
        engine.stop(signal.SIGTERM)
        if not engine_out.exists():
            raise BenchError(f"the engine wrote no request record:\n{engine.tail()}")
        engine_log = json.loads(engine_out.read_text())
        worker_logs = [json.loads(o.read_text()) for o in outs]
        if not any(w["segments"] for w in worker_logs):
            errors = collections.Counter[str]()
            for w in worker_logs:
                errors.update(w["errors"])
            raise BenchError(f"{name}: no viewer got a segment: {dict(errors)}\n{server.tail()}")
        spent = [cpu_delta(b, a) for b, a in zip(before, after, strict=True)]
        meter = {
            "server_cpu": spent[0],
            "server_rss": rss_max,
            "engine_cpu": spent[1],
            "worker_cpu": spent[2:],
            "machine_busy": busy_after - busy_before,
            "target": max((w["target"] for w in worker_logs), default=0.0) or 5.0,
        }
        result = analyse(
            name,
            viewers=opts.viewers,
            warmup=opts.warmup,
            content_id=content_id,
            window=(w0, w0 + window_wall),
            engine_log=engine_log,
            workers=worker_logs,
            meter=meter,
        )
        result.profile = profile_text
        return result
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.kill()
            profiler.wait(5)
        for child in reversed(children):
            child.stop()


def targets(results: Sequence[RunResult]) -> list[str]:
    """What each hlsproxy run met: one engine fetch per segment, a small miss overhead, and
    CPU within reach of nginx's."""
    nginx = next((r for r in results if r.name == "nginx"), None)
    lines: list[str] = []
    for r in results:
        if not r.name.startswith("hlsproxy"):
            continue
        once = bool(r.upstream) and max(r.upstream) == 1
        lines.append(
            f"- {r.name}: exactly one upstream fetch per segment: "
            f"{'met' if once else 'MISSED'} ({upstream(r)})"
        )
        p50, p99 = miss_overhead(r)
        budget = f"a coalesced miss adds < {MISS_BUDGET_MS:g} ms to the engine's latency"
        if math.isnan(p50):
            lines.append(f"- {r.name}: {budget}: no data")
        else:
            ok = p50 < MISS_BUDGET_MS and p99 < MISS_BUDGET_MS
            lines.append(
                f"- {r.name}: {budget}: {'met' if ok else 'MISSED'} "
                f"({p50:+.1f} ms at p50, {p99:+.1f} ms at p99)"
            )
        if nginx is not None and nginx.cpu > 0:
            ratio = r.cpu_pct / nginx.cpu_pct
            lines.append(
                f"- {r.name}: CPU within {CPU_RATIO_BUDGET:g}x of nginx's: "
                f"{'met' if ratio <= CPU_RATIO_BUDGET else 'MISSED'} ({ratio:.2f}x)"
            )
    return lines


def heading(opts: Options, nginx_version: str, loads: Sequence[float]) -> str:
    repeats = f", {opts.repeat} runs each, interleaved" if opts.repeat > 1 else ""
    load = ", ".join(f"{x:.1f}" for x in loads)
    return (
        f"{opts.viewers} viewers of one stream at {opts.bitrate / 1e6:g} Mbit/s; "
        f"{opts.seconds:g} s window after a {opts.ramp:g} s ramp and {opts.warmup:g} s "
        f"warm-up{repeats}; {opts.workers} load workers; {machine()}; {nginx_version}"
        + ("" if opts.repeat > 1 else f"; 1-min load average before each run: {load}")
    )


# --- main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(
        prog="bench/hls_viewers.py",
        description="HLS viewers through hlsproxy and through nginx proxy_cache.",
    )
    p.add_argument(
        "--viewers", default="500,1000", help="viewer counts, comma-separated; one report each"
    )
    p.add_argument("--seconds", type=float, default=30.0, help="measured window per run")
    p.add_argument("--ramp", type=float, default=5.0, help="viewers start over this long")
    p.add_argument("--warmup", type=float, default=6.0, help="after the ramp, before the window")
    p.add_argument("--workers", type=int, default=2, help="load-generating processes")
    p.add_argument("--bitrate", type=parse_rate, default=5_000_000, help="e.g. 5M")
    p.add_argument(
        "--runs", default=",".join(DEFAULT_RUNS), help=f"comma-separated, of {', '.join(RUNS)}"
    )
    p.add_argument(
        "--repeat", type=int, default=3, help="run each server this many times, interleaved"
    )
    p.add_argument(
        "--hlsproxy-cmd",
        default="{python} -m hlsproxy",
        help="how to start hlsproxy, before its flags ({python}: this interpreter)",
    )
    p.add_argument(
        "--base-cmd",
        help="how to start the hlsproxy-base run's hlsproxy, as --hlsproxy-cmd (for example "
        "'env PYTHONPATH=/tmp/before {python} -P -m hlsproxy' for a checkout in /tmp/before)",
    )
    p.add_argument(
        "--profile", type=Path, help="py-spy the first hlsproxy runs; summary to this file"
    )
    p.add_argument("--json", type=Path, dest="json_out", help="raw figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the tmp dir with logs")
    a = p.parse_args(argv)
    runs = [r.strip() for r in a.runs.split(",") if r.strip()]
    unknown = [r for r in runs if r not in RUNS]
    if unknown or not runs:
        p.error(f"--runs: unknown {unknown}; choose from {', '.join(RUNS)}")
    if ("hlsproxy-base" in runs) != (a.base_cmd is not None):
        p.error("--base-cmd and the hlsproxy-base run go together")
    try:
        viewers = [int(v) for v in a.viewers.split(",") if v.strip()]
    except ValueError:
        p.error(f"--viewers: not a list of counts: {a.viewers!r}")
    if not viewers or min(viewers) < 1 or a.workers < 1 or a.repeat < 1 or a.seconds <= 0:
        p.error("need --viewers, --workers and --repeat >= 1, and --seconds > 0")
    if a.ramp < 0 or a.warmup < 0:
        p.error("need --ramp and --warmup >= 0")
    given = {k: v for k, v in vars(a).items() if k not in ("viewers", "runs")}
    return Options(viewers=viewers[0], counts=viewers, runs=runs, **given)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    nginx = ensure_nginx() if "nginx" in opts.runs else None
    version = nginx_version(nginx) if nginx is not None else ""
    per_run = opts.ramp + opts.warmup + opts.seconds + REQUEST_TIMEOUT + 60
    root = Path(tempfile.mkdtemp(prefix="hls-viewers-"))
    reports: list[str] = []
    pooled: dict[int, list[RunResult]] = {}
    raw: dict[str, dict[str, Any]] = {}
    try:
        with time_budget(per_run * len(opts.runs) * opts.repeat * len(opts.counts) + 30):
            for count in opts.counts:
                these = replace(opts, viewers=count, workers=min(opts.workers, count))
                results, order, loads = measure(these, root / str(count), nginx)
                reports.append(
                    report(results, heading(these, version, loads), targets(results), order, loads)
                )
                pooled[count] = results
                raw.update({f"{r.name}-{count}-{k + 1}": r.__dict__ for k, r in enumerate(order)})
    except BenchError as exc:
        print(f"hls_viewers: {exc}\nlogs kept in {root}", file=sys.stderr)
        return 1
    if opts.keep:
        print(f"logs kept in {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)
    print("\n\n".join(reports))
    if len(opts.counts) > 1 and "nginx" in opts.runs:
        print("\n" + summary(pooled))
    if opts.profile is not None:
        opts.profile.write_text(
            "\n\n".join(
                f"## {r.name}, {count} viewers\n\n{r.profile}"
                for count, results in pooled.items()
                for r in results
                if r.profile
            )
            + "\n"
        )
    if opts.json_out is not None:
        opts.json_out.write_text(json.dumps(raw))
    return 0


def measure(
    opts: Options, root: Path, nginx: str | None
) -> tuple[list[RunResult], list[RunResult], list[float]]:
    """Each server `opts.repeat` times, interleaved; pooled results, runs in order, loads."""
    runs: dict[str, list[RunResult]] = {name: [] for name in opts.runs}
    loads: list[float] = []
    for rep in range(opts.repeat):
        for name in opts.runs:
            print(
                f"running {name}, {opts.viewers} viewers ({rep + 1}/{opts.repeat}) ...",
                file=sys.stderr,
            )
            loads.append(os.getloadavg()[0])
            workdir = root / f"{name}-{rep + 1}"
            profile = opts.profile is not None and rep == 0
            runs[name].append(run_once(name, opts, workdir, nginx, profile=profile))
    results = [RunResult.pool(runs[name]) for name in opts.runs]
    order = [runs[name][rep] for rep in range(opts.repeat) for name in opts.runs]
    return results, order, loads


if __name__ == "__main__":
    sys.exit(main())
