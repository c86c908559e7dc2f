"""HLS cut by the proxy from the channel's one MPEG-TS session (hls-source proxy)."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hlsproxy.content import ContentKey
from hlsproxy.cut_stream import CutOptions, Cutter
from hlsproxy.hls import slate
from hlsproxy.hls.cache import SegmentCache
from hlsproxy.sim.media import MediaLoop
from hlsproxy.sim.orchestrator import SimOrchestrator
from hlsproxy.web.keys import SEGMENTS, STREAMS
from tests.helpers import CID, ProxyFactory, RunningSim, decode_warnings, eventually

PACKET = 188
MANIFEST = f"/ace/manifest.m3u8?id={CID}"
TARGET = 2.0
CUT = {"hls_source": "proxy", "hls_segment_target": "2s"}
KEY = "orchestrator-key"
_SEQUENCE = re.compile(r"#EXT-X-MEDIA-SEQUENCE:(\d+)")


def uri_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def durations(text: str) -> list[float]:
    return [float(d) for d in re.findall(r"^#EXTINF:([\d.]+),", text, flags=re.MULTILINE)]


def sequence(text: str) -> int:
    match = _SEQUENCE.search(text)
    assert match, text
    return int(match.group(1))


async def playlist(client: TestClient[Any, Any]) -> str:
    async with client.get(MANIFEST) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/vnd.apple.mpegurl"
        assert resp.headers["Cache-Control"] == "no-cache"
        return await resp.text()


async def playlist_with(client: TestClient[Any, Any], segments: int) -> str:
    """The playlist once it lists `segments` segments (they come one per target duration)."""
    async with asyncio.timeout(segments * TARGET * 3 + 20):
        while len(uri_lines(text := await playlist(client))) < segments:  # noqa: ASYNC110
            await asyncio.sleep(TARGET / 2)  # a player's poll
    return text


def numbered(text: str) -> dict[str, tuple[int, int]]:
    """Each URI of a media playlist with its media and discontinuity sequence numbers, counted
    as a player counts them (RFC 8216 6.3.1 and 6.3.3)."""
    media = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)[1])  # type: ignore[index]
    found = re.search(r"#EXT-X-DISCONTINUITY-SEQUENCE:(\d+)", text)
    discontinuity = int(found[1]) if found else 0
    out = {}
    for line in text.splitlines():
        if line == "#EXT-X-DISCONTINUITY":
            discontinuity += 1
        elif line and not line.startswith("#"):
            out[line] = (media, discontinuity)
            media += 1
    return out


def test_the_cut_playlists_continue_the_slate_across_one_discontinuity() -> None:
    """What a player polling the playlist sees from the slate to the channel and on, the
    window sliding past the break and past a later break of the MPEG-TS read."""
    seconds = 1.92  # the slate segment's duration
    served = [slate.playlist(t, seconds, lambda n: f"/slate/{n}.ts") for t in (0.0, 2.0, 9.0)]
    cutter = Cutter(
        ContentKey("content_id", CID),
        SegmentCache(max_bytes=64 << 20),
        CutOptions(target=TARGET, window=3, stream_timeout=60.0, locate=lambda _, t: f"/cut/{t}"),
    )
    media = MediaLoop.load()
    first = True
    for n in range(3 * media.segment_count):
        # The read breaks (a new engine session) two thirds of the way through.
        if cutter.feed(media.segment(n), breaks=int(n >= 2 * media.segment_count)):
            if first:
                cutter.continuing(served[-1])
                first = False
            served.append(cutter.playlist())
    assert len(served) > 12  # the window slid far past both breaks

    seen: dict[str, tuple[int, int]] = {}
    sequences = [sequence(text) for text in served]
    assert sequences == sorted(sequences)  # never back
    for text in served:
        for uri, numbers in numbered(text).items():
            assert seen.setdefault(uri, numbers) == numbers, (uri, text)
    by_sequence = sorted(seen.items(), key=lambda item: item[1])
    assert [n for _, (n, _) in by_sequence] == list(range(len(by_sequence)))  # no gap
    breaks = [
        (before, after)
        for (before, (_, d0)), (after, (_, d1)) in itertools.pairwise(by_sequence)
        if d1 != d0
    ]
    assert [(b.split("/")[1], a.split("/")[1]) for b, a in breaks] == [
        ("slate", "cut"),
        ("cut", "cut"),
    ]
    assert [seen[a][1] for _, a in breaks] == [1, 2]
    last = served[-1]
    assert "#EXT-X-DISCONTINUITY\n" not in last  # both breaks have left the window
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:2\n" in last


async def test_hls_is_cut_from_one_mpegts_session(proxy: ProxyFactory, sim: RunningSim) -> None:
    client = await proxy(**CUT)
    text = await playlist_with(client, 3)
    assert "#EXT-X-TARGETDURATION:2\n" in text
    assert len(re.findall("#EXT-X-PROGRAM-DATE-TIME:", text)) == len(uri_lines(text))
    for uri in uri_lines(text):
        assert re.fullmatch(rf"/ace/hls/id/{CID}/[0-9a-f]{{20}}\.ts", uri)
    async with client.get(uri_lines(text)[-1], headers={"Origin": "http://player"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "video/mp2t"
        assert resp.headers["Cache-Control"] == "public, max-age=86400, immutable"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        body = await resp.read()
        assert int(resp.headers["Content-Length"]) == len(body)
    assert decode_warnings(body) == ""
    async with client.get(uri_lines(text)[-1], headers={"Range": "bytes=188-375"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 188-375/{len(body)}"
        assert await resp.read() == body[188:376]
    # The engine saw one MPEG-TS session and one read; no HLS.
    assert [s.fmt for s in sim.engine.sessions] == ["ts"]
    assert sim.counters["content_read"] == 1
    assert not any("m3u8" in r for r in sim.engine.requests)


async def test_an_mpegts_and_an_hls_player_make_one_session_and_one_read(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(**CUT)
    async with client.get("/ace/getstream", params={"id": CID}) as ts:
        assert ts.status == 200
        first = await asyncio.wait_for(ts.content.readexactly(300 * PACKET), 20)
        text = await playlist_with(client, 2)
        for uri in uri_lines(text):
            assert (await client.get(uri)).status == 200
        more = await asyncio.wait_for(ts.content.readexactly(3000 * PACKET), 30)
    assert decode_warnings(first + more) == ""
    assert sim.counters["start"] == 1
    assert sim.counters["content_read"] == 1
    assert [s.fmt for s in sim.engine.sessions] == ["ts"]


async def test_every_segment_of_a_run_decodes_alone_near_the_target(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(**CUT, hls_window="6")
    first = await playlist_with(client, 1)
    text = await playlist_with(client, 6)
    later = await playlist_with(client, 6)
    while sequence(later) < sequence(text) + 4:
        await asyncio.sleep(TARGET / 2)
        later = await playlist(client)
    # The window slid; the sequence numbers name the same segments across reloads.
    assert uri_lines(later)[0] == uri_lines(text)[sequence(later) - sequence(text)]
    uris = list(dict.fromkeys(uri_lines(text) + uri_lines(later)))
    captured = []
    for uri in uris:
        async with client.get(uri) as resp:
            assert resp.status == 200
            captured.append(await resp.read())
    for data in captured:
        assert decode_warnings(data) == ""
    joined = b"".join(captured)
    assert decode_warnings(joined) == ""
    for duration in durations(text) + durations(later):
        assert abs(duration - TARGET) <= TARGET / 2
    # The window is the pause buffer: the first segment a player saw is still there.
    async with client.get(uri_lines(first)[0]) as resp:
        assert resp.status == 200


async def test_the_segments_are_in_the_shared_cache_and_counted(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(**CUT)
    text = await playlist_with(client, 2)
    sizes = []
    for uri in uri_lines(text):
        async with client.get(uri) as resp:
            assert resp.status == 200
            sizes.append(len(await resp.read()))
    stats = client.app[SEGMENTS].stats
    assert stats.stored >= 2 and stats.hits >= 2
    assert stats.current_bytes >= sum(sizes)
    metrics = await (await client.get("/metrics")).text()
    lines = metrics.splitlines()
    assert any(re.fullmatch(r"hlsproxy_segments_cut_total [1-9][\d.e+]*", line) for line in lines)
    hit = r'hlsproxy_cache_requests_total\{outcome="hit"\} [1-9][\d.e+]*'
    assert any(re.fullmatch(hit, line) for line in lines), metrics


async def test_a_segment_that_left_the_cache_is_a_404(proxy: ProxyFactory) -> None:
    client = await proxy(**CUT)
    text = await playlist_with(client, 1)
    gone = uri_lines(text)[0][:-7] + "fffff.ts"
    async with client.get(gone) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]


async def test_a_broken_read_shows_as_a_discontinuity_and_play_goes_on(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(**CUT, upstream_retries="5")
    sim.faults.cut_after = 400_000  # about 8 s of the channel, then the read drops
    before = await playlist_with(client, 1)
    await eventually(lambda: sim.counters["content_read"] >= 2, timeout=30)
    sim.faults.cut_after = None
    async with asyncio.timeout(30):
        while "#EXT-X-DISCONTINUITY\n" not in (text := await playlist(client)):  # noqa: ASYNC110
            await asyncio.sleep(TARGET / 2)  # a player's poll
        # No stall: segments keep coming after the mark.
        while text.split("#EXT-X-DISCONTINUITY\n")[-1].count("#EXTINF") < 2:
            await asyncio.sleep(TARGET / 2)
            text = await playlist(client)
    assert sequence(text) >= sequence(before)
    after = text.split("#EXT-X-DISCONTINUITY\n")[-1]
    for uri in uri_lines(after):
        async with client.get(uri) as resp:
            assert decode_warnings(await resp.read()) == ""
    assert [s.fmt for s in sim.engine.sessions] in (["ts"], ["ts", "ts"])


@pytest.mark.parametrize("sim_options", [{"time_scale": 1.0}], ids=["real-time"])
async def test_an_unwatched_cut_stream_ends_and_its_session_with_it(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    client = await proxy(**CUT, m3u8_stream_timeout="1s", linger="0s")
    await playlist_with(client, 1)
    registry = client.app[STREAMS]
    await eventually(lambda: len(registry) == 0, timeout=15)
    await eventually(lambda: sim.stop_calls() == 1, timeout=10)
    assert client.app[SEGMENTS].stats.current_bytes == 0


@pytest.fixture
async def orch() -> AsyncIterator[SimOrchestrator]:
    orchestrator = SimOrchestrator(api_key=KEY, stat_interval=0.5, engines=2)
    await orchestrator.serve()
    yield orchestrator
    await orchestrator.stop()
    for engine in orchestrator.engines:
        if engine.alive:
            assert engine.sim.active() == [], engine.container_name


async def test_a_failover_to_another_engine_is_one_discontinuity_and_no_stall(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    client = await proxy(**CUT, orch_url=orch.url, orch_apikey=KEY, upstream_retries="4")
    before = await playlist_with(client, 2)
    (victim,) = [e for e in orch.engines if e.sim.active()]
    await orch.kill_engine(victim.container_id)
    async with asyncio.timeout(30):
        while "#EXT-X-DISCONTINUITY\n" not in (text := await playlist(client)):  # noqa: ASYNC110
            await asyncio.sleep(TARGET / 2)  # a player's poll
        # No stall: the new engine's segments keep coming.
        while text.split("#EXT-X-DISCONTINUITY\n")[-1].count("#EXTINF") < 3:
            await asyncio.sleep(TARGET / 2)
            text = await playlist(client)
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    assert sequence(text) >= sequence(before)
    old, new = text.split("#EXT-X-DISCONTINUITY\n")
    assert uri_lines(before)[-1] in uri_lines(old)  # nothing before the break was renumbered
    for uri in uri_lines(new):
        async with client.get(uri) as resp:
            assert resp.status == 200
            assert decode_warnings(await resp.read()) == ""
    (survivor,) = [e for e in orch.engines if e.alive and e.sim.active()]
    assert survivor is not victim
    assert [s.fmt for s in survivor.sim.sessions] == ["ts"]
