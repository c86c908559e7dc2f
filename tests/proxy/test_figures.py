"""The figures a user reads (/ace/status, /metrics, the status page) after real traffic
against the simulated engine: HLS players counted as people on both paths, every byte read
from the engine counted once, and the engine's own view of a channel, read only while
someone looks."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from aiohttp.test_utils import TestClient

from hlsproxy.hls.viewers import Viewers
from tests.helpers import CID, ProxyFactory, RunningSim, parse, scrape, stream_rows, summary, words

PACKET = 188
HLS_CLIENTS = ("hlsproxy_clients", (("mode", "hls"),))
TS_CLIENTS = ("hlsproxy_clients", (("mode", "ts"),))


# --- the table of viewers ------------------------------------------------------------------------


def test_a_viewer_counts_once_however_often_it_asks() -> None:
    viewers = Viewers()
    for t in range(100):
        viewers.saw(b"ffmpeg", 1000.0 + t * 0.1)
        viewers.saw(b"hls.js", 1000.0 + t * 0.1)
    assert viewers.count(1010.0, within=6.0) == 2


def test_a_viewer_who_stopped_asking_leaves_after_the_window() -> None:
    viewers = Viewers()
    viewers.saw(b"gone", 1000.0)
    viewers.saw(b"still here", 1005.0)
    assert viewers.count(1006.0, within=6.0) == 2
    assert viewers.count(1006.5, within=6.0) == 1
    assert viewers.count(1011.5, within=6.0) == 0
    assert repr(viewers) == "<Viewers 0>"


def test_the_table_is_bounded_and_forgets_the_longest_unseen_first() -> None:
    viewers = Viewers(limit=3)
    for n, who in enumerate([b"a", b"b", b"c", b"a", b"d"]):
        viewers.saw(who, 1000.0 + n)
    assert repr(viewers) == "<Viewers 3>"
    # d made b leave (the longest unseen); b back makes c leave.
    viewers.saw(b"b", 1010.0)
    assert viewers.count(1010.0, within=100.0) == 3
    assert viewers.count(1010.0, within=6.5) == 2  # a, seen at 1003, is older than that


# --- players, through both paths -----------------------------------------------------------------


async def poll_playlist(client: TestClient[Any, Any], url: str, agent: str) -> list[str]:
    """A playlist, as a player with User-Agent `agent` asks for it; its segment URLs."""
    resp = await client.get(url, headers={"User-Agent": agent})
    assert resp.status == 200, await resp.text()
    text = await resp.text()
    return [line for line in text.splitlines() if line.startswith("/ace/hls/")]


async def channel_status(client: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await client.get("/ace/status", params={"id": CID})
    assert resp.status == 200
    status: dict[str, Any] = await resp.json()
    return status


async def test_hls_players_are_counted_as_people_on_both_paths(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(hls_prefetch="0")
    fast = f"/ace/manifest.m3u8?id={CID}"
    # A query with an escape is not the fast path's to read: aiohttp answers it.
    slow = f"/ace/manifest.m3u8?id={CID}&x=%41"
    requests = 0
    for _ in range(5):
        for url in (fast, slow):  # one player, whichever path answers it
            segments = await poll_playlist(client, url, "player-one/1.0")
            assert (
                await client.get(segments[-1], headers={"User-Agent": "player-one/1.0"})
            ).status == 200
            requests += 2
    segments = await poll_playlist(client, fast, "player-two/2.0")
    assert (await client.get(segments[-1], headers={"User-Agent": "player-two/2.0"})).status == 200

    status = await channel_status(client)
    assert status["players"] == {"hls": 2}
    assert status["viewers"] == 2
    assert status["requests"] == requests + 2
    _, metrics = await scrape(client)
    assert metrics[HLS_CLIENTS] == 2
    doc = parse(await (await client.get("/")).text())
    assert summary(doc)["Players"] == "2"
    (row,) = stream_rows(doc)
    assert words(row["Players"].text) == "2 HLS HLS session"


async def test_players_leave_the_count_once_they_stop_asking(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(hls_prefetch="0")
    await poll_playlist(client, f"/ace/manifest.m3u8?id={CID}", "player/1.0")
    assert (await channel_status(client))["viewers"] == 1

    async def left() -> None:
        # Three target durations of silence: the player is gone, the stream still lingers.
        while (await channel_status(client))["viewers"] != 0:  # noqa: ASYNC110 - polled
            await asyncio.sleep(0.2)

    await asyncio.wait_for(left(), timeout=40)


async def test_a_channel_played_both_ways_is_one_row_with_its_players_by_kind(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(hls_prefetch="0")
    segments = await poll_playlist(client, f"/ace/manifest.m3u8?id={CID}", "player/1.0")
    async with client.get("/ace/getstream", params={"id": CID}) as ts:
        await ts.content.readexactly(200 * PACKET)
        status = await channel_status(client)
        assert status["players"] == {"hls": 1, "ts": 1}
        assert status["source"] == "HLS session; MPEG-TS from its segments"
        _, metrics = await scrape(client)
        assert (metrics[HLS_CLIENTS], metrics[TS_CLIENTS]) == (1, 1)
        doc = parse(await (await client.get("/")).text())
        (row,) = stream_rows(doc)
        assert (
            words(row["Players"].text) == "1 HLS 1 MPEG-TS HLS session; MPEG-TS from its segments"
        )
        links = [a.attr("href") for a in row["Links"].iter("a")]
        assert links == [
            f"/player?id={CID}",
            f"/ace/manifest.m3u8?id={CID}",
            f"/ace/getstream?id={CID}",
        ]
        assert summary(doc)["Channels"] == "1"
    assert segments
    assert [s.fmt for s in sim.engine.sessions] == ["hls"]


# --- bytes from the engine -----------------------------------------------------------------------


async def test_in_counts_every_segment_read_from_the_engine_once(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(hls_prefetch="0")
    for agent in ("a", "b", "c"):  # three players, each fetching every segment listed
        for url in await poll_playlist(client, f"/ace/manifest.m3u8?id={CID}", agent):
            assert (await client.get(url, headers={"User-Agent": agent})).status == 200
    text, metrics = await scrape(client)
    served = sim.engine.bytes_served()
    assert served > 0 and sim.counters["segment"] >= 2
    upstream = metrics[("hlsproxy_upstream_bytes_total", (("mode", "hls"),))]
    # Every segment byte the engine sent, once, and the playlists: a few kB each.
    assert served <= upstream <= served + 8192 * sim.counters["playlist"]
    assert metrics[("hlsproxy_cache_fetched_bytes_total", ())] == served
    assert "segments" in re.search(r"# HELP hlsproxy_upstream_bytes_total (.*)", text)[1]  # type: ignore[index]


async def test_mpeg_ts_fed_from_an_hls_session_reads_nothing_of_its_own(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(hls_prefetch="0")
    await poll_playlist(client, f"/ace/manifest.m3u8?id={CID}", "player/1.0")
    async with client.get("/ace/getstream", params={"id": CID}) as ts:
        await ts.content.readexactly(500 * PACKET)
        _, metrics = await scrape(client)
    assert metrics[("hlsproxy_upstream_bytes_total", (("mode", "ts"),))] == 0
    served = sim.engine.bytes_served()
    upstream = metrics[("hlsproxy_upstream_bytes_total", (("mode", "hls"),))]
    assert served <= upstream <= served + 8192 * sim.counters["playlist"]


# --- the engine's view ---------------------------------------------------------------------------


async def test_the_engine_stat_is_read_only_while_someone_looks(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    async with client.get("/ace/getstream", params={"id": CID}) as ts:
        await ts.content.readexactly(200 * PACKET)
        before = sim.counters["stat"]
        await ts.content.readexactly(2000 * PACKET)  # nobody looks: nobody asks
        assert sim.counters["stat"] == before

        started = time.monotonic()
        for _ in range(30):
            await channel_status(client)
            await client.get("/metrics")
            await client.get("/")
        looked = time.monotonic() - started
        # At most one stat a second for the one session, however many look.
        assert sim.counters["stat"] - before <= looked + 1

        async def engine_says_dl() -> dict[str, Any]:
            while True:
                stat = (await channel_status(client)).get("engine_stat")
                if stat is not None and stat["status"] == "dl":
                    return dict(stat)
                await asyncio.sleep(0.3)

        stat = await asyncio.wait_for(engine_says_dl(), timeout=20)
        assert stat == {"status": "dl", "peers": 4, "speed_down_kbps": stat["speed_down_kbps"]}
        assert stat["speed_down_kbps"] > 0
        (row,) = stream_rows(parse(await (await client.get("/")).text()))
        assert re.fullmatch(
            r"engine dl · 4 peers · [\d.]+ [kM]bit/s down", words(row["Engine"].text)
        )
        _, metrics = await scrape(client)
        assert metrics[("hlsproxy_engine_peers", (("mode", "ts"),))] == 4
        assert metrics[("hlsproxy_engine_download_bytes_per_second", (("mode", "ts"),))] > 0
