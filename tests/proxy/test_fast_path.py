"""The fast path: HLS answers written straight to the connection, and the hand-over to
aiohttp for everything else, seen from raw client connections."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from typing import Any

import pytest
from aiohttp import web

from hlsproxy.config import load_settings
from hlsproxy.hls import slate
from hlsproxy.hls.body import Body
from hlsproxy.state import EndReason
from hlsproxy.ts.loop import MediaLoop
from hlsproxy.web import hls_routes
from hlsproxy.web.app import create_app
from hlsproxy.web.fast import writer
from hlsproxy.web.fast.head import read_head
from hlsproxy.web.fast.site import FastSite, ProxyRunner
from hlsproxy.web.fast.writer import Dates
from hlsproxy.web.hls_answer import Answer, Block, error_answer
from hlsproxy.web.keys import STALLS, STREAMS
from hlsproxy.web.middleware import ErrorAnswer
from hlsproxy.web.stalls import Stalls
from tests.helpers import (
    CID,
    CID2,
    MANIFEST,
    STEP,
    AiohttpProxy,
    ProxyFactory,
    Raw,
    RunningSim,
    aiohttp_site,
    first_segment,
    get,
    port_of,
)


async def start_proxy(
    sim: RunningSim,
    settings: dict[str, str] | None = None,
    *,
    fast: bool = True,
    site: dict[str, Any] | None = None,
    **runner_options: Any,
) -> tuple[web.AppRunner, int]:
    """A proxy on 127.0.0.1 and its port: on its own site, whose connections start on the
    fast path, or (`fast` False) on aiohttp's own site, which answers every request with
    aiohttp's writer: the reference the fast path is compared with."""
    raw = {"host": "127.0.0.1", "port": str(sim.port), **(settings or {})}
    runner = ProxyRunner(create_app(load_settings(raw, env={})), access_log=None, **runner_options)
    await runner.setup()
    if fast:
        hot = FastSite(runner, "127.0.0.1", 0, **(site or {}))
        await hot.start()
        return runner, hot.port
    return runner, await aiohttp_site(runner)


def comparable(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in ("date", "server")}


async def test_the_fast_path_answers_as_aiohttp_does(
    proxy: ProxyFactory, aiohttp_proxy: AiohttpProxy, sim: RunningSim
) -> None:
    """Same status, headers and body whichever writer answers."""
    fast = await Raw.open(port_of(await proxy()))
    general = await Raw.open(await aiohttp_proxy())
    uris = [await first_segment(raw) for raw in (fast, general)]
    assert uris[0][0] == uris[1][0]
    expected = sim.engine.media.segment(uris[0][0])
    size = len(expected)
    requests = [
        ("GET", "{uri}", ()),
        ("HEAD", "{uri}", ()),
        ("GET", "{uri}", ("Range: bytes=188-375",)),
        ("GET", "{uri}", ("Range: bytes=-188",)),
        ("GET", "{uri}", (f"Range: bytes={size}-",)),
        ("GET", "{uri}", ("Range: bytes=1-2, 4-5",)),
        ("GET", f"/ace/hls/id/{CID}/00000000000000000000.ts", ()),
        ("GET", f"/ace/hls/id/{CID}/not-a-token", ()),
        ("GET", f"/ace/hls/id/{CID2}/00000000000000000000.ts", ()),
        ("GET", "/ace/manifest.m3u8?id=nonsense", ()),
        ("HEAD", MANIFEST, ()),
        ("GET", f"/ace/manifest.m3u8?id={CID.upper()}&x=%20a", ()),
        ("GET", f"{MANIFEST}&x=%20a+b;c", ()),
    ]
    for method, path, extra in requests:
        answers = []
        for raw, (_, uri) in zip((fast, general), uris, strict=True):
            raw.send(get(path.format(uri=uri), *extra, method=method))
            answers.append(await raw.response(head_only=method == "HEAD"))
        (status, headers, body), (status2, headers2, body2) = answers
        assert status == status2, (method, path, extra)
        assert comparable(headers) == comparable(headers2), (method, path, extra)
        if status.startswith(("HTTP/1.1 2", "HTTP/1.1 3")):
            assert body == body2
        else:
            assert json.loads(body) == json.loads(body2)
    for raw in (fast, general):
        raw.close()


