"""A py-spy profile of a running server over the measured window, summed up per function
as Markdown tables."""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from harness import die_with_parent


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
