"""How long the names in a rewritten playlist stay fetchable, on an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from hlsproxy.content import parse_stream_request
from hlsproxy.engine.client import Engine, EngineClient
from hlsproxy.engine.pool import FixedEngine
from hlsproxy.errors import NotFound
from hlsproxy.hls.cache import SegmentCache
from hlsproxy.hls.stream import HlsOptions, HlsStream
from hlsproxy.sessions import Sessions
from hlsproxy.state import EndReason
from tests.helpers import Clock, RunningSim

MULTIVARIANT = "aaaa" + "0" * 35 + "1"


@pytest.fixture
async def stream(sim: RunningSim) -> AsyncIterator[tuple[HlsStream, Clock]]:
    clock = Clock()
    async with aiohttp.ClientSession() as http:
        client = EngineClient(http, response_timeout=5.0)
        sessions = Sessions(client, FixedEngine(Engine("http", "127.0.0.1", sim.port)))
        cache = SegmentCache(max_bytes=64 << 20, clock=clock)
        options = HlsOptions(
            stream_timeout=3600.0, prefetch=0, locate=lambda key, name: f"/r/{name}"
        )
        request = parse_stream_request([("id", MULTIVARIANT)])
        hls = HlsStream(
            request, client=client, sessions=sessions, cache=cache, options=options, clock=clock
        )
        yield hls, clock
        hls.close(EndReason.SHUTDOWN)
        await hls.wait_closed()
        await sessions.aclose()
        await cache.aclose()


async def test_a_variant_playlist_lives_as_long_as_players_poll_it(
    stream: tuple[HlsStream, Clock], sim: RunningSim
) -> None:
    """Players fetch the multivariant playlist once, then poll one variant for hours."""
    hls, clock = stream
    multivariant = await hls.playlist()
    variants = [line[3:] for line in multivariant.splitlines() if line.startswith("/r/")]
    assert variants and all(v.endswith(".m3u8") for v in variants)
    polled = variants[0]
    for _ in range(60):  # ten minutes of polls, every ten seconds
        clock.now += 10.0
        text = await hls.playlist(polled)
        assert "#EXTINF" in text
    assert sim.counters["playlist"] >= 60
    # A variant nobody asked for in all that time is forgotten: the table stays bounded.
    with pytest.raises(NotFound):
        await hls.playlist(variants[1])
