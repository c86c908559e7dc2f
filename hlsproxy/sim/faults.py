"""What the simulators do wrong: switches that tests turn while a simulator runs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class Faults:
    """What the engine does wrong; tests change these while it runs."""

    start_delay: float = 0.0
    """Extra seconds before a getstream/manifest start is answered."""
    header_delay: float = 0.0
    """Seconds before a TS read's response headers go out, the stat going on as usual
    (`prebuffer` is a cold channel, with the stat saying so)."""
    prebuffer: float = 0.0
    """Seconds a channel prebuffers, from the first start of it the engine sees while this
    is set: its stat says `prebuf` (peers coming), its TS read's headers and its HLS
    playlists are held until then. Later sessions of the channel keep the same deadline,
    as a real engine keeps downloading (acexy issue 48: 10 to 30 s on a cold channel)."""
    prebuffer_by_content: dict[str, float] = field(default_factory=dict)
    """`prebuffer` for the contents named here (the id or infohash a start gives, lower
    case) alone, over the one for every content."""
    stall_after: int | None = None
    """A TS read stops sending after this many bytes; the connection stays open."""
    cut_after: int | None = None
    """A TS read is dropped abruptly after at most this many bytes."""
    burst_seconds: float = 0.0
    """A TS read first sends this many seconds of media as fast as its reader takes them,
    then real time: a real engine, once prebuffered, sends what it has cached quickly
    (about 22 MB in 12 s seen once), then the live stream."""
    error: str | None = None
    """Every start answers `{"response": null, "error": error}`."""
    stop_delay: float = 0.0
    """Seconds before a stop command takes effect and is answered (a busy engine)."""
    down: bool = False
    """Every request: the connection is dropped with no answer."""
    playlist_error: int | None = None
    """Every HLS playlist (media, multivariant or variant) answers this HTTP status."""
    playlist_delay: float = 0.0
    """Seconds before an HLS playlist is answered (an engine slow to write the next one)."""
    segment_error: int | None = None
    """Every HLS segment, init section and key answers this HTTP status."""
    segment_stall_after: int | None = None
    """An HLS segment sends its headers (with the whole Content-Length) and this many bytes
    of its body, then nothing more for `segment_stall_seconds`, or until its session ends
    or its client leaves."""
    segment_stall_seconds: float = math.inf
    """How long a `segment_stall_after` stall lasts; the rest of the body follows it."""
    segment_unsized: bool = False
    """HLS segments come without a Content-Length, chunked, as from an origin that sends a
    segment while it is still writing it."""
    segment_cut_after: int | None = None
    """An HLS segment sends its headers (with the whole Content-Length) and at most this many
    bytes of its body, then the connection is dropped."""
    redirect_to: str | None = None
    """Segments and TS reads answer 302 to this URL, `{path}` standing for their own path,
    unless their query has `moved` (so a redirect back to the engine is served)."""
    playlist_lines: tuple[str, ...] = ()
    """Put into every media playlist after its header, `{host}` standing for the Host the
    request named: tags and URIs an origin might add."""


# What a reverse proxy in front of a broken orchestrator sends, labelled as JSON (`garbage`).
GARBAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
HELD_AT_MOST = 3600.0
"""How long a request is held without an answer (`provision_answer` "none"), if the
orchestrator never stops."""


@dataclass
class OrchFaults:
    """What the orchestrator does wrong; tests change these while it runs."""

    down: bool = False
    """Every request: the connection is dropped with no answer."""
    garbage: bool = False
    """Every read answers 200 with a body that is not JSON."""
    provision_blocked: str | None = None
    """A block code (`vpn_disconnected`, `max_capacity`, `circuit_breaker`, ...): provisioning
    answers 503 and the status reports the block."""
    provision_delay: float = 0.0
    """Seconds before a provisioned engine answers and appears in `/engines`."""
    provision_answer: Literal["normal", "garbage", "none"] = "normal"
    """How provisioning answers: as documented, 200 with a body that is not JSON, or not at
    all until the orchestrator stops."""
    wrapped_lists: bool = False
    """v1 only: lists wrapped in an object, `{"engines": [...], "total": n}` and
    `{"streams": [...]}`, which some builds answered (v2.1.0.2 answers bare arrays)."""
