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
import contextlib
import dataclasses
import http.client
import json
import math
import multiprocessing
import os
import secrets
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # psutil ships no type hints
from harness import (
    HOST,
    BenchError,
    Child,
    OutOfTime,
    free_ports,
    http_get,
    machine,
    parse_rate,
    stop_on_sigterm,
    time_budget,
    wait_answering,
)

PROXY_CMD = (
    "{python} -m hlsproxy -addr {host}:{port} -acestream-host {host} -acestream-port {engine_port}"
)
ENGINE_CMD = "{python} -m hlsproxy.sim --host {host} --port {engine_port} --bitrate {bitrate}"
REFERENCE_SOURCE = Path(__file__).resolve().parent / "ts_reference.go"
REFERENCE_CMD = "{reference} -addr {host}:{port} -engine http://{host}:{engine_port}"
SUSTAINED = 0.95
PACKET = 188
SYNC = 0x47

# Client states in a load worker.
PENDING, CONNECTING, HEADERS, STREAMING, ENDED, FAILED = range(6)


def content_id() -> str:
    return secrets.token_hex(20)


def stream_path(content: str) -> str:
    return f"/ace/getstream?id={content}"


def http_request(port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "User-Agent: ts-fanout-bench\r\nAccept: */*\r\n\r\n"
    ).encode()


class Meter:
    """CPU time and resident memory of a process and its descendants.

    A sampling thread keeps the largest RSS seen; CPU time is read exactly at the marks.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.max_rss = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name=f"meter-{pid}", daemon=True)
        self._thread.start()

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return [self.root]

    def cpu_seconds(self) -> tuple[float, float]:
        """User and system CPU seconds so far."""
        user = system = 0.0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                user += times.user
                system += times.system
        return user, system

    def rss(self) -> int:
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.max_rss = max(self.max_rss, self.rss())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


# --- load workers -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What one load-generating process does: `count` clients of `path`, connected
    evenly over `ramp` seconds."""

    port: int
    path: str
    count: int
    ramp: float
    rcvbuf: int
    copy: bool


