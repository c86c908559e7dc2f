"""fMP4, AES-128 and multivariant HLS from the simulated engine, played through the proxy
by hls.js in headless Chromium and read by ffmpeg.

Real engines serve MPEG-TS media playlists; these flavours add the URIs the proxy must
carry to its own routes as well: EXT-X-MAP init sections, EXT-X-KEY keys, and variant
playlists. The engine picks a flavour by the content id's first digits.

The browser's channel starts with 7 segments, so that hls.js, which starts three target
durations behind the live end, plays across the end of the 16 s media loop: a step back
in the fMP4 timestamps, or the AES-128 playlist's discontinuity mishandled on the way,
would stall it there.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from typing import Any

import pytest
from playwright.async_api import Request

from tests.helpers import ProxyFactory, RunningSim

from .conftest import Player

pytestmark = pytest.mark.e2e

FLAVOURS = {
    "fmp4": "f4f4c0ffee5e1f0d3a9b7c2e4d6f8a0b1c3e5d7f",
    "aes-128": "aeae5128c0de7b1f3e9a2d4c6b8f0e1a3c5d7b9f",
    "multivariant": "aaaa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f70",
}
LOOP_SECONDS = 16
PLAY_SECONDS = 6
MEDIA_EXT = {"fmp4": "m4s", "aes-128": "ts", "multivariant": "ts"}


def proxy_resource(base: str, cid: str, ext: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(base)}/ace/hls/id/{cid}/[0-9a-f]{{20}}\.{ext}")


@pytest.mark.parametrize("sim_options", [{"hls_initial_window": 7}], ids=["7-segments"])
@pytest.mark.parametrize("flavour", list(FLAVOURS))
async def test_hls_js_plays_the_flavour_through_the_proxy(
    flavour: str,
    proxy: ProxyFactory,
    sim: RunningSim,
    player: Player,
    sim_options: dict[str, Any],
) -> None:
    cid = FLAVOURS[flavour]
    client = await proxy()
    base = f"http://127.0.0.1:{client.port}"
    requested: list[str] = []

    def record(request: Request) -> None:
        requested.append(request.url)

    player.page.on("request", record)
    await player.play(f"{base}/ace/manifest.m3u8?id={cid}")

    # Played past the loop's end, and for a while from where it started.
    stats = await player.until(
        "s.samples.length > 1 && "
        f"s.samples[s.samples.length - 1][1] - s.samples[0][1] >= {PLAY_SECONDS} && "
        f"s.currentTime > {LOOP_SECONDS + 1}",
        timeout=40,
    )

    assert stats.fatal == [], stats
    assert stats.failed_loads == [], stats
    assert stats.advanced >= PLAY_SECONDS, stats
    assert stats.samples[0][1] < LOOP_SECONDS < stats.current_time, stats.samples
    media = proxy_resource(base, cid, MEDIA_EXT[flavour])
    assert len(set(stats.fragments)) >= 3, stats
    assert all(media.fullmatch(url) for url in stats.fragments), stats.fragments
    # Nothing came over the network from anywhere but the proxy (and the page's origin);
    # blob: URLs are the page's own media source.
    fetched = [url for url in requested if url.startswith("http")]
    assert all(url.startswith((f"{base}/", f"{player.origin}/")) for url in fetched), fetched
    engine_saw = sim.engine.requests
    if flavour == "fmp4":
        assert any(proxy_resource(base, cid, "mp4").fullmatch(url) for url in requested)
        assert sim.counters["init"] >= 1
        assert any(r.endswith("/init.mp4") for r in engine_saw)
    if flavour == "aes-128":
        assert stats.keys >= 1, stats
        assert any(proxy_resource(base, cid, "key").fullmatch(url) for url in requested)
        assert sim.counters["key"] >= 1
    if flavour == "multivariant":
        assert stats.levels == 2, stats
        variants = [url for url in requested if proxy_resource(base, cid, "m3u8").fullmatch(url)]
        assert variants, requested
        assert any(re.search(r"/ace/m/\w+/\w+/(high|low)\.m3u8$", r) for r in engine_saw)
    assert sim.counters["start"] == 1


@pytest.mark.parametrize("flavour", list(FLAVOURS))
async def test_ffmpeg_reads_the_flavour_through_the_proxy_without_a_warning(
    flavour: str, proxy: ProxyFactory, sim: RunningSim
) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg is missing: ./scripts/test installs it")
    client = await proxy()
    url = f"http://127.0.0.1:{client.port}/ace/manifest.m3u8?id={FLAVOURS[flavour]}"

    # A fresh channel: ffmpeg reads its 6 s from the first playlist. After a reload,
    # ffmpeg 5.1 reads the fMP4 init section again and warns of a duplicated moov; and at
    # the AES-128 loop's discontinuity it reports the continuity counters' jump as a
    # corrupt packet. The proxy runs on this event loop: ffmpeg must not block it.
    process = await asyncio.create_subprocess_exec(
        *[ffmpeg, "-hide_banner", "-nostdin", "-v", "warning", "-progress", "pipe:1"],
        *["-i", url, "-t", str(PLAY_SECONDS), "-f", "null", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert (process.returncode, err.decode(errors="replace").strip()) == (0, "")
    # It decoded all the time asked for, and fetched what each flavour needs for it.
    decoded = re.findall(r"^out_time_us=(\d+)$", out.decode(), re.MULTILINE)
    assert decoded and int(decoded[-1]) >= (PLAY_SECONDS - 0.1) * 1_000_000, out
    needed = {"fmp4": "init", "aes-128": "key", "multivariant": "playlist"}[flavour]
    assert sim.counters[needed] >= (2 if flavour == "multivariant" else 1)
