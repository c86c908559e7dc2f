"""Wiring: settings in, an aiohttp Application out; resources are owned by cleanup contexts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import aiohttp
from aiohttp import web

from ..config import DemoChannel, Settings
from ..cut_stream import CutOptions
from ..engine.client import Engine, EngineClient
from ..engine.orchestrator import OrchestratorPool
from ..engine.own_container import own_container_id
from ..engine.pool import FixedEngine
from ..hls import slate
from ..hls.cache import SegmentCache
from ..hls.stream import HlsOptions
from ..registry import Registry
from ..sessions import Sessions
from ..state import WaitBounds
from ..ts.loop import MediaLoop
from ..ts.stream import TsOptions
from . import hls_routes, hls_urls, middleware, routes, status, unmatched
from .access import access_control
from .keys import (
    CLIENT,
    DEMO_CHANNELS,
    HTTP,
    METRICS,
    POOL,
    SEGMENTS,
    SESSIONS,
    SETTINGS,
    STALLS,
    STREAMS,
)
from .metrics import Metrics
from .stalls import SEND_TIMEOUT, Stalls


def create_app(
    settings: Settings,
    *,
    send_timeout: float = SEND_TIMEOUT,
    demo_channels: Iterable[DemoChannel] = (),
) -> web.Application:
    guard = access_control(settings)
    app = web.Application(
        middlewares=[
            *([middleware.access_log] if settings.access_log else []),
            middleware.errors,
            *([guard] if guard is not None else []),
        ]
    )
    app[SETTINGS] = settings
    app[DEMO_CHANNELS] = tuple(demo_channels)
    app[METRICS] = Metrics()
    app[STALLS] = Stalls(app[METRICS].stalled_clients.inc, timeout=send_timeout)
    app.on_cleanup.append(_stop_stalls)
    # One context per resource, each closing what it opened, in the reverse order.
    app.cleanup_ctx.extend((_engine_client, _pool, _segments, _sessions, _streams))
    app.on_response_prepare.append(middleware.mark_started)
    app.on_response_prepare.append(middleware.cors(hls_routes.PLAYER_PATHS))
    # Live streams never end by themselves: end them, and stop their engine sessions,
    # before aiohttp waits for the handlers that serve them.
    app.on_shutdown.append(_end_streams)
    routes.setup(app)
    hls_routes.setup(app)
    status.setup(app, lambda app: app[POOL])
    unmatched.setup(app)
    return app


async def _engine_client(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    connector = aiohttp.TCPConnector(limit=0)  # one connection per live stream, uncapped
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.no_response_timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as http:
        app[HTTP] = http
        app[CLIENT] = EngineClient(http, response_timeout=settings.no_response_timeout)
        yield


async def _pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    fixed = Engine(settings.scheme, settings.host, settings.port)
    if not settings.orch_url:
        app[POOL] = FixedEngine(fixed)
        yield
        return
    orchestrator = OrchestratorPool(
        app[HTTP],
        url=settings.orch_url,
        api_key=settings.orch_apikey.get_secret_value(),
        container_id=own_container_id(settings.container_id),
        max_per_engine=settings.max_streams_per_engine,
        fallback=fixed,
        provision_timeout=settings.orch_provision_timeout,
    )
    orchestrator.start()
    app[POOL] = orchestrator
    try:
        yield
    finally:
        await orchestrator.aclose()


async def _segments(app: web.Application) -> AsyncIterator[None]:
    segments = SegmentCache(max_bytes=app[SETTINGS].hls_cache_size)
    app[SEGMENTS] = segments
    try:
        yield
    finally:
        await segments.aclose()


async def _sessions(app: web.Application) -> AsyncIterator[None]:
    sessions = Sessions(app[CLIENT], app[POOL])
    app[SESSIONS] = sessions
    try:
        yield
    finally:
        await sessions.aclose()


async def _streams(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # What HLS players see while the engine prebuffers, whichever source their HLS has.
    starting = MediaLoop.of(slate.FILE.read_bytes())
    registry = Registry(
        client=app[CLIENT],
        sessions=app[SESSIONS],
        segments=app[SEGMENTS],
        ts_options=TsOptions(
            ring_bytes=settings.buffer_size,
            ring_seconds=settings.buffer_time,
            empty_timeout=settings.empty_timeout,
            retries=settings.upstream_retries,
            linger=settings.linger,
        ),
        hls_options=HlsOptions(
            stream_timeout=settings.m3u8_stream_timeout,
            prefetch=settings.hls_prefetch,
            locate=hls_urls.locator(app),
            slate=starting,
        ),
        wait_bounds=WaitBounds(
            silence=settings.no_response_timeout, prebuffer=settings.prebuffer_timeout
        ),
        cut_options=CutOptions(
            target=settings.hls_segment_target,
            window=settings.hls_window,
            stream_timeout=settings.m3u8_stream_timeout,
            locate=hls_urls.locator(app),
            slate=starting,
        ),
        hls_source=settings.hls_source,
        max_streams=settings.max_streams,
        on_ended=app[METRICS].stream_ended,
    )
    app[METRICS].watch(registry.streams, app[SEGMENTS])
    registry.start()
    app[STREAMS] = registry
    try:
        yield
    finally:
        await registry.aclose()  # already done at shutdown, unless the app never started


async def _stop_stalls(app: web.Application) -> None:
    await app[STALLS].aclose()


async def _end_streams(app: web.Application) -> None:
    await app[STREAMS].aclose()
    await app[SESSIONS].aclose()
