"""A simulated AceStream engine: the HTTP API a proxy meets, served by a real aiohttp app.

It follows shared/reference/acestream-engine-api.md: the `format=json` envelope, one session
per content (a different pid or output format supersedes it), a stop that ends every
session of the content, one reader per progressive stream (a second one gets garbage), an
HLS window that grows then slides with the clock, stat progression, idle expiry. Tests steer
it through `faults` and read what happened from `sessions`, `counters` and `requests`.

The channel's clock starts when the engine first sees a content and runs `time_scale` times
faster than real time, so HLS media sequence numbers keep rising across sessions.

Real engines serve HLS as MPEG-TS media playlists, and so does this one, except for content
named by a 40-hex content id or infohash that starts with one of `FLAVOUR_PREFIXES` (case
does not matter): an HLS session of it is served in another flavour, from the smaller media
in `sim/media/low`, `fmp4` and `aes` (see fixtures/make_media.sh):

- `f4f4...` fMP4: version 7, `EXT-X-MAP` naming `/ace/c/<infohash>/init.mp4`, segments
  `/ace/c/<infohash>/<n>.m4s`, both `video/mp4`;
- `aeae...` AES-128: MPEG-TS segments encrypted under one key, `/ace/c/<infohash>/key.bin`
  (`application/octet-stream`), with one fixed IV;
- `aaaa...` multivariant: the playback_url is a multivariant playlist of two live media
  playlists of the same session, `/ace/m/<infohash>/<token>/high.m3u8` (the usual
  segments) and `.../low.m3u8` (segments `/ace/c/<infohash>/low/<n>.ts`).

A TS session (`/ace/getstream`) is plain MPEG-TS whatever the content. Every flavour's
segments follow the channel's timeline (window, media sequence, expiry), so its media must
have the same segment durations as `media`. fMP4 and the low variant loop without a break,
their timestamps moved on by whole loops like the MPEG-TS; encrypted segments cannot be
changed, so the AES-128 playlist marks each return to the loop's start with
EXT-X-DISCONTINUITY, as an origin that loops a recording does. `bitrate` pads only
`media`'s MPEG-TS (the multivariant playlist's high variant included).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import logging
import math
import os
import re
import secrets
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from .changes import Changes
from .media import MEDIA_DIR, PACKET_SIZE, SYNC_BYTE, MediaLoop, pad

log = logging.getLogger(__name__)

Format = Literal["ts", "hls"]
HlsFlavour = Literal["mpegts", "fmp4", "aes-128", "multivariant"]
FLAVOUR_PREFIXES: Mapping[str, HlsFlavour] = {
    "f4f4": "fmp4",
    "aeae": "aes-128",
    "aaaa": "multivariant",
}
"""Content ids and infohashes starting with these play over HLS in that flavour. Four hex
digits, so that a random id (a benchmark's) is all but never taken for one."""
_EndReason = Literal["stop", "supersede", "expire", "shutdown"]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Identifier parameters in the engine's order of precedence; `id` is `content_id`'s alias.
_CONTENT_PARAMS = ("content_id", "id", "infohash", "url", "magnet", "direct_url")
_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_VERSION = {"code": 3020300, "platform": "linux", "version": "3.2.3"}
_UNKNOWN_SESSION = "unknown playback session id"
_LOAD_FAILED = "failed to load content"
_SLICE_SECONDS = 0.04
# How often a waiting stream looks whether its client went away: aiohttp does not cancel
# handlers on disconnect, and a stalled stream never writes, so it would never notice.
_POLL_SECONDS = 0.25
_GARBAGE_BYTES = 64 * 1024
_SEGMENT_SLACK = 3
_MEMO_SIZE = 8
_LIVEPOS_EPOCH = 1_700_000_000
_STAT_STATUSES = ("idle", "prebuf")
_PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_VARIANTS = ("high", "low")
_SEGMENT_TYPES = {"ts": "video/mp2t", "m4s": "video/mp4"}


@dataclass
class Faults:
    """What the engine does wrong; tests change these while it runs."""

    start_delay: float = 0.0
    """Extra seconds before a getstream/manifest start is answered."""
    header_delay: float = 0.0
    """Seconds before a TS read's response headers go out (the engine pre-buffering)."""
    stall_after: int | None = None
    """A TS read stops sending after this many bytes; the connection stays open."""
    cut_after: int | None = None
    """A TS read is dropped abruptly after at most this many bytes."""
    error: str | None = None
    """Every start answers `{"response": null, "error": error}`."""
    stop_delay: float = 0.0
    """Seconds before a stop command takes effect and is answered (a busy engine)."""
    down: bool = False
    """Every request: the connection is dropped with no answer."""
    playlist_error: int | None = None
    """Every HLS playlist (media, multivariant or variant) answers this HTTP status."""
    segment_error: int | None = None
    """Every HLS segment, init section and key answers this HTTP status."""
    segment_stall_after: int | None = None
    """An HLS segment sends its headers (with the whole Content-Length) and this many bytes
    of its body, then nothing more until its session ends or its client leaves."""
    segment_cut_after: int | None = None
    """An HLS segment sends its headers (with the whole Content-Length) and at most this many
    bytes of its body, then the connection is dropped."""
    redirect_to: str | None = None
    """Segments and TS reads answer 302 to this URL, `{path}` standing for their own path,
    unless their query has `moved` (so a redirect back to the engine is served)."""
    playlist_lines: tuple[str, ...] = ()
    """Put into every media playlist after its header, `{host}` standing for the Host the
    request named: tags and URIs an origin might add."""


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
    """How an HLS session is served; see the module docstring."""
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
class _Live:
    """The engine's own state of a session."""

    session: SimSession
    content_token: str
    t0: float
    """When the channel's clock started (monotonic)."""
    first_segment: int
    """The oldest segment this session ever offers."""
    last_seen: float
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: _EndReason | None = None
    reader: web.BaseRequest | None = None
    connections: set[asyncio.Transport] = field(default_factory=set)
    """Transports of the open TS reads, to cut them on supersession."""
    stat_calls: int = 0
    served: int = 0


class SimEngine:
    """An AceStream engine for tests, demos and benchmarks. Serve `app` with aiohttp.

    `counters` keys: `start` (a session created), `start_reused` (a start that got the
    playing session of the same content, pid and format back), `start_failed`, `stop` (a
    stop that went through), `stop_unknown`, `stat`, `playback` (GETs of a playback_url,
    TS or HLS), `content_read` (TS bodies opened, the corrupt ones included),
    `corrupt_read` (a second concurrent reader got garbage), `playlist` (media and
    multivariant playlists), `segment`, `init` (fMP4 init sections), `key` (AES-128 keys),
    `segment_missing` (a segment, init section or key not on offer), `injected_error` (a
    playlist or segment answered with the status its fault names), `segment_broken` (a
    segment body stalled or cut by a fault), `version`, `status`.
    """

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` is the engine's notion of now, in seconds, for the channel's live edge
        and idle expiry; a test can pass one it steps by hand. Pacing of TS reads always
        follows the event loop's real time."""
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
        self.faults = Faults()
        self.sessions: list[SimSession] = []
        self.counters: collections.Counter[str] = collections.Counter()
        self.requests: list[str] = []
        self.unexpected: list[str] = []
        self.crossed_stops: list[tuple[SimSession, SimSession]] = []
        """(the session a stop named, a newer live session of its content that the stop
        ended): on a real engine, a proxy's late stop kills the stream that replaced it."""
        # Only the sessions still playing: every request scans them, and a long benchmark
        # creates thousands. Ended ones stay reachable by token for stat and stop.
        self._playing: dict[str, _Live] = {}
        self._by_token: dict[str, _Live] = {}
        self._by_content_token: dict[str, _Live] = {}
        self._clocks: dict[str, float] = {}
        self._changes = Changes()
        self._closing = asyncio.Event()
        self._padded: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._flavours: _FlavourMedia | None = None
        self.app = self._make_app()

    def active(self) -> list[SimSession]:
        """Sessions that are not stopped, superseded or expired."""
        self._expire()
        return [live.session for live in self._playing.values()]

    async def wait_for(self, counter: str, n: int = 1, timeout: float = 5.0) -> None:
        """Until `counters[counter] >= n`; TimeoutError after `timeout` seconds."""
        await self.wait_until(lambda: self.counters[counter] >= n, timeout)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Until `predicate()` holds; it is checked after every counted event or session end."""
        await self._changes.wait_until(predicate, timeout)

    def __repr__(self) -> str:
        live = len(self._playing)
        return f"<SimEngine {live} live of {len(self.sessions)} sessions, faults={self.faults}>"

    # --- wiring -------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        @web.middleware
        async def observe(request: web.Request, handler: _Handler) -> web.StreamResponse:
            return await self._observe(request, handler)

        app = web.Application(middlewares=[observe])
        app.router.add_get("/ace/getstream", self._start_ts)
        app.router.add_get("/ace/manifest.m3u8", self._start_hls)
        app.router.add_get("/ace/r/{infohash}/{token}", self._ts_playback)
        app.router.add_get("/content/{infohash}/{token}", self._content, allow_head=False)
        app.router.add_get(
            r"/ace/m/{infohash}/{token:[^/.]+}.m3u8", self._playlist, name="media.m3u8"
        )
        app.router.add_get(
            r"/ace/m/{infohash}/{token:[^/.]+}/{variant:high|low}.m3u8",
            self._variant_playlist,
            name="variant.m3u8",
        )
        app.router.add_get(
            r"/ace/c/{infohash}/{n:\d+}.{ext:ts|m4s}", self._segment, name="high.seg"
        )
        app.router.add_get(
            r"/ace/c/{infohash}/{variant:low}/{n:\d+}.{ext:ts}", self._segment, name="low.seg"
        )
        app.router.add_get("/ace/c/{infohash}/init.mp4", self._init_section, name="init.seg")
        app.router.add_get("/ace/c/{infohash}/key.bin", self._key, name="key.seg")
        app.router.add_get("/ace/stat/{infohash}/{token}", self._stat)
        app.router.add_get("/ace/cmd/{infohash}/{token}", self._command)
        app.router.add_get("/webui/api/service", self._service)
        app.router.add_get("/server/api", self._server_api)
        app.router.add_route("*", "/{tail:.*}", self._unexpected)
        app.cleanup_ctx.append(self._background)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _observe(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        self._wake()
        self._expire()
        if self.faults.down:
            return _drop(request)
        redirect = self.faults.redirect_to
        if (
            redirect is not None
            and request.path.startswith(("/ace/c/", "/ace/r/"))
            and "moved" not in request.query
        ):
            raise web.HTTPFound(redirect.format(path=request.path))
        status = self._injected_status(request.match_info.route.name)
        if status is not None:
            self._count("injected_error")
            return web.Response(status=status, text=f"injected error {status}")
        return await handler(request)

    def _injected_status(self, route: str | None) -> int | None:
        """The status a playlist or segment fault answers this route with, if any."""
        if route is None:
            return None
        if route.endswith(".m3u8"):
            return self.faults.playlist_error
        if route.endswith(".seg"):
            return self.faults.segment_error
        return None

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

    # --- starting sessions --------------------------------------------------------------

    async def _start_ts(self, request: web.Request) -> web.StreamResponse:
        return await self._start(request, "ts")

    async def _start_hls(self, request: web.Request) -> web.StreamResponse:
        return await self._start(request, "hls")

    async def _start(self, request: web.Request, fmt: Format) -> web.StreamResponse:
        json_mode = request.query.get("format") == "json"
        named = _content(request.query)
        if named is None:
            return web.Response(status=500, text="Internal Server Error: missing content id")
        kind, value = named
        if self.faults.start_delay > 0 and not await self._sleep(self.faults.start_delay):
            return _drop(request)
        error = self.faults.error
        if error is None and not _loadable(kind, value):
            if not await self._sleep(self.unknown_content_delay):
                return _drop(request)
            error = _LOAD_FAILED
        if error is not None:
            self._count("start_failed")
            if json_mode:
                return _envelope(None, error)
            return web.Response(status=500, text=error)

        flavour = _flavour(kind, value) if fmt == "hls" else "mpegts"
        if flavour != "mpegts":
            # Loaded before the session exists: broken media fail the start, not a session.
            self._flavour_media()
        live = self._open(request, fmt, kind, value, flavour)
        session = live.session
        base = f"http://{request.host}"
        path = f"{session.infohash}/{session.token}"
        playback = f"{base}/ace/r/{path}" if fmt == "ts" else f"{base}/ace/m/{path}.m3u8"
        if not json_mode:
            raise web.HTTPFound(playback)
        return _envelope(
            {
                "playback_url": playback,
                "stat_url": f"{base}/ace/stat/{path}",
                "command_url": f"{base}/ace/cmd/{path}",
                "infohash": session.infohash,
                "playback_session_id": session.playback_session_id,
                "is_live": 1,
                "is_encrypted": 0,
                "client_session_id": -1,
            }
        )

    def _open(
        self, request: web.Request, fmt: Format, kind: str, value: str, flavour: HlsFlavour
    ) -> _Live:
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
        live = _Live(session, secrets.token_hex(16), t0, 0, now)
        live.first_segment = max(0, self._newest(live) - self.hls_initial_window + 1)
        self.sessions.append(session)
        self._playing[session.token] = live
        self._by_token[session.token] = live
        self._by_content_token[live.content_token] = live
        log.info(
            "session %s of %s started (%s %s, pid %r)", session.token, infohash, fmt, flavour, pid
        )
        self._count("start")
        return live

    # --- MPEG-TS ------------------------------------------------------------------------

    async def _ts_playback(self, request: web.Request) -> web.StreamResponse:
        self._count("playback")
        live = self._session(request)
        if live is None or live.session.fmt != "ts":
            raise web.HTTPNotFound()
        live.last_seen = self._now()
        raise web.HTTPFound(
            f"http://{request.host}/content/{live.session.infohash}/{live.content_token}"
        )

    async def _content(self, request: web.Request) -> web.StreamResponse:
        live = self._by_content_token.get(request.match_info["token"])
        if (
            live is None
            or live.session.infohash != request.match_info["infohash"]
            or not live.session.live
        ):
            raise web.HTTPNotFound()
        live.last_seen = self._now()
        live.session.reads += 1
        self._count("content_read")
        transport = request.transport
        if transport is None:
            raise web.HTTPNotFound()
        live.connections.add(transport)
        live.session.open_reads += 1
        try:
            if live.reader is not None:
                self._count("corrupt_read")
                return await self._garbage(request)
            live.reader = request
            try:
                return await self._stream(request, live)
            finally:
                live.reader = None
        finally:
            live.connections.discard(transport)
            live.session.open_reads -= 1
            live.last_seen = self._now()
            self._wake()

    async def _stream(self, request: web.Request, live: _Live) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "video/mp2t"})
        header_delay = self.faults.header_delay
        if header_delay > 0 and not await self._pause(request, live, header_delay):
            if live.end_reason == "supersede":
                return _drop(request)
            return web.Response(status=404, text="Not Found")
        # Taken once per read: a fault set mid-read applies to the next one.
        stall, cut = self.faults.stall_after, self.faults.cut_after
        limit = min((x for x in (stall, cut) if x is not None), default=None)
        cutting = cut is not None and cut == limit
        try:
            await resp.prepare(request)
            sent = 0
            n = max(0, self._newest(live) - self.prebuffer_segments + 1)
            burst = self.prebuffer_segments
            due = time.monotonic()
            while True:
                data = self._segment_bytes(n)
                if burst > 0:
                    chunks = [data]
                    spacing = 0.0
                    burst -= 1
                else:
                    chunks = _slices(data, self.media.duration(n) / self.time_scale)
                    spacing = self.media.duration(n) / self.time_scale / len(chunks)
                for chunk in chunks:
                    wait = due - time.monotonic()
                    if wait > 0 and not await self._pause(request, live, wait):
                        return await _finish(request, resp, live)
                    due += spacing
                    if limit is not None and sent + len(chunk) >= limit:
                        await resp.write(chunk[: limit - sent])
                        live.served += limit - sent
                        if cutting:
                            await _flushed(request)
                            return _drop(request, resp)
                        await self._pause(request, live, math.inf)
                        return await _finish(request, resp, live)
                    await resp.write(chunk)
                    sent += len(chunk)
                    live.served += len(chunk)
                if spacing == 0.0:
                    due = time.monotonic()
                n += 1
        except ConnectionError:
            return resp

    async def _garbage(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "video/mp2t"})
        noise = bytearray(os.urandom(_GARBAGE_BYTES))
        # Never a sync byte where a packet would start: this must not pass for TS.
        for at in range(0, len(noise), PACKET_SIZE):
            if noise[at] == SYNC_BYTE:
                noise[at] ^= 0xFF
        with contextlib.suppress(ConnectionError):
            await resp.prepare(request)
            await resp.write(bytes(noise))
            await resp.write_eof()
        return resp

    # --- HLS ----------------------------------------------------------------------------

    async def _playlist(self, request: web.Request) -> web.StreamResponse:
        self._count("playback")
        self._count("playlist")
        live = self._playlist_session(request)
        if live.session.flavour == "multivariant":
            return _playlist_response(self._multivariant_playlist(request.host, live))
        return _playlist_response(self._media_playlist(request.host, live))

    async def _variant_playlist(self, request: web.Request) -> web.StreamResponse:
        self._count("playlist")
        live = self._playlist_session(request)
        if live.session.flavour != "multivariant":
            raise web.HTTPNotFound()
        return _playlist_response(
            self._media_playlist(request.host, live, request.match_info["variant"])
        )

    def _playlist_session(self, request: web.Request) -> _Live:
        """The session a playlist URL names, or the error the engine answers for it."""
        live = self._by_token.get(request.match_info["token"])
        if (
            live is None
            or live.session.infohash != request.match_info["infohash"]
            or live.session.fmt != "hls"
            or live.session.expired
        ):
            raise web.HTTPNotFound()
        if live.session.superseded:
            raise web.HTTPForbidden()
        if live.session.stopped:
            raise web.HTTPInternalServerError()
        live.last_seen = self._now()
        return live

    def _media_playlist(self, host: str, live: _Live, variant: str = "high") -> str:
        flavour = live.session.flavour
        first, newest = self._window(live)
        numbers = range(first, newest + 1)
        durations = [self.media.duration(n) for n in numbers]
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{7 if flavour == 'fmp4' else 3}",
            f"#EXT-X-TARGETDURATION:{math.ceil(max(durations)) + 1}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
            *(line.replace("{host}", host) for line in self.faults.playlist_lines),
        ]
        base = f"http://{host}/ace/c/{live.session.infohash}"
        aes = self._flavour_media().aes if flavour == "aes-128" else None
        if flavour == "fmp4":
            lines.append(f'#EXT-X-MAP:URI="{base}/init.mp4"')
        if aes is not None:
            lines += [
                f"#EXT-X-DISCONTINUITY-SEQUENCE:{aes.discontinuity_sequence(first)}",
                f'#EXT-X-KEY:METHOD=AES-128,URI="{base}/key.bin",IV=0x{aes.iv.hex()}',
            ]
        if variant == "low":
            base += "/low"
        ext = "m4s" if flavour == "fmp4" else "ts"
        for n, duration in zip(numbers, durations, strict=True):
            if aes is not None and aes.loops_back(n):
                lines.append("#EXT-X-DISCONTINUITY")
            lines += [f"#EXTINF:{duration:.6f},", f"{base}/{n}.{ext}"]
        return "\n".join(lines) + "\n"

    def _multivariant_playlist(self, host: str, live: _Live) -> str:
        s = live.session
        base = f"http://{host}/ace/m/{s.infohash}/{s.token}"
        rates = {
            "high": _peak_bitrate(self.media, self.bitrate),
            "low": _peak_bitrate(self._flavour_media().low, None),
        }
        lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
        for variant in _VARIANTS:
            lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={rates[variant]}", f"{base}/{variant}.m3u8"]
        return "\n".join(lines) + "\n"

    async def _segment(self, request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        ext = request.match_info["ext"]
        variant = request.match_info.get("variant", "high")
        live = self._hls_session(request.match_info["infohash"])
        if live is not None and _offers(live.session.flavour, ext, variant):
            first, newest = self._window(live)
            if max(0, first - _SEGMENT_SLACK) <= n <= newest:
                live.last_seen = self._now()
                data = self._hls_segment(live.session.flavour, variant, n)
                live.served += len(data)
                self._count("segment")
                faults = self.faults
                if faults.segment_stall_after is None and faults.segment_cut_after is None:
                    return web.Response(body=data, content_type=_SEGMENT_TYPES[ext])
                return await self._broken_segment(request, live, data, _SEGMENT_TYPES[ext])
        self._count("segment_missing")
        raise web.HTTPNotFound()

    async def _broken_segment(
        self, request: web.Request, live: _Live, data: bytes, content_type: str
    ) -> web.StreamResponse:
        """A segment whose body breaks off after the headers promised all of it."""
        stall, cut = self.faults.segment_stall_after, self.faults.segment_cut_after
        limit = min(x for x in (stall, cut) if x is not None)
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        resp.content_length = len(data)
        with contextlib.suppress(ConnectionError):
            await resp.prepare(request)
            await resp.write(data[:limit])
            if limit == cut:
                await _flushed(request)
            else:
                await self._pause(request, live, math.inf)
        self._count("segment_broken")
        return _drop(request, resp)

    async def _init_section(self, request: web.Request) -> web.StreamResponse:
        live = self._hls_session(request.match_info["infohash"])
        if live is None or live.session.flavour != "fmp4":
            self._count("segment_missing")
            raise web.HTTPNotFound()
        return self._whole(live, "init", self._flavour_media().fmp4.init, "video/mp4")

    async def _key(self, request: web.Request) -> web.StreamResponse:
        live = self._hls_session(request.match_info["infohash"])
        if live is None or live.session.flavour != "aes-128":
            self._count("segment_missing")
            raise web.HTTPNotFound()
        key = self._flavour_media().aes.key
        return self._whole(live, "key", key, "application/octet-stream")

    def _whole(self, live: _Live, counter: str, data: bytes, content_type: str) -> web.Response:
        live.last_seen = self._now()
        live.served += len(data)
        self._count(counter)
        return web.Response(body=data, content_type=content_type)

    def _hls_session(self, infohash: str) -> _Live | None:
        """The playing HLS session of a content; a start supersedes any other, so one at most."""
        return next(
            (
                live
                for live in self._playing.values()
                if live.session.fmt == "hls" and live.session.infohash == infohash
            ),
            None,
        )

    def _hls_segment(self, flavour: HlsFlavour, variant: str, n: int) -> bytes:
        if flavour == "mpegts" or (flavour == "multivariant" and variant == "high"):
            return self._segment_bytes(n)
        media = self._flavour_media()
        if flavour == "fmp4":
            return media.fmp4.segment(n)
        if flavour == "aes-128":
            return media.aes.segment(n)
        return media.low.segment(n)

    def _flavour_media(self) -> _FlavourMedia:
        if self._flavours is None:
            self._flavours = _FlavourMedia.load(MEDIA_DIR, self.media)
        return self._flavours

    def _window(self, live: _Live) -> tuple[int, int]:
        newest = self._newest(live)
        return max(live.first_segment, newest - self.hls_window + 1), newest

    def _newest(self, live: _Live) -> int:
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

    # --- stat, stop, service ------------------------------------------------------------

    async def _stat(self, request: web.Request) -> web.StreamResponse:
        self._count("stat")
        live = self._session(request)
        if live is None:
            return _envelope(None, _UNKNOWN_SESSION)
        live.stat_calls += 1
        if live.stat_calls == 1:
            return _envelope({})
        status = (
            _STAT_STATUSES[live.stat_calls - 2]
            if live.stat_calls - 2 < len(_STAT_STATUSES)
            else "dl"
        )
        downloading = status == "dl"
        rate = self._byte_rate() / 1024 if downloading else 0.0
        elapsed = int((self._now() - live.t0) * self.time_scale)
        pos = _LIVEPOS_EPOCH + elapsed
        s = live.session
        return _envelope(
            {
                "status": status,
                "peers": 4 if downloading else 0,
                "speed_down": round(rate),
                "speed_up": round(rate / 9),
                "downloaded": live.served,
                "uploaded": live.served // 9,
                "total_progress": 0,
                "is_live": 1,
                "infohash": s.infohash,
                "playback_session_id": s.playback_session_id,
                "livepos": {
                    "pos": str(pos),
                    "last": str(pos),
                    "live_first": str(_LIVEPOS_EPOCH),
                    "live_last": str(pos),
                    "first_ts": str(_LIVEPOS_EPOCH),
                    "last_ts": str(pos),
                    "buffer_pieces": "15" if downloading else "0",
                    "is_live": "1",
                },
            }
        )

    async def _command(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("method") != "stop":
            return _envelope(None, "unknown method")
        if self.faults.stop_delay > 0 and not await self._sleep(self.faults.stop_delay):
            return _drop(request)
        live = self._by_token.get(request.match_info["token"])
        if live is not None and live.session.infohash == request.match_info["infohash"]:
            live.session.stops += 1
        # A superseded session no longer serves, but the engine still knows it: its stop
        # goes through, and ends whatever session now plays the content.
        if (
            live is None
            or live.session.infohash != request.match_info["infohash"]
            or live.session.stopped
            or live.session.expired
        ):
            self._count("stop_unknown")
            return _envelope(None, _UNKNOWN_SESSION)
        # A stop ends the content on this engine, whichever pid its sessions were opened with.
        for other in list(self._playing.values()):
            if other.session.infohash == live.session.infohash:
                log.info("session %s of %s stopped", other.session.token, other.session.infohash)
                if other is not live:
                    log.warning("stop of %s ended %s", live.session.token, other.session.token)
                    self.crossed_stops.append((live.session, other.session))
                self._end(other, "stop")
        live.session.stopped = True
        self._count("stop")
        return _envelope("ok")

    async def _service(self, request: web.Request) -> web.StreamResponse:
        self._count("version")
        if request.query.get("method") != "get_version":
            return web.json_response({"result": None, "error": "unknown method"})
        return web.json_response({"result": dict(_VERSION), "error": None})

    async def _server_api(self, request: web.Request) -> web.StreamResponse:
        self._count("status")
        if request.query.get("method") != "get_status":
            return web.json_response({"result": None, "error": "unknown method"})
        result = {"playlist_loaded": True, "version": dict(_VERSION)}
        return web.json_response({"result": result, "error": None})

    async def _unexpected(self, request: web.Request) -> web.StreamResponse:
        self.unexpected.append(f"{request.method} {request.path_qs}")
        log.warning("unexpected request %s %s", request.method, request.path_qs)
        raise web.HTTPNotFound()

    # --- state --------------------------------------------------------------------------

    def _session(self, request: web.Request) -> _Live | None:
        """The live session a /ace/<kind>/<infohash>/<token> URL names."""
        live = self._by_token.get(request.match_info["token"])
        if live is None or live.session.infohash != request.match_info["infohash"]:
            return None
        return live if live.session.live else None

    def _end(self, live: _Live, reason: _EndReason) -> None:
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

    def _count(self, key: str) -> None:
        self.counters[key] += 1
        self._wake()

    def _wake(self) -> None:
        self._changes.notify()

    def _byte_rate(self) -> float:
        if self.bitrate is not None:
            return self.bitrate / 8
        count = self.media.segment_count
        total = sum(len(self.media.segment(n)) for n in range(count))
        return total / self.media.loop_duration

    async def _sleep(self, delay: float) -> bool:
        """Sleep unless the engine shuts down first; False if it did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._closing.wait()
        return not self._closing.is_set()

    @staticmethod
    async def _pause(request: web.BaseRequest, live: _Live, delay: float) -> bool:
        """Wait `delay` seconds; False as soon as the session ends or the client goes away."""
        deadline = time.monotonic() + delay
        while True:
            if live.ended.is_set() or _gone(request):
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, _POLL_SECONDS)):
                    await live.ended.wait()


def _content(query: Mapping[str, str]) -> tuple[str, str] | None:
    for name in _CONTENT_PARAMS:
        value = query.get(name)
        if value:
            return ("content_id" if name == "id" else name), value
    return None


def _loadable(kind: str, value: str) -> bool:
    if kind in ("content_id", "infohash"):
        return bool(_HEX40.fullmatch(value)) and not value.lower().startswith("dead")
    return True


def _sha1(value: str) -> str:
    return hashlib.sha1(value.encode()).hexdigest()


def _envelope(response: Any, error: str | None = None) -> web.Response:
    return web.json_response({"response": response, "error": error})


def _slices(data: bytes, seconds: float) -> list[bytes]:
    """Cut a segment into whole-packet pieces, one per ~40 ms of its playing time."""
    packets = len(data) // PACKET_SIZE
    pieces = max(1, min(packets, round(seconds / _SLICE_SECONDS)))
    bounds = [i * packets // pieces * PACKET_SIZE for i in range(pieces)] + [len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def _gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _drop(request: web.BaseRequest, resp: web.StreamResponse | None = None) -> web.StreamResponse:
    """Close the connection with no (further) answer. aiohttp finds the transport closed
    when it finishes the response, and lets it go quietly."""
    if request.transport is not None:
        request.transport.abort()
    return resp if resp is not None else web.Response()


async def _flushed(request: web.BaseRequest) -> None:
    """Until what was written has left the transport, so that a cut comes after exactly
    the bytes the fault names (the kernel still delivers its own buffer after a close)."""
    transport = request.transport
    for _ in range(200):
        if transport is None or transport.is_closing() or not transport.get_write_buffer_size():
            return
        await asyncio.sleep(0.01)


async def _finish(
    request: web.BaseRequest, resp: web.StreamResponse, live: _Live
) -> web.StreamResponse:
    """End a TS body the way the session ended: cut on supersession, a clean end otherwise."""
    if live.end_reason == "supersede" or _gone(request):
        return _drop(request, resp)
    with contextlib.suppress(ConnectionError):
        await resp.write_eof()
    return resp


def _flavour(kind: str, value: str) -> HlsFlavour:
    if kind in ("content_id", "infohash"):
        lowered = value.lower()
        for prefix, flavour in FLAVOUR_PREFIXES.items():
            if lowered.startswith(prefix):
                return flavour
    return "mpegts"


def _offers(flavour: HlsFlavour, ext: str, variant: str) -> bool:
    """Whether a session of `flavour` has segments named `<variant>/<n>.<ext>`."""
    if flavour == "fmp4":
        return ext == "m4s" and variant == "high"
    return ext == "ts" and (variant == "high" or flavour == "multivariant")


def _playlist_response(text: str) -> web.Response:
    return web.Response(text=text, content_type=_PLAYLIST_TYPE)


def _peak_bitrate(loop: MediaLoop, padded_to: int | None) -> int:
    """The highest bitrate of any one segment, in bit/s: what BANDWIDTH must not fall below."""
    peak = max(len(loop.segment(i)) * 8 / loop.duration(i) for i in range(loop.segment_count))
    return math.ceil(max(peak, padded_to or 0))


# --- media of the HLS flavours ------------------------------------------------------------


@dataclass(frozen=True)
class _FlavourMedia:
    low: MediaLoop
    fmp4: _Fmp4Loop
    aes: _AesLoop

    @classmethod
    def load(cls, directory: Path, timeline: MediaLoop) -> _FlavourMedia:
        """Read the flavours from `directory`, and check that they follow `timeline`."""
        low = MediaLoop.load(directory / "low")
        if low.segment_count != timeline.segment_count or any(
            abs(low.duration(i) - timeline.duration(i)) > 0.001
            for i in range(timeline.segment_count)
        ):
            raise ValueError(f"{directory / 'low'} has other segments than the channel's media")
        fmp4_dir, aes_dir = directory / "fmp4", directory / "aes"
        fmp4 = _Fmp4Loop(
            (fmp4_dir / "init.mp4").read_bytes(),
            _numbered(fmp4_dir, "m4s"),
            timeline,
        )
        aes = _AesLoop(
            _numbered(aes_dir, "ts"),
            key=(aes_dir / "key.bin").read_bytes(),
            iv=(aes_dir / "iv.bin").read_bytes(),
        )
        if len(aes.segments) != timeline.segment_count:
            raise ValueError(f"{aes_dir} has other segments than the channel's media")
        return cls(low, fmp4, aes)


def _numbered(directory: Path, ext: str) -> list[bytes]:
    """The bytes of seg0.<ext>, seg1.<ext>, ... in `directory`."""
    found = sorted(
        (int(m.group(1)), path)
        for path in directory.iterdir()
        if (m := re.fullmatch(rf"seg(\d+)\.{ext}", path.name))
    )
    if [n for n, _ in found] != list(range(len(found))) or not found:
        raise FileNotFoundError(f"no seg0.{ext}, seg1.{ext}, ... in {directory}")
    return [path.read_bytes() for _, path in found]


@dataclass(frozen=True)
class _AesLoop:
    """Encrypted MPEG-TS segments, played in a loop.

    Their timestamps cannot be moved on without the cipher, so each loop starts a new
    discontinuity: segment n opens one when it is the first of a loop (n > 0).
    """

    segments: list[bytes]
    key: bytes
    iv: bytes

    def __post_init__(self) -> None:
        if len(self.key) != 16 or len(self.iv) != 16:
            raise ValueError("an AES-128 key and IV are 16 bytes each")
        if not self.segments or any(len(s) % 16 for s in self.segments):
            raise ValueError("AES-128 segments are whole 16-byte blocks")

    def segment(self, n: int) -> bytes:
        return self.segments[n % len(self.segments)]

    def loops_back(self, n: int) -> bool:
        return n > 0 and n % len(self.segments) == 0

    def discontinuity_sequence(self, first: int) -> int:
        """EXT-X-DISCONTINUITY-SEQUENCE of a window starting at `first`: the discontinuities
        that have left it."""
        return max(0, (first - 1) // len(self.segments))


_CONTAINER_BOXES = frozenset({b"moov", b"trak", b"mdia", b"moof", b"traf"})


@dataclass(frozen=True, slots=True)
class _Field:
    """A decode or presentation time in an fMP4 segment, and how far one loop moves it."""

    offset: int
    size: int
    """Bytes: 4 or 8."""
    per_loop: int
    """Ticks of the field's timescale in one loop."""


class _Fmp4Loop:
    """fMP4 media segments of a loop, played forever: segment n is segment n % count with
    every `tfdt` and `sidx` time moved on by whole loops and the `mfhd` sequence number
    set to n + 1, so that decode times only grow."""

    def __init__(self, init: bytes, segments: list[bytes], timeline: MediaLoop) -> None:
        if len(segments) != timeline.segment_count:
            raise ValueError("the fMP4 media has another number of segments than the channel's")
        self.init = init
        self._segments = segments
        scales = _timescales(init)
        self._fields: list[list[_Field]] = []
        self._sequence_numbers: list[int] = []
        starts: list[dict[int, int]] = []
        for data in segments:
            fields, sequence, decode_times = _fragment_fields(data, scales, timeline.loop_duration)
            self._fields.append(fields)
            self._sequence_numbers.append(sequence)
            starts.append(decode_times)
        for i, decode_times in enumerate(starts):
            for track, ticks in decode_times.items():
                offset = (ticks - starts[0][track]) / scales[track]
                # The muxer cuts audio a few frames off the video's keyframe; a segment
                # of another length would be a second or more off.
                if abs(offset - timeline.start(i)) > 0.25:
                    raise ValueError(f"fMP4 segment {i} of track {track} is off the timeline")

    def segment(self, n: int) -> bytes:
        if n < 0:
            raise ValueError(f"segment numbers start at 0, got {n}")
        loops, i = divmod(n, len(self._segments))
        out = bytearray(self._segments[i])
        for f in self._fields[i]:
            value = int.from_bytes(out[f.offset : f.offset + f.size], "big") + loops * f.per_loop
            out[f.offset : f.offset + f.size] = (value % (1 << 8 * f.size)).to_bytes(f.size, "big")
        at = self._sequence_numbers[i]
        out[at : at + 4] = ((n + 1) % (1 << 32)).to_bytes(4, "big")
        return bytes(out)


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int]]:
    """(type, payload offset) of every ISO BMFF box in `data[start:end]`, depth first."""
    end = len(data) if end is None else end
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, at + 8)
            header = 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            raise ValueError(f"a malformed {kind!r} box at byte {at}")
        yield kind, at + header
        if kind in _CONTAINER_BOXES:
            yield from _boxes(data, at + header, at + size)
        at += size


def _timescales(init: bytes) -> dict[int, int]:
    """{track id: media timescale} from an init section."""
    scales: dict[int, int] = {}
    track: int | None = None
    for kind, at in _boxes(init):
        # Version 1 boxes have 64-bit creation and modification times ahead of the field.
        skip = 20 if init[at] == 1 else 12
        if kind == b"tkhd":
            (track,) = struct.unpack_from(">I", init, at + skip)
        elif kind == b"mdhd" and track is not None:
            (scales[track],) = struct.unpack_from(">I", init, at + skip)
    if not scales:
        raise ValueError("the fMP4 init section has no tracks")
    return scales


def _fragment_fields(
    data: bytes, scales: Mapping[int, int], loop_seconds: float
) -> tuple[list[_Field], int, dict[int, int]]:
    """The time fields of a media segment, the offset of its sequence number, and each
    track's base decode time."""

    def per_loop(timescale: int) -> int:
        ticks = loop_seconds * timescale
        if abs(ticks - round(ticks)) > 1e-6:
            raise ValueError(f"a loop of {loop_seconds} s is no whole number of 1/{timescale} s")
        return round(ticks)

    fields: list[_Field] = []
    sequence: int | None = None
    decode_times: dict[int, int] = {}
    track: int | None = None
    for kind, at in _boxes(data):
        size = 8 if data[at] == 1 else 4
        if kind == b"mfhd":
            sequence = at + 4
        elif kind == b"tfhd":
            (track,) = struct.unpack_from(">I", data, at + 4)
        elif kind == b"tfdt" and track is not None and track in scales:
            fields.append(_Field(at + 4, size, per_loop(scales[track])))
            decode_times[track] = int.from_bytes(data[at + 4 : at + 4 + size], "big")
        elif kind == b"sidx":
            (timescale,) = struct.unpack_from(">I", data, at + 8)
            fields.append(_Field(at + 12, size, per_loop(timescale)))
    if sequence is None or decode_times.keys() != scales.keys():
        raise ValueError("an fMP4 media segment without mfhd or a tfdt for every track")
    return fields, sequence, decode_times
