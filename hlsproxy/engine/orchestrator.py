"""An engine pool run by the acestream-orchestrator, in whichever API it speaks.

The first refresh finds out which API answers (engine/dialects.py): `GET /api/v1/engines`
(v2.1), else `GET /engines` (v1 and 2.0); a URL given with its `/api/v1` ends the same way.
The answer is logged once, and asked again after the orchestrator was away (it may come
back upgraded). An orchestrator that answers neither is logged with what each path got.

The engine list and the orchestrator's status are refreshed in the background, never per
request. Between refreshes our own session counts are trusted (engine/selection.py).
Provisioning is single-flight and bounded; stream events are posted by a background worker
with retries, so no client ever waits on them.

Any request that cannot reach the orchestrator (refused, timed out), and a refresh or a
provisioning that gets an answer it cannot read, sends new streams to the fixed engine at
once, and until a refresh gets an answer again.

What grows with what clients ask is bounded: the content -> engine memory by size (the
least recently asked content is forgotten first), the events waiting to be posted by
size, the failed engines by age and our session counts by the sessions that hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
from cachetools import LRUCache

from ..content import ContentKey
from ..errors import Unavailable
from .client import Engine, EngineSession
from .dialects import DIALECTS, V1, Call, Dialect
from .pool import OrchestratorEndReason, PoolEngine
from .selection import Candidate, choose

log = logging.getLogger(__name__)

REFRESH_EVERY = 2.0
REQUEST_TIMEOUT = 6.0  # the engine list makes the orchestrator ask every engine (5 s)
FAILED_FOR = 15.0  # an engine that stopped answering is avoided this long
REMEMBERED_CONTENTS = 1024  # contents whose engine is remembered, for content affinity
EVENTS_QUEUED = 1000  # events waiting for an orchestrator that does not answer
# An orchestrator that is away (restarting, say) gets its events when it is back, in order:
# a start without its end would hold an engine slot there for good.
EVENT_PATIENCE = 300.0
EVENT_MAX_DELAY = 5.0


class OrchestratorPool:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        url: str,
        api_key: str,
        container_id: str,
        max_per_engine: int,
        fallback: Engine,
        provision_timeout: float,
        request_timeout: float = REQUEST_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._url = url.rstrip("/").removesuffix("/api/v1")
        self._api_key = api_key
        self._dialect: Dialect | None = None  # the last one that answered
        self._detect = True  # at the start and after the orchestrator was away
        self._container_id = container_id
        self._max = max_per_engine
        self._fallback = fallback
        self._scheme = fallback.scheme
        self._provision_timeout = provision_timeout
        self._request_timeout = request_timeout
        self._clock = clock
        self._candidates: list[Candidate] = []
        self._names: dict[str, str] = {}
        self._status: dict[str, Any] = {}
        self._reachable: bool | None = None  # None until the first refresh
        self._refreshed = asyncio.Event()
        self._auth_reported = False
        self._ours: Counter[str] = Counter()
        self._recent: LRUCache[ContentKey, str] = LRUCache(REMEMBERED_CONTENTS)
        self._failed: dict[str, float] = {}
        self._stream_ids: dict[str, str] = {}  # playback session -> the stream id we sent
        # Per stream id: the playback session whose start was sent and whose end was not,
        # and the next session's start, held until that end is sent (v2.1 files streams by
        # content: an end sent after the next start would end the new one).
        self._open: dict[str, str] = {}
        self._held: dict[str, EngineSession] = {}
        self._provisioning: asyncio.Task[bool] | None = None
        self._events: asyncio.Queue[_Event] = asyncio.Queue(EVENTS_QUEUED)
        self._events_dropped = 0
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        state = {None: "starting", True: "reachable", False: "unreachable"}[self._reachable]
        return f"<OrchestratorPool {state} engines={len(self._candidates)} ours={dict(self._ours)}>"

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._refresh_forever(), name="hlsproxy-orchestrator-refresh"),
            asyncio.create_task(self._post_events(), name="hlsproxy-orchestrator-events"),
        ]

    async def aclose(self, drain: float = 3.0) -> None:
        """Stop refreshing; give the last events (shutdown's ended ones) a moment to land."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain):
                await self._events.join()
        for task in [*self._tasks, *([self._provisioning] if self._provisioning else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._provisioning is not None:
            await asyncio.gather(self._provisioning, return_exceptions=True)

    # --- EnginePool ---------------------------------------------------------------------

    async def acquire(self, key: ContentKey) -> Engine:
        if self._reachable is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._request_timeout):
                    await self._refreshed.wait()
        if not self._reachable:
            return self._fallback
        chosen = self._choose(key)
        if chosen is None:
            if self._provisioning is None or self._provisioning.done():
                self._provisioning = asyncio.create_task(self._provision())
                self._provisioning.add_done_callback(_retrieve)
            # Shielded: a client giving up does not cancel the provisioning for the others.
            if not await asyncio.shield(self._provisioning):
                return self._fallback  # the orchestrator went away while we asked it
            chosen = self._choose(key)
            if chosen is None:
                raise Unavailable("every engine is busy", retry_after=10)
        self._ours[chosen.engine_id] += 1
        self._recent[key] = chosen.engine_id
        return Engine(self._scheme, chosen.host, chosen.port, chosen.engine_id)

    def release(self, engine: Engine, key: ContentKey) -> None:
        if engine.container_id is not None and self._ours[engine.container_id] > 0:
            self._ours[engine.container_id] -= 1
            if not self._ours[engine.container_id]:
                del self._ours[engine.container_id]

    def session_started(self, session: EngineSession) -> None:
        if session.engine.container_id is None or self._dialect is None:
            return  # the fallback engine is not the orchestrator's
        stream_id = self._dialect.stream_id(session)
        if stream_id in self._open:
            self._held[stream_id] = session  # a later session of it replaces an earlier one
            return
        self._send_start(session, self._dialect)

    def session_ended(self, session: EngineSession, reason: OrchestratorEndReason) -> None:
        playback = session.info.playback_session_id
        stream_id = self._stream_ids.pop(playback, None)
        if stream_id is None:
            # Never sent: the orchestrator did not hear of it, so no end either (v1.4.1
            # would end some other stream of ours for an end it cannot match).
            for held_id, held in list(self._held.items()):
                if held is session:
                    del self._held[held_id]
            return
        self._open.pop(stream_id, None)
        if self._dialect is not None:
            # Dropped when the queue is full, v1 ends the stream itself once its stat URL
            # stops answering.
            body = self._dialect.ended(session, reason, self._container_id)
            self._post(self._dialect, "ended", body)
            following = self._held.pop(stream_id, None)
            if following is not None:
                self._send_start(following, self._dialect)

    def _send_start(self, session: EngineSession, dialect: Dialect) -> None:
        if self._post(dialect, "started", dialect.started(session, self._container_id)):
            stream_id = dialect.stream_id(session)
            self._stream_ids[session.info.playback_session_id] = stream_id
            self._open[stream_id] = session.info.playback_session_id

    def engine_failed(self, engine: Engine) -> None:
        if engine.container_id is not None:
            now = self._clock()
            self._failed = {id_: until for id_, until in self._failed.items() if until > now}
            self._failed[engine.container_id] = now + FAILED_FOR

    def engines(self) -> list[PoolEngine]:
        if not self._reachable:
            return [PoolEngine("fallback", str(self._fallback), "unknown", 0, None)]
        return [
            PoolEngine(
                self._names.get(c.engine_id, c.engine_id[:12]),
                f"{c.host}:{c.port}",
                "unhealthy" if self._is_failed(c.engine_id) else c.health,
                max(c.sessions, self._ours[c.engine_id]),
                self._max,
            )
            for c in self._candidates
        ]

    # --- choosing -----------------------------------------------------------------------

    def _is_failed(self, engine_id: str) -> bool:
        until = self._failed.get(engine_id)
        return until is not None and until > self._clock()

    def _usable(self) -> list[Candidate]:
        return [c for c in self._candidates if not self._is_failed(c.engine_id)]

    def _choose(self, key: ContentKey) -> Candidate | None:
        usable = self._usable()
        # Content affinity: a content comes back to the engine that last played it.
        previous = self._recent.get(key)
        for candidate in usable:
            if (
                candidate.engine_id == previous
                and candidate.accepts
                and candidate.health != "unhealthy"
                and self._ours[previous] < self._max
            ):
                return candidate
        return choose(usable, ours=self._ours, max_per_engine=self._max)

    # --- the orchestrator's API ---------------------------------------------------------

    async def _refresh_forever(self) -> None:
        while True:
            await self._refresh()
            await asyncio.sleep(REFRESH_EVERY)

    async def _refresh(self) -> None:
        try:
            dialect, engines = await self._engine_list()
            status = await self._get_json(dialect.path("status"))
            listed = _listed(engines, "engines")
            candidates = [dialect.candidate(e) for e in listed]
        except _UNUSABLE as exc:
            self._lost(exc)
        else:
            if self._reachable is False:
                log.warning("orchestrator at %s answers again; using its engines", self._url)
            self._reachable = True
            self._candidates = candidates
            self._names = {
                str(e["container_id"]): str(e.get("container_name") or "") for e in listed
            }
            self._status = status if isinstance(status, dict) else {}
        self._refreshed.set()

    async def _engine_list(self) -> tuple[Dialect, Any]:
        """The engine list, in the dialect found at the start or after an outage."""
        if not self._detect and self._dialect is not None:
            return self._dialect, await self._get_json(self._dialect.path("engines"))
        got: list[str] = []
        for dialect in DIALECTS:
            try:
                engines = await self._get_json(dialect.path("engines"))
            except aiohttp.ClientResponseError as exc:
                if exc.status != 404:
                    raise
                got.append(f"GET {dialect.path('engines')} → 404")
                continue
            if dialect != self._dialect:
                log.info("orchestrator at %s speaks %s", self._url, dialect)
            self._dialect, self._detect = dialect, False
            return dialect, engines
        raise _Misconfigured(", ".join(got))

    def _lost(self, exc: BaseException) -> None:
        """New streams go to the fixed engine from now until a refresh gets an answer."""
        if self._reachable is not False:
            log.warning(
                "orchestrator at %s unusable (%s); using the engine at %s",
                self._url,
                _what_it_got(exc),
                self._fallback,
            )
        self._reachable = False
        self._detect = True

    async def _get_json(self, path: str) -> Any:
        async with (
            asyncio.timeout(self._request_timeout),
            self._http.get(self._url + path) as resp,
        ):
            resp.raise_for_status()
            return await resp.json(content_type=None)

    async def _provision(self) -> bool:
        """True once an engine has room (a new one answers); False when the orchestrator
        cannot be used.

        Raises Unavailable when the orchestrator says it cannot add an engine, and when no
        engine comes up within the provisioning timeout (v2.1 accepts every request and
        adds nothing at its replica maximum).
        """
        dialect = self._dialect or V1
        blocked = dialect.blocked(self._status)
        if blocked is not None:
            raise blocked
        known = {c.engine_id for c in self._candidates}
        try:
            async with (
                asyncio.timeout(self._request_timeout),
                self._http.post(
                    self._url + dialect.path("provision"),
                    json=dialect.provision_body(),
                    headers=dialect.headers("provision", self._api_key),
                ) as resp,
            ):
                http_status = resp.status
                if http_status in (401, 403):
                    self._report_auth(http_status)
                    raise Unavailable("the orchestrator refused to add an engine", retry_after=60)
                body = await resp.json(content_type=None)
            new_id = dialect.provisioned(http_status, body)
        except _UNUSABLE as exc:
            self._lost(exc)
            return False
        log.info("orchestrator is adding an engine%s", f" ({new_id[:12]})" if new_id else "")
        deadline = self._clock() + self._provision_timeout
        while self._clock() < deadline:
            await self._refresh()
            if not self._reachable:
                return False
            free = choose(self._usable(), ours=self._ours, max_per_engine=self._max)
            if free is not None and (free.engine_id in known or await self._answers(free)):
                return True
            await asyncio.sleep(0.25)
        raise Unavailable(
            f"no new engine came up within {self._provision_timeout:g}s", retry_after=10
        )

    async def _answers(self, candidate: Candidate) -> bool:
        url = f"{Engine(self._scheme, candidate.host, candidate.port).base_url}/webui/api/service"
        try:
            async with (
                asyncio.timeout(2),
                self._http.get(url, params={"method": "get_version"}) as resp,
            ):
                return resp.status == 200 and bool(
                    (await resp.json(content_type=None)).get("result")
                )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, AttributeError):
            return False

    async def _post_events(self) -> None:
        while True:
            path, body, headers = await self._events.get()
            loop = asyncio.get_running_loop()
            give_up_at = loop.time() + EVENT_PATIENCE
            try:
                delay = 0.25
                while (problem := await self._deliver(path, body, headers)) is not None:
                    if loop.time() + delay > give_up_at:
                        log.warning("orchestrator event %s not delivered: %s", path, problem)
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, EVENT_MAX_DELAY)
            finally:
                self._events.task_done()

    async def _deliver(
        self, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> str | None:
        """Post one event; None when it landed or can never land (auth), else the problem."""
        try:
            async with (
                asyncio.timeout(self._request_timeout),
                self._http.post(self._url + path, json=body, headers=headers) as resp,
            ):
                if resp.status in (401, 403):
                    self._report_auth(resp.status)
                    return None
                return None if resp.status < 400 else f"HTTP {resp.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._lost(exc)
            return type(exc).__name__

    def _post(self, dialect: Dialect, call: Call, body: dict[str, Any]) -> bool:
        """Queue an event for the worker; False when the queue is full and it is dropped."""
        try:
            self._events.put_nowait(
                (dialect.path(call), body, dialect.headers(call, self._api_key))
            )
        except asyncio.QueueFull:
            self._events_dropped += 1
            if self._events_dropped == 1:
                log.warning(
                    "orchestrator at %s is %d events behind; dropping new ones",
                    self._url,
                    EVENTS_QUEUED,
                )
            return False
        self._events_dropped = 0
        return True

    def _report_auth(self, http_status: int) -> None:
        if not self._auth_reported:
            self._auth_reported = True
            log.error(
                "the orchestrator answered HTTP %d to our API key: check ACEXY_ORCH_APIKEY",
                http_status,
            )


_Event = tuple[str, dict[str, Any], dict[str, str]]  # path, body, headers

# What a request to the orchestrator raises when it cannot be used: no connection, no
# answer in time, or an answer that is not the JSON it documents.
_UNUSABLE = (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError, TypeError)


def _listed(body: Any, field: str) -> list[dict[str, Any]]:
    """A bare array, as both APIs answer; also one wrapped in an object under `field`."""
    items = body.get(field) if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise ValueError(f"no {field} list")
    return [item for item in items if isinstance(item, dict)]


class _Misconfigured(ValueError):
    """Neither API answers at the URL: what each path got."""


def _what_it_got(exc: BaseException) -> str:
    if isinstance(exc, _Misconfigured):
        return f"{exc}; check ACEXY_ORCH_URL"
    if isinstance(exc, aiohttp.ClientResponseError) and exc.request_info is not None:
        return f"{exc.request_info.method} {exc.request_info.url.path} → {exc.status}"
    return type(exc).__name__


def _retrieve(task: asyncio.Task[bool]) -> None:
    if not task.cancelled():
        task.exception()
