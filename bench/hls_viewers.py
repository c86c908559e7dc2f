"""HLS benchmark: many viewers of one live stream, through hlsproxy and through nginx.

Each run starts a fresh simulated AceStream engine, one server in front of it, and virtual
viewers that behave like players: they load the playlist, start three segments from the
live edge, fetch every new segment once, and reload the playlist every half to one target
duration. Runs, one after the other (interleaved when repeated):

- `hlsproxy`: `python -m hlsproxy` with its defaults (it prefetches the two newest segments);
- `hlsproxy-p0`: the same with `-hls-prefetch 0`, so that viewers meet real misses;
- `nginx`: nginx with `proxy_cache` and `proxy_cache_lock on` (bench/nginx.conf.template),
  fronting the engine's own HLS session, with the engine's absolute segment URLs rewritten
  to nginx's by `sub_filter`.

What the engine saw comes from the engine itself: the engine process here is the project's
`SimEngine` served by this script, which records every request it answers and writes the
record out when it stops (`python -m hlsproxy.sim` keeps no access log).

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
import asyncio
import collections
import contextlib
import grp
import hashlib
import json
import math
import os
import pwd
import re
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # psutil ships no type hints
from harness import (
    HOST,
    REPO,
    BenchError,
    Child,
    die_with_parent,
    free_ports,
    parse_rate,
    time_budget,
    wait_answering,
)
from hls_load import REQUEST_TIMEOUT, LoadPlan
from report import machine

BENCH = Path(__file__).resolve().parent
NGINX_TEMPLATE = BENCH / "nginx.conf.template"
RUNS = ("hlsproxy", "hlsproxy-p0", "nginx")
DEFAULT_RUNS = ("hlsproxy", "nginx")
# Targets.
MISS_BUDGET_MS = 20.0
CPU_RATIO_BUDGET = 1.5
BUSY_PCT = 20.0
"""Other processes' CPU in a run above which its figures are flagged."""


# --- the engine process -----------------------------------------------------------------


