"""What a client and the operator are told when the engine's address is wrong or dead.

The client's body names the problem, never the engine's address; the log names both."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hlsproxy.config import load_settings
from hlsproxy.web.app import create_app
from tests.helpers import CID, ProxyFactory, ProxyServer, RunningSim

# Far beyond what a test waits: an answer that comes is not the timeout's.
PATIENT = {"no_response_timeout": "60s"}
Serve = Callable[[web.Application], Awaitable[int]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Run an aiohttp app on 127.0.0.1; yields a function that returns its port."""
    servers: list[TestServer] = []

    async def start(app: web.Application) -> int:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        assert server.port is not None
        return server.port

    yield start
    for server in servers:
        await server.close()


def a_web_server(kind: str) -> web.Application:
    async def page(request: web.Request) -> web.StreamResponse:
        if kind == "html":
            return web.Response(status=404, text="<h1>Not Found</h1>", content_type="text/html")
        if kind == "json":
            return web.json_response({"status": "ok"})
        response = web.StreamResponse(headers={"Content-Type": "video/mp2t"})
        await response.prepare(request)
        while True:  # an MPEG-TS stream that never ends
            await response.write(b"\x47" + bytes(187))
            await asyncio.sleep(0.01)

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return app


async def answer(client: TestClient[Any, Any], path: str) -> tuple[int, dict[str, Any]]:
    async with asyncio.timeout(20), client.get(path) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("kind", ["html", "json", "video"])
async def test_another_web_server_is_named_as_no_engine_at_once(
    proxy: ProxyFactory, serve: Serve, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = await serve(a_web_server(kind))
    client = await proxy(port=str(port), **PATIENT)
    for path in (f"/ace/getstream?id={CID}", f"/ace/manifest.m3u8?id={CID}"):
        status, body = await answer(client, path)
        assert (status, body["error"]) == (502, "not_an_engine"), body
        assert "not as an AceStream engine: check ACEXY_HOST/ACEXY_PORT" in body["message"]
        assert str(port) not in body["message"]
    assert f"engine http://127.0.0.1:{port} is not an AceStream engine" in caplog.text


async def test_the_proxy_as_its_own_engine_says_so_at_once(sim: RunningSim) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings({"host": "127.0.0.1", "port": str(port), **PATIENT}, env={})
    client: TestClient[Any, Any] = TestClient(
        ProxyServer(create_app(settings), host="127.0.0.1", port=port)
    )
    await client.start_server()
    try:
        for path in (f"/ace/getstream?id={CID}", f"/ace/manifest.m3u8?id={CID}"):
            status, body = await answer(client, path)
            assert (status, body["error"]) == (502, "not_an_engine"), body
            async with client.get("/ace/status") as resp:
                assert (await resp.json())["streams"] == 0
    finally:
        await client.close()


async def test_a_client_asking_for_the_engines_api_is_told_this_is_a_proxy(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    status, body = await answer(client, f"/ace/getstream?id={CID}&format=json")
    assert (status, body["error"]) == (400, "bad_request")
    assert "this is hlsproxy" in body["message"]
    assert sim.counters["start"] == 0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_a_refused_engine_is_named_with_its_cause_in_the_log_only(
    proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    client = await proxy(port=str(port), upstream_retries="0")
    status, body = await answer(client, f"/ace/getstream?id={CID}")
    assert (status, body["error"]) == (502, "engine_unreachable")
    assert str(port) not in body["message"]
    assert (
        f"engine http://127.0.0.1:{port} unreachable starting {CID}: "
        "connection refused: nothing listens there"
    ) in caplog.text


async def test_an_engine_name_that_does_not_resolve_is_logged_as_dns(
    proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # .invalid never resolves (RFC 6761).
    client = await proxy(host="engine.invalid", upstream_retries="0")
    status, body = await answer(client, f"/ace/getstream?id={CID}")
    assert (status, body["error"]) == (502, "engine_unreachable")
    assert "invalid" not in body["message"]
    assert "engine http://engine.invalid:" in caplog.text
    assert "its name does not resolve (DNS:" in caplog.text


async def test_a_silent_engine_is_logged_as_no_answer_in_time(
    proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as silent:  # connections land in its backlog; nothing answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        client = await proxy(port=str(port), no_response_timeout="0.5s", upstream_retries="0")
        status, body = await answer(client, f"/ace/getstream?id={CID}")
    assert (status, body["error"]) == (504, "engine_timeout")
    assert f"engine http://127.0.0.1:{port} unreachable starting {CID}: no answer in time" in (
        caplog.text
    )


@pytest.mark.parametrize("path", ["/ace/getstream", "/ace/manifest.m3u8"], ids=["ts", "hls"])
async def test_content_the_engine_cannot_load_says_so(
    proxy: ProxyFactory, sim: RunningSim, path: str
) -> None:
    sim.engine.unknown_content_delay = 0.0
    client = await proxy()
    status, body = await answer(client, f"{path}?id={'dead' + CID[4:]}")
    assert (status, body["error"]) == (502, "content_load_failed")
    assert "failed to load content" in body["message"]
