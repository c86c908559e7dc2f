"""Connections on both HTTP paths, the fast path and aiohttp's, seen from raw clients: heads
neither reads, how long an idle connection lives, a client that stops reading its answer,
and the refusal of an expectation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from hlsproxy.config import load_settings
from hlsproxy.web.app import create_app
from hlsproxy.web.fast.head import may_be_head, read_head
from hlsproxy.web.fast.site import KEEPALIVE_TIMEOUT, FastSite, ProxyRunner
from hlsproxy.web.keys import METRICS
from hlsproxy.web.stalls import SEND_TIMEOUT
from tests.helpers import (
    CID,
    MANIFEST,
    STEP,
    AiohttpProxy,
    ProxyFactory,
    Raw,
    RunningSim,
    aiohttp_site,
    eventually,
    first_segment,
    get,
    port_of,
    slow_client,
)

# The two paths: the proxy's own site, whose connections start on the fast path, and
# aiohttp's own site, whose connections aiohttp answers from the start.
PATHS = [True, False]
PATH_IDS = ["fast-path", "aiohttp"]


@pytest.mark.parametrize(
    "raw",
    [
        f"GET {MANIFEST} HTTP/1.1\nHost: 127.0.0.1\n\n".encode(),
        f"GET {MANIFEST} HTTP/1.1\r\nHost: 127.0.0.1\n\n".encode(),
        f"GET {MANIFEST} HTTP/1.1\r\n\r\n".encode(),
        f"GET {MANIFEST}\t HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(),
        f"GET /ace/manifest.m3u8?id=\t{CID} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(),
    ],
    ids=["bare-lf", "bare-lf-ends-the-head", "no-host", "tab-after-target", "tab-in-query"],
)
async def test_heads_aiohttp_refuses_are_refused_on_both_paths_at_once(
    proxy: ProxyFactory, aiohttp_proxy: AiohttpProxy, sim: RunningSim, raw: bytes
) -> None:
    """The answer comes within a few seconds (not at the keep-alive time), and both paths
    give the same one: aiohttp's parser refuses these heads."""
    answers = []
    for port in (port_of(await proxy()), await aiohttp_proxy()):
        client = await Raw.open(port)
        client.send(raw)
        status, headers, _ = await client.response(head_only=True)
        answers.append((status, headers.get("content-type")))
        client.close()
    assert answers[0] == answers[1]
    assert answers[0][0].split()[1] == "400"


@pytest.mark.parametrize(
    ("start", "may_be"),
    [
        (b"", True),
        (b"GET /ace/hls/id/", True),
        (b"GET / HTTP/1.1\r", True),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r", True),
        (b"GET / HTTP/1.1\n", False),
        (b"GET / HTTP/1.1\r\nHost: a\n", False),
        (b"GET / HTTP/1.1\r\r", False),
        (b"GET /\x00", False),
        (b"GET /caf\xc3\xa9", False),
        (b"GET /" + b"a" * 9000, False),
    ],
    ids=[
        "empty",
        "partial-line",
        "cr-pending",
        "last-cr-pending",
        "bare-lf",
        "bare-lf-later",
        "cr-cr",
        "nul",
        "utf-8",
        "too-long",
    ],
)
def test_a_head_still_arriving_is_declined_once_it_cannot_be_read_here(
    start: bytes, may_be: bool
) -> None:
    assert may_be_head(start) is may_be


@pytest.mark.parametrize(
    ("raw", "read"),
    [
        (b"GET / HTTP/1.1\r\nHost: a", True),
        (b"GET / HTTP/1.1", False),
        (b"GET / HTTP/1.0", True),
        (b"GET /\t HTTP/1.1\r\nHost: a", False),
        (b"GET\t/ HTTP/1.1\r\nHost: a", False),
        (b"GET /?a=\tb HTTP/1.1\r\nHost: a", False),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Tab: a\tb", True),
    ],
    ids=[
        "host",
        "1.1-without-host",
        "1.0-without-host",
        "tab-after-target",
        "tab-after-method",
        "tab-in-query",
        "tab-in-a-header-value",
    ],
)
def test_heads_aiohttp_refuses_are_not_read_here(raw: bytes, read: bool) -> None:
    assert (read_head(raw) is not None) is read


@pytest.mark.parametrize("fast", PATHS, ids=PATH_IDS)
async def test_an_expectation_is_refused_with_json(
    proxy: ProxyFactory, aiohttp_proxy: AiohttpProxy, sim: RunningSim, fast: bool
) -> None:
    client = await Raw.open(port_of(await proxy()) if fast else await aiohttp_proxy())
    client.send(get(MANIFEST, "Expect: a-miracle"))
    status, headers, body = await client.response()
    assert status == "HTTP/1.1 417 Expectation Failed"
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] == "expectation_failed"
    assert "a-miracle" not in body.decode()
    client.close()
    assert sim.counters["start"] == 0


