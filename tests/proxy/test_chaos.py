"""Chaos: the proxy under a seeded storm of viewers and engine, pool and orchestrator faults.

The proxy runs in-process against the simulated orchestrator (a pool of simulated engines)
and a fallback engine at ACEXY_HOST. Time is accelerated: the engines play 8 times faster
than real time and every timeout of the proxy is cut to match, so a run of `CHAOS_SECONDS`
(default 25) of load is a few minutes of a content's life.

The load, each part switched on by name in `CHAOS_LOAD` (comma-separated, default all):
`ts` (MPEG-TS clients), `hls` (HLS viewers that poll playlists and fetch segments like a
player, multivariant streams included), `laggard` (TS clients that stop reading for a while),
`zap` (a viewer hopping between contents), `faults` (TS reads stalled or cut, error JSON,
playlist and segment HTTP errors, segment bodies stalled or cut after their headers, slow
starts and stops, each for a while), `kill` (pool engines killed and restarted
on their port), `orch` (the orchestrator goes away and comes back). `ACEXY_MAX_STREAMS` is
below the number of contents, so it is reached.

Checked throughout and at the end (a violation fails the run, with the seed and the trace):
- every engine session was stopped exactly once (at most once when its engine was killed
  under it), none expired at the engine, and no stop ended a newer session of its content;
- the pool's counts are back to zero and every `stream_started` event has its `stream_ended`;
- no 500; no 5xx body names an engine's port; no body carries another response (`HTTP/1.`
  in a TS body or a segment, a segment shorter or longer than its Content-Length, a response
  that cannot be parsed); no client waited longer than `START_BOUND` for an answer or
  `GAP_BOUND` for data or the end of its stream;
- once the proxy is closed, no task, socket or file descriptor is left over, and the
  process's RSS grew by less than `RSS_BOUND` bytes.

Replay a seed with `CHAOS_SEEDS=7 .venv/bin/pytest tests/test_chaos.py`; `CHAOS_SEEDS=1-20`
runs twenty. The choices (who comes, what breaks, when) follow the seed; the event loop's
interleaving does not, so a replay shows the same storm, not the same microsecond.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hlsproxy.config import load_settings
from hlsproxy.sim import start_engine
from hlsproxy.sim.engine import Faults, SimEngine, SimSession
from hlsproxy.sim.media import MediaLoop
from hlsproxy.sim.orchestrator import SimOrchestrator
from hlsproxy.web.app import create_app
from hlsproxy.web.keys import POOL
from tests.helpers import ProxyServer, content_id, eventually

pytestmark = pytest.mark.slow

KEY = "chaos-key"
LOADS = frozenset({"ts", "hls", "laggard", "zap", "faults", "kill", "orch"})
TIME_SCALE = 8.0
SETTINGS = {
    "linger": "300ms",
    "m3u8_stream_timeout": "2s",
    "empty_timeout": "1500ms",
    "no_response_timeout": "2s",
    "upstream_retries": "2",
    "max_streams": "5",
    "max_streams_per_engine": "2",
    "orch_provision_timeout": "3s",
    "buffer_size": "256KiB",
    "hls_prefetch": "1",
}
START_BOUND = 3.0 + 3 * 2.0 + 2.0
"""Seconds a request may wait for its answer: a provisioning (3 s), a wait for an older stop
of the content, a start and a playlist (2 s each), and 2 s of slack for a loaded machine."""
GAP_BOUND = (2 + 1) * (1.5 + 2.0) + 2.0
"""Seconds a TS client may go without data or an end: the first try and each retry may
each wait out the empty timeout (1.5 s) after a start (2 s), plus slack."""
SETTLE_BOUND = 15.0
"""Seconds after the last client left for every session to end and the pool to empty."""
RSS_BOUND = 128 * 1024 * 1024
PLAYER_POLL = 5.0 / TIME_SCALE
"""A player reloads its playlist about once per target duration (5 s, accelerated)."""
CONTENTS = [content_id(n) for n in range(1, 11)] + [f"aaaa{n:036x}" for n in (1, 2)]
"""Ten MPEG-TS channels and two multivariant ones, for ACEXY_MAX_STREAMS of 5."""
_FORGIVEN = (
    aiohttp.ClientPayloadError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    ConnectionResetError,
)
"""A connection the proxy ended: a player retries. (Parse errors are not among them.)"""


def seeds() -> list[int]:
    picked: list[int] = []
    for part in os.environ.get("CHAOS_SEEDS", "1,2").split(","):
        first, _, last = part.strip().partition("-")
        picked += range(int(first), int(last or first) + 1)
    return picked


def loads() -> frozenset[str]:
    named = os.environ.get("CHAOS_LOAD", "")
    chosen = frozenset(x.strip() for x in named.split(",") if x.strip()) or LOADS
    unknown = chosen - LOADS
    if unknown:
        raise ValueError(f"CHAOS_LOAD names {sorted(unknown)}; it knows {sorted(LOADS)}")
    return chosen


@dataclass
class Ledger:
    """What happened (the trace) and what went wrong (the violations), in run time."""

    t0: float = field(default_factory=time.monotonic)
    trace: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    longest_gap: float = 0.0
    longest_answer: float = 0.0

    def note(self, what: str) -> None:
        self.trace.append(f"{time.monotonic() - self.t0:7.2f} {what}")

    def violate(self, what: str) -> None:
        self.note(f"VIOLATION {what}")
        self.violations.append(f"{time.monotonic() - self.t0:7.2f} {what}")


class Chaos:
    """One run: the simulators, the proxy, the actors and the ledger."""

    def __init__(self, seed: int, load: frozenset[str], seconds: float) -> None:
        self.rng = random.Random(seed)
        self.load = load
        self.seconds = seconds
        self.ledger = Ledger()
        self.media = MediaLoop.load()
        options = {"media": self.media, "time_scale": TIME_SCALE, "idle_expiry": 20.0}
        self.orch = SimOrchestrator(
            api_key=KEY, engines=2, max_engines=4, stat_interval=0.5, engine_options=options
        )
        self.engine_options = options
        self.fallback: SimEngine | None = None
        self.fallback_runner: web.AppRunner | None = None
        self.proxy: TestServer | None = None
        self.base = ""
        self.actors: set[asyncio.Task[None]] = set()
        self.dumped = False
        self.reported: set[tuple[str, int]] = set()
        """(violation, session id) already in the ledger."""
        self.killed: set[int] = set()
        """ids of engines killed under their sessions."""

    # --- setting up and taking down ------------------------------------------------------

    async def start(self) -> None:
        self.fallback, self.fallback_runner, port = await start_engine(
            "127.0.0.1", 0, **self.engine_options
        )
        await self.orch.serve()
        raw = {
            "host": "127.0.0.1",
            "port": str(port),
            "orch_url": self.orch.url,
            "orch_apikey": KEY,
            **SETTINGS,
        }
        self.proxy = ProxyServer(create_app(load_settings(raw, env={})), host="127.0.0.1")
        await self.proxy.start_server()
        self.base = str(self.proxy.make_url(""))

    async def close_proxy(self) -> None:
        if self.proxy is not None:
            await self.proxy.close()

    async def close_sims(self) -> None:
        await self.orch.stop()
        if self.fallback_runner is not None:
            await self.fallback_runner.cleanup()

    def engines(self) -> Iterator[tuple[SimEngine, bool]]:
        """Every engine that ever ran, and whether it was killed."""
        if self.fallback is not None:
            yield self.fallback, False
        for pool in self.orch.engines:
            for sim in [*pool.past, pool.sim]:
                yield sim, id(sim) in self.killed or not pool.alive

    def ports(self) -> set[int]:
        return {p.port for p in self.orch.engines} | (
            {self.fallback_runner.addresses[0][1]} if self.fallback_runner else set()
        )

    # --- running --------------------------------------------------------------------------

    def spawn(self, actor: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(actor)
        task.set_name(f"chaos-{name}")
        self.actors.add(task)
        task.add_done_callback(self.actors.discard)
        task.add_done_callback(self._crashed)

    def _crashed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.ledger.violate(f"{task.get_name()} crashed: {task.exception()!r}")

    async def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        watchers = [asyncio.create_task(self._watch(), name="chaos-watch")]
        if self.load & {"faults", "kill", "orch"}:
            watchers.append(asyncio.create_task(self._monkey(deadline), name="chaos-monkey"))
        ts = hls = laggards = 0
        if "zap" in self.load:
            self.spawn(self._zapper(deadline), "zapper")
        while time.monotonic() < deadline:
            kinds = [k for k in ("ts", "hls", "laggard") if k in self.load]
            if kinds:
                kind = self.rng.choice(kinds)
                cid = self.rng.choice(CONTENTS)
                watch = self.rng.uniform(1.0, 8.0)
                if kind == "ts":
                    ts += 1
                    self.spawn(self._ts_client(cid, watch), f"ts-{ts}")
                elif kind == "laggard":
                    laggards += 1
                    pause = self.rng.uniform(1.0, 4.0)
                    self.spawn(self._ts_client(cid, watch, pause), f"laggard-{laggards}")
                else:
                    hls += 1
                    self.spawn(self._hls_viewer(cid, watch), f"hls-{hls}")
            await asyncio.sleep(self.rng.expovariate(2.5))
        self.ledger.note(f"load over: {ts} TS clients, {hls} HLS viewers, {laggards} laggards")
        for task in watchers[1:]:
            task.cancel()
        await asyncio.gather(*watchers[1:], return_exceptions=True)
        await self._heal()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(START_BOUND + GAP_BOUND + 10):
                while self.actors:
                    await asyncio.gather(*self.actors, return_exceptions=True)
        for task in list(self.actors):
            self.ledger.violate(f"{task.get_name()} still running after the load ended")
            task.cancel()
        await asyncio.gather(*self.actors, return_exceptions=True)
        watchers[0].cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    async def _heal(self) -> None:
        """Undo every fault, so that the end checks see what the proxy left behind."""
        for sim, _ in self.engines():
            sim.faults = Faults()
        if self.orch.port is not None and not self.orch.serving:
            await self.orch.serve(self.orch.port)
        self.ledger.note("healed")

    # --- players --------------------------------------------------------------------------

    async def _answer(
        self, http: aiohttp.ClientSession, url: str, who: str
    ) -> aiohttp.ClientResponse | None:
        """The response's headers within START_BOUND, checked; None when there is none."""
        began = time.monotonic()
        try:
            async with asyncio.timeout(START_BOUND):
                resp = await http.get(url)
        except TimeoutError:
            self.ledger.violate(f"{who}: no answer to {url} within {START_BOUND:g} s")
            self._where_the_proxy_waits()
            return None
        except _FORGIVEN as exc:
            self.ledger.note(f"{who}: {url} connection ended: {exc!r}")
            return None
        except aiohttp.ClientResponseError as exc:
            self.ledger.violate(f"{who}: {url} unparsable response: {exc!r}")
            return None
        self.ledger.longest_answer = max(self.ledger.longest_answer, time.monotonic() - began)
        self.ledger.statuses[f"{resp.status}"] += 1
        if resp.status >= 500:
            text = ""
            with contextlib.suppress(*_FORGIVEN, TimeoutError):
                async with asyncio.timeout(START_BOUND):
                    text = await resp.text()
            resp.release()
            if resp.status == 500:
                self.ledger.violate(f"{who}: 500 for {url}: {text[:200]!r}")
            for port in self.ports():
                if f":{port}" in text:
                    self.ledger.violate(f"{who}: {resp.status} body names engine port {port}")
            self.ledger.note(f"{who}: {resp.status} {url} {text[:80]!r}")
            return None
        if resp.status != 200:
            self.ledger.note(f"{who}: {resp.status} {url}")
            resp.release()
            return None
        return resp

    async def _ts_client(self, cid: str, watch: float, pause: float = 0.0) -> None:
        """An MPEG-TS player; with a `pause`, a laggard that stops reading that long."""
        who = f"ts {cid[:8]}..{cid[-4:]}" + (" laggard" if pause else "")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            resp = await self._answer(http, f"{self.base}/ace/getstream?id={cid}", who)
            if resp is None:
                return
            async with resp:
                await self._read_ts(resp, who, watch, pause)

    async def _read_ts(
        self, resp: aiohttp.ClientResponse, who: str, watch: float, pause: float
    ) -> None:
        end = time.monotonic() + watch
        lag_at = time.monotonic() + watch / 3 if pause else None
        received, tail = 0, b""
        while time.monotonic() < end:
            if lag_at is not None and time.monotonic() >= lag_at:
                lag_at = None
                await asyncio.sleep(pause)  # a player that stopped reading; nothing to wait for
            began = time.monotonic()
            try:
                async with asyncio.timeout(GAP_BOUND):
                    chunk = await resp.content.readany()
            except TimeoutError:
                self.ledger.violate(f"{who}: no data nor end for {GAP_BOUND:g} s")
                return
            except _FORGIVEN as exc:
                self.ledger.note(f"{who}: cut after {received} bytes ({type(exc).__name__})")
                return
            self.ledger.longest_gap = max(self.ledger.longest_gap, time.monotonic() - began)
            if not chunk:
                self.ledger.note(f"{who}: ended after {received} bytes")
                return
            if b"HTTP/1." in tail + chunk:
                self.ledger.violate(f"{who}: a response inside the TS body at {received}")
                return
            received += len(chunk)
            tail = chunk[-16:]
        self.ledger.note(f"{who}: left after {received} bytes")

    async def _hls_viewer(self, cid: str, watch: float) -> None:
        who = f"hls {cid[:8]}..{cid[-4:]}"
        end = time.monotonic() + watch
        playlist = f"{self.base}/ace/manifest.m3u8?id={cid}"
        seen: set[str] = set()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            while time.monotonic() < end:
                text = await self._text(http, playlist, who)
                if text is not None:
                    uris = [self._absolute(x) for x in text.splitlines() if x and x[0] != "#"]
                    if "#EXT-X-STREAM-INF" in text and uris:
                        playlist = uris[0]  # a player picks a variant and polls it from now on
                        continue
                    for uri in [u for u in uris[-3:] if u not in seen]:
                        seen.add(uri)
                        await self._segment(http, uri, who)
                    if "#EXT-X-ENDLIST" in text:
                        self.ledger.note(f"{who}: the stream ended")
                        return
                await asyncio.sleep(PLAYER_POLL)  # a player's reload timer
        self.ledger.note(f"{who}: left after {len(seen)} segments")

    def _where_the_proxy_waits(self) -> None:
        """Into the trace, once: where each of the proxy's tasks is waiting (its innermost
        frames in hlsproxy/, the simulator's left out), to tell what a request hung on."""
        if self.dumped:
            return
        self.dumped = True
        for task in asyncio.all_tasks():
            frames = [
                f"{Path(f.f_code.co_filename).name}:{f.f_lineno} {f.f_code.co_name}"
                for f in _awaiting(task.get_coro())
                if "/hlsproxy/" in f.f_code.co_filename and "/sim/" not in f.f_code.co_filename
            ]
            if frames:
                self.ledger.note(f"task {task.get_name()} waits in {' > '.join(frames)}")

    def _absolute(self, uri: str) -> str:
        return uri if uri.startswith("http") else self.base + uri

    async def _text(self, http: aiohttp.ClientSession, url: str, who: str) -> str | None:
        resp = await self._answer(http, url, who)
        if resp is None:
            return None
        async with resp:
            try:
                async with asyncio.timeout(START_BOUND):
                    return await resp.text()
            except TimeoutError:
                self.ledger.violate(f"{who}: playlist body not done within {START_BOUND:g} s")
            except _FORGIVEN as exc:
                self.ledger.note(f"{who}: playlist cut: {exc!r}")
        return None

    async def _segment(self, http: aiohttp.ClientSession, url: str, who: str) -> None:
        resp = await self._answer(http, url, who)
        if resp is None:
            return
        length = resp.headers.get("Content-Length")
        body = bytearray()
        async with resp:
            try:
                async with asyncio.timeout(START_BOUND):
                    while chunk := await resp.content.readany():
                        body += chunk
            except TimeoutError:
                self.ledger.violate(
                    f"{who}: segment body stuck at {len(body)} of {length} bytes for "
                    f"{START_BOUND:g} s" + (", a response inside it" if b"HTTP/1." in body else "")
                )
                return
            except _FORGIVEN as exc:
                self.ledger.note(f"{who}: segment cut: {exc!r}")
                return
            if length is not None and int(length) != len(body):
                self.ledger.violate(f"{who}: {len(body)} bytes under Content-Length {length}")
            if b"HTTP/1." in body:
                self.ledger.violate(f"{who}: a response inside segment {url}")
            elif body[:1] != b"\x47":
                self.ledger.violate(f"{who}: segment {url} is not MPEG-TS: {body[:16]!r}")

    async def _zapper(self, deadline: float) -> None:
        """A viewer flicking through channels: a few seconds on each, in either format."""
        while time.monotonic() < deadline:
            cid = self.rng.choice(CONTENTS)
            stay = self.rng.uniform(0.3, 2.0)
            if self.rng.random() < 0.5:
                await self._ts_client(cid, stay)
            else:
                await self._hls_viewer(cid, stay)

    # --- faults ---------------------------------------------------------------------------

    async def _monkey(self, deadline: float) -> None:
        actions: list[Callable[[], Awaitable[None]]] = []
        if "faults" in self.load:
            actions += [self._engine_fault] * 3
        if "kill" in self.load:
            actions.append(self._kill)
        if "orch" in self.load:
            actions.append(self._orchestrator_away)
        while time.monotonic() < deadline:
            await asyncio.sleep(self.rng.uniform(0.5, 2.0))
            self.spawn(self.rng.choice(actions)(), "fault")

    def _some_engine(self) -> SimEngine | None:
        live = [p.sim for p in self.orch.engines if p.alive]
        if self.fallback is not None:
            live.append(self.fallback)
        return self.rng.choice(live) if live else None

    async def _engine_fault(self) -> None:
        sim = self._some_engine()
        if sim is None:
            return
        rng = self.rng
        # Delays stay below the proxy's response timeout: an answer that comes after the
        # proxy gave up names a session (or ends one) no proxy could know of.
        faults: dict[str, Callable[[], Any]] = {
            "stall_after": lambda: rng.randrange(50, 2000) * 188,
            "cut_after": lambda: rng.randrange(50, 2000) * 188,
            "error": lambda: "engine overloaded",
            "start_delay": lambda: rng.uniform(0.3, 1.5),
            "stop_delay": lambda: rng.uniform(0.3, 1.5),
            "playlist_error": lambda: rng.choice([500, 404, 503]),
            "segment_error": lambda: rng.choice([500, 404, 503]),
            "segment_stall_after": lambda: rng.randrange(0, 100_000),
            "segment_cut_after": lambda: rng.randrange(0, 100_000),
        }
        attribute = rng.choice(sorted(faults))
        value = faults[attribute]()
        hold = self.rng.uniform(0.5, 4.0)
        self.ledger.note(f"fault {attribute}={value} on {_name(self.orch, sim)} for {hold:.1f} s")
        setattr(sim.faults, attribute, value)
        await asyncio.sleep(hold)  # the fault lasts this long
        setattr(sim.faults, attribute, getattr(Faults(), attribute))
        self.ledger.note(f"fault {attribute} cleared on {_name(self.orch, sim)}")

    async def _kill(self) -> None:
        alive = [p for p in self.orch.engines if p.alive]
        if not alive:
            return
        pool = self.rng.choice(alive)
        down = self.rng.uniform(0.5, 4.0)
        self.ledger.note(f"kill {pool.container_name} for {down:.1f} s")
        self.killed.add(id(pool.sim))
        await self.orch.kill_engine(pool.container_id)
        await asyncio.sleep(down)  # the engine stays dead this long
        if not pool.alive:
            await self.orch.restart_engine(pool.container_id)
            self.ledger.note(f"{pool.container_name} restarted")

    async def _orchestrator_away(self) -> None:
        if not self.orch.serving or self.orch.port is None:
            return
        away = self.rng.uniform(0.5, 5.0)
        self.ledger.note(f"orchestrator away for {away:.1f} s")
        await self.orch.stop_serving()
        await asyncio.sleep(away)  # the orchestrator stays away this long
        if not self.orch.serving:
            await self.orch.serve(self.orch.port)
            self.ledger.note("orchestrator back")

    # --- invariants -----------------------------------------------------------------------

    async def _watch(self) -> None:
        """Stops that cross a newer session, and second stops, as soon as they happen."""
        while True:
            self._check_stops()
            await asyncio.sleep(0.25)  # sampling the engines' ledgers

    def _check_stops(self) -> None:
        reported = self.reported
        for sim, _ in self.engines():
            for old, new in sim.crossed_stops:
                if ("crossed", id(new)) not in reported:
                    reported.add(("crossed", id(new)))
                    self.ledger.violate(
                        f"a stop of {_session(old)} ended the newer {_session(new)} "
                        f"on {_name(self.orch, sim)}"
                    )
            for s in sim.sessions:
                if s.stops > 1 and ("stops", id(s)) not in reported:
                    reported.add(("stops", id(s)))
                    self.ledger.violate(f"{_session(s)} stopped {s.stops} times")

    def check_settled(self) -> None:
        """After the load: the pool's counts, the events and the engines' sessions."""
        assert self.proxy is not None
        pool = self.proxy.app[POOL]
        busy = [e for e in pool.engines() if e.sessions]
        if busy:
            self.ledger.violate(f"pool counts not back to zero: {busy}")
        # v2.1 files streams by content, so a content played again starts under the same
        # id: per id, as many ends as starts (and never a start over an open one, which
        # the orchestrator counts as started_again, checked below).
        started = collections.Counter(self.orch.started_ids())
        ended = collections.Counter(self.orch.ended_ids())
        for stream_id, starts in started.items():
            if ended[stream_id] != starts:
                self.ledger.violate(
                    f"stream_started {stream_id} has {starts} starts and {ended[stream_id]} ends"
                )
        # An end for a stream the stat poller already ended is fine (counted above per id);
        # an end that matched no stream ended some other one.
        for name in ("ended_by_quirk", "ended_unmatched", "started_again", "unexpected"):
            if self.orch.counters[name]:
                self.ledger.violate(f"orchestrator counted {self.orch.counters[name]} {name}")

    def settled(self) -> bool:
        assert self.proxy is not None
        sessions = any(sim.active() for sim, killed in self.engines() if not killed)
        counts = any(e.sessions for e in self.proxy.app[POOL].engines())
        return not sessions and not counts

    def check_sessions(self) -> None:
        """Once the proxy is closed: every session stopped once, none left to expire."""
        self._check_stops()
        for sim, killed in self.engines():
            if sim.unexpected:
                self.ledger.violate(f"unexpected requests to an engine: {sim.unexpected[:5]}")
            for s in sim.sessions:
                if s.expired:
                    self.ledger.violate(f"{_session(s)} expired at the engine, never stopped")
                elif s.stops == 0 and not killed:
                    self.ledger.violate(f"{_session(s)} never stopped")
                elif s.live and not killed:
                    self.ledger.violate(f"{_session(s)} outlived the proxy")

    def report(self, seed: int, full_trace: Path) -> str:
        ledger = self.ledger
        replay = f"CHAOS_SEEDS={seed}"
        if self.load != LOADS:
            replay += f" CHAOS_LOAD={','.join(sorted(self.load))}"
        lines = [
            f"seed {seed}: {len(ledger.violations)} violations; replay with "
            f"{replay} .venv/bin/pytest tests/test_chaos.py",
            f"statuses {dict(ledger.statuses)}, longest answer {ledger.longest_answer:.2f} s, "
            f"longest TS gap {ledger.longest_gap:.2f} s",
            "violations:",
            *ledger.violations[:25],
            f"trace (last 80; all of it in {full_trace}):",
            *ledger.trace[-80:],
        ]
        return "\n".join(lines)


