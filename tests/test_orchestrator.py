"""The engine pool through the simulated acestream-orchestrator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hlsproxy.sim.orchestrator import SimOrchestrator

from .conftest import CID, CID2, ProxyFactory, RunningSim, content_id, eventually

KEY = "orchestrator-key"


@pytest.fixture
def orch_options() -> dict[str, Any]:
    return {"engines": 2}


@pytest.fixture
async def orch(orch_options: dict[str, Any]) -> AsyncIterator[SimOrchestrator]:
    orchestrator = SimOrchestrator(api_key=KEY, stat_interval=0.5, **orch_options)
    await orchestrator.serve()
    yield orchestrator
    await orchestrator.stop()
    assert orchestrator.unexpected == []
    # every session the proxy started on a pool engine was stopped, once
    for engine in orchestrator.engines:
        if engine.alive:
            sim = engine.sim
            assert sim.active() == [], engine.container_name
            assert sim.counters["stop"] + sim.counters["stop_unknown"] == sim.counters["start"]
    assert orchestrator.counters["ended_by_quirk"] == 0
    assert orchestrator.counters["ended_again"] == 0


def pool_sessions(orch: SimOrchestrator) -> int:
    return sum(len(e.sim.active()) for e in orch.engines if e.alive)


async def play(client: Any, cid: str, packets: int = 50) -> Any:
    resp = await client.get("/ace/getstream", params={"id": cid})
    assert resp.status == 200, await resp.text()
    await asyncio.wait_for(resp.content.readexactly(188 * packets), 20)
    return resp


async def test_contents_spread_over_engines_and_the_third_provisions(
    proxy: ProxyFactory, sim: RunningSim, orch: SimOrchestrator
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey=KEY, max_streams_per_engine="1")
    players = [await play(client, content_id(n + 1)) for n in range(3)]
    assert orch.counters["provisioned"] == 1
    assert len(orch.engines) == 3
    assert all(len(e.sim.active()) == 1 for e in orch.engines)
    assert sim.counters["start"] == 0  # the fallback engine was never needed
    for p in players:
        p.close()


async def test_ts_and_hls_viewers_of_one_content_share_one_engine_session(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey=KEY)
    assert (await client.get("/ace/manifest.m3u8", params={"id": CID})).status == 200
    ts = await play(client, CID)
    assert pool_sessions(orch) == 1
    ts.close()


async def test_events_are_sent_once_per_session_and_match(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey=KEY, linger="0s", container_id="proxy-1")
    for cid in (CID, CID2):
        (await play(client, cid)).close()
    await eventually(lambda: len(orch.events_ended) == 2)
    started = {e["labels"]["stream_id"] for e in orch.events_started}
    ended = {e["stream_id"] for e in orch.events_ended}
    assert started == ended and len(started) == 2
    assert {e["reason"] for e in orch.events_ended} == {"client_disconnected"}
    assert all(e["container_id"] == "proxy-1" for e in orch.events_started + orch.events_ended)
    engine_ids = {e.container_id for e in orch.engines}
    assert all(e["labels"]["engine_container_id"] in engine_ids for e in orch.events_started)


async def test_an_unreachable_orchestrator_falls_back_and_recovers(
    proxy: ProxyFactory, sim: RunningSim, orch: SimOrchestrator
) -> None:
    orch.faults.down = True
    client = await proxy(orch_url=orch.url, orch_apikey=KEY)
    fallback = await play(client, CID)
    assert sim.counters["start"] == 1 and pool_sessions(orch) == 0
    orch.faults.down = False
    refreshed = orch.counters["GET /orchestrator/status"]
    # the pool refreshes in the background; after two answered refreshes it uses the pool
    await eventually(lambda: orch.counters["GET /orchestrator/status"] >= refreshed + 2)
    back = await play(client, CID2)
    assert pool_sessions(orch) == 1
    fallback.close()
    back.close()


@pytest.mark.parametrize("orch_options", [{"engines": 1}], ids=["one-engine"])
async def test_blocked_provisioning_is_a_503_with_the_eta(
    proxy: ProxyFactory, orch: SimOrchestrator, orch_options: dict[str, Any]
) -> None:
    orch.faults.provision_blocked = "vpn_disconnected"
    client = await proxy(orch_url=orch.url, orch_apikey=KEY)
    first = await play(client, CID)
    async with client.get("/ace/getstream", params={"id": CID2}) as resp:
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) == 60
        assert "engine" in (await resp.json())["message"]
    first.close()


async def test_a_killed_engines_stream_moves_to_another_engine(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey=KEY, upstream_retries="4")
    resp = await play(client, CID)
    (victim,) = [e for e in orch.engines if e.sim.active()]
    await orch.kill_engine(victim.container_id)
    data = await asyncio.wait_for(resp.content.readexactly(188 * 2000), 30)
    assert data[0] == 0x47
    (survivor,) = [e for e in orch.engines if e.alive and e.sim.active()]
    assert survivor is not victim
    resp.close()


async def test_a_killed_engines_hls_stream_moves_with_a_discontinuity(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey=KEY, hls_prefetch="0")
    manifest = f"/ace/manifest.m3u8?id={CID}"
    before = await (await client.get(manifest)).text()
    (victim,) = [e for e in orch.engines if e.sim.active()]
    await orch.kill_engine(victim.container_id)

    async def moved() -> str:
        while True:  # players reload about every target duration; so does this
            text = await (await client.get(manifest)).text()
            if "#EXT-X-DISCONTINUITY\n" in text:
                return text
            await asyncio.sleep(1.0)

    after = await asyncio.wait_for(moved(), 30)
    assert "#EXT-X-ENDLIST" not in after
    (survivor,) = [e for e in orch.engines if e.alive and e.sim.active()]
    assert survivor is not victim
    segment = [line for line in after.splitlines() if line.startswith("/ace/hls/")][-1]
    assert (await client.get(segment)).status == 200
    assert before != after


async def test_wrapped_engine_lists_are_understood(
    proxy: ProxyFactory, sim: RunningSim, orch: SimOrchestrator
) -> None:
    orch.faults.wrapped_lists = True
    client = await proxy(orch_url=orch.url, orch_apikey=KEY)
    (await play(client, CID)).close()
    assert sim.counters["start"] == 0  # the pool, not the fallback
    assert pool_sessions(orch) == 1


async def test_a_wrong_api_key_is_reported_once(
    proxy: ProxyFactory, orch: SimOrchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey="wrong", linger="0s")
    for cid in (CID, CID2):
        (await play(client, cid)).close()
    await eventually(lambda: orch.counters["auth_failed"] >= 4)
    complaints = [r for r in caplog.records if "ACEXY_ORCH_APIKEY" in r.getMessage()]
    assert len(complaints) == 1
    assert "wrong" not in caplog.text
