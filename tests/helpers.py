"""What the tests share: the simulated engine and the proxy as running servers, raw
HTTP clients, waiting, decoding checks, the status page read back as a tree.

Fixtures live in conftest.py; everything else a test module borrows lives here."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from hlsproxy.sim.engine import SimEngine
from hlsproxy.ts.packets import PACKET_SIZE, TsScanner
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


class Canary:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._record)
        self.server = TestServer(self.app, host="127.0.0.1")

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _record(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path_qs}")
        return web.Response(body=b"canary bytes " * 100, content_type="video/mp2t")


MANIFEST = f"/ace/manifest.m3u8?id={CID}"


STEP = 10.0


class Raw:
    """One client connection, spoken to in bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, **kwargs: Any) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, **kwargs)
        return cls(reader, writer)

    def send(self, *requests: bytes) -> None:
        self.writer.write(b"".join(requests))

    async def response(self, *, head_only: bool = False) -> tuple[str, dict[str, str], bytes]:
        async with asyncio.timeout(STEP):
            status, headers = await self.head()
            body = b"" if head_only else await self.body(headers)
        return status, headers, body

    async def head(self) -> tuple[str, dict[str, str]]:
        """The status line and the headers (names in lower case)."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.lower()] = value.strip()
        return lines[0], headers

    async def body(self, headers: dict[str, str], have: bytes = b"") -> bytes:
        """The body after the `have` bytes of it already read (whole chunks, if chunked)."""
        if "content-length" in headers:
            return have + await self.reader.readexactly(int(headers["content-length"]) - len(have))
        if headers.get("transfer-encoding") == "chunked":
            body = have
            while chunk := await self.chunk():
                body += chunk
            return body
        return have + await self.reader.read()  # HTTP/1.0 without a length: to the close

    async def chunk(self) -> bytes:
        """The next chunk of a chunked body; b"" for the last one."""
        size = int((await self.reader.readuntil(b"\r\n"))[:-2], 16)
        data = await self.reader.readexactly(size)
        assert await self.reader.readuntil(b"\r\n") == b"\r\n"
        return data

    async def closed_by_server(self) -> bool:
        async with asyncio.timeout(STEP):
            return await self.reader.read() == b""

    def close(self) -> None:
        self.writer.close()


def get(path: str, *extra: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def port_of(client: Any) -> int:
    port = client.server.port
    assert isinstance(port, int)
    return port


async def first_segment(raw: Raw, manifest: str = MANIFEST) -> tuple[int, str]:
    raw.send(get(manifest))
    status, _, body = await raw.response()
    assert status == "HTTP/1.1 200 OK"
    text = body.decode()
    sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))  # type: ignore[union-attr]
    uri = next(line for line in text.splitlines() if line and not line.startswith("#"))
    return sequence, uri


async def slow_client(port: int) -> Raw:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return Raw(*await asyncio.open_connection(sock=sock, limit=4096))


async def scrape(
    client: object,
) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    resp = await client.get("/metrics")  # type: ignore[attr-defined]
    assert resp.status == 200
    # The version in it tells Prometheus which text format to parse.
    assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = await resp.text()
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, values


VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "source", "wbr"})


@dataclasses.dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node] = dataclasses.field(default_factory=list)
    text_parts: list[str] = dataclasses.field(default_factory=list)

    @property
    def text(self) -> str:
        """All text inside, as a browser's textContent."""
        return "".join(self.text_parts)

    def iter(self, tag: str | None = None) -> list[Node]:
        found = [self] if tag in (None, self.tag) else []
        for child in self.children:
            found.extend(child.iter(tag))
        return found

    def attr(self, name: str) -> str:
        value = self.attrs.get(name)
        assert value is not None, f"<{self.tag}> has no {name}"
        return value

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


class TreeBuilder(HTMLParser):
    """Builds a tree and fails on a mismatched end tag: the page's own tags must balance."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag == "br":
            self.handle_data("\n")
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert tag not in VOID, f"</{tag}>"
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        for node in self.stack:
            node.text_parts.append(data)


def parse_fragment(markup: str) -> Node:
    builder = TreeBuilder()
    builder.feed(markup)
    builder.close()
    assert builder.stack == [builder.root], [n.tag for n in builder.stack]
    return builder.root


def parse(page: str) -> Node:
    """A whole document: one HTML5 doctype, then balanced tags."""
    assert page.startswith("<!doctype html>")
    root = parse_fragment(page)
    (html,) = [n for n in root.children if n.tag == "html"]
    assert [n.tag for n in html.children] == ["head", "body"]
    return root


def words(text: str) -> str:
    return " ".join(text.split())


def summary(doc: Node) -> dict[str, str]:
    """The header's figures, name to value."""
    (dl,) = [n for n in doc.iter("dl") if "summary" in n.classes()]
    return {
        words(item.iter("dt")[0].text): words(item.iter("dd")[0].text)
        for item in dl.children
        if item.tag == "div"
    }


def stream_rows(doc: Node) -> list[dict[str, Node]]:
    """Each channel row's cells by column name."""
    (section,) = [s for s in doc.iter("section") if s.iter("h2")[0].text == "Channels"]
    tables = section.iter("table")
    if not tables:
        return []
    head = [words(th.text) for th in tables[0].iter("th")]
    rows = tables[0].iter("tbody")[0].iter("tr")
    result = []
    for row in rows:
        cells = row.iter("td")
        assert [c.attr("data-label") for c in cells] == head
        result.append(dict(zip(head, cells, strict=True)))
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_demo(port: int, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hlsproxy",
        "--demo",
        "-addr",
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