@pytest.mark.parametrize("source", ["engine", "proxy"], ids=["engine-hls", "cut-hls"])
async def test_the_slate_is_answered_alike_on_both_paths(
    proxy: ProxyFactory, aiohttp_proxy: AiohttpProxy, sim: RunningSim, source: str
) -> None:
    """While the engine prebuffers, the slate's segments are served as any other: from the
    segment cache, by the fast path or by aiohttp, the same bytes and headers."""
    sim.faults.prebuffer = 60.0
    fast = await Raw.open(port_of(await proxy(hls_source=source)))
    general = await Raw.open(await aiohttp_proxy(hls_source=source))
    # One content each: two proxies' sessions of one content would supersede each other.
    uris = [
        await first_segment(raw, f"/ace/manifest.m3u8?id={cid}")
        for raw, cid in ((fast, CID), (general, CID2))
    ]
    assert uris[0][0] == uris[1][0] == 0  # the slate's own numbering
    expected = MediaLoop.of(slate.FILE.read_bytes()).segment(0)
    for method, extra in [("GET", ()), ("HEAD", ()), ("GET", ("Range: bytes=188-375",))] * 2:
        answers = []
        for raw, (_, uri) in zip((fast, general), uris, strict=True):
            raw.send(get(uri, *extra, method=method))
            answers.append(await raw.response(head_only=method == "HEAD"))
        (status, headers, body), (status2, headers2, body2) = answers
        assert status == status2, (method, extra)
        assert comparable(headers) == comparable(headers2), (method, extra)
        assert body == body2
        if method == "GET" and not extra:
            assert status == "HTTP/1.1 200 OK"
            assert headers["content-type"] == "video/mp2t"
            assert body == expected
    for raw in (fast, general):
        raw.close()


async def test_a_connection_moves_to_aiohttp_at_the_first_request_the_fast_path_leaves(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    raw = await Raw.open(port_of(await proxy()))
    sequence, uri = await first_segment(raw)
    # Pipelined: answered in order, the second by aiohttp, and the third after it.
    raw.send(get(uri), get("/ace/status"), get(uri, "Range: bytes=0-187"))
    status, _, body = await raw.response()
    assert status == "HTTP/1.1 200 OK"
    assert body == sim.engine.media.segment(sequence)
    status, headers, body = await raw.response()
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"streams": 1}
    status, _, body = await raw.response()
    assert status == "HTTP/1.1 206 Partial Content"
    assert body == sim.engine.media.segment(sequence)[:188]
    raw.close()


