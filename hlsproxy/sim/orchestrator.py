"""A simulated acestream-orchestrator in front of a pool of simulated AceStream engines.

It follows shared/reference/orchestrator-api.md (v1.4.1, FastAPI): public reads of the pool
and its streams, bearer-protected provisioning and stream events, FastAPI's 422 bodies, the
`provisioning_blocked` 503, and v1.4.1's quirk of ending the newest open stream of a
container when a stream_ended event names an unknown stream. Each pool engine is a real
`SimEngine` on its own port; the orchestrator asks it `get_status` whenever `/engines` or
`/orchestrator/status` is read (the real one asks every engine on each `/engines` call), and
polls the stat URL of every started stream, ending those the engine no longer knows.

Tests steer it through `faults` and read what happened from `calls`, `counters`, the event
bodies and `unexpected`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import aiohttp
from aiohttp import web
from pydantic import BaseModel, Field, HttpUrl, ValidationError

from . import start_engine
from .changes import Changes
from .engine import SimEngine
from .faults import OrchFaults
from .media import MediaLoop
from .server import cut, drop

__all__ = ["OrchFaults", "SimOrchestrator", "SimPoolEngine"]

log = logging.getLogger(__name__)

Health = Literal["healthy", "unhealthy", "unknown"]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_Model = TypeVar("_Model", bound=BaseModel)

_UNKNOWN_SESSION = "unknown playback session id"
_PROBE_TIMEOUT = 1.0
_STAT_TIMEOUT = 3.0
_HELD_AT_MOST = 3600.0  # a request held without an answer, if the orchestrator never stops
_STAT_FIELDS = ("status", "peers", "speed_down", "speed_up", "downloaded", "uploaded")
# What a reverse proxy in front of a broken orchestrator sends, labelled as JSON.
_GARBAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
_READS = frozenset({"GET /orchestrator/status", "GET /engines", "GET /streams"})
_WRITES = frozenset(
    {"POST /provision/acestream", "POST /events/stream_started", "POST /events/stream_ended"}
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# Ports the engine would have inside its container; only reported, never bound.
_CONTAINER_HTTP_BASE = 40100
_CONTAINER_HTTPS_BASE = 45100


@dataclass(frozen=True)
class _Block:
    reason: str
    message: str
    eta: int
    can_retry: bool
    should_wait: bool


_BLOCKS = {
    "vpn_disconnected": _Block(
        "VPN disconnected", "The VPN is disconnected; engines cannot be provisioned", 60, True, True
    ),
    "circuit_breaker": _Block(
        "Circuit breaker open",
        "Too many recent provisioning failures; the circuit breaker is open",
        30,
        False,
        True,
    ),
    "max_capacity": _Block(
        "Maximum capacity reached", "The engine pool is at its maximum size", 30, False, True
    ),
}


@dataclass(eq=False)
class SimPoolEngine:
    """One engine container of the pool, as tests see it."""

    container_id: str
    container_name: str
    host: str
    port: int
    """Where the engine's HTTP API answers (the container's published port)."""
    sim: SimEngine
    runner: web.AppRunner = field(repr=False)
    container_http_port: int
    container_https_port: int
    forwarded: bool = False
    health_status: Health = "unknown"
    started_at: datetime = field(default_factory=_utcnow)
    alive: bool = True
    """False once killed or stopped: its server is gone."""
    listed: bool = True
    """False while a provisioned engine is still starting."""
    labels: dict[str, str] = field(default_factory=dict)
    last_seen: datetime | None = None
    last_health_check: datetime | None = None
    last_stream_usage: datetime | None = None
    version: dict[str, Any] | None = None
    """The engine's `version` block from its last good status answer."""
    past: list[SimEngine] = field(default_factory=list)
    """The engines this container ran before its restarts, oldest first."""


