"""The MPEG-TS load: many clients of one stream, from load-generating processes that only
count the bytes they receive.

The parent starts the processes (`start_workers`), takes every client's count at the start
and the end of its window (`mark_all`) and stops them (`stop_workers`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import select
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from harness import HOST, BenchError, OutOfTime

# Client states in a load worker.
PENDING, CONNECTING, HEADERS, STREAMING, ENDED, FAILED = range(6)


def stream_path(content: str) -> str:
    return f"/ace/getstream?id={content}"


def http_request(port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "User-Agent: ts-fanout-bench\r\nAccept: */*\r\n\r\n"
    ).encode()


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
