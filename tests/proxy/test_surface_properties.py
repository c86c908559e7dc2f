"""The whole HTTP surface against generated requests, as an attacker on the LAN would send
them: raw bytes on a socket to a live proxy in front of the simulated engine, with a canary
server on 127.0.0.1 that nothing may reach.

For every request: an answer (headers) within a bound; no 5xx of the proxy's own making (an
engine failure is a 502/504 that says so, a full house a 503); no engine address or pid in
any header or body; the canary never contacted. At the end, as for every proxy test, each
engine session started was stopped exactly once.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from tests.helpers import CID, CID2, Canary, ProxyFactory, RunningSim

# Headers within this long: the engine answers at once, so anything slower is a hang.
ANSWER_BOUND = 10.0
# A stream never ends by itself: this much of a body is enough to look at.
BODY_CAP = 64 * 1024
BODY_WAIT = 1.0
CANARY = "http://127.0.0.1:{canary}"
# Engine failures and a full house are 5xx that name their cause; anything else is a bug.
ENGINE_FAILURES = ("engine_", "unavailable", "shutting_down")

_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"


def _escaped(text: str) -> str:
    return quote(text, safe="")


_ANY_TEXT = st.text(max_size=40).map(_escaped)
_CONTENT = st.sampled_from(
    [CID, CID.upper(), CID2, "f4f4" + CID[4:], "aeae" + CID[4:], "aaaa" + CID[4:]]
) | st.sampled_from(["0" * 41, "", "magnet:?xt=urn:btih:" + CID])
# The content routes most often: they reach the engine.
_PATH = st.sampled_from(["/ace/getstream"] * 6 + ["/ace/manifest.m3u8"] * 8) | st.sampled_from(
    [
        "/",
        "/ace/getstream",
        "/ace/getstream/",
        "/ace/manifest.m3u8",
        f"/ace/hls/id/{CID}/",
        f"/ace/hls/id/{CID}/0123456789abcdef0123.ts",
        f"/ace/hls/infohash/{CID}/0123456789abcdef0123.m3u8",
        "/ace/hls/url/",
        "/ace/hls/magnet/x/",
        "/ace/status",
        "/ace/r/x/y",
        "/ace/c/x/1.ts",
        "/metrics",
        "/healthz",
        "/%2e%2e/%2e%2e/etc/passwd",
        "//{canary_host}/x",
        "/ace/getstream%0a%0d",
        "/ace/hls/id/%ff%fe/%c3%28.ts",
    ]
)
_PARAM_NAMES = st.sampled_from(
    [
        "pid",
        "sid",
        "format",
        "token",
        "transcode_audio",
        "preferred_audio_language",
        "method",
        "_idx",
        "stream_id",
    ]
) | st.text(alphabet=_SAFE, min_size=1, max_size=10)
_PARAM_VALUES = (
    _CONTENT
    | st.sampled_from(
        [
            CANARY + "/a.torrent",
            "magnet:?xt=urn:btih:" + CID + "&tr=" + CANARY,
            "stop",
            "redirect",
            "json",
            "1",
            "%0a%0dforged",
            "%ff%fe%c3%28",
        ]
    )
    | _ANY_TEXT
    | st.integers(4000, 9000).map(lambda n: "9" * n)
)
_HEADER_NAMES = st.sampled_from(
    [
        "Range",
        "Host",
        "Forwarded",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "X-Real-IP",
        "Authorization",
        "Origin",
        "Cookie",
        "Accept-Encoding",
        "Content-Type",
        "Transfer-Encoding",
        "Expect",
        "If-Range",
    ]
) | st.text(alphabet=_SAFE, min_size=1, max_size=12)
_HEADER_VALUES = st.one_of(
    st.just(b"bytes=0-"),
    st.sampled_from(
        [
            b"bytes=0-",
            b"bytes=-1",
            b"bytes=5-2",
            b"bytes=0-1,5-9",
            b"bytes=" + b"9" * 4400 + b"-",
            b"bytes=-" + b"9" * 4400,
            b"items=0-1",
            b"127.0.0.1:{canary}",
            b"for=127.0.0.1;host=127.0.0.1:{canary};proto=http",
            b"Bearer x",
            b"gzip, br",
            b"chunked",
            b"100-continue",
            b"\xff\xfe\xc3\x28 not utf-8",
        ]
    ),
    st.binary(max_size=64).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.integers(100, 9000).map(lambda n: b"a" * n),
)


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: list[tuple[str, bytes]]
    body: bytes

    def raw(self, canary_port: int, resource: str | None = None) -> bytes:
        """The request as bytes; for `resource`, the same method, headers and body."""
        target = self.path.replace("{canary_host}", f"127.0.0.1:{canary_port}")
        if resource is not None:
            target = resource
        elif self.query:
            target += "?" + "&".join(f"{_escaped(k)}={v}" for k, v in self.query)
        lines = [f"{self.method} {target} HTTP/1.1".encode()]
        if not any(name.lower() == "host" for name, _ in self.headers):
            lines.append(b"Host: 127.0.0.1")
        for name, value in self.headers:
            lines.append(name.encode() + b": " + value)
        if self.body:
            lines.append(b"Content-Length: " + str(len(self.body)).encode())
        lines.append(b"Connection: close")
        raw = b"\r\n".join(lines) + b"\r\n\r\n" + self.body
        return raw.replace(b"{canary}", str(canary_port).encode()).replace(
            CANARY.format(canary="{canary}").encode(), f"127.0.0.1:{canary_port}".encode()
        )


_KEYED = st.tuples(st.sampled_from(["id", "infohash", "content_id"]), _CONTENT) | st.tuples(
    st.sampled_from(["url", "magnet", "direct_url", "id"]), _PARAM_VALUES
)
cases = st.builds(
    Case,
    method=st.sampled_from(["GET"] * 6 + ["HEAD"] * 2 + ["POST", "PUT", "OPTIONS"])
    | st.sampled_from(["DELETE", "PATCH", "TRACE", "CONNECT", "BREW", "get"]),
    path=_PATH,
    # Most requests name a content, so that they get as far as an engine session.
    query=st.builds(
        lambda keyed, rest: keyed + rest,
        st.lists(_KEYED, max_size=1) | st.lists(_KEYED, min_size=1, max_size=1),
        st.lists(st.tuples(_PARAM_NAMES, _PARAM_VALUES), max_size=3),
    ),
    headers=st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=2),
    body=st.just(b"") | st.binary(max_size=512),
)


async def _exchange(port: int, raw: bytes) -> tuple[bytes, bytes]:
    """The head (status line and headers) and up to BODY_CAP bytes of the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(ANSWER_BOUND):
            head = await reader.readuntil(b"\r\n\r\n")
        body = b""
        try:
            async with asyncio.timeout(BODY_WAIT):
                while len(body) < BODY_CAP and (chunk := await reader.read(BODY_CAP)):
                    body += chunk
        except TimeoutError:
            pass  # a live stream, or an engine that went quiet: what came is enough
        return head, body
    finally:
        writer.transport.abort()


