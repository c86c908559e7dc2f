"""An engine's own error text, made fit to show a client: no address, no session.

An engine answers a start it refuses with free text in its JSON envelope's "error" field
(the engine docs: `{"response": null, "error": "<text>"}`), and that text may name the
engine's address, its playback URLs (whose path holds the session's token) and session or
player ids. A client is told what the engine said, without those
(docs/ARCHITECTURE.md, principle 5), as a rewritten playlist never names the engine.
"""

from __future__ import annotations

import re

# Longer than any engine message meant for a person; the rest is cut.
MAX_LENGTH = 200

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]*", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])")
_IPV6 = re.compile(r"\[[0-9a-f:.%]*:[0-9a-f:.%]*\](?::\d{1,5})?", re.IGNORECASE)
# A name given a value: session=…, playback_session_id: …, pid=…, sid=…
_NAMED_ID = re.compile(
    r"\b(\w*session\w*|\w*_id|pid|sid|token)(\s*[=:]\s*)[^\s,;&\"']+", re.IGNORECASE
)
# Tokens (32 hex), infohashes and session ids (40 hex), pids (UUIDs) standing alone.
_UUID = re.compile(r"\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\b", re.IGNORECASE)
_HEX = re.compile(r"\b[0-9a-f]{16,}\b", re.IGNORECASE)


def redact(text: str, host: str) -> str:
    """`text` without URLs, IP addresses, the engine's `host` (with its port, if given) and
    ids; each is replaced by a word saying what stood there."""
    text = _URL.sub("<url>", text)
    text = _IPV6.sub("<address>", text)
    text = _IPV4.sub("<address>", text)
    bare = host.strip("[]")
    if bare:
        named = re.compile(rf"(?<![\w.-]){re.escape(bare)}(?::\d{{1,5}})?(?![\w.-])", re.I)
        text = named.sub("<address>", text)
    text = _NAMED_ID.sub(r"\1\2<id>", text)
    text = _UUID.sub("<id>", text)
    text = _HEX.sub("<id>", text)
    text = " ".join(text.split())  # no line breaks or control spacing into a log or a body
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 1] + "…"
