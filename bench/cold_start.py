"""Cold channels: what real players see when the engine prebuffers before any media.

The simulated engine (this tree's) holds every channel's MPEG-TS head and first HLS playlist
for `--prebuffer` seconds, its stat saying `prebuf` meanwhile, as a real engine does a cold
channel (acexy issue 48). A proxy started by `--proxy-cmd` stands in front of it with its
default options. ffmpeg, mpv (--network-timeout=10) and GStreamer's playbin play one channel
as MPEG-TS, and the same three plus hls.js in headless Chromium another as HLS, all at
once, for `--seconds`. For each it prints the time to the first picture, the seconds of
video shown, how many of them from a few seconds after the prebuffer on (the channel's own,
not the slate's), and whether the player gave up; and the engine sessions each channel cost.

    .venv/bin/python bench/cold_start.py
    # another tree, e.g. a checkout of main in /tmp/before:
    .venv/bin/python bench/cold_start.py \
        --proxy-cmd "env PYTHONPATH=/tmp/before {python} -P -m hlsproxy"
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the players' drivers live with the end-to-end tests

from harness import HOST, Child, free_ports, wait_answering  # noqa: E402

from hlsproxy.sim.engine import SimEngine  # noqa: E402
from tests.system.conftest import CHROMIUM, CHROMIUM_FLAGS, HLS_JS, PLAYER_PAGE, Player  # noqa: E402
from tests.system.players import PLAYERS, Playback, play  # noqa: E402

TS_CONTENT = "0d" * 20
HLS_CONTENT = "0e" * 20
# Playback from this long after the prebuffer on is the channel's: an HLS player may still
# show slate segments it fetched just before.
SETTLE = 6.0


def describe(fmt: str, playback: Playback, prebuffer: float) -> str:
    end = "kept playing"
    if playback.exit_code is not None:
        at = "" if playback.ended_at is None else f" at {playback.ended_at:.1f} s"
        end = f"gave up{at} (exit {playback.exit_code})"
        if playback.log:
            end += f": {playback.log[-1][-60:]}"
    first = playback.first_picture
    shown = "never" if first is None else f"{first:.1f}"
    after = playback.played_since(prebuffer + SETTLE)
    return f"{fmt:<5}{playback.player:<11}{shown:>14}{playback.played:>10.1f}{after:>15.1f}   {end}"


async def hls_js(url: str, seconds: float) -> Playback:
    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PLAYER_PAGE)

    async def library(request: web.Request) -> web.FileResponse:
        return web.FileResponse(HLS_JS, headers={"Content-Type": "text/javascript"})

    app = web.Application()
    app.router.add_get("/player.html", page)
    app.router.add_get("/hls.min.js", library)
    server = TestServer(app, host=HOST)
    await server.start_server()
    try:
        with tempfile.TemporaryDirectory() as profile:
            async with async_playwright() as playwright:
                context = await playwright.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
                )
                try:
                    player = Player(await context.new_page(), str(server.make_url("")).rstrip("/"))
                    started = time.monotonic()
                    await player.play(url)
                    playback = Playback("hls.js")
                    while (now := time.monotonic() - started) < seconds:
                        stats = await player.stats()
                        if stats.fatal:
                            fatal = stats.fatal[0]
                            playback.exit_code = 1
                            playback.ended_at = now
                            playback.log.append(f"fatal {fatal.details} {fatal.status}")
                            break
                        if stats.playing_for > 0:
                            playback.advance(now, stats.current_time)
                        await asyncio.sleep(0.25)
                    return playback
                finally:
                    await context.close()
    finally:
        await server.close()


async def main(a: argparse.Namespace) -> None:
    engine = SimEngine()
    engine.faults.prebuffer = a.prebuffer
    sim = TestServer(engine.app, host=HOST)
    await sim.start_server()
    (port,) = free_ports(1)
    argv = [
        *shlex.split(a.proxy_cmd.format(python=shlex.quote(sys.executable))),
        "-addr", f"{HOST}:{port}", "-acestream-host", HOST, "-acestream-port", str(sim.port),
    ]  # fmt: skip
    logs = Path(tempfile.mkdtemp(prefix="cold-start-"))
    proxy = Child("proxy", argv, logs / "proxy.log")
    try:
        wait_answering(proxy, port, "/healthz")
        base = f"http://{HOST}:{port}"
        ts_url = f"{base}/ace/getstream?id={TS_CONTENT}"
        hls_url = f"{base}/ace/manifest.m3u8?id={HLS_CONTENT}"
        runs = [
            *(play(p, ts_url, length=600, deadline=a.seconds) for p in PLAYERS),
            *(play(p, hls_url, length=600, deadline=a.seconds) for p in PLAYERS),
            hls_js(hls_url, a.seconds),
        ]
        results = await asyncio.gather(*runs)
    finally:
        proxy.stop()
        await sim.close()
    print(f"prebuffer {a.prebuffer:g} s, each player run for {a.seconds:g} s; proxy: {a.proxy_cmd}")
    since = f"from {a.prebuffer + SETTLE:g} s on"
    print(f"{'':<5}{'player':<11}{'first picture':>14}{'shown':>10}{since:>15}   end")
    for n, result in enumerate(results):
        print(describe("ts" if n < len(PLAYERS) else "hls", result, a.prebuffer))
    for content, fmt in ((TS_CONTENT, "ts"), (HLS_CONTENT, "hls")):
        sessions = sum(s.content_id == content for s in engine.sessions)
        print(f"{fmt}: the engine started {sessions} session(s) for the channel")
    print(f"proxy log: {logs / 'proxy.log'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prebuffer", type=float, default=30.0, help="seconds (30)")
    parser.add_argument("--seconds", type=float, default=60.0, help="each player's run (60)")
    parser.add_argument(
        "--proxy-cmd",
        default="{python} -m hlsproxy",
        help="how to start the proxy, before its flags ({python}: this interpreter)",
    )
    asyncio.run(main(parser.parse_args()))
