"""What a simulated engine knows: its settings, its sessions and the clocks of its channels.

One session per content: a start reuses the playing session of the same content, pid and
format, and supersedes any other of that content or pid. A session the engine has not
heard of for `idle_expiry` seconds, and that no one is reading, expires.

The channel's clock starts when the engine first sees a content and runs `time_scale` times
faster than real time, so HLS media sequence numbers keep rising across sessions.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from .faults import Faults
from .flavours import FlavourMedia, HlsFlavour
from .media import MediaLoop, pad
from .server import SimServer, gone

log = logging.getLogger(__name__)

Format = Literal["ts", "hls"]
SessionEnd = Literal["stop", "supersede", "expire", "shutdown"]

# How often a waiting stream looks whether its client went away: aiohttp does not cancel
# handlers on disconnect, and a stalled stream never writes, so it would never notice.
_POLL_SECONDS = 0.25
_MEMO_SIZE = 8


@dataclass
class SimSession:
    """One engine playback session, as tests see it."""

    content_id: str
    """The identifier the start named (content id, infohash, url, ...), as given."""
    infohash: str
    token: str
    playback_session_id: str
    pid: str
    fmt: Format
    params: dict[str, str]
    flavour: HlsFlavour = "mpegts"
    """How an HLS session is served; see `flavours`."""
    stopped: bool = False
    superseded: bool = False
    reads: int = 0
    """TS reads opened, the corrupt second readers included."""
    open_reads: int = 0
    """TS reads open right now."""
    expired: bool = False
    stops: int = 0
    """Stop commands that named this session, the ones answered "unknown" included."""

    @property
    def live(self) -> bool:
        return not (self.stopped or self.superseded or self.expired)


@dataclass(eq=False)
class Live:
    """The engine's own state of a session."""

    session: SimSession
    content_token: str
    t0: float
    """When the channel's clock started (monotonic)."""
    first_segment: int
    """The oldest segment this session ever offers."""
    last_seen: float
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: SessionEnd | None = None
    reader: web.BaseRequest | None = None
    connections: set[asyncio.Transport] = field(default_factory=set)
    """Transports of the open TS reads, to cut them on supersession."""
    stat_calls: int = 0
    served: int = 0
    cold: bool = False
    """Started while its channel prebuffered: its HLS window starts afresh once it is done."""


