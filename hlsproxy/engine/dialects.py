"""The two APIs the acestream-orchestrator speaks, and how the pool speaks each: pure data.

**v2.1** (the Go rewrite, releases 2.1.x, the image's `latest` tag since spring 2026; read in
its source at tag v2.1.0.2, `internal/api/management.go`, `internal/state/store.go` and
`internal/config/config.go`): every call under `/api/v1` on port 8000; an un-prefixed path
there is Go's `404 page not found`.
- `GET /api/v1/engines`: a bare array in no fixed order. `health_status` is `unknown` until
  the engine's startup probe passes, then `healthy` or `unhealthy`; `draining` engines take
  no new stream; `stream_count` is the number of streams the orchestrator was told of.
- `GET /api/v1/orchestrator/status`: `provisioning.can_provision` is false only while its
  circuit breaker is not closed, and `blocked_reason` is then an object
  (`{"code": "circuit_breaker", "message": ...}`), else null. `capacity.total` counts the
  listed engines and `capacity.max_replicas` is its MAX_REPLICAS: at that maximum a
  provisioning is accepted and adds nothing, so the pool does not ask.
- `POST /api/v1/provision/acestream` (key: `X-API-Key`, `Authorization: Bearer` or
  `?key=`): the body is ignored and the answer is always `200 {"status": "provisioning"}`,
  also at the replica maximum: it raises the wanted replica count by one and names no
  engine, so the pool waits for a new healthy engine in the list.
- `POST /api/v1/events/stream_started` and `.../stream_ended` take no key. A stream's id is
  its content key (`content_id`, else `stream.key`); `engine_id`, else `container_id`, names
  the engine it plays on, whose `stream_count` goes up by one per start (the same content
  started twice counts twice) and down by one for an end naming the content. An end that
  matches nothing still answers 200. So exactly one end per start, in order: a start for a
  content whose earlier session's end is not yet sent waits for that end.

**v1** (FastAPI, 1.x, and 2.0, which keeps its paths; from the orchestrator's v1.4.1 code and
the acexy fork that talks to it): the same calls without the prefix. Provisioning and the
events take `Authorization: Bearer`; provisioning answers the new engine's `container_id`,
or 503 with `{"detail": {"code", "message", "recovery_eta_seconds", ...}}`; the status
reports a block as `blocked_reason` text with `blocked_reason_details`. A stream's id is
`<key>|<playback session id>`, sent in `labels.stream_id`; `container_id` is the proxy's own.

Reads (the engine list, the status) are public in both and are sent without the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import Unavailable
from .client import EngineSession
from .selection import Candidate

CHECKED_RELEASE = "v2.1.0.2"
"""The orchestrator release whose source the v2.1 facts above come from; the compose file
pins its image to this tag."""

Call = Literal["engines", "status", "provision", "started", "ended"]

_PATHS: dict[Call, str] = {
    "engines": "/engines",
    "status": "/orchestrator/status",
    "provision": "/provision/acestream",
    "started": "/events/stream_started",
    "ended": "/events/stream_ended",
}


@dataclass(frozen=True, slots=True)
class Dialect:
    name: Literal["v2.1", "v1"]
    prefix: str
    key_header: Literal["X-API-Key", "Authorization"]
    keyed: frozenset[Call]
    """The calls that take the key; the others are sent without it."""

    def __str__(self) -> str:
        return f"the {self.name} API ({self.prefix or '/'})"

    def path(self, call: Call) -> str:
        return self.prefix + _PATHS[call]

    def headers(self, call: Call, api_key: str) -> dict[str, str]:
        if not api_key or call not in self.keyed:
            return {}
        value = f"Bearer {api_key}" if self.key_header == "Authorization" else api_key
        return {self.key_header: value}

    # --- the engine list ----------------------------------------------------------------

    def candidate(self, engine: dict[str, Any]) -> Candidate:
        health = engine.get("health_status")
        last = engine.get("last_stream_usage") or ""
        if self.name == "v2.1":
            # `unknown` is an engine whose startup probe has not passed: not usable yet.
            accepts = health == "healthy" and not engine.get("draining")
            sessions = int(engine.get("stream_count") or 0)
        else:
            accepts = not engine.get("draining")
            sessions = len(engine.get("streams") or [])
        return Candidate(
            engine_id=str(engine["container_id"]),
            host=str(engine["host"]),
            port=int(engine["port"]),
            health=health if health in ("healthy", "unhealthy") else "unknown",
            forwarded=bool(engine.get("forwarded")),
            # RFC 3339 strings of one format order like the times they name.
            last_used=_order(str(last)),
            sessions=sessions,
            accepts=accepts,
        )

    # --- provisioning -------------------------------------------------------------------

    def blocked(self, status: dict[str, Any]) -> Unavailable | None:
        """What the orchestrator's last status says about adding an engine: None when it may be
        asked."""
        capacity = status.get("capacity")
        if self.name == "v2.1" and isinstance(capacity, dict):
            # It would accept the request and add nothing: fail now, not after the timeout.
            total, most = capacity.get("total"), capacity.get("max_replicas")
            if isinstance(total, int) and isinstance(most, int) and 0 < most <= total:
                return _blocked({}, f"it runs its maximum of {most} engines")
        provisioning = status.get("provisioning")
        if not isinstance(provisioning, dict) or provisioning.get("can_provision") is not False:
            return None
        reason = provisioning.get("blocked_reason")
        if self.name == "v2.1":
            return _blocked(reason if isinstance(reason, dict) else {}, "provisioning is blocked")
        details = provisioning.get("blocked_reason_details")
        return _blocked(details if isinstance(details, dict) else {}, reason)

    def provision_body(self) -> dict[str, Any]:
        return {} if self.name == "v2.1" else {"labels": {}, "env": {}}

    def provisioned(self, http_status: int, body: Any) -> str | None:
        """The new engine's id when the answer names one; raises Unavailable for a refusal
        and KeyError/TypeError for an answer that is not the documented one."""
        if http_status >= 400:
            detail = body.get("detail") if isinstance(body, dict) else None
            raise _blocked(detail if isinstance(detail, dict) else {}, detail)
        if self.name == "v2.1":
            if body["status"] != "provisioning":
                raise ValueError(f"provisioning answered {body!r}")
            return None
        return str(body["container_id"])

    # --- stream events ------------------------------------------------------------------

    def stream_id(self, session: EngineSession) -> str:
        """What the orchestrator files the stream under, and the end event names."""
        key = session.request.key
        if self.name == "v2.1":
            return key.value
        return f"{key.value}|{session.info.playback_session_id}"

    def started(self, session: EngineSession, proxy_id: str) -> dict[str, Any]:
        engine_id = session.engine.container_id or ""
        body = _nested(session)
        if self.name == "v2.1":
            # The stream is charged to the engine named here, so it is the engine's id;
            # `container_id` too, for the v2.x releases that read only that. The proxy's
            # own id goes in the labels, which v2.1 ignores.
            body |= {"content_id": self.stream_id(session), "engine_id": engine_id}
            body["container_id"] = engine_id
            if proxy_id:
                body["labels"] = {"proxy_container_id": proxy_id}
            return body
        body["labels"] = {"stream_id": self.stream_id(session), "engine_container_id": engine_id}
        if proxy_id:
            body["container_id"] = proxy_id
        return body

    def ended(self, session: EngineSession, reason: str, proxy_id: str) -> dict[str, Any]:
        if self.name == "v2.1":
            return {"content_id": self.stream_id(session), "reason": reason}
        body: dict[str, Any] = {"stream_id": self.stream_id(session), "reason": reason}
        if proxy_id:
            body["container_id"] = proxy_id
        return body


def _nested(session: EngineSession) -> dict[str, Any]:
    """The nested engine, stream and session blocks both dialects read."""
    key = session.request.key
    return {
        "engine": {"host": session.engine.host, "port": session.engine.port},
        "stream": {"key_type": key.kind, "key": key.value},
        "session": {
            "playback_session_id": session.info.playback_session_id,
            "stat_url": session.url(session.info.stat_url),
            "command_url": session.url(session.info.command_url),
            "is_live": int(session.info.is_live),
        },
    }


V2_1 = Dialect("v2.1", "/api/v1", "X-API-Key", frozenset({"provision"}))
V1 = Dialect("v1", "", "Authorization", frozenset({"provision", "started", "ended"}))
DIALECTS = (V2_1, V1)
"""In the order they are tried: what users run today first."""


def _order(timestamp: str) -> float:
    digits = re.sub(r"\D", "", timestamp)[:14]
    return float(digits) if digits else 0.0


def _blocked(details: dict[str, Any], text: object) -> Unavailable:
    message = str(details.get("message") or text or "provisioning is blocked")
    eta = details.get("recovery_eta_seconds")
    retry = float(eta) if isinstance(eta, int | float) and eta > 0 else 30.0
    return Unavailable(f"no engine is free and the orchestrator cannot add one: {message}", retry)
