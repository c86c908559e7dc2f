"""Shared fixtures: the simulated engine and proxies in front of it, all on 127.0.0.1.

Every test that uses `proxy` also checks, once its proxies are closed, the promise the
proxy makes the engine: every session it started was stopped exactly once.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from hlsproxy.config import DemoChannel, load_settings
from hlsproxy.sim.engine import SimEngine
from hlsproxy.ts.packets import PACKET_SIZE, TsScanner
from hlsproxy.web.app import create_app
from hlsproxy.web.fast.site import FastSite, ProxyRunner

CID = "0a4848271c91ce2d8965ce416267c25047dc8141"
CID2 = "94c2fd8fb9bc8f2fc71a2cbe9d4b866f227a0209"

ProxyFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def content_id(n: int) -> str:
    return f"{n:040x}"


class Clock:
    """A clock a test steps by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RunningSim:
    def __init__(self, engine: SimEngine, server: TestServer) -> None:
        self.engine = engine
        self.server = server

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    @property
    def counters(self) -> Any:
        return self.engine.counters

    @property
    def faults(self) -> Any:
        return self.engine.faults

    def stop_calls(self) -> int:
        return int(self.counters["stop"] + self.counters["stop_unknown"])


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


class ProxyServer(TestServer):
    """aiohttp's test server listening through the proxy's own site, as `hlsproxy` does:
    connections start on the fast path and go to aiohttp for what it does not answer."""

    async def start_server(
        self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
    ) -> None:
        if self.runner:
            return
        runner = ProxyRunner(self.app, handler_cancellation=True, **kwargs)
        self.runner = runner
        await runner.setup()
        sock = self.socket_factory(self.host, self.port or 0, socket.AF_INET)
        site = FastSite(runner, sock=sock)
        await site.start()
        self.port = site.port
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")


async def aiohttp_site(runner: web.AppRunner) -> int:
    """Serve `runner` on aiohttp's own site, which answers every request with aiohttp's
    writer (the reference the fast path is compared with); its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return int(sock.getsockname()[1])


AiohttpProxy = Callable[..., Awaitable[int]]


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


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition the test cannot await directly (another process's state)."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - state of another component, polled
            await asyncio.sleep(0.02)


def discontinuity_marks(data: bytes) -> list[int]:
    """Offsets of adaptation-only packets that carry the discontinuity indicator."""
    return [
        i
        for i in range(0, len(data) - len(data) % PACKET_SIZE, PACKET_SIZE)
        if data[i + 3] & 0x30 == 0x20 and data[i + 4] and data[i + 5] & 0x80
    ]


def decode_warnings(data: bytes) -> str:
    """What ffmpeg prints while decoding `data` as MPEG-TS; empty means a clean decode.

    The capture is cut at its last keyframe: a frame cut short by the end of a capture is
    the test's doing, not the stream's.
    """
    joins = TsScanner().scan(data[: len(data) - len(data) % 188])
    if len(joins) >= 2:
        data = data[: joins[-1].offset]
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg is missing: ./scripts/test installs it")
    done = subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-v",
            "warning",
            "-f",
            "mpegts",
            "-i",
            "pipe:0",
            "-f",
            "null",
            "-",
        ],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = done.stderr.decode(errors="replace").strip()
    return out or ("" if done.returncode == 0 else f"ffmpeg exit {done.returncode}")
