"""Failover benchmark: how long players wait when the engine of their stream dies.

In one process, on 127.0.0.1: the simulated orchestrator with a pool of simulated engines, and
the proxy in front of it. One content plays as MPEG-TS to `--ts` players, another as HLS to
`--hls` viewers that poll like players (the playlist every second, each new segment once).
Then every engine that plays one of them is killed (its connections cut, its port closed),
and it measures:

- MPEG-TS: the gap each player saw, from the kill to the first byte of the new session
  (the discontinuity mark in front of it), and whether every player stayed connected;
- HLS: the time from the kill to the first playlist with the new session's segments
  (EXT-X-DISCONTINUITY) whose newest segment a viewer could fetch, and whether any media
  sequence number went backwards or any viewer got an error or EXT-X-ENDLIST.

Each run starts afresh; `--repeat` runs (5), medians printed. Bounded in time; exits 0.

    .venv/bin/python bench/failover.py --ts 5 --hls 20 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp.test_utils import TestServer

from hlsproxy.config import load_settings
from hlsproxy.sim.orchestrator import SimOrchestrator
from hlsproxy.web.app import create_app

KEY = "bench-key"
TS_CONTENT = "0b" * 20
HLS_CONTENT = "0c" * 20
PACKET = 188
_SEQUENCE = re.compile(r"#EXT-X-MEDIA-SEQUENCE:(\d+)")


def marked(data: bytes) -> bool:
    """Does `data` hold a packet with the discontinuity indicator, adaptation field only?"""
    return any(
        data[i + 3] & 0x30 == 0x20 and data[i + 4] and data[i + 5] & 0x80
        for i in range(0, len(data), PACKET)
    )


@dataclass
class Run:
    killed_at: float = 0.0
    ts_gaps: list[float] = field(default_factory=list)
    ts_dropped: int = 0
    hls_gap: float | None = None
    hls_errors: int = 0
    hls_backwards: int = 0


async def ts_player(
    http: aiohttp.ClientSession, base: str, killed: asyncio.Event, run: Run
) -> None:
    async with http.get(f"{base}/ace/getstream", params={"id": TS_CONTENT}) as resp:
        # Whole packets are taken off the front, so `pending` always starts on a packet.
        pending = b""
        while True:
            chunk = await resp.content.readany()
            if not chunk:
                run.ts_dropped += 1
                return
            pending += chunk
            whole = len(pending) - len(pending) % PACKET
            packets, pending = pending[:whole], pending[whole:]
            if killed.is_set() and marked(packets):
                run.ts_gaps.append(time.monotonic() - run.killed_at)
                return


async def hls_viewer(
    http: aiohttp.ClientSession, base: str, killed: asyncio.Event, stop: asyncio.Event, run: Run
) -> None:
    highest = -1
    seen: set[str] = set()
    while not stop.is_set():
        async with http.get(f"{base}/ace/manifest.m3u8", params={"id": HLS_CONTENT}) as resp:
            text = await resp.text()
            if resp.status != 200 or "#EXT-X-ENDLIST" in text:
                run.hls_errors += 1
        found = _SEQUENCE.search(text)
        sequence = int(found.group(1)) if found else -1
        if sequence < highest:
            run.hls_backwards += 1
        highest = max(highest, sequence)
        uris = [line for line in text.splitlines() if line.startswith("/ace/hls/")]
        for uri in uris[-2:]:
            if uri not in seen:
                seen.add(uri)
                async with http.get(base + uri) as resp:
                    await resp.read()
                    if resp.status != 200:
                        run.hls_errors += 1
        if killed.is_set() and run.hls_gap is None and "#EXT-X-DISCONTINUITY\n" in text:
            run.hls_gap = time.monotonic() - run.killed_at
        await asyncio.sleep(1.0)


async def once(ts: int, hls: int) -> Run:
    run = Run()
    orch = SimOrchestrator(api_key=KEY, stat_interval=0.5, engines=3)
    await orch.serve()
    settings = load_settings(
        {
            "orch_url": orch.url,
            "orch_apikey": KEY,
            "hls_prefetch": "1",
            "max_streams_per_engine": "2",
        },
        env={},
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    killed, stop = asyncio.Event(), asyncio.Event()
    try:
        async with aiohttp.ClientSession() as http:
            players = [asyncio.create_task(ts_player(http, base, killed, run)) for _ in range(ts)]
            viewers = [
                asyncio.create_task(hls_viewer(http, base, killed, stop, run)) for _ in range(hls)
            ]
            await asyncio.sleep(8.0)  # everyone plays
            victims = [e for e in orch.engines if e.sim.active()]
            run.killed_at = time.monotonic()
            killed.set()
            await asyncio.gather(*(orch.kill_engine(e.container_id) for e in victims))
            async with asyncio.timeout(30):
                await asyncio.gather(*players)
                while run.hls_gap is None:  # noqa: ASYNC110 - viewers poll on their own
                    await asyncio.sleep(0.1)
            await asyncio.sleep(5.0)  # viewers play on for a while after the move
            stop.set()
            await asyncio.gather(*viewers)
    finally:
        await server.close()
        await orch.stop()
    return run


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ts", type=int, default=5, help="MPEG-TS players (5)")
    parser.add_argument("--hls", type=int, default=20, help="HLS viewers (20)")
    parser.add_argument("--repeat", type=int, default=5, help="runs (5)")
    args = parser.parse_args()
    runs = [await once(args.ts, args.hls) for _ in range(args.repeat)]
    gaps = [g for r in runs for g in r.ts_gaps]
    print(f"| {args.ts} MPEG-TS players, {args.hls} HLS viewers, {args.repeat} runs | |")
    print("|---|---:|")
    print(f"| MPEG-TS gap, median / max | {statistics.median(gaps):.2f} s / {max(gaps):.2f} s |")
    print(f"| MPEG-TS players dropped | {sum(r.ts_dropped for r in runs)} |")
    hls_gaps = [r.hls_gap for r in runs if r.hls_gap is not None]
    print(
        f"| HLS: kill to the spliced playlist, median / max | "
        f"{statistics.median(hls_gaps):.2f} s / {max(hls_gaps):.2f} s |"
    )
    print(f"| HLS errors or ENDLIST seen | {sum(r.hls_errors for r in runs)} |")
    print(f"| HLS media sequence went backwards | {sum(r.hls_backwards for r in runs)} |")


if __name__ == "__main__":
    asyncio.run(main())