def _session(s: SimSession) -> str:
    return f"{s.fmt} session {s.token[:8]} of {s.content_id[:8]}..{s.content_id[-4:]}"


def _name(orch: SimOrchestrator, sim: SimEngine) -> str:
    for pool in orch.engines:
        if sim is pool.sim or sim in pool.past:
            return pool.container_name
    return "fallback"


def _awaiting(coro: Any) -> Iterator[FrameType]:
    """The frames of a suspended coroutine and of each one it awaits, outermost first
    (`Task.get_stack` gives only the outermost)."""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            yield frame
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)


def _own_tasks() -> set[asyncio.Task[Any]]:
    """Tasks that are not the simulators' (they run until the simulators stop)."""
    return {t for t in asyncio.all_tasks() if not t.get_name().startswith("sim-")}


@pytest.mark.parametrize("seed", seeds(), ids=lambda s: f"seed{s}")
async def test_chaos(seed: int, tmp_path: Path) -> None:
    process = psutil.Process()
    fds, rss, tasks = process.num_fds(), process.memory_info().rss, _own_tasks()
    chaos = Chaos(seed, loads(), float(os.environ.get("CHAOS_SECONDS", "25")))
    try:
        await chaos.start()
        await chaos.run()
        with contextlib.suppress(TimeoutError):
            await eventually(chaos.settled, timeout=SETTLE_BOUND)
        chaos.check_settled()
    finally:
        await chaos.close_proxy()
        chaos.check_sessions()
        await chaos.close_sims()
    leftover = _own_tasks() - tasks
    with contextlib.suppress(TimeoutError):
        await eventually(lambda: not (_own_tasks() - tasks), timeout=5)
        leftover = set()
    if leftover:
        chaos.ledger.violate(f"tasks left over: {sorted(t.get_name() for t in leftover)}")
    with contextlib.suppress(TimeoutError):
        await eventually(lambda: process.num_fds() <= fds, timeout=5)
    if process.num_fds() > fds:
        chaos.ledger.violate(f"{process.num_fds() - fds} file descriptors left over")
    grown = process.memory_info().rss - rss
    chaos.ledger.note(f"RSS grew by {grown / 2**20:.1f} MiB")
    if grown > RSS_BOUND:
        chaos.ledger.violate(f"RSS grew by {grown / 2**20:.1f} MiB (bound {RSS_BOUND >> 20} MiB)")
    full_trace = tmp_path / f"chaos-seed{seed}.log"
    full_trace.write_text("\n".join(chaos.ledger.trace) + "\n")
    report = chaos.report(seed, full_trace)
    print(report)
    assert not chaos.ledger.violations, report