def load_worker(ctl: Connection, plan: LoadPlan) -> None:
    """Run the plan's clients on one epoll loop, and answer the parent's marks.

    Clients only count the bytes after the response headers (chunked framing included:
    about 9 bytes in 64 KiB). Unless `plan.copy`, the kernel discards the data (MSG_TRUNC)
    rather than copying it out, so the clients spend their CPU on little but the syscall.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    port, count, ramp, rcvbuf = plan.port, plan.count, plan.ramp, plan.rcvbuf
    request = http_request(port, plan.path)
    poller = select.epoll()
    ctl_fd = ctl.fileno()
    poller.register(ctl_fd, select.EPOLLIN)
    scratch = bytearray(1 << 20)
    flags = 0 if plan.copy else socket.MSG_TRUNC
    state = [PENDING] * count
    received = [0] * count
    first_byte = [math.nan] * count  # seconds from connect to the first byte of TS
    connect_at = [0.0] * count
    socks: dict[int, socket.socket] = {}
    owner: dict[int, int] = {}
    heads: dict[int, bytearray] = {}
    streaming_left = count  # clients not yet streaming, ended or failed
    started = 0
    t0 = time.monotonic()
    ready_sent = False

    def finish(fd: int, outcome: int) -> None:
        nonlocal streaming_left
        i = owner.pop(fd)
        if state[i] in (CONNECTING, HEADERS):
            streaming_left -= 1
        state[i] = outcome
        with contextlib.suppress(OSError, ValueError):
            poller.unregister(fd)
        socks.pop(fd).close()
        heads.pop(fd, None)

    def snapshot() -> dict[str, Any]:
        return {
            "at": time.monotonic(),
            "received": list(received),
            "state": list(state),
            "first_byte": list(first_byte),
        }

    while True:
        now = time.monotonic()
        due = count if ramp <= 0 else min(count, int((now - t0) / ramp * count) + 1)
        while started < due:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf > 0:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            sock.connect_ex((HOST, port))
            fd = sock.fileno()
            socks[fd] = sock
            owner[fd] = started
            state[started] = CONNECTING
            connect_at[started] = now
            poller.register(fd, select.EPOLLOUT)
            started += 1
        if not ready_sent and started == count and streaming_left == 0:
            ctl.send(("ready", snapshot()))
            ready_sent = True
        for fd, _ in poller.poll(0.02 if started < count else 0.5):
            if fd == ctl_fd:
                try:
                    command = ctl.recv()
                except EOFError:
                    command = "stop"
                if command == "mark":
                    ctl.send(("mark", snapshot()))
                    continue
                for open_fd in list(socks):
                    finish(open_fd, state[owner[open_fd]])
                with contextlib.suppress(OSError):
                    ctl.send(("stopped", snapshot()))
                return
            i = owner.get(fd, -1)
            if i < 0:
                continue
            s = state[i]
            sock = socks[fd]
            if s == STREAMING:
                try:
                    n = sock.recv_into(scratch, 0, flags)
                except BlockingIOError:
                    continue
                except OSError:
                    finish(fd, ENDED)
                    continue
                if n == 0:
                    finish(fd, ENDED)
                    continue
                if not received[i]:
                    first_byte[i] = time.monotonic() - connect_at[i]
                received[i] += n
            elif s == CONNECTING:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    finish(fd, FAILED)
                    continue
                try:
                    sock.send(request)  # far smaller than any socket buffer
                except OSError:
                    finish(fd, FAILED)
                    continue
                state[i] = HEADERS
                heads[fd] = bytearray()
                poller.modify(fd, select.EPOLLIN)
            elif s == HEADERS:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    finish(fd, FAILED)
                    continue
                if not data:
                    finish(fd, FAILED)
                    continue
                head = heads[fd]
                head += data
                end = head.find(b"\r\n\r\n")
                if end < 0:
                    if len(head) > 65536:
                        finish(fd, FAILED)
                    continue
                if not head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")):
                    finish(fd, FAILED)
                    continue
                body = len(head) - end - 4
                received[i] = body
                if body:
                    first_byte[i] = time.monotonic() - connect_at[i]
                del heads[fd]
                state[i] = STREAMING
                streaming_left -= 1


@dataclass
class Worker:
    process: multiprocessing.process.BaseProcess
    ctl: Connection
    count: int

    def expect(self, kind: str, timeout: float) -> dict[str, Any]:
        if not self.ctl.poll(timeout):
            raise OutOfTime(f"a load worker did not answer {kind!r} within {timeout:g}s")
        try:
            got_kind, payload = self.ctl.recv()
        except EOFError:
            raise BenchError(f"a load worker died (exit code {self.process.exitcode})") from None
        if got_kind != kind:
            raise BenchError(f"a load worker answered {got_kind!r}, expected {kind!r}")
        result: dict[str, Any] = payload
        return result


def start_workers(plan: LoadPlan, workers: int) -> list[Worker]:
    """Share the plan's clients among `workers` processes."""
    # Spawned, not forked: the parent runs sampling threads.
    context = multiprocessing.get_context("spawn")
    clients = plan.count
    shares = [clients // workers + (1 if k < clients % workers else 0) for k in range(workers)]
    started: list[Worker] = []
    for share in shares:
        if share == 0:
            continue
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=load_worker,
            args=(child_end, dataclasses.replace(plan, count=share)),
            name="ts-fanout-clients",
            daemon=True,
        )
        process.start()
        child_end.close()
        started.append(Worker(process, parent_end, share))
    return started


def stop_workers(workers: Sequence[Worker]) -> None:
    for worker in workers:
        with contextlib.suppress(OSError):
            worker.ctl.send("stop")
    for worker in workers:
        worker.process.join(3)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(3)
        worker.ctl.close()


def mark_all(workers: Sequence[Worker], timeout: float = 10.0) -> list[dict[str, Any]]:
    for worker in workers:
        worker.ctl.send("mark")
    return [worker.expect("mark", timeout) for worker in workers]