@pytest.mark.parametrize(
    "line",
    [b"CONNECT 127.0.0.1:443 HTTP/1.1", b"CONNECT /ace/getstream HTTP/1.1", b"OPTIONS * HTTP/1.1"],
    ids=["connect", "connect-to-a-path", "asterisk"],
)
@pytest.mark.parametrize(
    "expectation", [b"a-miracle", b"\xff\xfe not utf-8"], ids=["text", "bytes"]
)
async def test_an_expectation_of_a_target_no_route_matches_is_refused_with_json(
    proxy: ProxyFactory, sim: RunningSim, line: bytes, expectation: bytes
) -> None:
    """No route can match a target that is not a path, so aiohttp would ask its own expect
    handler, whose 417 cannot echo bytes that are not UTF-8 and becomes a 500."""
    client = await Raw.open(port_of(await proxy()))
    client.send(line + b"\r\nHost: 127.0.0.1\r\nExpect: " + expectation + b"\r\n\r\n")
    status, _, body = await client.response()
    assert status == "HTTP/1.1 417 Expectation Failed"
    assert json.loads(body)["error"] == "expectation_failed"
    client.close()


async def test_aiohttp_keeps_an_idle_connection_as_long_as_the_fast_path() -> None:
    """aiohttp's own default (3,630 s since 3.10.6) would keep every connection that left
    the fast path for an hour."""
    runner = ProxyRunner(create_app(load_settings({}, env={})))
    await runner.setup()
    try:
        assert runner.server is not None
        handler = runner.server()
        assert isinstance(handler, web.RequestHandler)
        assert handler.keepalive_timeout == KEEPALIVE_TIMEOUT <= 120
    finally:
        await runner.cleanup()


async def _site(
    sim: RunningSim,
    settings: dict[str, str],
    *,
    fast: bool,
    keepalive: float = KEEPALIVE_TIMEOUT,
    send_timeout: float = SEND_TIMEOUT,
) -> tuple[web.AppRunner, int]:
    """A proxy and its port, on its own site or (`fast` False) on aiohttp's."""
    raw = {"host": "127.0.0.1", "port": str(sim.port), **settings}
    app = create_app(load_settings(raw, env={}), send_timeout=send_timeout)
    runner = ProxyRunner(app, keepalive_timeout=keepalive, handler_cancellation=True)
    await runner.setup()
    if fast:
        site = FastSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, site.port
    return runner, await aiohttp_site(runner)


@pytest.mark.parametrize(
    "request_",
    [get("/healthz"), get("/nowhere"), get(MANIFEST, "Expect: a-miracle")],
    ids=["healthz", "404", "417"],
)
@pytest.mark.parametrize("fast", PATHS, ids=PATH_IDS)
async def test_a_connection_that_left_the_fast_path_is_closed_when_idle(
    sim: RunningSim, request_: bytes, fast: bool
) -> None:
    runner, port = await _site(sim, {}, fast=fast, keepalive=0.5)
    try:
        answered = await Raw.open(port)
        answered.send(request_)
        status, _, _ = await answered.response()
        assert status.split()[1] in ("200", "404", "417")
        partial = await Raw.open(port)
        partial.send(b"GET /ace/hls/id/")
        silent = await Raw.open(port)
        for client in (answered, partial, silent):
            assert await client.closed_by_server()
    finally:
        await runner.cleanup()


async def _read_to_end(client: Raw) -> int:
    """How many bytes come until the server ends the connection (a reset included)."""
    received = 0
    try:
        async with asyncio.timeout(STEP):
            while chunk := await client.reader.read(1 << 20):
                received += len(chunk)
    except ConnectionResetError:
        pass
    return received


CUT = "hlsproxy_stalled_clients_total"


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "arriving"])
@pytest.mark.parametrize("fast", PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("sim_options", [{"bitrate": 16_000_000}], ids=["16Mbps"])
async def test_a_segment_reader_that_stops_reading_is_cut_and_counted(
    sim: RunningSim, fast: bool, cached: bool, sim_options: dict[str, Any]
) -> None:
    """Its answer waits in the connection, outside the segment cache's budget, for as long
    as the connection lives: it is cut once nothing of it moved for the send timeout, while
    a reader that keeps reading gets the whole segment."""
    options = {} if cached else {"hls_prefetch": "0"}
    runner, port = await _site(sim, options, fast=fast, send_timeout=1.0)
    registry = runner.app[METRICS].registry
    try:
        probe = await Raw.open(port)
        _, uri = await first_segment(probe)
        if cached:
            probe.send(get(uri))
            status, _, cached_body = await probe.response()
            assert status == "HTTP/1.1 200 OK"
        else:
            sim.faults.segment_stall_after = 100_000  # the segment is still arriving
            sim.faults.segment_stall_seconds = 2.0
        stuck = await slow_client(port)
        stuck.send(get(uri))
        reading = await slow_client(port)
        reading.send(get(uri))
        status, headers = await reading.head()
        assert status == "HTTP/1.1 200 OK"
        async with asyncio.timeout(30):
            expected = await reading.body(headers)
        assert len(expected) > 1_000_000
        if cached:
            assert expected == cached_body
        await eventually(lambda: registry.get_sample_value(CUT) == 1, timeout=STEP)
        assert await _read_to_end(stuck) < len(expected)
        probe.send(get("/metrics"))
        _, _, text = await probe.response()
        assert _metric(text.decode(), CUT) == 1
        probe.close()
        reading.close()
    finally:
        await runner.cleanup()
