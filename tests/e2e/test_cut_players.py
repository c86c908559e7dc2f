"""Real players play the HLS the proxy cuts from a channel's MPEG-TS session.

hls.js in headless Chromium, ffmpeg, mpv and GStreamer's playbin each play it live; a
read that breaks under hls.js shows up as a discontinuity it plays across. VLC is left
out: Debian's build refuses to run as root, which is how the tests run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import shutil
import subprocess
from typing import Any

import pytest

from ..conftest import CID, ProxyFactory, RunningSim, eventually
from .conftest import Player

pytestmark = pytest.mark.e2e

CUT = {"hls_source": "proxy", "hls_segment_target": "2s"}
MANIFEST = f"/ace/manifest.m3u8?id={CID}"
SECONDS = 10
# GStreamer's fake sink says the time of each frame it renders.
_GST_PTS = re.compile(r"fakesink0:sink\) \(\d+ bytes, dts: [^,]*, pts: (\d+):(\d\d):(\d\d\.\d+)")


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: ./scripts/test installs it"
    return path


async def run(*argv: str, timeout: float) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace").strip()


@pytest.mark.parametrize("sim_options", [{"time_scale": 1.0}], ids=["real-time"])
async def test_ffmpeg_plays_cut_hls_without_a_warning(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    client = await proxy(**CUT)
    url = f"http://127.0.0.1:{client.port}{MANIFEST}"
    argv = [tool("ffmpeg"), "-hide_banner", "-nostdin", "-v", "warning", "-i", url]
    code, out = await run(*argv, "-t", str(SECONDS), "-f", "null", "-", timeout=60)
    assert (code, out) == (0, "")
    assert [s.fmt for s in sim.engine.sessions] == ["ts"]


@pytest.mark.parametrize("sim_options", [{"time_scale": 1.0}], ids=["real-time"])
async def test_mpv_plays_cut_hls_without_a_warning(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    client = await proxy(**CUT)
    url = f"http://127.0.0.1:{client.port}{MANIFEST}"
    argv = [tool("mpv"), "--no-config", "--vo=null", "--ao=null", "--msg-level=all=warn"]
    # Exit status 0: it played the length asked for (a stream that fails to load is 2).
    code, out = await run(*argv, f"--length={SECONDS}", url, timeout=60)
    assert (code, out) == (0, "")
    assert [s.fmt for s in sim.engine.sessions] == ["ts"]


@pytest.mark.parametrize("sim_options", [{"time_scale": 1.0}], ids=["real-time"])
async def test_gstreamer_plays_cut_hls_without_an_error(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    client = await proxy(**CUT)
    url = f"http://127.0.0.1:{client.port}{MANIFEST}"
    process = await asyncio.create_subprocess_exec(
        tool("gst-launch-1.0"),
        "-m",
        "-v",
        "playbin",
        f"uri={url}",
        "video-sink=fakesink sync=true silent=false",
        "audio-sink=fakesink sync=true",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    problems: list[str] = []
    first: float | None = None
    played = 0.0
    try:
        async with asyncio.timeout(SECONDS + 40):
            while played < SECONDS:
                line = (await process.stdout.readline()).decode(errors="replace")
                assert line, f"playbin ended after {played:.1f}s: {problems}"
                if re.search(r"\b(ERROR|WARNING)\b", line):
                    problems.append(line.strip())
                match = _GST_PTS.search(line)
                if match:
                    hours, minutes, seconds = match.groups()
                    pts = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
                    first = pts if first is None else first
                    played = pts - first
    finally:
        process.kill()
        with contextlib.suppress(ProcessLookupError):
            await process.wait()
    assert problems == []
    assert [s.fmt for s in sim.engine.sessions] == ["ts"]


@pytest.mark.parametrize("sim_options", [{"time_scale": 1.0}], ids=["real-time"])
async def test_hls_js_plays_cut_hls_across_a_broken_read(
    proxy: ProxyFactory, sim: RunningSim, player: Player, sim_options: dict[str, Any]
) -> None:
    client = await proxy(**CUT, upstream_retries="5")
    base = f"http://127.0.0.1:{client.port}"
    sim.faults.cut_after = 600_000  # about 12 s of the channel, then the read drops
    await player.play(f"{base}{MANIFEST}")
    await eventually(lambda: sim.counters["content_read"] >= 2, timeout=40)
    sim.faults.cut_after = None
    async with asyncio.timeout(30):
        # What the player polls shows the break.
        while "#EXT-X-DISCONTINUITY\n" not in await (await client.get(MANIFEST)).text():  # noqa: ASYNC110
            await asyncio.sleep(1)

    stats = await player.until("s.playingFor >= 25", timeout=60)

    assert stats.fatal == [], stats
    assert stats.failed_loads == [], stats
    # No stall: playback went on through the break, nearly as fast as the clock.
    assert stats.advanced >= 20, stats
    for url in stats.fragments:
        assert re.fullmatch(rf"{base}/ace/hls/id/{CID}/[0-9a-f]{{20}}\.ts", url), url
    assert {s.fmt for s in sim.engine.sessions} == {"ts"}


@pytest.mark.parametrize("sim_options", [{"time_scale": 1.0}], ids=["real-time"])
async def test_hls_js_pauses_and_seeks_back_within_the_window(
    proxy: ProxyFactory, sim: RunningSim, player: Player, sim_options: dict[str, Any]
) -> None:
    client = await proxy(**CUT, hls_window="10")  # 20 s to pause or seek back within
    await player.play(f"http://127.0.0.1:{client.port}{MANIFEST}")
    await player.until("s.playingFor >= 4", timeout=40)
    paused_at = await player.page.evaluate("() => { video.pause(); return video.currentTime; }")
    await asyncio.sleep(8)  # the viewer looks away; the channel goes on
    back_to = paused_at - 4
    resumed = await player.page.evaluate(
        f"() => {{ video.currentTime = {back_to}; video.play(); return now(); }}"
    )

    stats = await player.until(f"s.currentTime >= {back_to + 6}", timeout=40)

    assert stats.fatal == [], stats
    assert stats.failed_loads == [], stats
    # It played on from where the viewer went back to, with no jump towards the live edge.
    after = [(t, c) for t, c in stats.samples if t > resumed + 0.5]
    assert after and back_to - 0.5 <= after[0][1] <= paused_at, after[:3]
    jumps = [(c2 - c1) - (t2 - t1) for (t1, c1), (t2, c2) in itertools.pairwise(after)]
    assert max(jumps) < 1.0, after
    assert [s.fmt for s in sim.engine.sessions] == ["ts"]