# --- single probing clients ---------------------------------------------------------------


class BodyReader:
    """The body of an HTTP/1.1 response, plain or chunked."""

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked
        self.body = bytearray()
        self._raw = bytearray()
        self._left = 0  # bytes of the current chunk still to come, then its CRLF
        self.ended = False

    def feed(self, data: bytes | bytearray) -> None:
        if not self.chunked:
            self.body += data
            return
        raw = self._raw
        raw += data
        while raw and not self.ended:
            if self._left > 0:
                take = min(self._left, len(raw))
                self.body += raw[:take]
                del raw[:take]
                self._left -= take
                if self._left == 0:
                    self._left = -2  # the CRLF after the chunk
                continue
            if self._left < 0:
                if len(raw) < 2:
                    return
                del raw[:2]
                self._left = 0
                continue
            line_end = raw.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(raw[:line_end]).split(b";")[0], 16)
            del raw[: line_end + 2]
            if size == 0:
                self.ended = True
            self._left = size


def first_byte_time(
    port: int, content: str, verify: int = PACKET * 64, timeout: float = 15.0
) -> float:
    """Seconds from connect to the first byte of TS; checks that the stream is TS.

    The first `verify` bytes must be whole 188-byte packets starting with the sync byte, as a
    player joining the stream would need.
    """
    deadline = time.monotonic() + timeout
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(http_request(port, stream_path(content)))
        head = bytearray()
        while (end := head.find(b"\r\n\r\n")) < 0:
            data = sock.recv(65536)
            if not data:
                raise BenchError("the proxy closed a client before its headers")
            head += data
        status_line, *header_lines = bytes(head[:end]).decode("latin-1").split("\r\n")
        if status_line.split(" ")[1:2] != ["200"]:
            raise BenchError(f"a probing client got {status_line!r}")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        reader = BodyReader("chunked" in headers.get("transfer-encoding", "").lower())
        reader.feed(head[end + 4 :])
        ttfb: float | None = None
        while True:
            if ttfb is None and reader.body:
                ttfb = time.perf_counter() - started
            if len(reader.body) >= verify or reader.ended:
                break
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            data = sock.recv(65536)
            if not data:
                break
            reader.feed(data)
    body = reader.body
    if ttfb is None or len(body) < verify:
        raise BenchError(f"a probing client got only {len(body)} bytes of TS")
    bad = [k for k in range(0, verify, PACKET) if body[k] != SYNC]
    if bad:
        raise BenchError(f"a probing client got data that is not TS (no sync byte at {bad[0]})")
    return ttfb


def median_ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000


# --- one measurement ----------------------------------------------------------------------


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


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


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


# --- report ---------------------------------------------------------------------------------


def fmt_ms(values: Sequence[float]) -> str:
    return f"{median_ms(values):.1f}" if values else "-"


def fmt_rate(bps: float | None) -> str:
    return "n/a" if bps is None else f"{bps / 1e6:,.0f}"


def median_run(runs: Sequence[Result]) -> Result:
    return sorted(runs, key=lambda r: r.proxy_cpu)[(len(runs) - 1) // 2]


def report(
    runs: dict[tuple[str, int], list[Result]], servers: dict[str, str], opts: Options
) -> str:
    rate = opts.bitrate / 1e6
    lines = [
        f"Stream {rate:g} Mbit/s; window {opts.seconds:g} s after a {opts.warmup:g} s warm-up; "
        f"ramp {opts.ramp:g} s; clients {'copy' if opts.copy else 'discard'} the data, "
        f"SO_RCVBUF {opts.rcvbuf or 'auto'}; the run with the median CPU of "
        f"{max(len(r) for r in runs.values())}.",
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
                            print(report(runs, servers, opts))
                        print(f"ts_fanout: {server}, {clients} clients: {exc}", file=sys.stderr)
                        return 1
                    runs.setdefault((server, clients), []).append(result)
        assert opts is not None
        print(report(runs, servers, opts))
        return 0
    finally:
        if keep_logs:
            print(f"logs: {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
