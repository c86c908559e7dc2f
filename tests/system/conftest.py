"""Real players for the end-to-end tests: headless Chromium running hls.js, on 127.0.0.1.

The page and hls.js come from their own origin, so every playlist, segment and key the
player fetches from a stream's origin is a cross-origin request, as on a real site: a
missing CORS header fails here the way it fails for users. ffmpeg-made VOD streams served by
a static origin test the harness itself; the simulated engine's flavours (MPEG-TS, fMP4,
AES-128, multivariant) test the proxy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import BrowserContext, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[2]
HLS_JS = ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.js"
PLAYER_PAGE = Path(__file__).with_name("player.html")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
]

STREAM_SECONDS = 8
SEGMENT_SECONDS = 2


# --- what the page reports --------------------------------------------------------------


@dataclass(frozen=True)
class HlsError:
    type: str
    details: str
    fatal: bool
    url: str | None
    status: int | None


@dataclass(frozen=True, repr=False)
class PlayerStats:
    """A snapshot of the page's `window.stats`; times are seconds."""

    hls_version: str
    levels: int
    fragments: list[str]
    """URLs of the media fragments hls.js loaded, in order (init segments not included)."""
    keys: int
    errors: list[HlsError]
    samples: list[tuple[float, float]]
    """(page clock, video.currentTime) from the first "playing" event on."""
    current_time: float
    playing_for: float
    """Page clock seconds since the first "playing" event; 0 until then."""
    ended: bool

    @classmethod
    def from_page(cls, raw: dict[str, Any]) -> PlayerStats:
        return cls(
            hls_version=raw["hlsVersion"],
            levels=raw["levels"],
            fragments=list(raw["fragments"]),
            keys=raw["keys"],
            errors=[HlsError(**e) for e in raw["errors"]],
            samples=[(t, c) for t, c in raw["samples"]],
            current_time=raw["currentTime"],
            playing_for=raw["playingFor"],
            ended=raw["ended"],
        )

    @property
    def fatal(self) -> list[HlsError]:
        return [e for e in self.errors if e.fatal]

    @property
    def failed_loads(self) -> list[HlsError]:
        """Network errors, fatal or not: a retry may hide one from the viewer, but the
        origin answered wrong."""
        return [e for e in self.errors if e.type == "networkError"]

    @property
    def advanced(self) -> float:
        """How far currentTime moved while the page watched it play."""
        if not self.samples:
            return 0.0
        return self.samples[-1][1] - self.samples[0][1]

    def __repr__(self) -> str:
        return (
            f"hls.js {self.hls_version}: played {self.advanced:.1f}s of media in "
            f"{self.playing_for:.1f}s, {len(self.fragments)} fragments, "
            f"{self.keys} keys, {self.levels} levels, "
            f"ended={self.ended}, errors={self.errors}"
        )


class Player:
    """One browser tab with the player page; `play` points it at a stream."""

    def __init__(self, page: Page, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.page_errors: list[str] = []
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    async def play(self, url: str, *, rate: float = 1.0) -> None:
        query = urlencode({"src": url, "rate": str(rate)})
        await self.page.goto(f"{self.origin}/player.html?{query}", wait_until="load")
        assert self.page_errors == [], self.page_errors
        ready = await self.page.evaluate("() => Boolean(window.stats && window.stats.supported)")
        assert ready, "the page has no hls.js, or this Chromium has no Media Source Extensions"

    async def stats(self) -> PlayerStats:
        raw = await self.page.evaluate("() => JSON.stringify(window.snapshot())")
        return PlayerStats.from_page(json.loads(raw))

    async def until(self, condition: str, *, timeout: float) -> PlayerStats:
        """Wait until the JS expression `condition`, over the snapshot `s`, holds, or a
        fatal error makes it moot; then return the stats. A timeout fails the test with
        what the player had done by then."""
        script = (
            "() => { const s = window.snapshot(); "
            f"return s.errors.some(e => e.fatal) || ({condition}); }}"
        )
        try:
            await self.page.wait_for_function(script, timeout=timeout * 1000, polling=100)
        except PlaywrightTimeout:
            pytest.fail(f"not within {timeout}s: {condition}; {await self.stats()}")
        return await self.stats()


# --- origins ----------------------------------------------------------------------------


class StaticOrigin:
    """A web server for a directory of HLS files, which remembers every request path."""

    def __init__(self, root: Path, *, cors: bool) -> None:
        self.paths: list[str] = []
        app = web.Application(middlewares=[self._record])
        if cors:
            app.on_response_prepare.append(_allow_any_origin)
        app.router.add_static("/", root)
        self.server = TestServer(app, host="127.0.0.1")

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.paths.append(request.path)
        return await handler(request)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


async def _allow_any_origin(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Access-Control-Allow-Origin"] = "*"


StaticOriginFactory = Callable[..., Awaitable[StaticOrigin]]


@pytest.fixture
async def static_origin() -> AsyncIterator[StaticOriginFactory]:
    origins: list[StaticOrigin] = []

    async def start(root: Path, *, cors: bool = True) -> StaticOrigin:
        origin = StaticOrigin(root, cors=cors)
        await origin.server.start_server()
        origins.append(origin)
        return origin

    yield start
    for origin in origins:
        await origin.server.close()


@pytest.fixture(scope="session")
def hls_js() -> Path:
    if not HLS_JS.is_file():
        pytest.fail("hls.js is missing: ./scripts/test installs it (npm ci)")
    return HLS_JS


@pytest.fixture
async def page_origin(hls_js: Path) -> AsyncIterator[str]:
    """The origin of the player page and of hls.js, distinct from every stream's origin."""

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PLAYER_PAGE, headers={"Cache-Control": "no-store"})

    async def library(request: web.Request) -> web.FileResponse:
        return web.FileResponse(hls_js, headers={"Content-Type": "text/javascript"})

    app = web.Application()
    app.router.add_get("/player.html", page)
    app.router.add_get("/hls.min.js", library)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


# --- the browser ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: ./scripts/test installs Debian's chromium")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path, tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """Debian's Chromium, headless, with a profile of its own that dies with the test."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
        )
        yield context
        await context.close()


