"""Real players play the HLS the proxy cuts from a channel's MPEG-TS session.

hls.js in headless Chromium, ffmpeg, mpv and GStreamer's playbin each play it live; a
read that breaks under hls.js shows up as a discontinuity it plays across. VLC is left
out: Debian's build refuses to run as root, which is how the tests run.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any

import pytest

from tests.helpers import CID, ProxyFactory, RunningSim, eventually

from .conftest import Player
from .players import PLAYERS, play
from .players import Player as MediaPlayer

pytestmark = pytest.mark.e2e

CUT = {"hls_source": "proxy", "hls_segment_target": "2s"}
MANIFEST = f"/ace/manifest.m3u8?id={CID}"
SECONDS = 10


@pytest.mark.parametrize("sim_options", [{"time_scale": 1.0}], ids=["real-time"])
@pytest.mark.parametrize("name", PLAYERS)
async def test_a_player_plays_cut_hls_without_a_warning(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any], name: MediaPlayer
) -> None:
    client = await proxy(**CUT)
    url = f"http://127.0.0.1:{client.port}{MANIFEST}"

    seen = await play(name, url, length=SECONDS, deadline=SECONDS + 40)

    if name == "gstreamer":
        assert seen.played >= SECONDS, repr(seen)  # then it is stopped: it has no length
    else:
        # Exit status 0: it played the length asked for (mpv exits 2 on a stream that fails).
        assert seen.exit_code == 0, repr(seen)
    assert seen.warnings == []
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
