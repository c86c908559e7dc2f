"""A simulated acestream-orchestrator in front of a pool of simulated AceStream engines.

It speaks one of two dialects, chosen by `dialect`: **"v2.1"** (the default: what the
image's `latest` tag runs since spring 2026; its routes and answers are in `orch_v21`) and
**"v1"** (v1.4.1's FastAPI API; in `orch_v1`). This module routes a request to the dialect's
handlers, counts it, applies the faults every route shares, and answers what both dialects
list alike (`/streams`) and what neither knows.

Each pool engine is a real `SimEngine` on its own port (see `engine_pool`).

Tests steer it through `faults` and read what happened from `calls`, `counters`, the event
bodies and `unexpected`.
"""

from __future__ import annotations

import collections
from typing import Any, Literal

from aiohttp import web
from pydantic import ValidationError

from .faults import GARBAGE, OrchFaults
from .orch_bodies import StreamsQuery, unprocessable
from .orch_records import SimPoolEngine
from .orch_v1 import V1Routes
from .orch_v21 import V21Routes
from .server import Handler, drop

__all__ = ["Dialect", "OrchFaults", "SimOrchestrator", "SimPoolEngine"]

Dialect = Literal["v2.1", "v1"]

_READS = frozenset({"GET /orchestrator/status", "GET /engines", "GET /streams"})
_WRITES = frozenset(
    {"POST /provision/acestream", "POST /events/stream_started", "POST /events/stream_ended"}
)
V2_1 = "/api/v1"
_CALLS = {
    "v1": _READS | _WRITES,
    "v2.1": {c.replace(" /", f" {V2_1}/") for c in _READS | _WRITES} | {f"GET {V2_1}/streams"},
}


class SimOrchestrator(V1Routes, V21Routes):
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

    # --- wiring -------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        if self.dialect == "v2.1":
            app.router.add_get(f"{V2_1}/orchestrator/status", self._orchestrator_status_v21)
            app.router.add_get(f"{V2_1}/engines", self._engines_v21)
            app.router.add_get(f"{V2_1}/streams", self._list_streams)
            app.router.add_post(f"{V2_1}/provision/acestream", self._provision_v21)
            app.router.add_post(f"{V2_1}/events/stream_started", self._stream_started_v21)
            app.router.add_post(f"{V2_1}/events/stream_ended", self._stream_ended_v21)
            app.router.add_get("/engines", self._other_dialect)
            return
        app.router.add_get(f"{V2_1}/engines", self._other_dialect)
        app.router.add_get("/orchestrator/status", self._orchestrator_status)
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
            return web.Response(body=GARBAGE, content_type="application/json")
        return await handler(request)

    # --- reads --------------------------------------------------------------------------

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
