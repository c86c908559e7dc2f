"""What an MPEG-TS viewer sees when an HLS viewer of the same channel arrives.

Starts hlsproxy as a process, and the simulated engine in this one (so that it can say
which sessions the proxy started), on free 127.0.0.1 ports.
One MPEG-TS viewer plays the channel; after `--before` seconds an HLS viewer asks for the
channel's playlist and its newest segment; the MPEG-TS viewer reads on for `--after`
seconds. It prints, for the MPEG-TS viewer, the longest wait between two reads before and
after the HLS viewer came, and what `ffmpeg -v warning` says decoding what it received
(time stamps that go back show as "non monotonically increasing dts"); for the HLS viewer,
how long its first playlist took; and the engine sessions the proxy started, by format.

`--proxy-cmd` starts another tree to compare (for a checkout of it in /tmp/before):

    .venv/bin/python bench/handover.py
    .venv/bin/python bench/handover.py \
        --proxy-cmd "env PYTHONPATH=/tmp/before {python} -P -m hlsproxy"
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from harness import HOST, REPO, BenchError, Child, free_ports, time_budget, wait_answering

sys.path.insert(0, str(REPO))

from hlsproxy.sim.engine import SimEngine
from tests.helpers import decode_warnings

CONTENT = "0a4848271c91ce2d8965ce416267c25047dc8141"


@dataclass
class Capture:
    data: bytearray = field(default_factory=bytearray)
    arrivals: list[float] = field(default_factory=list)


async def ts_viewer(base: str, capture: Capture, until: asyncio.Event) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/ace/getstream", params={"id": CONTENT}) as resp,
    ):
        if resp.status != 200:
            raise BenchError(f"the MPEG-TS viewer got {resp.status}")
        while not until.is_set():
            chunk = await resp.content.readany()
            if not chunk:
                raise BenchError("the MPEG-TS stream ended")
            capture.arrivals.append(time.monotonic())
            capture.data += chunk


async def hls_viewer(base: str) -> float:
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/ace/manifest.m3u8", params={"id": CONTENT}) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise BenchError(f"the HLS viewer got {resp.status}: {text}")
        took = time.monotonic() - started
        uri = [line for line in text.splitlines() if line and not line.startswith("#")][-1]
        async with http.get(f"{base}{uri}") as resp:
            await resp.read()
            if resp.status != 200:
                raise BenchError(f"the HLS viewer's segment got {resp.status}")
    return took


def longest_gap(arrivals: list[float], start: float, end: float) -> float:
    times = [t for t in arrivals if start <= t <= end]
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def ffmpeg_warnings(data: bytes) -> list[str]:
    """What ffmpeg says decoding `data`, as the tests judge a capture."""
    return decode_warnings(data).splitlines()


async def serve_engine(engine: SimEngine, port: int) -> web.AppRunner:
    runner = web.AppRunner(engine.app)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    return runner


async def run(base: str, before: float, after: float) -> tuple[Capture, float, float]:
    capture = Capture()
    until = asyncio.Event()
    viewer = asyncio.create_task(ts_viewer(base, capture, until))
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.sleep(before)), before + 1)
        if viewer.done():
            viewer.result()
        arrived = time.monotonic()
        took = await asyncio.wait_for(hls_viewer(base), 60)
        await asyncio.sleep(after)
    finally:
        until.set()
        viewer.cancel()
        await asyncio.gather(viewer, return_exceptions=True)
    return capture, arrived, took


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy-cmd", default="{python} -m hlsproxy")
    parser.add_argument("--before", type=float, default=8.0)
    parser.add_argument("--after", type=float, default=15.0)
    parser.add_argument("proxy_args", nargs="*", help="more flags for the proxy")
    args = parser.parse_args(argv)
    with time_budget(args.before + args.after + 120):
        asyncio.run(measure(args))


async def measure(args: argparse.Namespace) -> None:
    engine_port, proxy_port = free_ports(2)
    base = f"http://{HOST}:{proxy_port}"
    logs = Path(tempfile.mkdtemp(prefix="handover-"))
    engine = SimEngine()
    runner = await serve_engine(engine, engine_port)
    proxy: Child | None = None
    try:
        proxy = Child(
            "hlsproxy",
            [
                *shlex.split(args.proxy_cmd.format(python=sys.executable)),
                "-addr",
                f"{HOST}:{proxy_port}",
                "-acestream-host",
                HOST,
                "-acestream-port",
                str(engine_port),
                *args.proxy_args,
            ],
            logs / "proxy.log",
        )
        await asyncio.to_thread(wait_answering, proxy, proxy_port, "/ace/status")
        capture, arrived, took = await run(base, args.before, args.after)
        sessions = [s.fmt for s in engine.sessions]
        reads = engine.counters["content_read"]
    finally:
        if proxy is not None:
            await asyncio.to_thread(proxy.stop)
        await runner.cleanup()

    first = capture.arrivals[0]
    warnings = await asyncio.to_thread(ffmpeg_warnings, bytes(capture.data))
    going_back = [w for w in warnings if re.search(r"non monotonically increasing dts", w)]
    before = longest_gap(capture.arrivals, first + 1, arrived)
    after = longest_gap(capture.arrivals, arrived, capture.arrivals[-1])
    print(f"proxy: {args.proxy_cmd} {' '.join(args.proxy_args)}".rstrip())
    print("| | |\n|---|---:|")
    print(f"| MPEG-TS viewer: longest wait between reads, before the HLS viewer | {before:.2f} s |")
    print(f"| MPEG-TS viewer: longest wait between reads, after | {after:.2f} s |")
    counts = f"{len(warnings)} ({len(going_back)})"
    print(f"| MPEG-TS viewer: ffmpeg warnings (of them, dts going back) | {counts} |")
    print(f"| HLS viewer: first playlist | {took:.2f} s |")
    print(f"| engine sessions started; MPEG-TS reads | {', '.join(sessions)}; {reads} |")
    for line in warnings[:3]:
        print(f"    {line}")


if __name__ == "__main__":
    main()
