"""The fast path's head reader, from raw heads: what it reads, and what it declines (None)
for aiohttp's parser to read instead."""

from __future__ import annotations

import pytest

from hlsproxy.web.fast.head import MAX_HEAD, Head, may_be_head, read_head

HOST = b"\r\nHost: a"


def head(
    method: str = "GET",
    path: str = "/p",
    query: str = "",
    *,
    http10: bool = False,
    keep_alive: bool = True,
    range_: str | None = None,
    authorization: str | None = None,
    user_agent: str | None = None,
) -> Head:
    return Head(method, path, query, http10, keep_alive, range_, authorization, user_agent)


# (id, raw head without its final CRLF CRLF, what read_head gives)
READ: list[tuple[str, bytes, Head | None]] = [
    # Methods: GET and HEAD only.
    ("get", b"GET /p HTTP/1.1" + HOST, head()),
    ("head", b"HEAD /p HTTP/1.1" + HOST, head("HEAD")),
    ("post", b"POST /p HTTP/1.1" + HOST, None),
    ("options", b"OPTIONS /p HTTP/1.1" + HOST, None),
    ("lower-case-method", b"get /p HTTP/1.1" + HOST, None),
    # Versions.
    ("http-1.0", b"GET /p HTTP/1.0", head(http10=True, keep_alive=False)),
    ("http-2", b"GET /p HTTP/2.0" + HOST, None),
    ("http-0.9", b"GET /p", None),
    ("lower-case-version", b"GET /p http/1.1" + HOST, None),
    # Keep-alive and close, per version.
    ("1.1-keeps-alive", b"GET /p HTTP/1.1" + HOST, head()),
    ("1.1-close", b"GET /p HTTP/1.1" + HOST + b"\r\nConnection: close", head(keep_alive=False)),
    (
        "1.1-close-in-a-list",
        b"GET /p HTTP/1.1" + HOST + b"\r\nConnection: TE, Close",
        head(keep_alive=False),
    ),
    ("1.0-closes", b"GET /p HTTP/1.0" + HOST, head(http10=True, keep_alive=False)),
    (
        "1.0-keep-alive",
        b"GET /p HTTP/1.0\r\nConnection: keep-alive",
        head(http10=True, keep_alive=True),
    ),
    (
        "close-and-keep-alive",
        b"GET /p HTTP/1.1" + HOST + b"\r\nConnection: close, keep-alive",
        None,
    ),
    # Host: required in HTTP/1.1 only, once.
    ("1.1-without-host", b"GET /p HTTP/1.1", None),
    ("1.0-without-host", b"GET /p HTTP/1.0", head(http10=True, keep_alive=False)),
    ("two-hosts", b"GET /p HTTP/1.1" + HOST + HOST, None),
    # Line ends and control bytes.
    ("bare-lf", b"GET /p HTTP/1.1\nHost: a", None),
    ("bare-cr", b"GET /p HTTP/1.1\rHost: a", None),
    ("nul", b"GET /p HTTP/1.1" + HOST + b"\r\nX: a\x00b", None),
    ("utf-8", b"GET /p HTTP/1.1" + HOST + b"\r\nX: caf\xc3\xa9", None),
    # Tabs: refused in the request line, allowed in a header value.
    ("tab-after-target", b"GET /p\t HTTP/1.1" + HOST, None),
    ("tab-after-method", b"GET\t/p HTTP/1.1" + HOST, None),
    ("tab-in-query", b"GET /p?a=\tb HTTP/1.1" + HOST, None),
    ("tab-in-a-header-value", b"GET /p HTTP/1.1" + HOST + b"\r\nX-Tab: a\tb", head()),
    # The target: a path, without escapes or a fragment; the query as sent.
    ("query", b"GET /p?id=1&b=%20 HTTP/1.1" + HOST, head(query="id=1&b=%20")),
    ("percent-in-path", b"GET /a%2Fb HTTP/1.1" + HOST, None),
    ("fragment", b"GET /p#f HTTP/1.1" + HOST, None),
    ("absolute-form", b"GET http://a/p HTTP/1.1" + HOST, None),
    ("asterisk", b"GET * HTTP/1.1" + HOST, None),
    ("two-spaces", b"GET  /p HTTP/1.1" + HOST, None),
    # Range, Authorization, User-Agent: read, each at most once.
    ("range", b"GET /p HTTP/1.1" + HOST + b"\r\nRange:  bytes=0-1 ", head(range_="bytes=0-1")),
    ("two-ranges", b"GET /p HTTP/1.1" + HOST + b"\r\nRange: bytes=0-1\r\nRange: bytes=2-3", None),
    (
        "authorization",
        b"GET /p HTTP/1.1" + HOST + b"\r\nauthorization: Bearer t",
        head(authorization="Bearer t"),
    ),
    (
        "two-authorizations",
        b"GET /p HTTP/1.1" + HOST + b"\r\nAuthorization: a\r\nAuthorization: b",
        None,
    ),
    ("user-agent", b"GET /p HTTP/1.1" + HOST + b"\r\nUser-Agent: vlc/3", head(user_agent="vlc/3")),
    ("two-user-agents", b"GET /p HTTP/1.1" + HOST + b"\r\nUser-Agent: a\r\nUser-Agent: b", None),
    # Other headers RFC 9110 allows once (aiohttp refuses them twice).
    (
        "two-content-types",
        b"GET /p HTTP/1.1" + HOST + b"\r\nContent-Type: a\r\nContent-Type: b",
        None,
    ),
    ("two-etags", b"GET /p HTTP/1.1" + HOST + b"\r\nETag: a\r\nETag: b", None),
    ("repeated-plain-header", b"GET /p HTTP/1.1" + HOST + b"\r\nX: a\r\nX: b", head()),
    # Header lines.
    ("obs-fold", b"GET /p HTTP/1.1" + HOST + b"\r\n folded", None),
    ("no-colon", b"GET /p HTTP/1.1" + HOST + b"\r\nNoColon", None),
    ("space-before-colon", b"GET /p HTTP/1.1" + HOST + b"\r\nX : a", None),
    ("empty-name", b"GET /p HTTP/1.1" + HOST + b"\r\n: a", None),
    (
        "128-headers",
        b"GET /p HTTP/1.1" + HOST + b"".join(b"\r\nX%d: a" % n for n in range(127)),
        head(),
    ),
    (
        "129-headers",
        b"GET /p HTTP/1.1" + HOST + b"".join(b"\r\nX%d: a" % n for n in range(128)),
        None,
    ),
    # Length.
    ("longest", b"GET /p HTTP/1.1" + HOST + b"\r\nX: " + b"a" * (MAX_HEAD - 29), head()),
    ("too-long", b"GET /p HTTP/1.1" + HOST + b"\r\nX: " + b"a" * (MAX_HEAD - 28), None),
    # A body, an upgrade or an expectation is aiohttp's to read.
    ("content-length", b"GET /p HTTP/1.1" + HOST + b"\r\nContent-Length: 0", None),
    ("transfer-encoding", b"GET /p HTTP/1.1" + HOST + b"\r\nTransfer-Encoding: chunked", None),
    ("expect", b"GET /p HTTP/1.1" + HOST + b"\r\nExpect: 100-continue", None),
    ("upgrade", b"GET /p HTTP/1.1" + HOST + b"\r\nUpgrade: websocket", None),
    ("upper-case-name", b"GET /p HTTP/1.1" + HOST + b"\r\nCONTENT-LENGTH: 0", None),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in READ], ids=[c[0] for c in READ])
