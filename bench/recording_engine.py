"""The engine of the HLS benchmark: the project's simulated engine in a process of its own,
recording every request it answers and writing the record out when it stops.

`python -m hlsproxy.sim` keeps no access log, so the benchmark learns what the engine saw
(its fetches of each segment) from this record.

    python bench/recording_engine.py BITRATE RECORD.json
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness import HOST, REPO, BenchError, Child


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


def start_engine(bitrate: int, workdir: Path) -> tuple[Child, int, Path]:
    """The engine, its port, and the file its record will be in once it is stopped."""
    out = workdir / "engine.json"
    argv = [sys.executable, __file__, str(bitrate), str(out)]
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


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    asyncio.run(_serve_engine(int(sys.argv[1]), Path(sys.argv[2])))