async def _serve_engine(bitrate: int, out: Path) -> None:
    from aiohttp import web  # noqa: PLC0415 - only the engine process serves

    from hlsproxy.sim import SimEngine  # noqa: PLC0415

    engine = SimEngine(bitrate=bitrate)
    seen: list[tuple[float, str, int]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        seen.append((time.monotonic(), request.path_qs, response.status))

    engine.app.on_response_prepare.append(record)
    runner = web.AppRunner(engine.app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        print(f"READY {runner.addresses[0][1]}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        record_text = json.dumps(
            {"requests": seen, "counters": dict(engine.counters), "unexpected": engine.unexpected}
        )
        await asyncio.to_thread(out.write_text, record_text)
    finally:
        await runner.cleanup()


def engine_process(bitrate: int, out: str) -> int:
    sys.path.insert(0, str(REPO))
    asyncio.run(_serve_engine(bitrate, Path(out)))
    return 0


# --- processes --------------------------------------------------------------------------


def start_engine(bitrate: int, workdir: Path) -> tuple[Child, int, Path]:
    out = workdir / "engine.json"
    argv = [sys.executable, __file__, "_engine", str(bitrate), str(out)]
    child = Child("engine", argv, workdir / "engine.log", stdout=subprocess.PIPE)
    assert child.popen.stdout is not None
    deadline = time.monotonic() + 15
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        ready, _, _ = select.select([child.popen.stdout], [], [], 0.2)
        if ready:
            # Unbuffered: select() knows nothing of a BufferedReader's buffer.
            data = os.read(child.popen.stdout.fileno(), 256)
            if not data:
                break
            line += data
    match = re.fullmatch(rb"READY (\d+)\n", line)
    if match is None:
        child.stop()
        raise BenchError(f"the engine did not start: {line!r}\n{child.tail()}")
    return child, int(match.group(1)), out


def ensure_nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("nginx is not installed; as root: apt-get install -y nginx")
    print("installing nginx (apt-get install -y nginx) ...", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["apt-get", "install", "-y", "nginx"],
        check=True,
        timeout=600,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise BenchError("apt-get installed nginx, but there is no nginx binary")
    return found


def render_nginx(prefix: Path, port: int, engine_port: int) -> Path:
    text = NGINX_TEMPLATE.read_text()
    # A master started as root runs its workers as an unprivileged user, who must be able
    # to reach and write the cache and temp dirs in our tmp dir.
    worker = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    for name, value in (
        ("@USER@", worker.pw_name),
        ("@GROUP@", grp.getgrgid(worker.pw_gid).gr_name),
        ("@PREFIX@", str(prefix)),
        ("@PORT@", str(port)),
        ("@ENGINE@", f"{HOST}:{engine_port}"),
    ):
        text = text.replace(name, value)
    prefix.mkdir(parents=True, exist_ok=True)
    for parent in (prefix, *prefix.parents):
        if parent == Path(tempfile.gettempdir()):
            break
        parent.chmod(parent.stat().st_mode | 0o111)
    for sub in ("client_body", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp", "cache"):
        (prefix / sub).mkdir(exist_ok=True)
        os.chown(prefix / sub, worker.pw_uid, worker.pw_gid)
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


# --- measuring --------------------------------------------------------------------------


def cpu_seconds(procs: Sequence[Any]) -> dict[int, float]:
    out: dict[int, float] = {}
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
    return out


def rss_bytes(procs: Sequence[Any]) -> int:
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return int(total)


def _busy(times: Any) -> float:
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    # A process that appeared in the window counts from zero.
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


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
    profile: Path | None
    keep: bool
    json_out: Path | None


@dataclass
class RunResult:
    """One run's figures, or several runs' pooled (sums and concatenated samples)."""

    name: str
    viewers: int
    started: int
    """Viewers started (the fewest of the pooled runs)."""
    never_stalled: int
    """Viewers whose playback never stalled (the fewest of the pooled runs)."""
    stalls: int
    window: float
    """Seconds measured (summed over pooled runs); every CPU figure is divided by it."""
    cpu: float
    """Seconds of CPU the server used in the window."""
    cpu_runs: list[float]
    """The server's CPU in each run, % of one core."""
    rss_max: int
    engine_cpu: float
    worker_cpu: list[float]
    machine_busy: float
    """Seconds of CPU every process on the machine used in the window, ours included."""
    lags_ms: list[float]
    upstream: list[int]
    """Upstream fetches of each segment the engine served (200), for the whole run."""
    upstream_missing: int
    playlist_fetches_window: int
    target: float
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
    errors: dict[str, int]
    profile: str = ""

    @property
    def cpu_pct(self) -> float:
        """The median run's CPU: one run disturbed by the rest of the machine does not move it."""
        return statistics.median(self.cpu_runs)

    @classmethod
    def pool(cls, runs: Sequence[RunResult]) -> RunResult:
        first = runs[0]
        errors: collections.Counter[str] = collections.Counter()
        for r in runs:
            errors.update(r.errors)

        def cat(get: Callable[[RunResult], list[float]]) -> list[float]:
            return [x for r in runs for x in get(r)]

        return cls(
            name=first.name,
            viewers=first.viewers,
            started=min(r.started for r in runs),
            never_stalled=min(r.never_stalled for r in runs),
            stalls=sum(r.stalls for r in runs),
            window=sum(r.window for r in runs),
            cpu=sum(r.cpu for r in runs),
            cpu_runs=cat(lambda r: r.cpu_runs),
            rss_max=max(r.rss_max for r in runs),
            engine_cpu=sum(r.engine_cpu for r in runs),
            worker_cpu=[sum(w) for w in zip(*(r.worker_cpu for r in runs), strict=True)],
            machine_busy=sum(r.machine_busy for r in runs),
            lags_ms=cat(lambda r: r.lags_ms),
            upstream=[n for r in runs for n in r.upstream],
            upstream_missing=sum(r.upstream_missing for r in runs),
            playlist_fetches_window=sum(r.playlist_fetches_window for r in runs),
            target=first.target,
            playlist_reloads_window=sum(r.playlist_reloads_window for r in runs),
            window_received=sum(r.window_received for r in runs),
            window_expected=sum(r.window_expected for r in runs),
            window_bytes=sum(r.window_bytes for r in runs),
            window_media_seconds=sum(r.window_media_seconds for r in runs),
            hit_ms=cat(lambda r: r.hit_ms),
            miss_ms=cat(lambda r: r.miss_ms),
            miss_ttfb_ms=cat(lambda r: r.miss_ttfb_ms),
            first_ms=cat(lambda r: r.first_ms),
            engine_ms=cat(lambda r: r.engine_ms),
            paired_ms=cat(lambda r: r.paired_ms),
            playlist_ms=cat(lambda r: r.playlist_ms),
            size_mismatch=sum(r.size_mismatch for r in runs),
            segment_requests=sum(r.segment_requests for r in runs),
            errors=dict(errors),
            profile="\n\n".join(r.profile for r in runs if r.profile),
        )


def _segment_path(infohash: str) -> re.Pattern[str]:
    return re.compile(rf"/ace/c/{infohash}/(\d+)\.ts(\?.*)?")


def analyse(
    name: str,
    opts: Options,
    *,
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
    ramp_end = w0 - opts.warmup
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
        viewers=opts.viewers,
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
        conf = render_nginx(workdir / "prefix", port, engine_port)
        argv = [
            nginx,
            "-p",
            str(conf.parent),
            "-e",
            str(conf.parent / "error.log"),
            "-c",
            str(conf),
        ]
        child = Child("nginx", argv, workdir / "nginx.log")
        wait_answering(child, port, "/nginx-is-up")
        return child, port
    argv = [
        *shlex.split(opts.hlsproxy_cmd.format(python=sys.executable)),
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

        def server_procs() -> list[Any]:
            return server.tree()

        time.sleep(max(0.0, w0 - time.monotonic()))
        for c in (engine, server, *workers):
            if not c.alive():
                raise BenchError(f"{c.name} exited early:\n{c.tail()}")
        before = cpu_seconds(server_procs())
        machine_before = psutil.cpu_times()
        engine_before = cpu_seconds(engine.tree())
        workers_before = [cpu_seconds(w.tree()) for w in workers]
        if profile and name.startswith("hlsproxy"):
            profiler = start_profiler(server.pid, opts.seconds, workdir / "py-spy.txt")
        rss_max = rss_bytes(server_procs())
        while time.monotonic() < w1:
            time.sleep(min(1.0, max(0.0, w1 - time.monotonic())))
            rss_max = max(rss_max, rss_bytes(server_procs()))
        after = cpu_seconds(server_procs())
        machine_after = psutil.cpu_times()
        engine_after = cpu_seconds(engine.tree())
        workers_after = [cpu_seconds(w.tree()) for w in workers]
        window_wall = time.monotonic() - w0

        for w in workers:
            try:
                w.popen.wait(timeout=REQUEST_TIMEOUT + 15)
            except subprocess.TimeoutExpired as exc:
                raise BenchError(f"{w.name} did not finish:\n{w.tail()}") from exc
            if w.popen.returncode != 0:
                raise BenchError(f"{w.name} failed:\n{w.tail()}")
        summary = ""
        if profiler is not None:
            summary = finish_profiler(profiler, workdir / "py-spy.txt")
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
        meter = {
            "server_cpu": cpu_delta(before, after),
            "server_rss": rss_max,
            "engine_cpu": cpu_delta(engine_before, engine_after),
            "worker_cpu": [
                cpu_delta(b, a) for b, a in zip(workers_before, workers_after, strict=True)
            ],
            "machine_busy": _busy(machine_after) - _busy(machine_before),
            "target": max((w["target"] for w in worker_logs), default=0.0) or 5.0,
        }
        result = analyse(
            name,
            opts,
            content_id=content_id,
            window=(w0, w0 + window_wall),
            engine_log=engine_log,
            workers=worker_logs,
            meter=meter,
        )
        result.profile = summary
        return result
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.kill()
            profiler.wait(5)
        for child in reversed(children):
            child.stop()


# --- profiling --------------------------------------------------------------------------


def start_profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        print("py-spy is not installed; no profile", file=sys.stderr)
        return None
    argv = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "50"]
    argv += ["--format", "raw", "--native", "--output", str(out)]
    return subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - the benchmark runs no threads
    )


def finish_profiler(profiler: subprocess.Popen[bytes], out: Path) -> str:
    try:
        profiler.wait(timeout=30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait(5)
    if not out.exists():
        return "(py-spy wrote nothing)"
    return summarise_profile(out.read_text(errors="replace"))


def _frame_name(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    m = re.fullmatch(r"(.*) \((.*?):\d+\)", frame)
    if m is None:
        # An address py-spy could not name (libc's memcpy and kin have no symbols here).
        return re.sub(r"^0x[0-9a-f]+ ", "(no symbol) ", frame)
    return f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]})"


def summarise_profile(collapsed: str, top: int = 18) -> str:
    """Self and inclusive time per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        if frames and frames[0].startswith(("process ", "thread ")):
            frames = frames[1:]
        total += count
        if frames:
            own[frames[-1]] += count
        for name in set(frames):
            incl[name] += count
    if not total:
        return "(no samples)"
    lines = [f"{total} samples", "", "| self % | function |", "| ---: | --- |"]
    lines += [f"| {100 * n / total:.1f} | `{name}` |" for name, n in own.most_common(top)]
    # Frames under every sample (the event loop, the program's entry) say nothing.
    useful = [(name, n) for name, n in incl.most_common() if n < 0.98 * total][:top]
    lines += ["", "| incl. % | function |", "| ---: | --- |"]
    lines += [f"| {100 * n / total:.1f} | `{name}` |" for name, n in useful]
    return "\n".join(lines)


# --- the report -------------------------------------------------------------------------


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"{percentile(values, 50):.1f} / {percentile(values, 99):.1f} (n={len(values)})"


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def miss_overhead(r: RunResult) -> tuple[float, float]:
    """How much a coalesced miss adds to the engine's own latency for the same segment, at
    p50 and p99 (ms)."""
    if not r.paired_ms:
        return math.nan, math.nan
    return percentile(r.paired_ms, 50), percentile(r.paired_ms, 99)


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


def _upstream(r: RunResult) -> str:
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


def others_pct(r: RunResult) -> float:
    """CPU that processes other than the benchmark's used in the window, % of one core."""
    ours = r.cpu + r.engine_cpu + sum(r.worker_cpu)
    # Readings of different counters at slightly different times: "none" may come out < 0.
    return max(0.0, 100 * (r.machine_busy - ours) / r.window)


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
    opts: Options,
    nginx_version: str,
    order: Sequence[RunResult],
    loads: Sequence[float],
) -> str:
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
        ("**upstream fetches per segment**", _upstream),
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
            lambda r: f"{percentile(r.lags_ms, 99):.0f} / {max(r.lags_ms, default=math.nan):.0f}",
        ),
    ]
    repeats = f", {opts.repeat} runs each, interleaved" if opts.repeat > 1 else ""
    load = ", ".join(f"{x:.1f}" for x in loads)
    lines = [
        f"{opts.viewers} viewers of one stream at {opts.bitrate / 1e6:g} Mbit/s; "
        f"{opts.seconds:g} s window after a {opts.ramp:g} s ramp and {opts.warmup:g} s "
        f"warm-up{repeats}; {opts.workers} load workers; {machine()}; {nginx_version}"
        + ("" if opts.repeat > 1 else f"; 1-min load average before each run: {load}"),
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
    lines += ["", "Targets:"]
    for r in results:
        if not r.name.startswith("hlsproxy"):
            continue
        once = bool(r.upstream) and max(r.upstream) == 1
        lines.append(
            f"- {r.name}: exactly one upstream fetch per segment: "
            f"{'met' if once else 'MISSED'} ({_upstream(r)})"
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
    for r in results:
        if r.profile:
            lines += [
                "",
                f"Where {r.name} spends its CPU (py-spy --native, window):",
                "",
                r.profile,
            ]
    return "\n".join(lines)


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
        "--profile", type=Path, help="py-spy the first hlsproxy runs; summary to this file"
    )
    p.add_argument("--json", type=Path, dest="json_out", help="raw figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the tmp dir with logs")
    a = p.parse_args(argv)
    runs = [r.strip() for r in a.runs.split(",") if r.strip()]
    unknown = [r for r in runs if r not in RUNS]
    if unknown or not runs:
        p.error(f"--runs: unknown {unknown}; choose from {', '.join(RUNS)}")
    try:
        viewers = [int(v) for v in a.viewers.split(",") if v.strip()]
    except ValueError:
        p.error(f"--viewers: not a list of counts: {a.viewers!r}")
    if not viewers or min(viewers) < 1 or a.workers < 1 or a.repeat < 1 or a.seconds <= 0:
        p.error("need --viewers, --workers and --repeat >= 1, and --seconds > 0")
    if a.ramp < 0 or a.warmup < 0:
        p.error("need --ramp and --warmup >= 0")
    return Options(
        viewers=viewers[0],
        counts=viewers,
        seconds=a.seconds,
        ramp=a.ramp,
        warmup=a.warmup,
        workers=a.workers,
        bitrate=a.bitrate,
        runs=runs,
        repeat=a.repeat,
        hlsproxy_cmd=a.hlsproxy_cmd,
        profile=a.profile,
        keep=a.keep,
        json_out=a.json_out,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["_engine"]:
        return engine_process(int(args[1]), args[2])
    opts = parse_args(args)
    nginx = ensure_nginx() if "nginx" in opts.runs else None
    nginx_version = ""
    if nginx is not None:
        done = subprocess.run(
            [nginx, "-v"], check=False, capture_output=True, text=True, timeout=10
        )
        nginx_version = done.stderr.strip().removeprefix("nginx version: ")
    per_run = opts.ramp + opts.warmup + opts.seconds + REQUEST_TIMEOUT + 60
    root = Path(tempfile.mkdtemp(prefix="hls-viewers-"))
    reports: list[str] = []
    pooled: dict[int, list[RunResult]] = {}
    raw: dict[str, list[dict[str, Any]]] = {}
    try:
        with time_budget(per_run * len(opts.runs) * opts.repeat * len(opts.counts) + 30):
            for count in opts.counts:
                these = replace(opts, viewers=count, workers=min(opts.workers, count))
                results, order, loads = measure(these, root / str(count), nginx)
                reports.append(report(results, these, nginx_version, order, loads))
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
                f"| {p50:+.1f} / {p99:+.1f} | {_upstream(r)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
