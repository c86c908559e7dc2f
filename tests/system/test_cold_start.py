"""Real players through a cold channel: the engine prebuffers it 30 s before any media.

A real engine answers the start at once, then holds the MPEG-TS head and the first HLS
playlist while it prebuffers (acexy issue 48: 10 to 30 s, sometimes more). Every player
here gives up on a silent server within 10 to 15 s (mpv --network-timeout=10, GStreamer's
souphttpsrc 15 s, hls.js's manifest timeout 10 s, ffmpeg's HLS reloads), so each one
playing the channel from the end of the prebuffer on proves it was kept on the line. The
players of each format run at once, on one channel: the engine must see one session.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from hlsproxy.hls import slate
from hlsproxy.hls.tokens import token_for
from tests.helpers import CID, CID2, ProxyFactory, RunningSim

from .conftest import Player
from .players import PLAYERS, Playback, play

pytestmark = pytest.mark.e2e

PREBUFFER = 30.0
PLAY = 12.0
"""Seconds of the channel each player must show once the engine has prebuffered."""
# Playback from this long after the prebuffer counts as the channel's: HLS players may
# still be showing the slate segments they fetched just before it ended.
SETTLE = 6.0
RUN = PREBUFFER + SETTLE + PLAY + 6.0
"""How long each player runs before it is stopped."""


def _channel_only(playback: Playback) -> float:
    return playback.played_since(PREBUFFER + SETTLE)


async def _players(url: str) -> list[Playback]:
    # Told to play far longer than they run: a player that ends by itself gave up.
    return list(
        await asyncio.gather(*(play(name, url, length=600, deadline=RUN) for name in PLAYERS))
    )


def _check(playbacks: list[Playback]) -> None:
    for playback in playbacks:
        assert playback.exit_code is None, f"it stopped by itself: {playback!r}"
        assert playback.first_picture is not None, playback
        assert _channel_only(playback) >= PLAY, playback


async def test_mpeg_ts_players_wait_out_a_30_s_prebuffer_on_one_session(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    sim.faults.prebuffer = PREBUFFER
    client = await proxy()
    url = f"http://127.0.0.1:{client.port}/ace/getstream?id={CID}"

    playbacks = await _players(url)

    _check(playbacks)
    # Nothing to show before the engine has media: the players saw only null packets.
    for playback in playbacks:
        assert playback.first_picture is not None
        assert playback.first_picture >= PREBUFFER - 1, playback
    assert sim.counters["start"] == 1
    assert [s.content_id for s in sim.engine.sessions] == [CID]


@pytest.mark.parametrize(
    "source",
    [
        pytest.param({"hls_source": "engine"}, id="engine-hls"),
        # The engine sees one MPEG-TS session; the proxy cuts the HLS from it.
        pytest.param({"hls_source": "proxy", "hls_segment_target": "2s"}, id="cut-hls"),
    ],
)
async def test_hls_players_see_the_slate_then_the_channel_on_one_session(
    proxy: ProxyFactory, sim: RunningSim, player: Player, source: dict[str, str]
) -> None:
    sim.faults.prebuffer = PREBUFFER
    client = await proxy(**source)
    base = f"http://127.0.0.1:{client.port}"
    url = f"{base}/ace/manifest.m3u8?id={CID2}"

    await player.play(url)
    playbacks = await _players(url)
    stats = await player.stats()

    _check(playbacks)
    # The slate is up at once, long before the engine has anything.
    for playback in playbacks:
        assert playback.first_picture is not None
        assert playback.first_picture < PREBUFFER / 2, playback
    assert stats.fatal == [], stats
    assert stats.failed_loads == [], stats
    assert stats.advanced >= PREBUFFER + PLAY, stats
    slate_urls = {
        f"{base}/ace/hls/id/{CID2}/{token_for('segment', slate.uri(n).url, None)}"
        for n in range(200)
    }
    shown = [url for url in stats.fragments if url not in slate_urls]
    assert len(shown) < len(stats.fragments), "hls.js never played the slate"
    assert len(shown) >= 3, stats
    for fragment in shown:
        assert re.fullmatch(rf"{base}/ace/hls/id/{CID2}/[0-9a-f]+\.ts", fragment), fragment
    assert sim.counters["start"] == 1
    assert [s.content_id for s in sim.engine.sessions] == [CID2]