def _error_code(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        return ""
    return str(answer.get("error", "")) if isinstance(answer, dict) else ""


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases)
@example(case=Case("GET", "/", [], [], b""))
@example(case=Case("GET", "/ace/getstream", [("id", CID)], [("Expect", b"\xff\xfe")], b""))
@example(case=Case("PUT", "/nowhere%0a", [], [("Expect", b"\xff\xfe")], b"x"))
@example(case=Case("GET", "/ace/status", [("id", CID)], [], b""))
@example(
    case=Case(
        "GET", "/ace/manifest.m3u8", [("id", CID)], [("Range", b"bytes=" + b"9" * 4400 + b"-")], b""
    )
)
async def test_no_request_breaks_the_proxy_or_leaks_the_engine(
    proxy: ProxyFactory, sim: RunningSim, canary: Canary, case: Case
) -> None:
    client = await _live_proxy(proxy)
    raw = case.raw(canary.port)
    engine = f":{sim.port}".encode()
    assume(engine not in raw)
    assert client.port is not None
    head, body = await _exchange(client.port, raw)

    _check(sim, head, body)
    event(f"{case.method} {case.path[:18]} -> {_status(head)} {_error_code(body)}")
    if _status(head) == 200 and body.startswith(b"#EXTM3U"):
        # And what the playlist names, asked for the same way.
        uri = [line for line in body.decode().splitlines() if line and line[0] != "#"][-1]
        head, body = await _exchange(client.port, case.raw(canary.port, uri))
        _check(sim, head, body)
        event(f"{case.method} a resource it names -> {_status(head)}")
    assert canary.requests == []


def _status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def _check(sim: RunningSim, head: bytes, body: bytes) -> None:
    status = _status(head)
    if status >= 500:
        assert status != 500 and _error_code(body).startswith(ENGINE_FAILURES), (head, body)
    seen = head + body
    assert f":{sim.port}".encode() not in seen
    for session in sim.engine.sessions:
        assert session.pid.encode() not in seen
        assert session.playback_session_id.encode() not in seen


_PROXIES: dict[int, TestClient[Any, Any]] = {}


async def _live_proxy(proxy: ProxyFactory) -> TestClient[Any, Any]:
    """One proxy for all the examples of a run: the fixtures outlive them."""
    made = _PROXIES.get(id(proxy))
    if made is None:
        made = _PROXIES[id(proxy)] = await proxy(allow_remote_content="true")
    return made
