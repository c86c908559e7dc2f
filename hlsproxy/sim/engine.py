"""A simulated AceStream engine: the HTTP API a proxy meets, served by a real aiohttp app.

It follows docs/ARCHITECTURE.md, "The AceStream engine": the `format=json` envelope, one session
per content (a different pid or output format supersedes it), a stop that ends every
session of the content, one reader per progressive stream (a second one gets garbage), an
HLS window that grows then slides with the clock, stat progression, idle expiry. Tests steer
it through `faults` and read what happened from `sessions`, `counters` and `requests`.

The engine is built in layers, one concern each: `sessions` (what it knows), `ts_reads`
(MPEG-TS playback), `hls_serving` (playlists and segments, in the `flavours` some content
plays in), and this module, the starts, stat, stop and service calls that bind them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .faults import Faults
from .flavours import FLAVOUR_PREFIXES, HlsFlavour, flavour_of
from .hls_serving import HlsServing
from .server import Handler, drop
from .sessions import Format, SimSession
from .ts_reads import TsReads

log = logging.getLogger(__name__)

__all__ = ["FLAVOUR_PREFIXES", "Faults", "Format", "HlsFlavour", "SimEngine", "SimSession"]

# Identifier parameters in the engine's order of precedence; `id` is `content_id`'s alias.
_CONTENT_PARAMS = ("content_id", "id", "infohash", "url", "magnet", "direct_url")
_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_VERSION = {"code": 3020300, "platform": "linux", "version": "3.2.3"}
_UNKNOWN_SESSION = "unknown playback session id"
_LOAD_FAILED = "failed to load content"
_LIVEPOS_EPOCH = 1_700_000_000
_STAT_STATUSES = ("idle", "prebuf")


class SimEngine(TsReads, HlsServing):
    """An AceStream engine for tests, demos and benchmarks. Serve `app` with aiohttp.

    `counters` keys: `start` (a session created), `start_reused` (a start that got the
    playing session of the same content, pid and format back), `start_failed`, `stop` (a
    stop that went through), `stop_unknown`, `stat`, `playback` (GETs of a playback_url,
    TS or HLS), `content_read` (TS bodies opened, the corrupt ones included),
    `corrupt_read` (a second concurrent reader got garbage), `playlist` (media and
    multivariant playlists), `segment`, `init` (fMP4 init sections), `key` (AES-128 keys),
    `segment_missing` (a segment, init section or key not on offer), `injected_error` (a
    playlist or segment answered with the HTTP error its fault names), `segment_broken` (a
    segment body stalled or cut by a fault), `version`, `status`.
    """

    def __repr__(self) -> str:
        live = len(self._playing)
        return f"<SimEngine {live} live of {len(self.sessions)} sessions, faults={self.faults}>"

    # --- wiring -------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
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

    async def _observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        self._wake()
        self._expire()
        if self.faults.down:
            return drop(request)
        redirect = self.faults.redirect_to
        if (
            redirect is not None
            and request.path.startswith(("/ace/c/", "/ace/r/"))
            and "moved" not in request.query
        ):
            raise web.HTTPFound(redirect.format(path=request.path))
        route = request.match_info.route.name
        delay = self.faults.playlist_delay
        slow = delay > 0 and route is not None and route.endswith(".m3u8")
        if slow and not await self._sleep(delay):
            return drop(request)
        code = self._injected_error(route)
        if code is not None:
            self._count("injected_error")
            return web.Response(status=code, text=f"injected error {code}")
        return await handler(request)

    def _injected_error(self, route: str | None) -> int | None:
        """The HTTP error a playlist or segment fault answers this route with, if any."""
        if route is None:
            return None
        if route.endswith(".m3u8"):
            return self.faults.playlist_error
        if route.endswith(".seg"):
            return self.faults.segment_error
        return None

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
            return drop(request)
        error = self.faults.error
        if error is None and not _loadable(kind, value):
            if not await self._sleep(self.unknown_content_delay):
                return drop(request)
            error = _LOAD_FAILED
        if error is not None:
            self._count("start_failed")
            if json_mode:
                return _envelope(None, error)
            return web.Response(status=500, text=error)

        flavour = flavour_of(kind, value) if fmt == "hls" else "mpegts"
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

    # --- stat, stop, service ------------------------------------------------------------

    async def _stat(self, request: web.Request) -> web.StreamResponse:
        self._count("stat")
        live = self._session(request)
        if live is None:
            return _envelope(None, _UNKNOWN_SESSION)
        live.stat_calls += 1
        prebuffering = self.prebuffering(live)
        if live.stat_calls == 1 and prebuffering is None:
            return _envelope({})
        status = (
            _STAT_STATUSES[live.stat_calls - 2]
            if 0 <= live.stat_calls - 2 < len(_STAT_STATUSES)
            else "dl"
        )
        progress = 0
        if prebuffering is not None:
            status = "prebuf"
            waited, left = prebuffering
            progress = int(100 * waited / (waited + left))
        downloading = status == "dl"
        rate = self._byte_rate() / 1024 if downloading else 0.0
        elapsed = int((self._now() - live.t0) * self.time_scale)
        pos = _LIVEPOS_EPOCH + elapsed
        s = live.session
        return _envelope(
            {
                "status": status,
                "peers": 4 if downloading else _peers_found(progress),
                "speed_down": round(rate) if downloading else 120 * _peers_found(progress),
                "progress": progress,
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
            return drop(request)
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

    def _byte_rate(self) -> float:
        if self.bitrate is not None:
            return self.bitrate / 8
        count = self.media.segment_count
        total = sum(len(self.media.segment(n)) for n in range(count))
        return total / self.media.loop_duration


def _peers_found(progress: int) -> int:
    """Peers a prebuffering channel has found, `progress` percent through its prebuffer."""
    return 1 + progress * 7 // 100


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


def _envelope(response: Any, error: str | None = None) -> web.Response:
    return web.json_response({"response": response, "error": error})
