"""An orchestrator whose engines are reached over IPv6."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hlsproxy.sim.orchestrator import SimOrchestrator
from tests.helpers import ProxyFactory, content_id, eventually

KEY = "orchestrator-key"


@pytest.fixture
async def orch_v6() -> AsyncIterator[SimOrchestrator]:
    orchestrator = SimOrchestrator(api_key=KEY, engines=1, host="::1")
    await orchestrator.serve()
    yield orchestrator
    await orchestrator.stop()
    assert orchestrator.unexpected == []
    for engine in orchestrator.engines:
        sim = engine.sim
        assert sim.counters["stop"] + sim.counters["stop_unknown"] == sim.counters["start"]


async def test_an_engine_provisioned_on_an_ipv6_host_is_used(
    orch_v6: SimOrchestrator, proxy: ProxyFactory
) -> None:
    # The second content needs a new engine, which is only used once it answers a probe.
    client = await proxy(
        orch_url=orch_v6.url,
        orch_apikey=KEY,
        max_streams_per_engine="1",
        orch_provision_timeout="3s",
        linger="0s",
    )
    players = []
    for n in (1, 2):
        resp = await client.get("/ace/getstream", params={"id": content_id(n)})
        assert resp.status == 200, await resp.text()
        await asyncio.wait_for(resp.content.readexactly(188 * 50), 20)
        players.append(resp)
    assert orch_v6.counters["provisioned"] == 1
    assert [len(e.sim.active()) for e in orch_v6.engines] == [1, 1]
    for player in players:
        player.close()
    await eventually(lambda: all(e.sim.counters["stop"] == 1 for e in orch_v6.engines))
