"""Shared fixtures: the simulated engine and proxies in front of it, all on 127.0.0.1.

Every test that uses `proxy` also checks, once its proxies are closed, the promise the
proxy makes the engine: every session it started was stopped exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hlsproxy.config import DemoChannel, load_settings
from hlsproxy.sim.engine import SimEngine
from hlsproxy.web.app import create_app
from hlsproxy.web.fast.site import ProxyRunner
from tests.helpers import (
    AiohttpProxy,
    Canary,
    ProxyFactory,
    ProxyServer,
    RunningSim,
    aiohttp_site,
)


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """Overridden by tests that want another simulated engine."""
    return {}


@pytest.fixture
async def sim(sim_options: dict[str, Any]) -> AsyncIterator[RunningSim]:
    engine = SimEngine(**sim_options)
    server = TestServer(engine.app, host="127.0.0.1")
    await server.start_server()
    running = RunningSim(engine, server)
    yield running
    await server.close()
    assert engine.unexpected == [], "the proxy made requests the engine does not know"


@pytest.fixture
async def aiohttp_proxy(sim: RunningSim) -> AsyncIterator[AiohttpProxy]:
    """Proxies on aiohttp's own site (`aiohttp_site`); each call gives one's port."""
    runners: list[web.AppRunner] = []

    async def make(**overrides: str) -> int:
        raw = {"host": "127.0.0.1", "port": str(sim.port), **overrides}
        runner = ProxyRunner(
            create_app(load_settings(raw, env={})), handler_cancellation=True, access_log=None
        )
        await runner.setup()
        runners.append(runner)
        return await aiohttp_site(runner)

    yield make
    sim.faults.down = False  # let the closing proxy reach the engine to stop its sessions
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def proxy(sim: RunningSim) -> AsyncIterator[ProxyFactory]:
    clients: list[TestClient[Any, Any]] = []

    async def make(
        *, demo_channels: Sequence[DemoChannel] = (), **overrides: str
    ) -> TestClient[Any, Any]:
        raw = {"host": "127.0.0.1", "port": str(sim.port), **overrides}
        settings = load_settings(raw, env={})
        client: TestClient[Any, Any] = TestClient(
            ProxyServer(create_app(settings, demo_channels=demo_channels), host="127.0.0.1")
        )
        await client.start_server()
        clients.append(client)
        return client

    yield make
    sim.faults.down = False  # let the closing proxy reach the engine to stop its sessions
    for client in clients:
        await client.close()
    assert sim.engine.active() == [], "an engine session outlived the proxy"
    assert sim.stop_calls() == sim.counters["start"], "stops and starts do not pair up"


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    running = Canary()
    await running.server.start_server()
    yield running
    await running.server.close()
