"""Cold channels: the engine answers the start at once, then holds the media while it
prebuffers, its stat saying `prebuf`; the proxy waits for it, keeps its players on the
line, and shows the wait. Against the simulated engine's prebuffer fault."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import aiohttp
import pytest

from hlsproxy.hls import slate
from hlsproxy.hls.tokens import token_for
from hlsproxy.ts.loop import MediaLoop
from hlsproxy.ts.packets import NULL_PACKET, PACKET_SIZE
from tests.helpers import CID, CID2, ProxyFactory, RunningSim, eventually

PREBUFFER = 5.0
# The no-response timeout is far shorter than the prebuffer: only the engine's word
# (stat: prebuf, read once a second) keeps the wait going.
FAST = {"no_response_timeout": "2s"}
# Where HLS comes from: the engine's own playlists, or cut by the proxy from MPEG-TS.
SOURCES = [
    pytest.param({"hls_source": "engine"}, id="engine-hls"),
    pytest.param({"hls_source": "proxy", "hls_segment_target": "2s"}, id="cut-hls"),
]


def pid_of(packet: bytes) -> int:
    return (packet[1] & 0x1F) << 8 | packet[2]


async def read_until_media(resp: aiohttp.ClientResponse) -> tuple[int, bytes]:
    """(the reads that brought only null packets, the first packets after them)."""
    held = 0
    pending = b""
    async with asyncio.timeout(PREBUFFER + 10):
        while True:
            chunk = await resp.content.readany()
            assert chunk, "the stream ended before its media"
            pending += chunk
            whole = len(pending) - len(pending) % PACKET_SIZE
            packets = [pending[i : i + PACKET_SIZE] for i in range(0, whole, PACKET_SIZE)]
            media = [i for i, p in enumerate(packets) if p != NULL_PACKET]
            if media:
                return held, b"".join(packets[media[0] :])
            held += 1
            pending = pending[whole:]


async def test_an_mpeg_ts_client_is_held_with_null_packets_then_joins_cleanly(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    sim.faults.prebuffer = PREBUFFER
    client = await proxy(**FAST)
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "video/mp2t"
        held, media = await read_until_media(resp)
    assert held >= 2  # a burst each second, for seconds
    assert pid_of(media) == 0  # the clean join: PAT first
    assert sim.counters["start"] == 1


async def test_every_player_waits_on_one_session_and_one_leaving_costs_nothing(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    sim.faults.prebuffer = PREBUFFER
    client = await proxy(**FAST)
    leaving = await client.get("/ace/getstream", params={"id": CID})
    assert leaving.status == 200
    staying = [await client.get("/ace/getstream", params={"id": CID}) for _ in range(2)]
    leaving.close()
    for resp in staying:
        assert resp.status == 200
        _, media = await read_until_media(resp)
        assert pid_of(media) == 0
        resp.close()
    assert sim.counters["start"] == 1
    assert len(sim.engine.sessions) == 1


async def test_connected_clients_are_kept_on_the_line_while_a_new_session_prebuffers(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    # Every read is cut short: the second failure in a row starts a new session, which the
    # engine (its channel gone cold meanwhile) holds for PREBUFFER seconds.
    sim.faults.cut_after = 200 * PACKET_SIZE
    client = await proxy(**FAST, upstream_retries="5")
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        assert resp.status == 200
        first = await resp.content.readexactly(100 * PACKET_SIZE)
        sim.faults.prebuffer = PREBUFFER
        data = bytearray(first)
        async with asyncio.timeout(PREBUFFER + 15):
            while sim.counters["start"] < 2 or len(data) < 600 * PACKET_SIZE:
                chunk = await resp.content.readany()
                assert chunk, "the stream ended"
                data += chunk
    packets = [bytes(data[i : i + PACKET_SIZE]) for i in range(0, len(data), PACKET_SIZE)]
    # A burst of null packets each second of the wait, none before it.
    assert NULL_PACKET not in packets[:100]
    assert packets.count(NULL_PACKET) >= 2 * 7


async def held_then_cut(client: Any) -> None:
    """A TS client held on the line whose stream then fails: a started answer cannot
    become an error, so the connection is cut."""
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async with asyncio.timeout(15):
                while await resp.content.readany():
                    pass


async def test_an_engine_that_says_nothing_of_a_held_stream_is_given_up(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    # The head is held, but the stat never says prebuf for long: the silence bound applies.
    sim.faults.header_delay = 60.0
    client = await proxy(**FAST)
    await held_then_cut(client)
    await eventually(lambda: sim.engine.active() == [])


async def test_the_prebuffer_bound_ends_a_wait_that_lasts_too_long(
    proxy: ProxyFactory, sim: RunningSim, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults.prebuffer = 60.0
    client = await proxy(**FAST, prebuffer_timeout="3s")
    with caplog.at_level(logging.INFO):
        await held_then_cut(client)
    assert "the engine was still prebuffering after 3s" in caplog.text
    assert "the engine is prebuffering (" in caplog.text
    await eventually(lambda: sim.engine.active() == [])


def _sequence(text: str) -> int:
    match = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)
    assert match, text
    return int(match.group(1))


def _uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("source", SOURCES)
async def test_hls_players_get_the_slate_then_the_channel_across_one_discontinuity(
    proxy: ProxyFactory, sim: RunningSim, source: dict[str, str]
) -> None:
    sim.faults.prebuffer = PREBUFFER
    client = await proxy(**FAST, **source)
    loop = MediaLoop.of(slate.FILE.read_bytes())

    async with client.get("/ace/manifest.m3u8", params={"id": CID}) as resp:
        assert resp.status == 200
        first = await resp.text()
    assert "#EXT-X-DISCONTINUITY" not in first.splitlines()
    assert _sequence(first) == 0
    for n, uri in enumerate(_uris(first)):
        async with client.get(uri) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "video/mp2t"
            assert await resp.read() == loop.segment(n)

    texts = [first]

    async def channel() -> bool:
        async with client.get("/ace/manifest.m3u8", params={"id": CID}) as resp:
            texts.append(await resp.text())
        return "#EXT-X-DISCONTINUITY" in texts[-1].splitlines()

    async with asyncio.timeout(PREBUFFER + 10):
        while not await channel():  # noqa: ASYNC110 - players poll the playlist so
            await asyncio.sleep(0.5)
    sequences = [_sequence(t) for t in texts]
    assert sequences == sorted(sequences)  # never back
    last_slate = _sequence(texts[-2]) + slate.WINDOW - 1
    spliced = texts[-1]
    break_at = spliced.splitlines().index("#EXT-X-DISCONTINUITY")
    before_break = spliced.splitlines()[:break_at]
    skipped = sum(line.startswith("#EXTINF") for line in before_break)
    assert _sequence(spliced) + skipped == last_slate + 1
    uri = _uris(spliced)[skipped]
    async with client.get(uri) as resp:
        assert resp.status == 200
        assert (await resp.read())[:1] == b"\x47"
    assert sim.counters["start"] == 1
    assert len(sim.engine.sessions) == 1


@pytest.mark.parametrize("sim_options", [{"time_scale": 1.0}], ids=["real-time"])
@pytest.mark.parametrize("source", SOURCES)
async def test_a_warm_channel_gets_no_slate(
    proxy: ProxyFactory, sim: RunningSim, source: dict[str, str], sim_options: dict[str, Any]
) -> None:
    # In real time: the cut stream's first segment takes its target duration to come, and
    # a warm channel's wait for it is no prebuffer.
    client = await proxy(**source)
    async with client.get("/ace/manifest.m3u8", params={"id": CID}) as resp:
        text = await resp.text()
    slate_tokens = {token_for("segment", slate.uri(n).url, None) for n in range(10)}
    assert _uris(text)
    assert not any(uri.rsplit("/", 1)[1] in slate_tokens for uri in _uris(text))


async def test_a_prebuffering_stream_is_shown_as_such(proxy: ProxyFactory, sim: RunningSim) -> None:
    sim.faults.prebuffer = 60.0
    client = await proxy(**FAST)
    reader = await client.get("/ace/getstream", params={"id": CID2})
    status: dict[str, Any] = {}

    async def shown() -> bool:
        async with client.get("/ace/status", params={"id": CID2}) as resp:
            status.update(await resp.json())
        return status.get("state") == "prebuffering"

    async with asyncio.timeout(10):
        while not await shown():  # noqa: ASYNC110 - the proxy reads the stat once a second
            await asyncio.sleep(0.2)
    prebuffer = status["prebuffer"]
    assert prebuffer["engine_status"] == "prebuf"
    assert prebuffer["peers"] >= 1
    assert prebuffer["speed_down_kbps"] > 0
    assert prebuffer["waited"] >= 0
    async with client.get("/metrics") as resp:
        metrics = await resp.text()
    assert 'hlsproxy_streams_by_state{mode="ts",state="prebuffering"} 1.0' in metrics
    peers = re.search(r'hlsproxy_prebuffer_peers\{mode="ts"\} (\S+)', metrics)
    assert peers and float(peers.group(1)) >= 1
    assert re.search(r'hlsproxy_prebuffer_longest_wait_seconds\{mode="ts"\} \S+', metrics)
    assert re.search(r'hlsproxy_prebuffer_download_bytes_per_second\{mode="ts"\} \S+', metrics)
    assert CID2 not in metrics
    async with client.get("/") as resp:
        page = await resp.text()
    assert "prebuffering" in page
    assert re.search(r"waited \d+ s, \d+ peers, \d+ KB/s", page)
    reader.close()


async def test_a_cut_hls_stream_shows_the_prebuffer_of_its_mpeg_ts_stream(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    sim.faults.prebuffer = 60.0
    client = await proxy(**FAST, hls_source="proxy")
    async with client.get("/ace/manifest.m3u8", params={"id": CID2}) as resp:
        assert resp.status == 200  # the slate
    metrics = ""

    async def shown() -> bool:
        nonlocal metrics
        async with client.get("/metrics") as resp:
            metrics = await resp.text()
        return 'hlsproxy_streams_by_state{mode="hls",state="prebuffering"} 1.0' in metrics

    async with asyncio.timeout(10):
        while not await shown():  # noqa: ASYNC110 - the proxy reads the stat once a second
            await asyncio.sleep(0.2)
    assert 'hlsproxy_streams_by_state{mode="ts",state="prebuffering"} 1.0' in metrics
    peers = re.search(r'hlsproxy_prebuffer_peers\{mode="hls"\} (\S+)', metrics)
    assert peers and float(peers.group(1)) >= 1
    async with client.get("/ace/status", params={"id": CID2}) as resp:
        status = await resp.json()
    assert status["state"] == "prebuffering"
    assert status["prebuffer"]["engine_status"] == "prebuf"
    async with client.get("/") as resp:
        page = await resp.text()
    # One row for the channel: its cut HLS and the MPEG-TS stream under it wait as one.
    assert page.count(">prebuffering</span>") == 1, page
    assert len(re.findall(r"waited \d+ s, \d+ peers, \d+ KB/s", page)) == 1, page
    assert [s.fmt for s in sim.engine.sessions] == ["ts"]
