"""The status page at / and the player page at /player (their assets under /static/): live
figures, sampled for the graph."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlencode

from aiohttp import web

from ..config import DemoChannel
from ..content import ContentKey, parse_stream_request
from ..engine.client import Engine
from ..engine.pool import EnginePool
from ..errors import ClientError
from ..formats import Channel
from ..lifecycle import EngineStream
from ..stat_watch import Prebuffer
from ..throughput import RateMeter, Throughput
from . import assets
from .access import TOKEN_PARAM
from .keys import DEMO_CHANNELS, SETTINGS, STREAMS
from .status_page import (
    EngineRow,
    ListedChannel,
    StatusSnapshot,
    StreamRow,
    render_player_page,
    render_status_page,
)
from .unmatched import expect

SAMPLE_EVERY = 2.0
REFRESH_SECONDS = 5
# Where a player opens a channel, by the kinds of player the page names.
STREAM_PATHS = {"MPEG-TS": "/ace/getstream", "HLS": "/ace/manifest.m3u8"}


def _version() -> str:
    try:
        return version("hlsproxy")
    except PackageNotFoundError:
        return "unknown"


class StatusBoard:
    """Samples the streams' byte counters, so the page can show rates and a graph; lists
    the `demo` channels nobody plays, so that a new user sees what to open."""

    def __init__(
        self,
        streams: Callable[[], Iterable[EngineStream]],
        pool: EnginePool,
        clock: Callable[[], float] = time.monotonic,
        demo: Iterable[DemoChannel] = (),
    ) -> None:
        self._streams = streams
        self._pool = pool
        self._demo = tuple(demo)
        self._clock = clock
        self._started = clock()
        self._throughput = Throughput(interval=5.0, keep=600.0)
        self._meters: dict[int, RateMeter] = {}
        self._total_in = 0
        self._total_out = 0
        self._seen: dict[int, tuple[int, int]] = {}
        self.version = _version()

    def sample(self) -> None:
        now = self._clock()
        live = [s for s in self._streams() if not s.closing]
        meters: dict[int, RateMeter] = {}
        seen: dict[int, tuple[int, int]] = {}
        for stream in live:
            figures = stream.figures()
            meter = self._meters.get(id(stream)) or RateMeter(window=10.0)
            meter.update(now, figures.bytes_in, figures.bytes_out)
            meters[id(stream)] = meter
            # Totals only grow: count what each stream added since the last sample.
            last_in, last_out = self._seen.get(id(stream), (0, 0))
            self._total_in += max(0, figures.bytes_in - last_in)
            self._total_out += max(0, figures.bytes_out - last_out)
            seen[id(stream)] = (figures.bytes_in, figures.bytes_out)
        self._meters, self._seen = meters, seen
        self._throughput.record(now, self._total_in, self._total_out)

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_EVERY)

    def snapshot(self) -> StatusSnapshot:
        now = self._clock()
        pool = self._pool.engines()
        labels = {engine.address: engine.label for engine in pool}
        channels: dict[ContentKey, list[EngineStream]] = {}
        for stream in sorted(self._streams(), key=lambda s: s.started_at):
            if not stream.closing:
                channels.setdefault(stream.key, []).append(stream)
        rows = tuple(self._row(members, now, labels) for members in channels.values())
        engines = tuple(EngineRow(e.label, e.health, e.sessions, e.capacity) for e in pool)
        return StatusSnapshot(
            version=self.version,
            uptime=now - self._started,
            refresh_seconds=REFRESH_SECONDS,
            streams=rows,
            engines=engines,
            history=tuple(self._throughput.samples()),
            listed=tuple(
                _listed(key, channel.prebuffer)
                for channel in self._demo
                if (key := ContentKey("content_id", channel.content_id)) not in channels
            ),
        )

    def _row(self, members: list[EngineStream], now: float, labels: dict[str, str]) -> StreamRow:
        """One channel: its MPEG-TS stream and its HLS stream, when it plays in both."""
        channel = Channel.of(members)
        owner = channel.owner
        key = owner.key
        query = urlencode([key.engine_param])
        rate_in = rate_out = 0.0
        ages = []
        for stream in members:
            meter = self._meters.get(id(stream))
            if meter is not None:
                stream_in, stream_out = meter.rate(now)
                rate_in += stream_in
                rate_out += stream_out
            last = stream.figures().last_data_at
            if last is not None:
                ages.append(max(0.0, now - last))
        hls = channel.hls
        word = owner.engine_word()
        return StreamRow(
            key=key.value,
            key_type=key.kind,
            source=channel.source,
            state=owner.shown_state,
            waiting=_waiting(owner.prebuffer()),
            engine=_label(owner.engine, labels),
            players=channel.players(),
            uptime=now - min(s.started_at for s in members),
            bitrate_in=rate_in,
            bitrate_out=rate_out,
            cache_hit_ratio=hls.hits / hls.lookups if hls is not None and hls.lookups else None,
            last_data_age=min(ages, default=None),
            player_url=f"/player?{query}",
            stream_urls=tuple(f"{STREAM_PATHS[kind]}?{query}" for kind, _ in channel.players()),
            engine_status=word.status or None if word is not None else None,
            peers=word.peers if word is not None else 0,
            download=word.speed_down * 1024 * 8 if word is not None else 0.0,
        )


def _listed(key: ContentKey, prebuffer: float) -> ListedChannel:
    query = urlencode([key.engine_param])
    return ListedChannel(
        key=key.value,
        player_url=f"/player?{query}",
        stream_urls=tuple((kind, f"{path}?{query}") for kind, path in STREAM_PATHS.items()),
        prebuffer=prebuffer,
    )


def _waiting(prebuffer: Prebuffer | None) -> str | None:
    """A wait for the engine's media, in words: "waited 12 s, 5 peers, 340 KB/s"."""
    if prebuffer is None:
        return None
    words = [f"waited {prebuffer.waited:.0f} s"]
    if prebuffer.engine_status is not None:
        words += [f"{prebuffer.peers} peers", f"{prebuffer.speed_down} KB/s"]
    return ", ".join(words)


