"""CPU time and resident memory of the processes a benchmark started, and of the machine.

`Meter` follows one process tree from a thread, for the largest RSS between two reads of
its CPU time. The functions read a tree's figures once, for a caller that samples on its
own schedule.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import psutil


def cpu_seconds(procs: Sequence[Any]) -> dict[int, float]:
    """User and system CPU seconds of each process, by pid."""
    out: dict[int, float] = {}
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    # A process that appeared in the window counts from zero.
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def rss_bytes(procs: Sequence[Any]) -> int:
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return int(total)


def machine_busy() -> float:
    """CPU seconds every process on the machine has used so far."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


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
        return rss_bytes(self._tree())

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.max_rss = max(self.max_rss, self.rss())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
