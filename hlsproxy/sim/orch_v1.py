"""The simulated orchestrator's v1 dialect: the routes and answers of v1.4.1.

It follows the orchestrator's v1.4.1 FastAPI code and docs (docs/ARCHITECTURE.md, "The
acestream-orchestrator"): public reads of the pool and its streams, bearer-protected
provisioning and stream events, FastAPI's 422 bodies, the `provisioning_blocked` 503, and
v1.4.1's quirk of ending the newest open stream of a container when a stream_ended event
names an unknown stream. `/api/v1/engines` is FastAPI's 404 there.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .engine_pool import EnginePool
from .faults import GARBAGE, HELD_AT_MOST
from .orch_bodies import (
    Model,
    ProvisionRequest,
    StreamEnded,
    StreamStarted,
    parse,
)
from .orch_records import SimPoolEngine, StreamRecord, rfc3339, utcnow
from .server import drop

log = logging.getLogger(__name__)


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


class V1Routes(EnginePool):
    """The handlers of the v1 routes; `SimOrchestrator` routes to them in dialect "v1"."""

    # --- reads --------------------------------------------------------------------------

    async def _orchestrator_status(self, request: web.Request) -> web.StreamResponse:
        await self._probe_all()
        listed = [e for e in self.engines if e.listed]
        running = [e for e in listed if e.alive]
        open_streams = [s for s in self._streams.values() if s.open]
        busy = {s.container_id for s in open_streams}
        used = sum(e.container_id in busy for e in running)
        block = self._block()
        code = block[0] if block else None
        if not running:
            overall = "unavailable"
        elif code in ("vpn_disconnected", "circuit_breaker"):
            overall = "degraded"
        else:
            overall = "healthy"
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
            "status": overall,
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

    # --- provisioning -------------------------------------------------------------------

    async def _provision(self, request: web.Request) -> web.StreamResponse:
        parsed = await self._admit(request, ProvisionRequest)
        if isinstance(parsed, web.Response):
            return parsed
        _, body = parsed
        if self.faults.provision_answer == "garbage":
            return web.Response(body=GARBAGE, content_type="application/json")
        if self.faults.provision_answer == "none":
            await self.wait_until(lambda: self._state != "running", HELD_AT_MOST)
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

    def _block(self) -> tuple[str, _Block] | None:
        code = self._blocked_by()
        if code is None:
            return None
        return code, _BLOCKS.get(code) or _Block(
            code, f"Provisioning is blocked ({code})", 30, False, True
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