async def test_a_body_on_a_get_is_read_as_a_body_not_as_a_request(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    raw = await Raw.open(port_of(await proxy()))
    sequence, uri = await first_segment(raw)
    hidden = get("/ace/status")
    raw.send(get(uri, f"Content-Length: {len(hidden)}") + hidden, get("/healthz"))
    status, _, body = await raw.response()
    assert status == "HTTP/1.1 200 OK"
    assert body == sim.engine.media.segment(sequence)
    status, _, body = await raw.response()
    assert status == "HTTP/1.1 200 OK"
    assert "streams" not in json.loads(body)  # /healthz answered, not the hidden /ace/status
    raw.writer.write_eof()
    assert await raw.closed_by_server()


async def test_heads_the_fast_path_does_not_read_go_to_aiohttp(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    port = port_of(await proxy())
    raw = await Raw.open(port)
    sequence, uri = await first_segment(raw)
    # Bytes beyond printable ASCII in a header: aiohttp's parser reads it.
    raw.send(f"GET {uri} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Name: caf\u00e9\r\n\r\n".encode())
    status, _, body = await raw.response()
    assert status == "HTTP/1.1 200 OK" and body == sim.engine.media.segment(sequence)
    raw.close()
    # An obsolete folded header line.
    folded = await Raw.open(port)
    folded.send(f"GET {uri} HTTP/1.1\r\nHost: 127.0.0.1\r\n X-Folded: yes\r\n\r\n".encode())
    status, _, _ = await folded.response()
    assert status.split()[1] in ("200", "400")
    folded.close()


@pytest.mark.parametrize("sim_options", [{"bitrate": 16_000_000}], ids=["16Mbps"])
async def test_a_slow_reader_gets_every_byte_and_holds_nobody_up(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    """A segment larger than the socket's buffers: what sendfile(2) cannot send at once
    follows by the ordinary write, in order, while other viewers are served."""
    port = port_of(await proxy())
    probe = await Raw.open(port)
    _, uri = await first_segment(probe)
    probe.send(get(uri))
    status, _, expected = await probe.response()
    assert status == "HTTP/1.1 200 OK"
    assert len(expected) > 1_000_000
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    slow = Raw(*await asyncio.open_connection(sock=sock, limit=4096))
    slow.send(get(uri))
    head = await slow.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    received = bytearray()
    chunk = await slow.reader.read(4096)
    received += chunk
    # Meanwhile another viewer gets the whole segment.
    probe.send(get(uri))
    status, _, body = await probe.response()
    assert status == "HTTP/1.1 200 OK" and body == expected
    assert len(received) < len(expected)
    async with asyncio.timeout(60):
        while len(received) < len(expected):
            chunk = await slow.reader.read(65536)
            assert chunk
            received += chunk
            if len(received) < 200_000:
                await asyncio.sleep(0.01)
    assert bytes(received) == expected
    slow.send(get(uri, "Range: bytes=0-187"))
    status, _, body = await slow.response()
    assert status == "HTTP/1.1 206 Partial Content" and body == expected[:188]
    for raw in (probe, slow):
        raw.close()


async def test_http_1_0_closes_unless_asked_to_keep_alive(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    port = port_of(await proxy())
    raw = await Raw.open(port)
    raw.send(get(MANIFEST, version="1.0"))
    status, headers, body = await raw.response()
    assert status == "HTTP/1.0 200 OK"
    assert body.startswith(b"#EXTM3U")
    assert await raw.closed_by_server()
    kept = await Raw.open(port)
    kept.send(get(MANIFEST, "Connection: keep-alive", version="1.0"))
    status, headers, _ = await kept.response()
    assert status == "HTTP/1.0 200 OK" and headers["connection"] == "keep-alive"
    kept.send(get(MANIFEST, "Connection: close"))
    status, headers, _ = await kept.response()
    assert status == "HTTP/1.1 200 OK" and headers["connection"] == "close"
    assert await kept.closed_by_server()


async def test_idle_connections_are_closed_after_the_keep_alive_time(sim: RunningSim) -> None:
    runner, port = await start_proxy(sim, keepalive_timeout=0.5)
    try:
        answered = await Raw.open(port)
        answered.send(get(f"/ace/hls/id/{CID}/00000000000000000000.ts"))
        status, _, _ = await answered.response()
        assert status == "HTTP/1.1 404 Not Found"
        partial = await Raw.open(port)
        partial.send(b"GET /ace/hls/id/")
        assert await answered.closed_by_server()
        assert await partial.closed_by_server()
    finally:
        await runner.cleanup()


async def test_stopping_closes_fast_path_connections_and_leaves_no_task(sim: RunningSim) -> None:
    runner, port = await start_proxy(sim)
    raw = await Raw.open(port)
    raw.send(get(MANIFEST))
    status, _, _ = await raw.response()
    assert status == "HTTP/1.1 200 OK"
    before = {t for t in asyncio.all_tasks() if not t.done()}
    await runner.cleanup()
    assert await raw.closed_by_server()
    left = {t for t in asyncio.all_tasks() if not t.done()} - before
    assert left <= {asyncio.current_task()}
    assert sim.engine.active() == []


async def test_a_request_waiting_on_a_stream_that_closes_is_answered(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    """A playlist request waiting on the engine when its stream ends gets an answer (503),
    not a connection that never answers."""
    client = await proxy()
    raw = await Raw.open(port_of(client))
    await first_segment(raw)
    sim.faults.playlist_delay = 30.0  # the next playlist refresh waits at the engine
    await asyncio.sleep(3.0)  # the proxy's copy goes stale
    raw.send(get(MANIFEST))
    await asyncio.sleep(0.5)
    app = client.app
    assert app is not None
    for stream in list(app[STREAMS].hls_streams()):
        stream.close(EndReason.SHUTDOWN)
    status, headers, body = await raw.response()
    assert status == "HTTP/1.1 503 Service Unavailable"
    assert "retry-after" in headers and json.loads(body)["error"] == "unavailable"
    sim.faults.playlist_delay = 0.0
    raw.close()


@pytest.mark.parametrize("unsized", [False, True], ids=["content-length", "chunked"])
async def test_viewers_that_join_a_segment_still_arriving_get_it_whole(
    proxy: ProxyFactory, sim: RunningSim, unsized: bool
) -> None:
    """Viewers of a segment the engine is still sending get its first bytes as they come
    and the rest from the cache once it has landed: every byte once, in order, framed as
    the engine framed it (a length, or chunks to HTTP/1.1 and the close to HTTP/1.0), from
    one engine fetch."""
    port = port_of(await proxy(hls_prefetch="0"))
    viewers = [await Raw.open(port) for _ in range(3)]
    sequence, uri = await first_segment(viewers[0])
    expected = sim.engine.media.segment(sequence)
    sim.faults.segment_unsized = unsized
    sim.faults.segment_stall_after = 5000
    sim.faults.segment_stall_seconds = 1.0
    fetched = sim.counters["segment"]
    for raw, version in zip(viewers, ("1.1", "1.1", "1.0"), strict=True):
        raw.send(get(uri, version=version))
    answers: list[tuple[dict[str, str], bytes]] = []
    for raw, version in zip(viewers, ("1.1", "1.1", "1.0"), strict=True):
        async with asyncio.timeout(STEP):
            status, headers = await raw.head()
        assert status == f"HTTP/{version} 200 OK"
        if not unsized:
            assert headers["content-length"] == str(len(expected))
        else:
            assert "content-length" not in headers
            assert (headers.get("transfer-encoding") == "chunked") is (version == "1.1")
        # Well inside the engine's pause: only bytes sent before it can be here.
        async with asyncio.timeout(0.5):
            chunked = headers.get("transfer-encoding") == "chunked"
            early = await (raw.chunk() if chunked else raw.reader.read(65536))
        assert early
        answers.append((headers, early))
    for raw, (headers, early) in zip(viewers, answers, strict=True):
        async with asyncio.timeout(STEP):
            assert await raw.body(headers, early) == expected
    assert await viewers[2].closed_by_server()  # HTTP/1.0: the body ends with the connection
    assert sim.counters["segment"] == fetched + 1
    # The same connections go on: the segment, now cached, comes whole at once.
    viewers[0].send(get(uri))
    status, _, body = await viewers[0].response()
    assert status == "HTTP/1.1 200 OK" and body == expected
    for raw in viewers:
        raw.close()


ACCESS_LINE = re.compile(r'127\.0\.0\.1 "(GET|HEAD) (/[^" ?]*)" (\d{3}) \d+\.\d{3}s')


async def test_with_the_access_log_on_hls_is_still_answered_on_the_fast_path(
    proxy: ProxyFactory,
    aiohttp_proxy: AiohttpProxy,
    sim: RunningSim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logging requests does not change which code answers them: each HLS request is
    answered on the fast path (aiohttp's writer adds a Server header, the fast path does
    not) and logged once, in the line aiohttp's path logs for the same request."""
    caplog.set_level(logging.INFO, logger="hlsproxy.access")
    logged: list[list[tuple[str, ...]]] = []
    for port, fast in (
        (port_of(await proxy(access_log="true")), True),
        (await aiohttp_proxy(access_log="true"), False),
    ):
        caplog.clear()
        raw = await Raw.open(port)
        _, uri = await first_segment(raw, f"/ace/manifest.m3u8?id={CID if fast else CID2}")
        requests = [
            get(uri),
            get(uri, method="HEAD"),
            get(uri, "Range: bytes=0-187"),
            get(f"/ace/hls/id/{CID}/not-a-token"),
        ]
        for request in requests:
            raw.send(request)
            _, headers, _ = await raw.response(head_only=request.startswith(b"HEAD"))
            assert ("server" in headers) is not fast
        raw.close()
        lines = [r.getMessage() for r in caplog.records if r.name == "hlsproxy.access"]
        matches = [ACCESS_LINE.fullmatch(line) for line in lines]
        assert all(matches), lines
        logged.append([m.groups() for m in matches if m is not None])
    fast_lines, general_lines = logged
    assert [(m, s) for m, _, s in fast_lines] == [(m, s) for m, _, s in general_lines]
    assert [m for m, _, _ in fast_lines] == ["GET", "GET", "HEAD", "GET", "GET"]
    assert [s for _, _, s in fast_lines] == ["200", "200", "200", "206", "404"]
    assert fast_lines[0][1] == "/ace/manifest.m3u8"  # the query, which may hold a token, is not


class _FastWriterServer(asyncio.Protocol):
    """Answers every request on its connection with one answer, by the fast path's writer."""

    def __init__(self, answer: Answer, stalls: Stalls) -> None:
        self._answer = answer
        self._stalls = stalls
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._transport is None:
            return
        head = read_head(self._buffer[:end])
        assert head is not None
        self._buffer = self._buffer[end + 4 :]
        writer.send(self._transport, head, self._answer, self._stalls, Dates().now())


_TEXT = Block(("Content-Type", "text/plain; charset=utf-8"), ("X-Answer", "text"))
# Every answer has a content type: aiohttp would add one that the fast path does not.
_SLICE = Block(
    ("Accept-Ranges", "bytes"), ("Content-Range", "bytes 2-5/10"), ("Content-Type", "video/mp2t")
)
WRITTEN = [
    ("text", "GET", "1.1", Answer(200, _TEXT, b"hello")),
    ("text-to-http-1.0", "GET", "1.0", Answer(200, _TEXT, b"hello")),
    ("text-to-head", "HEAD", "1.1", Answer(200, _TEXT, b"hello", head=True)),
    ("no-body", "HEAD", "1.1", Answer(200, _TEXT, head=True)),
    ("body-slice", "GET", "1.1", Answer(206, _SLICE, body=Body([b"0123456789"]), start=2, end=6)),
    (
        "body-to-head",
        "HEAD",
        "1.1",
        Answer(200, _SLICE, body=Body([b"0123456789"]), end=10, head=True),
    ),
    (
        "error",
        "GET",
        "1.1",
        error_answer(ErrorAnswer(416, "range", "no such range", {"Content-Range": "bytes */10"})),
    ),
    ("redirect", "GET", "1.1", Answer(302, _TEXT.plus(("Location", "/a?b=c")), b"302: Found")),
]


@pytest.mark.parametrize(
    ("method", "version", "answer"), [w[1:] for w in WRITTEN], ids=[w[0] for w in WRITTEN]
)
async def test_both_writers_write_an_answer_alike(
    method: str, version: str, answer: Answer
) -> None:
    """The same answer value, written by the fast path's writer and through aiohttp (the
    HLS routes' `write`), reaches the client as the same status, headers and body."""
    stalls = Stalls(lambda: None)
    loop = asyncio.get_running_loop()
    fast = await loop.create_server(lambda: _FastWriterServer(answer, stalls), "127.0.0.1", 0)

    async def handler(request: web.Request) -> web.StreamResponse:
        return await hls_routes.write(request, answer)

    app = web.Application()
    app[STALLS] = stalls
    app.router.add_get("/answer", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        ports = [fast.sockets[0].getsockname()[1], await aiohttp_site(runner)]
        answers = []
        for port in ports:
            raw = await Raw.open(port)
            raw.send(get("/answer", method=method, version=version))
            status, headers = await raw.head()
            body = b""
            if method == "GET":
                async with asyncio.timeout(STEP):
                    body = await raw.body(headers)
            answers.append((status, comparable(headers), body))
            raw.close()
        assert answers[0] == answers[1]
        assert answers[0][0].startswith(f"HTTP/{version} {answer.status} ")
        if answer.length is not None:
            assert answers[0][1]["content-length"] == str(answer.length)
    finally:
        fast.close()
        await fast.wait_closed()
        await runner.cleanup()
        await stalls.aclose()
