"""The simulated orchestrator's v2.1 dialect: the routes and answers of v2.1.0.2.

What the image's `latest` tag runs since spring 2026, as read in the orchestrator's Go source
at tag v2.1.0.2 (github.com/krinkuto11/acestream-orchestrator: `internal/api/management.go`
for the routes and handlers, `internal/state/store.go` for the stream store,
`internal/state/types.go` for the event bodies and health values):
- Everything under `/api/v1`; any other path is Go's `404 page not found` (text).
- `GET /api/v1/engines`: a bare array, here shuffled (the real one comes from a map, in no
  fixed order), with `stream_count`, `draining`, `api_port`, `streams: []`; an engine is
  `unknown` until its startup probe passes, and a provisioned engine is listed `unknown`
  while it starts.
- `GET /api/v1/orchestrator/status`: `can_provision` is false only while the circuit
  breaker is open, `blocked_reason` then `{"code": "circuit_breaker", "message": ...}`, else
  null; `capacity.total` counts every listed engine, `max_replicas` is `max_engines`.
- `POST /api/v1/provision/acestream`: key in `X-API-Key`, `Authorization: Bearer` or
  `?key=` (missing: 401 `unauthorized`, wrong: 403 `forbidden`, both text); the body is
  ignored and the answer is always `200 {"status": "provisioning"}`; at the replica maximum
  or with the circuit breaker open nothing is added.
- `POST /api/v1/events/stream_started` and `stream_ended`: no key. A body Go cannot decode
  into its struct (a wrong type, as `"is_live": true`) is 400 `{"error": "invalid json"}`; a
  start without `content_id` or `stream.key` is 400 `{"error": "content_id required"}`. The
  stream is filed under its content key and charged to `engine_id`, else `container_id`:
  the same content started twice replaces the record and counts twice on its engine. An end
  names `content_id` (or `stream_id`), takes one off its engine's count, and answers
  `200 {"status": "ended"}` whether it matched or not.
- It does not poll the stat URLs of reported streams (its stat collector belongs to its own
  built-in proxy).
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from typing import Any

from aiohttp import web

from .engine_pool import EnginePool
from .faults import GARBAGE, HELD_AT_MOST
from .orch_bodies import GoStreamEnded, GoStreamStarted, parse_go
from .orch_records import SimPoolEngine, StreamRecord, rfc3339, utcnow
from .server import drop


class V21Routes(EnginePool):
    """The handlers of the v2.1 routes; `SimOrchestrator` routes to them in dialect "v2.1"."""

    def __init__(self, **options: Any) -> None:
        self.stream_counts: Counter[str] = Counter()
        """Each engine's `stream_count`, by container id."""
        self._shuffle = random.Random(0)
        super().__init__(**options)

    # --- reads --------------------------------------------------------------------------

    async def _orchestrator_status_v21(self, request: web.Request) -> web.StreamResponse:
        await self._probe_all()
        listed = list(self.engines)
        open_streams = [s for s in self._streams.values() if s.open]
        used = sum(self.stream_counts[e.container_id] > 0 for e in listed)
        breaker = self.faults.provision_blocked == "circuit_breaker"
        health = [self._health_v21(e) for e in listed]
        body = {
            "status": "unavailable" if not listed else "degraded" if breaker else "healthy",
            "engines": {
                "total": len(listed),
                "running": health.count("healthy") + health.count("unhealthy"),
                "healthy": health.count("healthy"),
                "unhealthy": health.count("unhealthy"),
                "draining": sum(e.draining for e in listed),
            },
            "streams": {"active": len(open_streams), "total": len(self._streams)},
            "capacity": {
                "total": len(listed),
                "used": used,
                "available": max(len(listed) - used, 0),
                "max_replicas": self.max_engines,
                "min_replicas": self.initial_engines,
            },
            "vpn": {"enabled": False, "nodes_total": 0, "healthy": 0},
            "provisioning": {
                "can_provision": not breaker,
                "circuit_breaker_state": "open" if breaker else "closed",
                "last_failure": "",
                "blocked_reason": {
                    "code": "circuit_breaker",
                    "message": "Provisioning circuit breaker is open",
                }
                if breaker
                else None,
            },
            "timestamp": utcnow().isoformat(),
        }
        return web.json_response(body)

    @staticmethod
    def _health_v21(pool: SimPoolEngine) -> str:
        return pool.health_status if pool.listed else "unknown"

    async def _engines_v21(self, request: web.Request) -> web.StreamResponse:
        await self._probe_all()
        items = [self._engine_json_v21(e) for e in self.engines]
        self._shuffle.shuffle(items)
        return web.json_response(items)

    def _engine_json_v21(self, pool: SimPoolEngine) -> dict[str, Any]:
        return {
            "container_id": pool.container_id,
            "container_name": pool.container_name,
            "host": pool.host,
            "port": pool.port,
            "api_port": pool.port,
            "labels": dict(pool.labels),
            "forwarded": pool.forwarded,
            "health_status": self._health_v21(pool),
            "first_seen": rfc3339(pool.started_at),
            "last_seen": rfc3339(pool.last_seen or pool.started_at),
            "draining": pool.draining,
            "stream_count": self.stream_counts[pool.container_id],
            "total_peers": 0,
            "total_speed_down": 0,
            "total_speed_up": 0,
            "cpu_percent": 0,
            "memory_usage": 0,
            "memory_percent": 0,
            "streams": [],
        }

    # --- provisioning -------------------------------------------------------------------

    async def _provision_v21(self, request: web.Request) -> web.StreamResponse:
        denied = self._authorize_v21(request)
        if denied is not None:
            return denied
        if self.faults.provision_answer == "garbage":
            return web.Response(body=GARBAGE, content_type="application/json")
        if self.faults.provision_answer == "none":
            await self.wait_until(lambda: self._state != "running", HELD_AT_MOST)
            return drop(request)
        if self._blocked_by() is not None:
            # Accepted all the same: the wanted replica count goes up, no engine comes.
            self._count("provision_blocked")
            return web.json_response({"status": "provisioning"})
        self._reserved += 1
        try:
            pool = await self._launch({})
        except RuntimeError:
            return web.json_response({"error": "controller not available"}, status=503)
        finally:
            self._reserved -= 1
        self._hide(pool, max(self.faults.provision_delay, 0.0))
        self._count("provisioned")
        return web.json_response({"status": "provisioning"})

    # --- events -------------------------------------------------------------------------

    async def _stream_started_v21(self, request: web.Request) -> web.StreamResponse:
        parsed = await parse_go(request, GoStreamStarted)
        if parsed is None:
            return web.json_response({"error": "invalid json"}, status=400)
        raw, event = parsed
        content = event.content_id or (event.stream.key if event.stream else "")
        if not content:
            return web.json_response({"error": "content_id required"}, status=400)
        engine_id = event.engine_id or event.container_id
        known = next((e for e in self.engines if e.container_id == engine_id), None)
        if known is None:
            self._count("unknown_engine")
        previous = self._streams.get(content)
        if previous is not None and previous.open:
            self._count("started_again")
        session = event.session
        now = utcnow()
        stream = StreamRecord(
            id=content,
            key_type=(event.stream.key_type if event.stream else "") or "content_id",
            key=content,
            container_id=engine_id,
            container_name=known.container_name if known else None,
            playback_session_id=session.playback_session_id if session else "",
            stat_url=session.stat_url if session else "",
            command_url=session.command_url if session else "",
            is_live=bool(session.is_live) if session else False,
            started_at=now,
        )
        self._streams[content] = stream
        if engine_id:
            self.stream_counts[engine_id] += 1
        if known is not None:
            known.last_stream_usage = now
        self.events_started.append(raw)
        self._wake()
        return web.json_response(stream.to_json())

    async def _stream_ended_v21(self, request: web.Request) -> web.StreamResponse:
        parsed = await parse_go(request, GoStreamEnded)
        if parsed is None:
            return web.json_response({"error": "invalid json"}, status=400)
        raw, event = parsed
        if not event.content_id and not event.stream_id:
            return web.json_response({"error": "content_id or stream_id required"}, status=400)
        self.events_ended.append(raw)
        stream = self._streams.get(event.content_id) or self._streams.get(event.stream_id)
        if stream is None or not stream.open:
            self._count("ended_unmatched")
        else:
            stream.ended_at = utcnow()
            if self.stream_counts[stream.container_id] > 0:
                self.stream_counts[stream.container_id] -= 1
        self._wake()
        return web.json_response({"status": "ended"})

    def _authorize_v21(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        token = request.headers.get("X-API-Key", "")
        if not token:
            auth = request.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        token = token or request.query.get("key", "")
        if not token:
            self._count("auth_failed")
            return web.Response(status=401, text="unauthorized\n")
        if not secrets.compare_digest(token.encode(), self.api_key.encode()):
            self._count("auth_failed")
            return web.Response(status=403, text="forbidden\n")
        return None