@pytest.fixture
async def player(browser: BrowserContext, page_origin: str) -> Player:
    page = browser.pages[0] if browser.pages else await browser.new_page()
    return Player(page, page_origin)


# --- streams made by ffmpeg -------------------------------------------------------------


@dataclass(frozen=True)
class StaticStream:
    root: Path
    playlist: str
    """Path of the playlist to play, relative to `root`."""
    segments: int
    """Media segments in each media playlist."""
    duration: float


_FFMPEG_INPUT = [
    "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", str(STREAM_SECONDS),
]  # fmt: skip
# A keyframe every segment, so every segment starts one and ffmpeg cuts at exact seconds.
_FFMPEG_HLS = [
    "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p",
    "-g", str(25 * SEGMENT_SECONDS), "-keyint_min", str(25 * SEGMENT_SECONDS),
    "-sc_threshold", "0",
    "-c:a", "aac", "-b:a", "64k",
    "-f", "hls", "-hls_time", str(SEGMENT_SECONDS), "-hls_playlist_type", "vod",
]  # fmt: skip


def _ffmpeg_args(kind: str, root: Path) -> tuple[list[str], str]:
    """The ffmpeg arguments that write a `kind` stream into `root`, and its playlist."""
    single = ["-map", "0:v", "-map", "1:a", *_FFMPEG_HLS]
    if kind == "ts":
        return [
            *single, "-hls_segment_filename", f"{root}/seg%d.ts", f"{root}/index.m3u8",
        ], "index.m3u8"  # fmt: skip
    if kind == "fmp4":
        return [
            *single,
            "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
            "-hls_segment_filename", f"{root}/seg%d.m4s", f"{root}/index.m3u8",
        ], "index.m3u8"  # fmt: skip
    if kind == "aes-128":
        key = root / "enc.key"
        key.write_bytes(bytes(range(7, 23)))
        info = root.parent / f"{root.name}.keyinfo"
        # Line one is the key's URI as the playlist names it, line two where ffmpeg reads it.
        info.write_text(f"enc.key\n{key}\n")
        return [
            *single,
            "-hls_key_info_file", str(info),
            "-hls_segment_filename", f"{root}/seg%d.ts", f"{root}/index.m3u8",
        ], "index.m3u8"  # fmt: skip
    if kind == "multivariant":
        return [
            "-filter_complex", "[0:v]split=2[hi][full];[full]scale=160:90[lo]",
            "-map", "[hi]", "-map", "[lo]", "-map", "1:a", "-map", "1:a",
            *_FFMPEG_HLS,
            "-b:v:0", "400k", "-b:v:1", "120k",
            "-var_stream_map", "v:0,a:0 v:1,a:1", "-master_pl_name", "master.m3u8",
            "-hls_segment_filename", f"{root}/v%v/seg%d.ts", f"{root}/v%v/index.m3u8",
        ], "master.m3u8"  # fmt: skip
    raise ValueError(f"no such stream kind: {kind}")


@pytest.fixture(scope="session")
def ffmpeg_stream(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], StaticStream]:
    """Makes a short VOD stream of a kind ("ts", "fmp4", "aes-128", "multivariant") once
    per test session."""
    ffmpeg = shutil.which("ffmpeg")
    made: dict[str, StaticStream] = {}

    def make(kind: str) -> StaticStream:
        if kind in made:
            return made[kind]
        if ffmpeg is None:
            pytest.fail("ffmpeg is missing: ./scripts/test installs it")
        root = tmp_path_factory.mktemp(kind)
        args, playlist = _ffmpeg_args(kind, root)
        subprocess.run(
            [ffmpeg, "-hide_banner", "-nostdin", "-v", "error", *_FFMPEG_INPUT, *args],
            check=True,
            capture_output=True,
            timeout=60,
        )
        media_playlist = next(root.rglob("index.m3u8")).read_text()
        made[kind] = StaticStream(
            root=root,
            playlist=playlist,
            segments=media_playlist.count("#EXTINF:"),
            duration=float(STREAM_SECONDS),
        )
        return made[kind]

    return make
