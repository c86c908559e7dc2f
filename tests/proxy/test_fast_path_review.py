"""Review of the fast path: requests where it and aiohttp's path must agree, seen from raw
client connections."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web

from hlsproxy.config import load_settings
from hlsproxy.web.app import create_app
from hlsproxy.web.fast.site import KEEPALIVE_TIMEOUT, FastSite, ProxyRunner
from tests.helpers import (
    MANIFEST,
    AiohttpProxy,
    ProxyFactory,
    Raw,
    RunningSim,
    first_segment,
    get,
    port_of,
    slow_client,
)


@pytest.mark.parametrize("sim_options", [{"bitrate": 16_000_000}], ids=["16Mbps"])
async def test_nothing_follows_an_answer_that_closes_the_connection(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    """A request with Connection: close is the last one answered, even when its answer
    is too large to go out at once and another request was pipelined behind it."""
    port = port_of(await proxy())
    probe = await Raw.open(port)
    _, uri = await first_segment(probe)
    probe.send(get(uri))
    status, _, expected = await probe.response()
    assert status == "HTTP/1.1 200 OK" and len(expected) > 1_000_000
    probe.close()
    slow = await slow_client(port)
    slow.send(get(uri, "Connection: close"), get(MANIFEST))
    await asyncio.sleep(0.2)  # the answer fills the socket; the rest waits in the transport
    status, headers, body = await slow.response()
    assert status == "HTTP/1.1 200 OK" and headers["connection"] == "close"
    assert body == expected
    async with asyncio.timeout(10):
        rest = await slow.reader.read()
    assert rest == b"", rest[:80]


@pytest.mark.parametrize(
    "extra",
    [
        ("Connection: close", "Connection: keep-alive"),
        ("Host: 127.0.0.2",),
        ("User-Agent: a", "User-Agent: b"),
        tuple(f"X-Header-{n}: {n}" for n in range(130)),
        ("X-Padding: " + "a" * 9000,),
    ],
    ids=["connection-close-then-keep-alive", "two-hosts", "two-agents", "130-headers", "9k-line"],
)
async def test_heads_aiohttp_refuses_or_closes_are_treated_alike(
    proxy: ProxyFactory, aiohttp_proxy: AiohttpProxy, sim: RunningSim, extra: tuple[str, ...]
) -> None:
    """The fast path answers only heads aiohttp's parser accepts, and keeps a connection
    alive only when aiohttp would: same status line and Connection header on both paths."""
    answers = []
    for port in (await aiohttp_proxy(), port_of(await proxy())):
        raw = await Raw.open(port)
        raw.send(get(MANIFEST, *extra))
        status, headers, _ = await raw.response()
        answers.append((status, headers.get("connection")))
        raw.close()
    assert answers[1] == answers[0]


async def _site(
    sim: RunningSim, keepalive_timeout: float = KEEPALIVE_TIMEOUT, **site: Any
) -> tuple[web.AppRunner, FastSite]:
    settings = load_settings({"host": "127.0.0.1", "port": str(sim.port)}, env={})
    app = create_app(settings)
    runner = ProxyRunner(
        app, access_log=None, handler_cancellation=True, keepalive_timeout=keepalive_timeout
    )
    await runner.setup()
    hot = FastSite(runner, "127.0.0.1", 0, **site)
    await hot.start()
    return runner, hot


async def test_the_keep_alive_time_counts_from_the_end_of_an_answer(sim: RunningSim) -> None:
    """An answer that took longer than the keep-alive time does not leave its connection to
    be closed at once: as with aiohttp, the idle time starts when the answer is out."""
    runner, site = await _site(sim, keepalive_timeout=1.0)
    try:
        sim.faults.start_delay = 1.5  # the first playlist waits for the engine
        raw = await Raw.open(site.port)
        raw.send(get(MANIFEST))
        status, _, _ = await raw.response()
        assert status == "HTTP/1.1 200 OK"
        await asyncio.sleep(0.6)  # idle, but for less than the keep-alive time
        raw.send(get(MANIFEST))
        status, _, _ = await raw.response()
        assert status == "HTTP/1.1 200 OK"
        raw.close()
    finally:
        await runner.cleanup()


async def test_shutting_down_answers_a_waiting_request_at_once(sim: RunningSim) -> None:
    runner, site = await _site(sim, shutdown_timeout=3.0)
    sim.faults.start_delay = 8.0  # the playlist waits for an engine that is slow to start
    raw = await Raw.open(site.port)
    raw.send(get(MANIFEST))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    cleanup = asyncio.create_task(runner.cleanup())
    try:
        status, headers, _ = await raw.response()
        waited = time.monotonic() - started
    finally:
        await cleanup
    assert status == "HTTP/1.1 503 Service Unavailable" and "retry-after" in headers
    assert waited < 1.0
