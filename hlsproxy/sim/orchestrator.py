"""A simulated acestream-orchestrator in front of a pool of simulated AceStream engines.

It speaks one of two dialects, chosen by `dialect`:

**"v2.1"** (the default: what the image's `latest` tag runs since spring 2026), as read in
the orchestrator's Go source at tag v2.1.0.2 (github.com/krinkuto11/acestream-orchestrator:
`internal/api/management.go` for the routes and handlers, `internal/state/store.go` for the
stream store, `internal/state/types.go` for the event bodies and health values):
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

**"v1"** follows the orchestrator's v1.4.1 FastAPI code and docs (docs/ARCHITECTURE.md,
"The acestream-orchestrator"): public reads of the pool
and its streams, bearer-protected provisioning and stream events, FastAPI's 422 bodies, the
`provisioning_blocked` 503, and v1.4.1's quirk of ending the newest open stream of a
container when a stream_ended event names an unknown stream. `/api/v1/engines` is FastAPI's
404 there.

Each pool engine is a real `SimEngine` on its own port (see `engine_pool`).

Tests steer it through `faults` and read what happened from `calls`, `counters`, the event
bodies and `unexpected`.
"""

from __future__ import annotations

import collections
import logging
import random
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import ValidationError

from .engine_pool import EnginePool
from .faults import OrchFaults
from .orch_bodies import (
    GoStreamEnded,
    GoStreamStarted,
    Model,
    ProvisionRequest,
    StreamEnded,
    StreamsQuery,
    StreamStarted,
    parse,
    parse_go,
    unprocessable,
)
from .orch_records import SimPoolEngine, StreamRecord, rfc3339, utcnow
from .server import Handler, drop

__all__ = ["Dialect", "OrchFaults", "SimOrchestrator", "SimPoolEngine"]

Dialect = Literal["v2.1", "v1"]

log = logging.getLogger(__name__)

_HELD_AT_MOST = 3600.0  # a request held without an answer, if the orchestrator never stops
# What a reverse proxy in front of a broken orchestrator sends, labelled as JSON.
_GARBAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
_READS = frozenset({"GET /orchestrator/status", "GET /engines", "GET /streams"})
_WRITES = frozenset(
    {"POST /provision/acestream", "POST /events/stream_started", "POST /events/stream_ended"}
)
V2_1 = "/api/v1"
_CALLS = {
    "v1": _READS | _WRITES,
    "v2.1": {c.replace(" /", f" {V2_1}/") for c in _READS | _WRITES} | {f"GET {V2_1}/streams"},
}


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
    `stat_polled`, `unexpected`; v2.1 also `started_again` (a start for a content whose
    stream is open), `ended_unmatched` (an end that matched no open stream) and
    `other_dialect` (a request to the other dialect's engine list, as a client finding out
    which API answers makes). Counters of calls are by the path asked, prefix included.
    """

    def __init__(self, *, dialect: Dialect = "v2.1", **options: Any) -> None:
        self.dialect: Dialect = dialect
        self.stream_counts: Counter[str] = Counter()
        """v2.1: each engine's `stream_count`, by container id."""
        self._shuffle = random.Random(0)
        self.headers_seen: list[tuple[str, dict[str, str]]] = []
        """Per call of the API: the key headers it came with."""
        super().__init__(**options)
        # v1 polls each reported stream's stat URL; v2.1 does not.
        self.polls_stats = dialect == "v1"

    @property
    def prefix(self) -> str:
        return V2_1 if self.dialect == "v2.1" else ""

    def started_ids(self) -> list[str]:
        """The id each stream_started event filed its stream under, in order."""
        if self.dialect == "v2.1":
            return [
                str(e.get("content_id") or (e.get("stream") or {}).get("key"))
                for e in self.events_started
            ]
        return [str(e.get("labels", {}).get("stream_id")) for e in self.events_started]

    def ended_ids(self) -> list[str]:
        """The id each stream_ended event named, in order."""
        key = "content_id" if self.dialect == "v2.1" else "stream_id"
        return [str(e.get(key)) for e in self.events_ended]

    def unended_starts(self) -> list[dict[str, Any]]:
        """The stream_started bodies whose stream no stream_ended has named since."""
        open_: dict[str, list[dict[str, Any]]] = {}
        events = [(e, i) for e, i in zip(self.events_started, self.started_ids(), strict=True)]
        ends = collections.Counter(self.ended_ids())
        for event, stream_id in events:
            open_.setdefault(stream_id, []).append(event)
        return [
            event
            for stream_id, started in open_.items()
            for event in started[min(ends[stream_id], len(started)) :]
        ]

    def drain(self, container_id: str) -> None:
        """The engine takes no new stream from now on (v2.1 lists it `draining`)."""
        self.engine(container_id).draining = True
        self._wake()

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
        if self.dialect == "v2.1":
            app.router.add_get(f"{V2_1}/orchestrator/status", self._status_v21)
            app.router.add_get(f"{V2_1}/engines", self._engines_v21)
            app.router.add_get(f"{V2_1}/streams", self._list_streams)
            app.router.add_post(f"{V2_1}/provision/acestream", self._provision_v21)
            app.router.add_post(f"{V2_1}/events/stream_started", self._stream_started_v21)
            app.router.add_post(f"{V2_1}/events/stream_ended", self._stream_ended_v21)
            app.router.add_get("/engines", self._other_dialect)
            return
        app.router.add_get(f"{V2_1}/engines", self._other_dialect)
        app.router.add_get("/orchestrator/status", self._status)
        app.router.add_get("/engines", self._engines)
        app.router.add_get("/streams", self._list_streams)
        app.router.add_post("/provision/acestream", self._provision)
        app.router.add_post("/events/stream_started", self._stream_started)
        app.router.add_post("/events/stream_ended", self._stream_ended)

    async def _observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        call = f"{request.method} {request.path}"
        self.calls.append(call)
        if call in _CALLS[self.dialect]:
            self.counters[call] += 1
            keys = ("Authorization", "X-API-Key")
            self.headers_seen.append(
                (call, {h: request.headers[h] for h in keys if h in request.headers})
            )
        self._wake()
        if self.faults.down:
            return drop(request)
        if self.faults.garbage and request.method == "GET" and call in _CALLS[self.dialect]:
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

    async def _other_dialect(self, request: web.Request) -> web.StreamResponse:
        self._count("other_dialect")
        return self._not_found()

    def _answer_unexpected(self) -> web.StreamResponse:
        self._count("unexpected")
        return self._not_found()

    def _not_found(self) -> web.Response:
        if self.dialect == "v2.1":
            return web.Response(status=404, text="404 page not found\n")
        return web.json_response({"detail": "Not Found"}, status=404)

    # --- v2.1 ---------------------------------------------------------------------------

    async def _status_v21(self, request: web.Request) -> web.StreamResponse:
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

    async def _provision_v21(self, request: web.Request) -> web.StreamResponse:
        denied = self._authorize_v21(request)
        if denied is not None:
            return denied
        if self.faults.provision_answer == "garbage":
            return web.Response(body=_GARBAGE, content_type="application/json")
        if self.faults.provision_answer == "none":
            await self.wait_until(lambda: self._state != "running", _HELD_AT_MOST)
            return drop(request)
        if self._block() is not None:
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
