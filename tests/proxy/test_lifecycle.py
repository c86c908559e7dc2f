"""A content's life at its seams: stops, closes, faults and failover, seen from outside."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hlsproxy.sim.orchestrator import SimOrchestrator
from hlsproxy.state import EndReason
from hlsproxy.web.keys import POOL, STREAMS
from tests.helpers import (
    CID,
    CID2,
    ProxyFactory,
    RunningSim,
    decode_warnings,
    discontinuity_marks,
    eventually,
)

PACKET = 188
KEY = "orchestrator-key"
MANIFEST = f"/ace/manifest.m3u8?id={CID}"
_SEQUENCE = re.compile(r"#EXT-X-MEDIA-SEQUENCE:(\d+)")


def segment_uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("/ace/hls/")]


async def raw_get(client: TestClient[Any, Any], path: str) -> bytes:
    """Everything the proxy writes on one connection for one request, until it closes it."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    data = b""
    async with asyncio.timeout(10):
        while chunk := await reader.read(65536):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"Content-Length: (\d+)", head)
            if length and len(body) >= int(length.group(1)) + 64:
                break  # more than announced: a second answer is in there; enough to see it
    writer.close()
    return data


# --- a failure after the headers ends the connection ------------------------------------


async def test_an_engine_failing_mid_segment_cuts_the_connection_without_a_second_answer(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(hls_prefetch="0")
    uri = segment_uris(await (await client.get(MANIFEST)).text())[-1]
    sim.faults.segment_cut_after = 5000
    wire = await raw_get(client, uri)
    head, _, body = wire.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    assert wire.count(b"HTTP/1.1 ") == 1, "a second response was written inside the body"
    assert 5000 <= len(body) < length  # what arrived, then the connection was cut
    sim.faults.segment_cut_after = None
    async with client.get(uri) as resp:  # the player retries, and gets it whole
        assert resp.status == 200
        assert len(await resp.read()) == length


async def test_a_stream_ended_mid_segment_cuts_the_connection_without_a_second_answer(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(hls_prefetch="0")
    uri = segment_uris(await (await client.get(MANIFEST)).text())[-1]
    (stream,) = client.app[STREAMS].streams()
    sim.faults.segment_stall_after = 5000  # the rest of the segment is slow to come

    async def end_midway() -> None:
        await eventually(lambda: sim.counters["segment"] == 1)
        await asyncio.sleep(0.2)
        stream.close(EndReason.MAKE_ROOM)

    ender = asyncio.create_task(end_midway())
    wire = await raw_get(client, uri)
    await ender
    assert wire.startswith(b"HTTP/1.1 200")
    assert wire.count(b"HTTP/1.1 ") == 1, "a second response was written inside the body"


# --- stops --------------------------------------------------------------------------------


async def test_a_start_waits_for_every_earlier_stop_of_its_content(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    """A stream ending (stop in flight), one created and ended before it started, and a
    third: the third's session must start after the first's stop, or that stop ends it."""
    client = await proxy(linger="0s")
    sim.faults.stop_delay = 1.0
    first = await client.get("/ace/getstream", params={"id": CID})
    await first.content.readexactly(50 * PACKET)
    first.close()
    await eventually(lambda: len(client.app[STREAMS]) == 0)
    middle = asyncio.create_task(client.get("/ace/getstream", params={"id": CID}))
    await asyncio.sleep(0.1)
    middle.cancel()
    await asyncio.gather(middle, return_exceptions=True)
    last = await client.get("/ace/getstream", params={"id": CID})
    assert last.status == 200
    data = await asyncio.wait_for(last.content.readexactly(3000 * PACKET), 20)
    assert data[0] == 0x47
    assert sim.engine.crossed_stops == []
    assert [s.live for s in sim.engine.sessions] == [False] * (len(sim.engine.sessions) - 1) + [
        True
    ]
    last.close()


# --- make room ----------------------------------------------------------------------------


async def test_a_watched_hls_stream_is_never_evicted_to_make_room(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(max_streams="1", hls_prefetch="0")
    assert (await client.get(MANIFEST)).status == 200
    async with client.get("/ace/getstream", params={"id": CID2}) as resp:
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) >= 1
    async with client.get(MANIFEST) as resp:  # the viewer's next poll
        assert resp.status == 200
    assert sim.counters["start"] == 1
    assert sim.stop_calls() == 0


# --- MPEG-TS clients riding an HLS session ------------------------------------------------


@pytest.mark.parametrize("status", [404, 503], ids=["segment-gone", "engine-busy"])
async def test_mpegts_clients_on_an_hls_session_ride_through_segment_errors(
    proxy: ProxyFactory, sim: RunningSim, status: int
) -> None:
    client = await proxy(hls_prefetch="0", empty_timeout="30s")
    assert (await client.get(MANIFEST)).status == 200
    ts = await client.get("/ace/getstream", params={"id": CID})
    assert ts.status == 200
    await asyncio.wait_for(ts.content.readexactly(100 * PACKET), 20)
    sim.faults.segment_error = status
    await eventually(lambda: sim.counters["injected_error"] >= 2, timeout=30)
    sim.faults.segment_error = None
    more = await asyncio.wait_for(ts.content.readexactly(3000 * PACKET), 30)
    assert more[0] == 0x47
    assert sim.counters["start"] == 1
    ts.close()


# --- HLS recovery -------------------------------------------------------------------------


async def test_five_seconds_of_engine_errors_do_not_end_an_hls_stream(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(hls_prefetch="0")
    first = await (await client.get(MANIFEST)).text()
    sim.faults.playlist_error = 500
    loop = asyncio.get_running_loop()
    until = loop.time() + 5.0
    while loop.time() < until:  # viewers keep asking meanwhile
        async with client.get(MANIFEST) as resp:
            assert resp.status == 200
            assert "#EXT-X-ENDLIST" not in await resp.text()
        await asyncio.sleep(0.5)
    sim.faults.playlist_error = None

    async def recovered() -> str:
        while True:
            text = await (await client.get(MANIFEST)).text()
            if "#EXT-X-DISCONTINUITY\n" in text:
                return text
            await asyncio.sleep(0.5)

    after = await asyncio.wait_for(recovered(), 15)
    assert "#EXT-X-ENDLIST" not in after
    before_seq = int(_SEQUENCE.search(first).group(1))  # type: ignore[union-attr]
    assert int(_SEQUENCE.search(after).group(1)) >= before_seq  # type: ignore[union-attr]
    async with client.get(segment_uris(after)[-1]) as resp:
        assert resp.status == 200
    # Every session the tries started is stopped (checked for all tests when the proxy
    # closes); all but the one playing are stopped already.
    await eventually(lambda: len(sim.engine.active()) == 1)


# --- failover -----------------------------------------------------------------------------


@pytest.fixture
def orch_engines() -> int:
    return 2


@pytest.fixture
async def orch(orch_engines: int) -> AsyncIterator[SimOrchestrator]:
    orchestrator = SimOrchestrator(api_key=KEY, stat_interval=0.5, engines=orch_engines)
    await orchestrator.serve()
    yield orchestrator
    await orchestrator.stop()
    for engine in orchestrator.engines:
        if engine.alive:
            assert engine.sim.active() == [], engine.container_name
    assert orchestrator.counters["ended_again"] == 0


async def test_mpegts_clients_fail_over_to_another_engine_within_three_seconds(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey=KEY, upstream_retries="4")
    players = [await client.get("/ace/getstream", params={"id": CID}) for _ in range(5)]
    for player in players:
        assert player.status == 200
        await asyncio.wait_for(player.content.readexactly(500 * PACKET), 20)
    (victim,) = [e for e in orch.engines if e.sim.active()]
    killed = time.monotonic()
    await orch.kill_engine(victim.container_id)

    async def capture(player: Any) -> tuple[float, bytes]:
        """When data from the new engine arrived, and a capture from before it to well after."""
        data = b""
        resumed = 0.0
        async with asyncio.timeout(30):
            while len(data) < 6000 * PACKET:
                data += await player.content.readany()
                if not resumed and discontinuity_marks(data):
                    resumed = time.monotonic()
        return resumed - killed, data

    results = await asyncio.gather(*(capture(p) for p in players))
    (survivor,) = [e for e in orch.engines if e.alive and e.sim.active()]
    assert survivor is not victim
    for gap, data in results:
        assert gap <= 3.0, f"data came back {gap:.1f}s after the engine died"
        marks = discontinuity_marks(data)
        after = data[marks[0] - marks[0] % PACKET :]
        assert decode_warnings(after) == ""
    for player in players:
        player.close()


@pytest.mark.parametrize("orch_engines", [1], ids=["one-engine"])
async def test_a_close_during_a_stop_still_releases_the_engine_and_reports_the_end(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    """The stream's last client leaves while the stream is stopping its session to start a
    fresh one: the stop, the release of the engine slot and the end event all still happen."""
    client = await proxy(orch_url=orch.url, orch_apikey=KEY, upstream_retries="5", linger="0s")
    (engine,) = orch.engines
    engine.sim.faults.cut_after = 50 * PACKET  # every read ends early: retries, then new sessions
    engine.sim.faults.stop_delay = 1.0
    player = await client.get("/ace/getstream", params={"id": CID})
    assert player.status == 200
    await eventually(lambda: any("method=stop" in r for r in engine.sim.requests), timeout=20)
    player.close()  # mid-stop
    await eventually(lambda: len(client.app[STREAMS].streams()) == 0)
    await eventually(lambda: len(orch.events_ended) == len(orch.events_started), timeout=10)
    assert len(orch.events_started) >= 1
    await eventually(lambda: engine.sim.active() == [])
    # The pool's counts, ours and the orchestrator's after its next refresh, are back to zero.
    await eventually(lambda: all(e.sessions == 0 for e in client.app[POOL].engines()), timeout=6)


async def test_a_polled_variant_follows_its_stream_to_a_new_session(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    """Players fetch a multivariant playlist once and then poll one variant: after a new
    engine session, that variant's URL plays the new session's variant, spliced."""
    client = await proxy(hls_prefetch="0")
    multivariant = await (await client.get(f"/ace/manifest.m3u8?id={'aaaa' + '0' * 35}1")).text()
    variant = next(line for line in multivariant.splitlines() if line.endswith(".m3u8"))
    first = await (await client.get(variant)).text()
    sim.faults.playlist_error = 500  # the engine says the session is over
    await asyncio.sleep(3.0)  # past the playlist's freshness: the next poll refreshes
    async with client.get(variant) as resp:
        assert resp.status == 200
    sim.faults.playlist_error = None

    async def spliced() -> str:
        while True:
            async with client.get(variant) as resp:
                assert resp.status == 200
                text = await resp.text()
            if "#EXT-X-DISCONTINUITY\n" in text:
                return text
            await asyncio.sleep(0.5)

    after = await asyncio.wait_for(spliced(), 20)
    assert len(sim.engine.sessions) >= 2
    before_seq = int(_SEQUENCE.search(first).group(1))  # type: ignore[union-attr]
    assert int(_SEQUENCE.search(after).group(1)) >= before_seq  # type: ignore[union-attr]
    async with client.get(segment_uris(after)[-1]) as resp:
        assert resp.status == 200