@dataclass(eq=False)
class _Stream:
    id: str
    key_type: str
    key: str
    container_id: str
    container_name: str | None
    playback_session_id: str
    stat_url: str
    command_url: str
    is_live: bool
    started_at: datetime
    ended_at: datetime | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.ended_at is None

    @property
    def status(self) -> str:
        return "started" if self.open else "ended"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key_type": self.key_type,
            "key": self.key,
            "container_id": self.container_id,
            "container_name": self.container_name,
            "playback_session_id": self.playback_session_id,
            "stat_url": self.stat_url,
            "command_url": self.command_url,
            "is_live": self.is_live,
            "started_at": _rfc3339(self.started_at),
            "ended_at": _rfc3339(self.ended_at),
            "status": self.status,
            **{name: self.stats.get(name) for name in _STAT_FIELDS if name != "status"},
        }


# --- request bodies, validated the way FastAPI would ---------------------------------------


class _EngineAddress(BaseModel):
    host: str
    port: int


class _StreamKey(BaseModel):
    key_type: Literal["content_id", "infohash", "url", "magnet"]
    key: str


class _Session(BaseModel):
    playback_session_id: str
    stat_url: HttpUrl
    command_url: HttpUrl
    is_live: int = 1


class _StreamStarted(BaseModel):
    container_id: str | None = None
    engine: _EngineAddress
    stream: _StreamKey
    session: _Session
    labels: dict[str, str] = Field(default_factory=dict)


class _StreamEnded(BaseModel):
    container_id: str | None = None
    stream_id: str | None = None
    reason: str | None = None


class _ProvisionRequest(BaseModel):
    labels: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)


class _StreamsQuery(BaseModel):
    container_id: str | None = None
    status: Literal["started", "ended"] | None = None


