"""The request heads the fast path answers, read from raw bytes; any other head is not read.

This reader is deliberately narrow: a GET or HEAD with no body, in HTTP/1.1 or 1.0, whose
head is plain printable ASCII with CRLF line ends. Whatever it does not recognise, it
declines (None), and aiohttp's own parser reads the same bytes instead. So the two can
never disagree on where a request ends: a declined head is never taken apart here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Printable ASCII and tabs; a lone CR or LF, or any other control byte, is declined.
_CLEAN = re.compile(rb"[\t\x20-\x7e]*")
# What a head read here may begin with: clean lines ended by CRLF, and perhaps the CR of
# the next line end. Bytes that cannot begin one (a bare LF, a control byte) are aiohttp's
# to refuse at once, rather than waiting for a CRLF CRLF that may never come.
_HEAD_START = re.compile(rb"(?:[\t\x20-\x7e]|\r\n)*\r?")
# A request with a body, an upgrade or an expectation is for aiohttp to read.
_NOT_OURS = frozenset({"content-length", "transfer-encoding", "expect", "upgrade"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Heads aiohttp's parser refuses (with its defaults) are declined, so that it says why:
# a line longer than 8190 bytes, more than 128 headers, or a header RFC 9110 allows once
# (aiohttp.http_parser.SINGLETON_HEADERS) given twice. A shorter head has no longer line.
MAX_HEAD = 8190
_MAX_HEADERS = 128
_SINGLETONS = frozenset(
    {
        "content-location",
        "content-range",
        "content-type",
        "etag",
        "host",
        "max-forwards",
        "server",
        "user-agent",
    }
)


@dataclass(frozen=True, slots=True)
class Head:
    method: str  # GET or HEAD
    path: str  # as sent: the fast path declines a path with percent-escapes
    query: str
    http10: bool
    keep_alive: bool
    range: str | None
    authorization: str | None
    user_agent: str | None = None
    remote: str | None = None  # the client's address


def may_be_head(start: bytes | bytearray) -> bool:
    """Whether `start`, the bytes of a head not yet ended, may still become one read here."""
    return len(start) <= MAX_HEAD and _HEAD_START.fullmatch(start) is not None


def read_head(raw: bytes, remote: str | None = None) -> Head | None:
    """The request in `raw` (a head without its final CRLF CRLF) from a client at
    `remote`, or None to decline it."""
    if len(raw) > MAX_HEAD:
        return None
    lines = raw.split(b"\r\n")
    if len(lines) > _MAX_HEADERS + 1:
        return None
    for line in lines:
        if not _CLEAN.fullmatch(line):
            return None
    request_line = lines[0].decode("ascii")
    parts = request_line.split(" ")
    if len(parts) != 3 or "\t" in request_line:
        return None  # llhttp refuses a tab in the request line
    method, target, version = parts
    if method not in ("GET", "HEAD") or version not in ("HTTP/1.1", "HTTP/1.0"):
        return None
    path, _, query = target.partition("?")
    if not path.startswith("/") or "%" in path or "#" in target:
        return None
    http10 = version == "HTTP/1.0"
    range_ = authorization = user_agent = None
    close = keep = host = False
    seen: set[str] = set()
    for line in lines[1:]:
        name, colon, value = line.decode("ascii").partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            return None  # also an obs-fold line, which starts with white space
        name = name.lower()
        value = value.strip(" \t")
        if name in _NOT_OURS:
            return None
        if name in _SINGLETONS:
            if name in seen:
                return None
            seen.add(name)
        if name == "host":
            host = True
        elif name == "connection":
            options = {option.strip().lower() for option in value.split(",")}
            close = close or "close" in options
            keep = keep or "keep-alive" in options
        elif name == "range":
            if range_ is not None:
                return None
            range_ = value
        elif name == "user-agent":
            user_agent = value
        elif name == "authorization":
            if authorization is not None:
                return None
            authorization = value
    if close and keep:
        return None  # llhttp's reading of that depends on the version: let it decide
    if not host and not http10:
        return None  # RFC 9112 section 3.2: an HTTP/1.1 request without Host is refused
    keep_alive = keep if http10 else not close
    return Head(method, path, query, http10, keep_alive, range_, authorization, user_agent, remote)