def _label(engine: Engine | None, labels: dict[str, str]) -> str:
    """An engine by the name the pool gives it: the page never shows an engine's address."""
    if engine is None:
        return "—"
    return labels.get(str(engine)) or labels.get(f"{engine.host}:{engine.port}") or "engine"


BOARD = web.AppKey("status_board", StatusBoard)


def setup(app: web.Application, pool_of: Callable[[web.Application], EnginePool]) -> None:
    async def board(app: web.Application) -> AsyncIterator[None]:
        demo = app[DEMO_CHANNELS]
        app[BOARD] = StatusBoard(app[STREAMS].streams, pool_of(app), demo=demo)
        sampler = asyncio.create_task(app[BOARD].run(), name="hlsproxy-status-sampler")
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler

    app.cleanup_ctx.append(board)
    assets.setup(app)
    app.router.add_get("/", status_page, expect_handler=expect)
    app.router.add_get("/player", player_page, expect_handler=expect)


def _token(request: web.Request) -> str:
    """The token a page was asked for with, for the assets it names: a browser sends none of
    its own, and a proxy that needs one would refuse them."""
    return request.query.get(TOKEN_PARAM, "")


async def status_page(request: web.Request) -> web.Response:
    return web.Response(
        text=render_status_page(request.app[BOARD].snapshot(), token=_token(request)),
        content_type="text/html",
        headers={"Cache-Control": "no-cache"},
    )


async def player_page(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    try:
        key = parse_stream_request(
            request.query.items(), allow_remote=settings.allow_remote_content
        ).key
    except ClientError as exc:
        # Someone typed this address into a browser: answer a page, not JSON.
        return web.Response(
            status=exc.status,
            text=render_player_page(
                title="hlsproxy: no such stream",
                hls_url="",
                ts_url="",
                token=_token(request),
                refused=exc.message,
            ),
            content_type="text/html",
            headers={"Cache-Control": "no-cache"},
        )
    query = [key.engine_param]
    if "token" in request.query:
        query.append(("token", request.query["token"]))
    encoded = urlencode(query)
    return web.Response(
        text=render_player_page(
            title=f"hlsproxy: {key.value}",
            hls_url=f"/ace/manifest.m3u8?{encoded}",
            ts_url=f"/ace/getstream?{encoded}",
            token=_token(request),
        ),
        content_type="text/html",
        headers={"Cache-Control": "no-cache"},
    )