class SimOrchestrator:
    """An acestream-orchestrator for tests, demos and benchmarks.

    `start()` launches the initial engines and the stat poller; serve `app` yourself or
    call `serve()`; `stop()` ends everything it started.

    `counters` keys: one per endpoint (`"GET /engines"`, `"POST /events/stream_ended"`, ...),
    `auth_failed`, `provisioned`, `provision_blocked`, `unknown_engine` (a start event for
    an engine that is not in the pool), `ended_by_quirk` (an end event whose stream id was
    unknown or missing, which ended some other open stream), `ended_again` (an end event
    for a stream already ended), `ended_by_stat` (the poller found the session gone),
    `stat_polled`, `unexpected`.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        engines: int = 2,
        max_engines: int = 10,
        engine_options: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        stat_interval: float = 2.0,
    ) -> None:
        if engines < 0:
            raise ValueError("engines must be 0 or more")
        if max_engines < 1:
            raise ValueError("max_engines must be 1 or more")
        if stat_interval <= 0:
            raise ValueError("stat_interval must be positive")
        self.api_key = api_key
        self.initial_engines = engines
        self.max_engines = max_engines
        self.engine_options: dict[str, Any] = dict(engine_options or {})
        self.host = host
        self.stat_interval = stat_interval
        self.faults = OrchFaults()
        self.engines: list[SimPoolEngine] = []
        self.calls: list[str] = []
        self.counters: collections.Counter[str] = collections.Counter()
        self.events_started: list[dict[str, Any]] = []
        self.events_ended: list[dict[str, Any]] = []
        self.unexpected: list[str] = []
        self.port: int | None = None
        """The orchestrator's own port once `serve()` bound it."""
        self._streams: dict[str, _Stream] = {}
        self._serial = 0
        self._reserved = 0
        """Provisionings under way: they count against `max_engines` before they exist."""
        self._media: MediaLoop | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._poller: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._state: Literal["new", "running", "stopped"] = "new"
        self._changes = Changes()
        self.app = self._make_app()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Launch the initial engines (each on its own port) and the stat poller."""
        if self._state == "running":
            return
        if self._state == "stopped":
            raise RuntimeError("a stopped orchestrator cannot start again")
        self._state = "running"
        try:
            self._media = self.engine_options.get("media") or MediaLoop.load()
            # No keep-alive: a pooled connection the engine had closed (idle timeout, kill)
            # would fail the next probe and make a healthy engine look unhealthy.
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
            for _ in range(self.initial_engines):
                await self.add_engine()
            self._poller = asyncio.create_task(self._poll_stats(), name="sim-orchestrator-stat")
        except BaseException:
            await self.stop()
            raise

    async def serve(self, port: int = 0) -> int:
        """Start, then serve `app` on `host:port` (0: any free port); returns the port."""
        await self.start()
        if self._runner is not None:
            raise RuntimeError("already serving")
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, port)
            await site.start()
            bound: int = runner.addresses[0][1]
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = bound
        return bound

    @property
    def serving(self) -> bool:
        return self._runner is not None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("not serving: call serve() first")
        return f"http://{_authority(self.host, self.port)}"

    async def stop(self) -> None:
        """Stop serving, cancel every task and stop every engine. Idempotent."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        self._wake()  # requests held without an answer end before the server waits for them
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        tasks = [t for t in (self._poller, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._poller = None
        live = [e for e in self.engines if e.alive]
        for pool in live:
            pool.alive = False
            pool.health_status = "unhealthy"
        results = await asyncio.gather(
            *(self._tear_down(pool, abrupt=False) for pool in live), return_exceptions=True
        )
        for pool, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                log.error("engine %s did not stop cleanly: %r", pool.container_name, result)
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._wake()

    async def add_engine(self) -> SimPoolEngine:
        """A new engine in the pool, listed at once and health-checked (no capacity check)."""
        pool = await self._launch({})
        await self._probe(pool)
        return pool

    async def kill_engine(self, container_id: str) -> None:
        """The engine's server goes away: open connections are cut and its port refuses
        new ones. It stays in `/engines` as a stale, unhealthy entry."""
        pool = self.engine(container_id)
        if not pool.alive:
            return
        pool.alive = False
        pool.health_status = "unhealthy"
        self._wake()
        log.info("engine %s killed", pool.container_name)
        await self._tear_down(pool, abrupt=True)

    async def restart_engine(self, container_id: str) -> None:
        """The container comes back on its port with a fresh engine that knows no session
        (a live one is killed first); the old engine moves to `past`."""
        pool = self.engine(container_id)
        await self.kill_engine(container_id)
        if self._state != "running":
            raise RuntimeError("the orchestrator is not running")
        options: dict[str, Any] = {"media": self._media, **self.engine_options}
        sim, runner, _ = await start_engine(pool.host, pool.port, **options)
        pool.past.append(pool.sim)
        pool.sim, pool.runner, pool.alive = sim, runner, True
        log.info("engine %s restarted", pool.container_name)
        await self._probe(pool)

    async def stop_serving(self) -> None:
        """The orchestrator goes away: open connections are cut and its port refuses new
        ones, while its engines play on. `serve(port)` brings it back."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await cut(runner)
        await runner.cleanup()
        log.info("orchestrator stopped serving")
        self._wake()

    def engine(self, container_id: str) -> SimPoolEngine:
        """The pool engine with this container id; KeyError if there is none."""
        for pool in self.engines:
            if pool.container_id == container_id:
                return pool
        raise KeyError(container_id)

    def streams_of(self, container_id: str) -> list[dict[str, Any]]:
        """The started, not ended streams of an engine, as `/streams` shows them."""
        return [
            s.to_json() for s in self._streams.values() if s.open and s.container_id == container_id
        ]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Until `predicate()` holds; checked after every request and every state change."""
        await self._changes.wait_until(predicate, timeout)

    def __repr__(self) -> str:
        alive = sum(e.alive for e in self.engines)
        open_streams = sum(s.open for s in self._streams.values())
        return (
            f"<SimOrchestrator {self._state}, {alive} of {len(self.engines)} engines alive, "
            f"{open_streams} open streams, faults={self.faults}>"
        )

    # --- engines ------------------------------------------------------------------------

    async def _launch(self, labels: dict[str, str]) -> SimPoolEngine:
        if self._state != "running":
            raise RuntimeError("the orchestrator is not running")
        options: dict[str, Any] = {"media": self._media, **self.engine_options}
        sim, runner, port = await start_engine(self.host, 0, **options)
        if self._state != "running":
            # stop() ran while this engine was starting: it would outlive its owner.
            await runner.cleanup()
            raise RuntimeError("the orchestrator stopped")
        self._serial += 1
        pool = SimPoolEngine(
            container_id=secrets.token_hex(32),
            container_name=f"acestream-{self._serial}",
            host=self.host,
            port=port,
            sim=sim,
            runner=runner,
            container_http_port=_CONTAINER_HTTP_BASE + self._serial,
            container_https_port=_CONTAINER_HTTPS_BASE + self._serial,
            # The first engine takes the VPN's forwarded port, as the real pool does.
            forwarded=not self.engines,
            labels={**labels, "host.http_port": str(port)},
        )
        self.engines.append(pool)
        log.info("engine %s on port %d", pool.container_name, port)
        self._wake()
        return pool

    async def _tear_down(self, pool: SimPoolEngine, *, abrupt: bool) -> None:
        runner = pool.runner
        if abrupt:
            pool.sim.faults.down = True
            await cut(runner)
        await runner.cleanup()

    async def _appear(self, pool: SimPoolEngine, delay: float) -> None:
        await asyncio.sleep(delay)
        if pool.alive:
            pool.sim.faults.down = False
            pool.listed = True
            log.info("engine %s is up", pool.container_name)
            self._wake()

    async def _probe_all(self) -> None:
        await asyncio.gather(*(self._probe(e) for e in self.engines if e.alive and e.listed))

    async def _probe(self, pool: SimPoolEngine) -> None:
        if self._http is None:
            return
        url = f"http://{_authority(pool.host, pool.port)}/server/api"
        params = {"api_version": "3", "method": "get_status"}
        data: Any = None
        try:
            async with (
                asyncio.timeout(_PROBE_TIMEOUT),
                self._http.get(url, params=params) as resp,
            ):
                if resp.status == 200:
                    data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("engine %s did not answer its status: %r", pool.container_name, exc)
        if not pool.alive:
            return  # killed while the probe ran: it stays unhealthy
        now = _utcnow()
        result = data.get("result") if isinstance(data, dict) else None
        healthy = isinstance(result, dict) and data.get("error") is None
        pool.health_status = "healthy" if healthy else "unhealthy"
        pool.last_health_check = now
        if isinstance(result, dict) and healthy:
            pool.last_seen = now
            version = result.get("version")
            if isinstance(version, dict):
                pool.version = version
        self._wake()

    def _find_engine(self, container_id: str | None, host: str, port: int) -> SimPoolEngine | None:
        if container_id:
            for pool in self.engines:
                if pool.container_id == container_id:
                    return pool
        # A dead engine's port may have been reused: the live one wins.
        matches = [e for e in self.engines if e.host == host and e.port == port]
        matches.sort(key=lambda e: e.alive)
        return matches[-1] if matches else None

    def _block(self) -> tuple[str, _Block] | None:
        code = self.faults.provision_blocked
        if code is not None:
            block = _BLOCKS.get(code) or _Block(
                code, f"Provisioning is blocked ({code})", 30, False, True
            )
            return code, block
        if sum(e.alive for e in self.engines) + self._reserved >= self.max_engines:
            return "max_capacity", _BLOCKS["max_capacity"]
        return None

    # --- stat poller --------------------------------------------------------------------

    async def _poll_stats(self) -> None:
        while True:
            await asyncio.sleep(self.stat_interval)
            started = [s for s in self._streams.values() if s.open]
            if started:
                await asyncio.gather(*(self._collect(s) for s in started))

    async def _collect(self, stream: _Stream) -> None:
        if self._http is None:
            return
        self.counters["stat_polled"] += 1
        try:
            async with asyncio.timeout(_STAT_TIMEOUT), self._http.get(stream.stat_url) as resp:
                if resp.status >= 300:
                    return
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # The real collector shrugs these off: a dead engine's streams stay started.
            log.debug("stat of stream %s failed: %r", stream.id, exc)
            return
        if not isinstance(data, dict):
            return
        response, error = data.get("response"), data.get("error")
        if response is None and isinstance(error, str) and _UNKNOWN_SESSION in error.lower():
            if stream.open:
                log.info("stream %s is stale: its engine no longer knows it", stream.id)
                stream.ended_at = _utcnow()
                self._count("ended_by_stat")
            return
        if isinstance(response, dict):
            stream.stats = {name: response.get(name) for name in _STAT_FIELDS}
            self._wake()

    # --- wiring -------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        @web.middleware
        async def observe(request: web.Request, handler: _Handler) -> web.StreamResponse:
            return await self._observe(request, handler)

        app = web.Application(middlewares=[observe])
        app.router.add_get("/orchestrator/status", self._status)
        app.router.add_get("/engines", self._engines)
        app.router.add_get("/streams", self._list_streams)
        app.router.add_post("/provision/acestream", self._provision)
        app.router.add_post("/events/stream_started", self._stream_started)
        app.router.add_post("/events/stream_ended", self._stream_ended)
        app.router.add_route("*", "/{tail:.*}", self._unexpected)
        return app

    async def _observe(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        call = f"{request.method} {request.path}"
        self.calls.append(call)
        if call in _READS or call in _WRITES:
            self.counters[call] += 1
        self._wake()
        if self.faults.down:
            return drop(request)
        if self.faults.garbage and call in _READS:
            return web.Response(body=_GARBAGE, content_type="application/json")
        return await handler(request)

    # --- reads --------------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.StreamResponse:
        await self._probe_all()
        listed = [e for e in self.engines if e.listed]
        running = [e for e in listed if e.alive]
        open_streams = [s for s in self._streams.values() if s.open]
        busy = {s.container_id for s in open_streams}
        used = sum(e.container_id in busy for e in running)
        block = self._block()
        code = block[0] if block else None
        if not running:
            status = "unavailable"
        elif code in ("vpn_disconnected", "circuit_breaker"):
            status = "degraded"
        else:
            status = "healthy"
        vpn_up = code != "vpn_disconnected"
        details = None
        if block is not None:
            details = {
                "code": block[0],
                "message": block[1].message,
                "recovery_eta_seconds": block[1].eta,
                "can_retry": block[1].can_retry,
                "should_wait": block[1].should_wait,
            }
        body = {
            "status": status,
            "engines": {
                "total": len(listed),
                "running": len(running),
                "healthy": sum(e.health_status == "healthy" for e in listed),
                "unhealthy": sum(e.health_status == "unhealthy" for e in listed),
            },
            "streams": {"active": len(open_streams), "total": len(self._streams)},
            "capacity": {
                "total": len(running),
                "used": used,
                "available": len(running) - used,
                "max_replicas": self.max_engines,
                "min_replicas": self.initial_engines,
            },
            "vpn": {
                "enabled": True,
                "connected": vpn_up,
                "health": "healthy" if vpn_up else "unhealthy",
                "forwarded_port": 43567 if vpn_up else None,
            },
            "provisioning": {
                "can_provision": block is None,
                "circuit_breaker_state": "open" if code == "circuit_breaker" else "closed",
                "blocked_reason": block[1].reason if block else None,
                "blocked_reason_details": details,
            },
            "timestamp": _utcnow().isoformat(),
        }
        return web.json_response(body)

    async def _engines(self, request: web.Request) -> web.StreamResponse:
        await self._probe_all()
        listed = sorted((e for e in self.engines if e.listed), key=lambda e: e.port)
        items = [self._engine_json(e) for e in listed]
        if self.faults.wrapped_lists:
            return web.json_response({"engines": items, "total": len(items)})
        return web.json_response(items)

    def _engine_json(self, pool: SimPoolEngine) -> dict[str, Any]:
        version = pool.version or {}
        return {
            "container_id": pool.container_id,
            "container_name": pool.container_name,
            "host": pool.host,
            "port": pool.port,
            "labels": dict(pool.labels),
            "forwarded": pool.forwarded,
            "health_status": pool.health_status,
            "first_seen": _rfc3339(pool.started_at),
            "last_seen": _rfc3339(pool.last_seen),
            "last_health_check": _rfc3339(pool.last_health_check),
            "last_stream_usage": _rfc3339(pool.last_stream_usage),
            "streams": [
                s.id
                for s in self._streams.values()
                if s.open and s.container_id == pool.container_id
            ],
            "platform": version.get("platform"),
            "version": version.get("version"),
        }

    async def _list_streams(self, request: web.Request) -> web.StreamResponse:
        try:
            query = _StreamsQuery.model_validate(dict(request.query))
        except ValidationError as exc:
            return _unprocessable(exc, "query")
        items = [
            s.to_json()
            for s in self._streams.values()
            if (query.container_id is None or s.container_id == query.container_id)
            and (query.status is None or s.status == query.status)
        ]
        if self.faults.wrapped_lists:
            return web.json_response({"streams": items})
        return web.json_response(items)

    # --- provisioning -------------------------------------------------------------------

    async def _provision(self, request: web.Request) -> web.StreamResponse:
        denied = self._authorize(request)
        if denied is not None:
            return denied
        parsed = await _parse(request, _ProvisionRequest)
        if isinstance(parsed, web.Response):
            return parsed
        _, body = parsed
        if self.faults.provision_answer == "garbage":
            return web.Response(body=_GARBAGE, content_type="application/json")
        if self.faults.provision_answer == "none":
            await self._changes.wait_until(lambda: self._state != "running", _HELD_AT_MOST)
            return drop(request)
        block = self._block()
        if block is not None:
            code, why = block
            self._count("provision_blocked")
            detail = {
                "error": "provisioning_blocked",
                "code": code,
                "message": why.message,
                "recovery_eta_seconds": why.eta,
                "can_retry": why.can_retry,
                "should_wait": why.should_wait,
            }
            return web.json_response({"detail": detail}, status=503)
        delay = self.faults.provision_delay
        self._reserved += 1
        try:
            pool = await self._launch(body.labels)
        except RuntimeError:
            return web.json_response({"detail": "the orchestrator is shutting down"}, status=500)
        finally:
            self._reserved -= 1
        if delay > 0:
            # The container exists, but its engine does not answer yet.
            pool.listed = False
            pool.sim.faults.down = True
            task = asyncio.create_task(self._appear(pool, delay), name="sim-orchestrator-start")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._count("provisioned")
        return web.json_response(
            {
                "container_id": pool.container_id,
                "container_name": pool.container_name,
                "host_http_port": pool.port,
                "container_http_port": pool.container_http_port,
                "container_https_port": pool.container_https_port,
            }
        )

    # --- events -------------------------------------------------------------------------

    async def _stream_started(self, request: web.Request) -> web.StreamResponse:
        denied = self._authorize(request)
        if denied is not None:
            return denied
        parsed = await _parse(request, _StreamStarted)
        if isinstance(parsed, web.Response):
            return parsed
        raw, event = parsed
        pool = self._find_engine(event.container_id, event.engine.host, event.engine.port)
        if pool is None:
            # v1.4.1 files the stream under whatever key it was given, engine or not.
            self._count("unknown_engine")
            container_id = event.container_id or f"{event.engine.host}:{event.engine.port}"
            container_name = None
        else:
            container_id, container_name = pool.container_id, pool.container_name
        now = _utcnow()
        stream_id = (
            event.labels.get("stream_id")
            or f"{event.stream.key}|{event.session.playback_session_id}"
        )
        stream = _Stream(
            id=stream_id,
            key_type=event.stream.key_type,
            key=event.stream.key,
            container_id=container_id,
            container_name=container_name,
            playback_session_id=event.session.playback_session_id,
            stat_url=str(event.session.stat_url),
            command_url=str(event.session.command_url),
            is_live=bool(event.session.is_live),
            started_at=now,
        )
        self._streams[stream_id] = stream
        if pool is not None:
            pool.last_stream_usage = now
        self.events_started.append(raw)
        self._wake()
        return web.json_response(stream.to_json())

    async def _stream_ended(self, request: web.Request) -> web.StreamResponse:
        denied = self._authorize(request)
        if denied is not None:
            return denied
        parsed = await _parse(request, _StreamEnded)
        if isinstance(parsed, web.Response):
            return parsed
        raw, event = parsed
        self.events_ended.append(raw)
        stream = self._streams.get(event.stream_id) if event.stream_id else None
        if stream is None:
            # v1.4.1: no such id ends the newest open stream of the container (of any
            # container when none is named).
            stream = next(
                (
                    s
                    for s in reversed(self._streams.values())
                    if s.open and (not event.container_id or s.container_id == event.container_id)
                ),
                None,
            )
            if stream is not None:
                log.warning("end of unknown stream %r ended %s instead", event.stream_id, stream.id)
                self._count("ended_by_quirk")
        elif not stream.open:
            self._count("ended_again")
        if stream is None:
            self._wake()
            return web.json_response({"updated": False, "stream": None})
        stream.ended_at = _utcnow()
        self._wake()
        return web.json_response({"updated": True, "stream": stream.to_json()})

    async def _unexpected(self, request: web.Request) -> web.StreamResponse:
        self.unexpected.append(f"{request.method} {request.path_qs}")
        self._count("unexpected")
        log.warning("unexpected request %s %s", request.method, request.path_qs)
        return web.json_response({"detail": "Not Found"}, status=404)

    # --- state --------------------------------------------------------------------------

    def _authorize(self, request: web.Request) -> web.Response | None:
        """None when the request may go on; else the 401 or 403 to answer."""
        if self.api_key is None:
            return None
        token: str | None = None
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
        if token is None:
            token = request.headers.get("X-API-Key") or None
        if token is None:
            self._count("auth_failed")
            return web.json_response({"detail": "missing bearer token"}, status=401)
        if not secrets.compare_digest(token.encode(), self.api_key.encode()):
            self._count("auth_failed")
            return web.json_response({"detail": "invalid token"}, status=403)
        return None

    def _count(self, key: str) -> None:
        self.counters[key] += 1
        self._wake()

    def _wake(self) -> None:
        self._changes.notify()


async def _parse(
    request: web.Request, model: type[_Model]
) -> tuple[dict[str, Any], _Model] | web.Response:
    """The body as JSON and as `model`, or FastAPI's 422 for a missing, broken or invalid one."""
    raw = await request.read()
    if not raw.strip():
        missing = {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
        return web.json_response({"detail": [missing]}, status=422)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        where = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        broken = {
            "type": "json_invalid",
            "loc": ["body", where],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": str(exc)},
        }
        return web.json_response({"detail": [broken]}, status=422)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        return _unprocessable(exc, "body")
    # Every body model is an object, so a body that validated is a JSON object.
    return data, parsed


def _unprocessable(exc: ValidationError, where: str) -> web.Response:
    detail = [
        {**error, "loc": [where, *error["loc"]]}
        for error in exc.errors(include_url=False, include_context=False)
    ]
    return web.json_response({"detail": detail}, status=422)


def _rfc3339(moment: datetime | None) -> str | None:
    """As pydantic writes an aware UTC datetime: with a `Z`."""
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