def test_read_head(raw: bytes, expected: Head | None) -> None:
    assert read_head(raw) == expected


# (id, the start of a head not yet ended, whether it may still become one read here)
MAY_BE: list[tuple[str, bytes, bool]] = [
    ("empty", b"", True),
    ("partial-line", b"GET /ace/hls/id/", True),
    ("cr-pending", b"GET / HTTP/1.1\r", True),
    ("last-cr-pending", b"GET / HTTP/1.1\r\nHost: a\r\n\r", True),
    ("whole-lines", b"GET / HTTP/1.1\r\nHost: a\r\n", True),
    ("tab", b"GET / HTTP/1.1\r\nX: a\tb", True),
    ("bare-lf", b"GET / HTTP/1.1\n", False),
    ("bare-lf-later", b"GET / HTTP/1.1\r\nHost: a\n", False),
    ("cr-cr", b"GET / HTTP/1.1\r\r", False),
    ("nul", b"GET /\x00", False),
    ("escape", b"GET /\x1b", False),
    ("utf-8", b"GET /caf\xc3\xa9", False),
    ("at-the-limit", b"GET /" + b"a" * (MAX_HEAD - 5), True),
    ("too-long", b"GET /" + b"a" * (MAX_HEAD - 4), False),
]


@pytest.mark.parametrize(("start", "may_be"), [c[1:] for c in MAY_BE], ids=[c[0] for c in MAY_BE])
def test_may_be_head(start: bytes, may_be: bool) -> None:
    assert may_be_head(start) is may_be
