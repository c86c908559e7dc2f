"""What a client asks for: the content key, and the parameters passed on to the engine."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .errors import BadRequest
from .logs import CONTROL, printable

log = logging.getLogger(__name__)

KeyType = Literal["content_id", "infohash", "url", "magnet", "direct_url"]

_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
# How playlists and web pages carry a content id: `acestream://<id>`, pasted as it is.
_ACESTREAM_LINK = re.compile(r"acestream://([0-9a-fA-F]{40})/?", re.IGNORECASE)
_REMOTE: tuple[KeyType, ...] = ("url", "magnet", "direct_url")
# The engine picks these itself from what we send; a client's value would collide with ours.
_OURS = frozenset({"format", "pid", "sid"})
# The proxy's own access token: never passed on, never logged.
_PRIVATE = frozenset({"token"})
# What the engine is told besides the content: the parameters its API names, and no other,
# so that a client cannot reach engine features the proxy does not know about.
ENGINE_PARAMS = frozenset(
    {
        "transcode_audio",
        "transcode_mp3",
        "transcode_ac3",
        "preferred_audio_language",
        "hlc",
        "_idx",
        "stream_id",
        "quality",
        "use_api_events",
        "use_stop_notifications",
    }
)
_KEYS = frozenset({"id", "content_id", "infohash", *_REMOTE})


@dataclass(frozen=True, slots=True)
class ContentKey:
    """One live content. Two requests with equal keys share one engine session."""

    kind: KeyType
    value: str

    def __str__(self) -> str:
        return self.value

    @property
    def engine_param(self) -> tuple[str, str]:
        # `id` rather than the newer `content_id`: every engine version understands it.
        return ("id" if self.kind == "content_id" else self.kind, self.value)


@dataclass(frozen=True, slots=True)
class StreamRequest:
    key: ContentKey
    params: tuple[tuple[str, str], ...]
    """The client's `ENGINE_PARAMS`, in order, for the engine."""


def parse_stream_request(
    query: Iterable[tuple[str, str]], *, allow_remote: bool = False
) -> StreamRequest:
    """Read a client's query string (pairs, in order, repeats kept).

    Raises BadRequest with a reason a person can act on.
    """
    found: dict[KeyType, str] = {}
    params: list[tuple[str, str]] = []
    for name, value in query:
        if name in _KEYS:
            kind: KeyType = "content_id" if name in ("id", "content_id") else name  # type: ignore[assignment]
            if found.get(kind, value) != value:
                raise BadRequest(f"{name} is given twice with different values")
            found[kind] = value
        elif name in _PRIVATE:
            continue
        elif name == "format" and value == "json":
            # The engine's own API, which hlsproxy does not offer. Refused at once, so that a
            # proxy set up as its own engine (or as another's) learns it now, instead of
            # joining the very stream it is starting and waiting out its timeout.
            raise BadRequest("format=json is the AceStream engine's API; this is hlsproxy")
        elif name in _OURS:
            # Debug, not info: every player of a playlist sends the engine's own pid= back.
            if name != "format":
                log.debug(
                    "dropping the client's %s=%s: the proxy picks its own", name, printable(value)
                )
        elif name in ENGINE_PARAMS:
            params.append((name, value))
        else:
            log.debug("dropping %s=: not an engine parameter", printable(name))
    if not found:
        raise BadRequest("missing content: add ?id=<content id> or ?infohash=<infohash>")
    if len(found) > 1:
        raise BadRequest(f"give one content key, not {' and '.join(sorted(found))}")
    ((kind, value),) = found.items()
    if kind in _REMOTE:
        if not allow_remote:
            raise BadRequest(
                f"{kind}= content is turned off on this proxy (ACEXY_ALLOW_REMOTE_CONTENT)"
            )
        if not value:
            raise BadRequest(f"{kind} is empty")
        if CONTROL.search(value):
            raise BadRequest(f"{kind} holds control characters")
        return StreamRequest(ContentKey(kind, value), tuple(params))
    if kind == "content_id" and (link := _ACESTREAM_LINK.fullmatch(value)):
        value = link.group(1)
    if not _HEX40.fullmatch(value):
        name = "id" if kind == "content_id" else kind
        raise BadRequest(f"{name} must be 40 hexadecimal characters, got {value[:60]!r}")
    return StreamRequest(ContentKey(kind, value.lower()), tuple(params))