class EngineState(SimServer):
    """The sessions of a simulated engine, and the timeline of its channels."""

    def __init__(
        self,
        media: MediaLoop | None = None,
        *,
        bitrate: int | None = None,
        unknown_content_delay: float = 0.05,
        prebuffer_segments: int = 1,
        hls_window: int = 17,
        hls_initial_window: int = 3,
        time_scale: float = 1.0,
        idle_expiry: float = 30.0,
        cold_channels: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` is the engine's notion of now, in seconds, for the channel's live edge
        and idle expiry; a test can pass one it steps by hand. Pacing of TS reads always
        follows the event loop's real time. `cold_channels`: content ids that prebuffer
        this many seconds (`Faults.prebuffer_by_content`)."""
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if not 1 <= hls_initial_window <= hls_window:
            raise ValueError("need 1 <= hls_initial_window <= hls_window")
        self.media = media if media is not None else MediaLoop.load()
        self.bitrate = bitrate
        self.unknown_content_delay = unknown_content_delay
        self.prebuffer_segments = max(0, prebuffer_segments)
        self.hls_window = hls_window
        self.hls_initial_window = hls_initial_window
        self.time_scale = time_scale
        self.idle_expiry = idle_expiry
        self._now = clock
        self.faults = Faults(prebuffer_by_content=dict(cold_channels or {}))
        self.sessions: list[SimSession] = []
        self.requests: list[str] = []
        self.crossed_stops: list[tuple[SimSession, SimSession]] = []
        """(the session a stop named, a newer live session of its content that the stop
        ended): on a real engine, a proxy's late stop kills the stream that replaced it."""
        # Only the sessions still playing: every request scans them, and a long benchmark
        # creates thousands. Ended ones stay reachable by token for stat and stop.
        self._playing: dict[str, Live] = {}
        self._by_token: dict[str, Live] = {}
        self._by_content_token: dict[str, Live] = {}
        self._clocks: dict[str, float] = {}
        self._prebuffered_at: dict[str, tuple[float, float]] = {}
        """infohash -> (when its prebuffering began, when it ends), real monotonic time."""
        self._closing = asyncio.Event()
        self._padded: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._flavours: FlavourMedia | None = None
        super().__init__()

    def bytes_served(self) -> int:
        """Media bytes this engine has sent, over every session it ever had: MPEG-TS bodies,
        HLS segments, keys and init sections (playlists not)."""
        return sum(live.served for live in self._by_token.values())

    def active(self) -> list[SimSession]:
        """Sessions that are not stopped, superseded or expired."""
        self._expire()
        return [live.session for live in self._playing.values()]

    def _add_routes(self, app: web.Application) -> None:
        app.cleanup_ctx.append(self._background)
        app.on_shutdown.append(self._on_shutdown)

    async def _background(self, app: web.Application) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(self._sweep(), name="sim-engine-expiry")
        yield
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper

    async def _on_shutdown(self, app: web.Application) -> None:
        # Open streams and delayed answers end now rather than hold up the server's shutdown.
        self._closing.set()
        for live in self._playing.values():
            if live.end_reason is None:
                live.end_reason = "shutdown"
                live.ended.set()
            for transport in list(live.connections):
                # A client that stopped reading holds its handler in a write: cut it.
                if transport.get_write_buffer_size():
                    transport.abort()

    async def _sweep(self) -> None:
        interval = max(0.01, min(1.0, self.idle_expiry / 4))
        while True:
            await asyncio.sleep(interval)
            self._expire()

    def _open(
        self, request: web.Request, fmt: Format, kind: str, value: str, flavour: HlsFlavour
    ) -> Live:
        """Reuse, supersede or create, in one step with no await."""
        query = request.query
        pid = query.get("pid", query.get("sid", ""))
        if kind == "infohash":
            infohash = value.lower()
        else:
            infohash = _sha1(value.lower() if kind == "content_id" else value)
        now = self._now()
        for live in self._playing.values():
            s = live.session
            if s.infohash == infohash and s.pid == pid and s.fmt == fmt:
                live.last_seen = now
                self._count("start_reused")
                return live
        for live in list(self._playing.values()):
            s = live.session
            if s.infohash == infohash or s.pid == pid:
                log.info("session %s of %s superseded", s.token, s.infohash)
                self._end(live, "supersede")

        t0 = self._clocks.setdefault(infohash, now)
        prebuffer = self.faults.prebuffer_by_content.get(value.lower(), self.faults.prebuffer)
        if prebuffer > 0 and infohash not in self._prebuffered_at:
            began = time.monotonic()
            self._prebuffered_at[infohash] = (began, began + prebuffer)
        session = SimSession(
            content_id=value,
            infohash=infohash,
            token=secrets.token_hex(16),
            playback_session_id=secrets.token_hex(20),
            pid=pid,
            fmt=fmt,
            params=dict(query.items()),
            flavour=flavour,
        )
        live = Live(session, secrets.token_hex(16), t0, 0, now)
        live.first_segment = max(0, self._newest(live) - self.hls_initial_window + 1)
        live.cold = self.prebuffering(live) is not None
        self.sessions.append(session)
        self._playing[session.token] = live
        self._by_token[session.token] = live
        self._by_content_token[live.content_token] = live
        log.info(
            "session %s of %s started (%s %s, pid %r)", session.token, infohash, fmt, flavour, pid
        )
        self._count("start")
        return live

    def prebuffering(self, live: Live) -> tuple[float, float] | None:
        """(seconds since the channel's prebuffering began, seconds left), while it lasts."""
        span = self._prebuffered_at.get(live.session.infohash)
        now = time.monotonic()
        if span is None or now >= span[1]:
            return None
        return now - span[0], span[1] - now

    async def _prebuffered(self, request: web.BaseRequest, live: Live) -> bool:
        """Hold an answer until the channel has prebuffered; False if the session ended or
        the client left first."""
        waiting = self.prebuffering(live)
        return waiting is None or await self._pause(request, live, waiting[1])

    def _session(self, request: web.Request) -> Live | None:
        """The live session a /ace/<kind>/<infohash>/<token> URL names."""
        live = self._by_token.get(request.match_info["token"])
        if live is None or live.session.infohash != request.match_info["infohash"]:
            return None
        return live if live.session.live else None

    def _end(self, live: Live, reason: SessionEnd) -> None:
        s = live.session
        if reason == "stop":
            s.stopped = True
        elif reason == "supersede":
            s.superseded = True
        elif reason == "expire":
            s.expired = True
        live.end_reason = reason
        live.ended.set()
        self._playing.pop(s.token, None)
        if reason == "supersede":
            for transport in list(live.connections):
                transport.abort()
        self._wake()

    def _expire(self) -> None:
        now = self._now()
        for live in list(self._playing.values()):
            if (
                live.reader is None
                and not live.connections
                and now - live.last_seen >= self.idle_expiry
            ):
                log.info("session %s expired", live.session.token)
                self._end(live, "expire")

    async def _sleep(self, delay: float) -> bool:
        """Sleep unless the engine shuts down first; False if it did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._closing.wait()
        return not self._closing.is_set()

    @staticmethod
    async def _pause(request: web.BaseRequest, live: Live, delay: float) -> bool:
        """Wait `delay` seconds; False as soon as the session ends or the client goes away."""
        deadline = time.monotonic() + delay
        while True:
            if live.ended.is_set() or gone(request):
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, _POLL_SECONDS)):
                    await live.ended.wait()

    def _newest(self, live: Live) -> int:
        """The newest complete segment: the engine had `hls_initial_window` when the clock
        started, and finishes one more every segment duration."""
        elapsed = (self._now() - live.t0) * self.time_scale
        return self.media.index_at(self.media.start(self.hls_initial_window) + elapsed) - 1

    def _segment_bytes(self, n: int) -> bytes:
        if self.bitrate is None:
            return self.media.segment(n)
        data = self._padded.get(n)
        if data is None:
            target = round(self.bitrate * self.media.duration(n) / 8)
            data = pad(self.media.segment(n), target)
            self._padded[n] = data
            if len(self._padded) > _MEMO_SIZE:
                self._padded.popitem(last=False)
        return data


def _sha1(value: str) -> str:
    return hashlib.sha1(value.encode()).hexdigest()
