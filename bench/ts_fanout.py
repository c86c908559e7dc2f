"""MPEG-TS fan-out benchmark: many players of one stream, through hlsproxy.

Starts the simulated AceStream engine and the proxy as separate processes on free
127.0.0.1 ports, so the proxy's CPU and memory are measured alone. Then N clients of one
content connect within a short ramp, from load-generating processes that only count the
bytes they receive. After a warm-up that skips the engine's prebuffer burst, it measures a
steady-state window:

- how many clients received at least 95 % of the stream's bitrate;
- the aggregate throughput to the clients, and the rate the proxy read from the engine;
- the proxy's CPU (% of one core) and its largest resident set;
- time to the first byte of TS for a client joining the running stream, and for the first
  client of a new stream (on an idle proxy, and under the load).

Each client count is measured `--repeat` times (3), and each time also through the
reference: `bench/ts_reference.go`, acexy's data path in Go, built with Debian's
`golang-go` when `go` is on the PATH. The rows are the runs with the median CPU, and a last
table gives the proxy's CPU per Gbit/s sent against the reference's, measured in turn.

It prints Markdown tables and exits 0. Everything it starts is stopped at the end, on
error too, and every wait is bounded. It touches only 127.0.0.1.

    .venv/bin/python bench/ts_fanout.py --sweep 400,800 --bitrate 4M
    .venv/bin/python bench/ts_fanout.py --clients 1000 --bitrate 8M --repeat 1 --no-reference
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import math
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import (
    HOST,
    BenchError,
    Child,
    free_ports,
    http_get,
    parse_rate,
    stop_on_sigterm,
    time_budget,
    wait_answering,
)
from report import percentile
from sampling import Meter
from ts_load import STREAMING, LoadPlan, Worker, mark_all, start_workers, stop_workers, stream_path
from ts_probe import first_byte_time
from ts_report import Result, report

PROXY_CMD = (
    "{python} -m hlsproxy -addr {host}:{port} -acestream-host {host} -acestream-port {engine_port}"
)
ENGINE_CMD = "{python} -m hlsproxy.sim --host {host} --port {engine_port} --bitrate {bitrate}"
REFERENCE_SOURCE = Path(__file__).resolve().parent / "ts_reference.go"
REFERENCE_CMD = "{reference} -addr {host}:{port} -engine http://{host}:{engine_port}"
SUSTAINED = 0.95


def content_id() -> str:
    return secrets.token_hex(20)


@dataclass
class Options:
    bitrate: int
    seconds: float
    warmup: float
    ramp: float
    workers: int
    rcvbuf: int
    copy: bool
    joiners: int
    new_streams: int
    proxy_cmd: str
    engine_cmd: str


def setup(opts: Options) -> str:
    return (
        f"Stream {opts.bitrate / 1e6:g} Mbit/s; window {opts.seconds:g} s after a "
        f"{opts.warmup:g} s warm-up; ramp {opts.ramp:g} s; clients "
        f"{'copy' if opts.copy else 'discard'} the data, SO_RCVBUF {opts.rcvbuf or 'auto'}"
    )


def command(template: str, **values: object) -> list[str]:
    return shlex.split(template.format(**values))


def ingest_bytes(port: int, content: str) -> int | None:
    """The proxy's count of bytes read from the engine for `content`, if it reports one."""
    try:
        status, body = http_get(port, f"/ace/status?id={content}", timeout=5.0)
        if status != 200:
            return None
        value = json.loads(body).get("bytes_in")
    except (OSError, http.client.HTTPException, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def measure(server: str, clients: int, opts: Options, log_dir: Path) -> Result:
    result = Result(server=server, clients=clients, workers=min(opts.workers, clients))
    engine_port, port = free_ports(2)
    values = {
        "python": sys.executable,
        "host": HOST,
        "port": port,
        "engine_port": engine_port,
        "bitrate": opts.bitrate,
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    children: list[Child] = []
    meters: list[Meter] = []
    workers: list[Worker] = []
    try:
        engine = Child("engine", command(opts.engine_cmd, **values), log_dir / "engine.log")
        children.append(engine)
        proxy = Child("proxy", command(opts.proxy_cmd, **values), log_dir / "proxy.log")
        children.append(proxy)
        wait_answering(engine, engine_port, "/webui/api/service?method=get_version", 20)
        wait_answering(proxy, port, "/healthz", 20)
        proxy_meter = Meter(proxy.popen.pid)
        engine_meter = Meter(engine.popen.pid)
        meters += [proxy_meter, engine_meter]

        # Cold starts on an idle proxy, each a content of its own; they linger and end
        # during the ramp and warm-up, before the window.
        for _ in range(opts.new_streams):
            result.new_ttfb_idle.append(first_byte_time(port, content_id()))

        content = content_id()
        plan = LoadPlan(port, stream_path(content), clients, opts.ramp, opts.rcvbuf, opts.copy)
        workers = start_workers(plan, result.workers)
        for worker in workers:
            worker.expect("ready", opts.ramp + 60)
        for child in children:
            child.check_alive()

        time.sleep(opts.warmup)
        worker_meters = [Meter(w.process.pid or 0) for w in workers]
        meters += worker_meters
        first = mark_all(workers)
        cpu0 = [m.cpu_seconds() for m in (proxy_meter, engine_meter, *worker_meters)]
        in0 = ingest_bytes(port, content)
        t0 = time.monotonic()
        ramp_ttfb = [t for snap in first for t in snap["first_byte"] if not math.isnan(t)]
        result.ramp_ttfb_p50 = percentile(ramp_ttfb, 0.5)
        result.ramp_ttfb_p95 = percentile(ramp_ttfb, 0.95)
        time.sleep(opts.seconds)
        last = mark_all(workers)
        cpu1 = [m.cpu_seconds() for m in (proxy_meter, engine_meter, *worker_meters)]
        in1 = ingest_bytes(port, content)
        result.window = time.monotonic() - t0
        for child in children:
            child.check_alive()

        floor = SUSTAINED * opts.bitrate
        rates: list[float] = []
        total = 0
        for a, b in zip(first, last, strict=True):
            span = b["at"] - a["at"]
            for before, after, st in zip(a["received"], b["received"], b["state"], strict=True):
                total += after - before
                rate = (after - before) * 8 / span
                rates.append(rate)
                if st == STREAMING and rate >= floor:
                    result.sustained += 1
                if st != STREAMING:
                    result.dropped += 1
        result.aggregate_bps = total * 8 / result.window
        result.per_client_p5_bps = percentile(rates, 0.05)
        if in0 is not None and in1 is not None:
            result.ingest_bps = (in1 - in0) * 8 / result.window
        spent = [sum(after) - sum(before) for before, after in zip(cpu0, cpu1, strict=True)]
        result.proxy_cpu = spent[0] / result.window * 100
        result.proxy_cpu_system = (cpu1[0][1] - cpu0[0][1]) / result.window * 100
        result.engine_cpu = spent[1] / result.window * 100
        result.load_cpu = sum(spent[2:]) / result.window * 100

        # Probes after the window, under the same load, so they do not disturb it.
        for _ in range(opts.joiners):
            result.join_ttfb.append(first_byte_time(port, content))
        for _ in range(opts.new_streams):
            result.new_ttfb_loaded.append(first_byte_time(port, content_id()))
        result.proxy_rss = max(proxy_meter.max_rss, proxy_meter.rss())
        return result
    finally:
        # The cleanup is bounded on its own; the run's alarm must not cut it short.
        signal.alarm(0)
        stop_workers(workers)
        for meter in meters:
            meter.close()
        for child in reversed(children):
            child.stop()


def build_reference(log_dir: Path) -> str | None:
    """The reference's binary, or None (and why, on stderr) when it cannot be built."""
    go = shutil.which("go")
    if go is None:
        print("no reference: `go` is missing (Debian: apt-get install golang-go)", file=sys.stderr)
        return None
    binary = log_dir / "ts_reference"
    built = subprocess.run(
        [go, "build", "-o", str(binary), str(REFERENCE_SOURCE)],
        env={**os.environ, "GO111MODULE": "off"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if built.returncode != 0:
        print(f"no reference: go build failed:\n{built.stderr}", file=sys.stderr)
        return None
    return str(binary)


# --- command line -------------------------------------------------------------------------


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def client_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of client counts: {text!r}") from None
    if not counts or min(counts) <= 0:
        raise argparse.ArgumentTypeError("client counts must be positive")
    return counts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ts_fanout.py",
        description="Measure hlsproxy fanning one MPEG-TS stream out to many clients.",
    )
    parser.add_argument("--clients", type=int, default=500, help="clients of the stream")
    parser.add_argument(
        "--sweep",
        nargs="?",
        const="100,250,500,1000",
        type=client_counts,
        help="one run per client count (default 100,250,500,1000); overrides --clients",
    )
    parser.add_argument("--bitrate", type=parse_rate, default=parse_rate("8M"))
    parser.add_argument("--seconds", type=positive_float, default=20.0, help="window length")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds between the ramp and the window"
    )
    parser.add_argument(
        "--ramp", type=float, default=2.0, help="seconds over which the clients connect"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="load-generating processes (default: one per 500 clients, at most nproc)",
    )
    parser.add_argument(
        "--rcvbuf", type=int, default=1 << 20, help="clients' SO_RCVBUF; 0 leaves it to the kernel"
    )
    parser.add_argument(
        "--copy",
        action="store_true",
        help="clients copy the data out of the kernel, as a player would, instead of discarding it",
    )
    parser.add_argument("--joiners", type=int, default=5, help="late joiners timed per run")
    parser.add_argument(
        "--new-streams", type=int, default=3, help="new streams timed per run, idle and loaded"
    )
    parser.add_argument(
        "--proxy-cmd",
        default=PROXY_CMD,
        help="the proxy's command; {python} {host} {port} {engine_port} {bitrate} are filled in",
    )
    parser.add_argument("--engine-cmd", default=ENGINE_CMD, help="the engine's command, likewise")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the proxy and engine logs, and say where"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per client count and server")
    parser.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="measure hlsproxy only, not bench/ts_reference.go too",
    )
    args = parser.parse_args(argv)
    if args.clients <= 0 or args.repeat <= 0:
        parser.error("--clients and --repeat must be positive")
    for name in ("warmup", "ramp"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    counts: list[int] = args.sweep or [args.clients]
    nproc = os.cpu_count() or 1
    runs: dict[tuple[str, int], list[Result]] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="ts-fanout-"))
    keep_logs: bool = args.keep_logs
    servers = {"hlsproxy": args.proxy_cmd}
    reference = build_reference(log_dir) if args.reference else None
    if reference is not None:
        servers["reference"] = REFERENCE_CMD.replace("{reference}", shlex.quote(reference))
    opts: Options | None = None
    try:
        for clients in counts:
            opts = Options(
                bitrate=args.bitrate,
                seconds=args.seconds,
                warmup=args.warmup,
                ramp=args.ramp,
                workers=args.workers or min(nproc, max(1, math.ceil(clients / 500))),
                rcvbuf=args.rcvbuf,
                copy=args.copy,
                joiners=args.joiners,
                new_streams=args.new_streams,
                proxy_cmd=args.proxy_cmd,
                engine_cmd=args.engine_cmd,
            )
            probes = opts.joiners + 2 * opts.new_streams
            budget = 90 + opts.ramp + opts.warmup + opts.seconds + 20 * probes
            # Interleaved, so that the machine's other load falls on both alike.
            for run in range(args.repeat):
                for server, cmd in servers.items():
                    print(
                        f"running {server}, {clients} clients ({run + 1}/{args.repeat}) ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    run_opts = dataclasses.replace(opts, proxy_cmd=cmd)
                    where = log_dir / f"{server}-{clients}-{run + 1}"
                    try:
                        with time_budget(budget):
                            result = measure(server, clients, run_opts, where)
                    except BenchError as exc:
                        keep_logs = True
                        if runs:
                            print(report(runs, servers, setup(opts)))
                        print(f"ts_fanout: {server}, {clients} clients: {exc}", file=sys.stderr)
                        return 1
                    runs.setdefault((server, clients), []).append(result)
        assert opts is not None
        print(report(runs, servers, setup(opts)))
        return 0
    finally:
        if keep_logs:
            print(f"logs: {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
