"""hls.js in headless Chromium plays the proxy's live HLS as a viewer would.

The static ffmpeg streams prove the harness itself: a player that plays them to the end,
and fails loudly on a stream without CORS, is one whose verdict on the proxy can be
trusted. The engine's own fMP4, AES-128 and multivariant flavours go through the proxy
in test_flavours.py.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import CID, ProxyFactory, RunningSim

from .conftest import SEGMENT_SECONDS, Player, StaticOriginFactory, StaticStream

pytestmark = pytest.mark.e2e

LIVE_SECONDS = 15
# A VOD stream plays faster than real time, so each static case takes about two seconds.
VOD_RATE = 4.0


def engine_segment_fetches(sim: RunningSim) -> collections.Counter[str]:
    return collections.Counter(
        r.split()[1] for r in sim.engine.requests if re.search(r"/ace/c/\w+/\d+\.ts", r)
    )


@pytest.mark.parametrize("sim_options", [{"time_scale": 1.0}], ids=["real-time"])
async def test_hls_js_plays_the_proxied_live_stream(
    proxy: ProxyFactory, sim: RunningSim, player: Player, sim_options: dict[str, Any]
) -> None:
    client = await proxy()
    base = f"http://127.0.0.1:{client.port}"
    await player.play(f"{base}/ace/manifest.m3u8?id={CID}")

    stats = await player.until(f"s.playingFor >= {LIVE_SECONDS}", timeout=LIVE_SECONDS + 25)

    # Media errors (a stall, a nudge over a gap) are judged by how far playback advanced.
    assert stats.fatal == [], stats
    assert stats.failed_loads == [], stats
    assert stats.advanced >= 10, stats
    assert len(stats.fragments) >= 4, stats
    for url in stats.fragments:
        assert re.fullmatch(rf"{base}/ace/hls/id/{CID}/[0-9a-f]+\.ts", url), url
    assert sim.counters["start"] == 1
    assert len(sim.engine.sessions) == 1
    fetches = engine_segment_fetches(sim)
    assert len(fetches) >= len(set(stats.fragments))
    assert max(fetches.values()) == 1, fetches


@pytest.mark.parametrize("kind", ["ts", "fmp4", "aes-128", "multivariant"])
async def test_the_harness_plays_a_static_ffmpeg_stream_to_the_end(
    kind: str,
    ffmpeg_stream: Callable[[str], StaticStream],
    static_origin: StaticOriginFactory,
    player: Player,
) -> None:
    stream = ffmpeg_stream(kind)
    origin = await static_origin(stream.root)
    await player.play(origin.url(stream.playlist), rate=VOD_RATE)

    stats = await player.until("s.ended", timeout=stream.duration / VOD_RATE + 20)

    # ffmpeg's video starts 20 ms after its audio, a hole hls.js may report as skipped:
    # media errors are judged by the playing, as for the proxy.
    assert stats.fatal == [], stats
    assert stats.failed_loads == [], stats
    assert stats.ended
    assert stats.current_time >= stream.duration - 0.5, stats
    assert stats.advanced >= stream.duration - SEGMENT_SECONDS, stats
    assert len(set(stats.fragments)) >= stream.segments, stats
    assert all(url.startswith(origin.url("/")) for url in stats.fragments), stats.fragments
    if kind == "fmp4":
        assert "/init.mp4" in origin.paths
    if kind == "aes-128":
        assert stats.keys >= 1
        assert "/enc.key" in origin.paths
    if kind == "multivariant":
        assert stats.levels == 2
        assert origin.paths[0] == "/master.m3u8"
        assert {"/v0/index.m3u8", "/v1/index.m3u8"} & set(origin.paths), origin.paths


async def test_the_harness_reports_a_stream_without_cors_as_fatal(
    ffmpeg_stream: Callable[[str], StaticStream],
    static_origin: StaticOriginFactory,
    player: Player,
) -> None:
    stream = ffmpeg_stream("ts")
    origin = await static_origin(stream.root, cors=False)
    await player.play(origin.url(stream.playlist))

    stats = await player.until("false", timeout=20)

    (error,) = stats.fatal
    assert (error.type, error.details) == ("networkError", "manifestLoadError"), stats
    assert set(origin.paths) == {"/index.m3u8"}  # it was the browser that refused the answer
    assert stats.fragments == [] and stats.current_time == 0
