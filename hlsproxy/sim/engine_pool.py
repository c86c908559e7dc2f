"""The simulated orchestrator's pool: engines launched, killed and restarted on their own
ports, their health, and the stat poller that ends streams their engine no longer knows.

The orchestrator asks an engine `get_status` whenever `/engines` or `/orchestrator/status`
is read (the real one asks every engine on each `/engines` call), and polls the stat URL of
every started stream.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any, Literal

import aiohttp
from aiohttp import web

from . import start_engine
from .faults import OrchFaults
from .media import MediaLoop
from .orch_records import STAT_FIELDS, SimPoolEngine, StreamRecord, utcnow
from .server import SimServer, cut, serve_app

log = logging.getLogger(__name__)

_UNKNOWN_SESSION = "unknown playback session id"
_PROBE_TIMEOUT = 1.0
_STAT_TIMEOUT = 3.0
# Ports the engine would have inside its container; only reported, never bound.
_CONTAINER_HTTP_BASE = 40100
_CONTAINER_HTTPS_BASE = 45100


class EnginePool(SimServer):
    """The engines of a simulated orchestrator and its own server's lifecycle.

    `start()` launches the initial engines and the stat poller; serve `app` yourself or
    call `serve()`; `stop()` ends everything it started.
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
        self.polls_stats = True
        """Whether started streams' stat URLs are polled, and forgotten sessions ended."""
        self.faults = OrchFaults()
        self.engines: list[SimPoolEngine] = []
        self.calls: list[str] = []
        self.events_started: list[dict[str, Any]] = []
        self.events_ended: list[dict[str, Any]] = []
        self.port: int | None = None
        """The orchestrator's own port once `serve()` bound it."""
        self._streams: dict[str, StreamRecord] = {}
        self._serial = 0
        self._reserved = 0
        """Provisionings under way: they count against `max_engines` before they exist."""
        self._media: MediaLoop | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._poller: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._state: Literal["new", "running", "stopped"] = "new"
        super().__init__()

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
            if self.polls_stats:
                self._poller = asyncio.create_task(self._poll_stats(), name="sim-orchestrator-stat")
        except BaseException:
            await self.stop()
            raise

    async def serve(self, port: int = 0) -> int:
        """Start, then serve `app` on `host:port` (0: any free port); returns the port."""
        await self.start()
        if self._runner is not None:
            raise RuntimeError("already serving")
        runner, bound = await serve_app(self.app, self.host, port)
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

    # --- engines ------------------------------------------------------------------------

    def _blocked_by(self) -> str | None:
        """Why provisioning adds no engine now: the block a fault names, or the replica
        maximum (`max_capacity`); None when it may add one."""
        if self.faults.provision_blocked is not None:
            return self.faults.provision_blocked
        if sum(e.alive for e in self.engines) + self._reserved >= self.max_engines:
            return "max_capacity"
        return None

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

    def _hide(self, pool: SimPoolEngine, delay: float) -> None:
        """The container exists, but its engine does not answer for `delay` seconds."""
        pool.listed = False
        pool.sim.faults.down = True
        task = asyncio.create_task(self._appear(pool, delay), name="sim-orchestrator-start")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        now = utcnow()
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

    # --- stat poller --------------------------------------------------------------------

    async def _poll_stats(self) -> None:
        while True:
            await asyncio.sleep(self.stat_interval)
            started = [s for s in self._streams.values() if s.open]
            if started:
                await asyncio.gather(*(self._collect(s) for s in started))

    async def _collect(self, stream: StreamRecord) -> None:
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
                stream.ended_at = utcnow()
                self._count("ended_by_stat")
            return
        if isinstance(response, dict):
            stream.stats = {name: response.get(name) for name in STAT_FIELDS}
            self._wake()


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
