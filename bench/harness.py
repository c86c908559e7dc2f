"""What every benchmark here needs besides its load: the processes it starts, free ports,
a bounded wait for a server to answer, and a time budget.

Every process is started in a session of its own and dies with the benchmark (Linux's
PR_SET_PDEATHSIG), so that nothing outlives a run, even one that is killed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import math
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """The benchmark could not run: a process did not start, a client could not connect."""


class OutOfTime(BenchError):
    pass


def parse_rate(text: str) -> int:
    """Bits per second from "8M", "800k", "2.5M" or "8000000" (decimal prefixes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:bit/s|bps|b)?\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a bitrate: {text!r} (try 8M, 800k, 8000000)")
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[match.group(2).lower()]
    value = round(float(match.group(1)) * scale)
    if value <= 0:
        raise argparse.ArgumentTypeError("the bitrate must be positive")
    return value


def free_ports(count: int) -> list[int]:
    """Distinct free ports: held open together, so the kernel cannot hand one out twice."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


class Child:
    """A process this benchmark started, its output in `log`; stopped by its own pid and
    process group."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, **popen: Any) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(
            self.argv,
            stdout=popen.pop("stdout", self._log_file),
            stderr=self._log_file,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # Safe here: no sampling thread runs while children are started.
            preexec_fn=die_with_parent,  # noqa: PLW1509
            cwd=REPO,
            **popen,
        )
        self.pid = self.popen.pid

    def tree(self) -> list[Any]:
        """The process and its children, for CPU and memory."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise BenchError(f"{self.name} exited with status {code}:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(5)
        # Whatever it started (nginx's workers) goes with it: the group is this child's own.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log_file.close()

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_answering(child: Child, port: int, path: str, timeout: float = 15.0) -> None:
    """Until the process answers HTTP on `path` (any status: another server may lack it)."""
    deadline = time.monotonic() + timeout
    while True:
        child.check_alive()
        try:
            http_get(port, path, timeout=1.0)
            return
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{child.name} did not answer on port {port} within {timeout:g}s\n"
                    f"{child.tail()}"
                ) from None
            time.sleep(0.1)


def _raise_on_signal(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGALRM:
        raise OutOfTime("the run overran its time budget")
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Past `seconds`, what runs is abandoned (OutOfTime) and cleaned up."""
    previous = signal.signal(signal.SIGALRM, _raise_on_signal)
    signal.alarm(max(1, math.ceil(seconds)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, through every cleanup."""
    signal.signal(signal.SIGTERM, _raise_on_signal)
