"""A simulated acestream-orchestrator in front of a pool of simulated AceStream engines.

It follows docs/ARCHITECTURE.md, "The acestream-orchestrator" (v1.4.1, FastAPI): public
reads of the pool
and its streams, bearer-protected provisioning and stream events, FastAPI's 422 bodies, the
`provisioning_blocked` 503, and v1.4.1's quirk of ending the newest open stream of a
container when a stream_ended event names an unknown stream. Each pool engine is a real
`SimEngine` on its own port (see `engine_pool`).

Tests steer it through `faults` and read what happened from `calls`, `counters`, the event
bodies and `unexpected`.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from .engine_pool import EnginePool
from .faults import OrchFaults
from .orch_bodies import (
    Model,
    ProvisionRequest,
    StreamEnded,
    StreamsQuery,
    StreamStarted,
    parse,
    unprocessable,
)
from .orch_records import SimPoolEngine, StreamRecord, rfc3339, utcnow
from .server import Handler, drop

__all__ = ["OrchFaults", "SimOrchestrator", "SimPoolEngine"]

log = logging.getLogger(__name__)

_HELD_AT_MOST = 3600.0  # a request held without an answer, if the orchestrator never stops
# What a reverse proxy in front of a broken orchestrator sends, labelled as JSON.
_GARBAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
_READS = frozenset({"GET /orchestrator/status", "GET /engines", "GET /streams"})
_WRITES = frozenset(
    {"POST /provision/acestream", "POST /events/stream_started", "POST /events/stream_ended"}
)


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


class SimOrchestrator(EnginePool):
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

    def __repr__(self) -> str:
        alive = sum(e.alive for e in self.engines)
        open_streams = sum(s.open for s in self._streams.values())
        return (
            f"<SimOrchestrator {self._state}, {alive} of {len(self.engines)} engines alive, "
            f"{open_streams} open streams, faults={self.faults}>"
        )

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

    # --- wiring -------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/orchestrator/status", self._status)
        app.router.add_get("/engines", self._engines)
        app.router.add_get("/streams", self._list_streams)
        app.router.add_post("/provision/acestream", self._provision)
        app.router.add_post("/events/stream_started", self._stream_started)
        app.router.add_post("/events/stream_ended", self._stream_ended)

    async def _observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
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
            "timestamp": utcnow().isoformat(),
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
            "first_seen": rfc3339(pool.started_at),
            "last_seen": rfc3339(pool.last_seen),
            "last_health_check": rfc3339(pool.last_health_check),
            "last_stream_usage": rfc3339(pool.last_stream_usage),
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
            query = StreamsQuery.model_validate(dict(request.query))
        except ValidationError as exc:
            return unprocessable(exc, "query")
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
        parsed = await self._admit(request, ProvisionRequest)
        if isinstance(parsed, web.Response):
            return parsed
        _, body = parsed
        if self.faults.provision_answer == "garbage":
            return web.Response(body=_GARBAGE, content_type="application/json")
        if self.faults.provision_answer == "none":
            await self.wait_until(lambda: self._state != "running", _HELD_AT_MOST)
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
            self._hide(pool, delay)
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
        parsed = await self._admit(request, StreamStarted)
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
        now = utcnow()
        stream_id = (
            event.labels.get("stream_id")
            or f"{event.stream.key}|{event.session.playback_session_id}"
        )
        stream = StreamRecord(
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
        parsed = await self._admit(request, StreamEnded)
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
        stream.ended_at = utcnow()
        self._wake()
        return web.json_response({"updated": True, "stream": stream.to_json()})

    def _answer_unexpected(self) -> web.StreamResponse:
        self._count("unexpected")
        return web.json_response({"detail": "Not Found"}, status=404)

    # --- state --------------------------------------------------------------------------

    async def _admit(
        self, request: web.Request, model: type[Model]
    ) -> tuple[dict[str, Any], Model] | web.Response:
        """The body of a bearer-protected request, or the 401, 403 or 422 to answer."""
        denied = self._authorize(request)
        if denied is not None:
            return denied
        return await parse(request, model)

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
