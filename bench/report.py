"""What every benchmark's report states besides its own figures: percentiles of samples
and the machine it ran on."""

from __future__ import annotations

import contextlib
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import psutil


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, `q` from 0 to 1; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} CPUs ({model}), {memory:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
