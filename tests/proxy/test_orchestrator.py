"""The engine pool through the simulated acestream-orchestrator, in each API it speaks: every
test that takes `dialect` runs against v2.1 (`/api/v1`, the Go rewrite) and v1 (un-prefixed)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hlsproxy.content import ContentKey, StreamRequest
from hlsproxy.engine.client import Engine, EngineSession, PlaybackInfo
from hlsproxy.engine.orchestrator import EVENTS_QUEUED, REMEMBERED_CONTENTS, OrchestratorPool
from hlsproxy.sim.orchestrator import Dialect, SimOrchestrator
from tests.helpers import CID, CID2, ProxyFactory, RunningSim, content_id, eventually

KEY = "orchestrator-key"
REQUEST_TIMEOUT = 0.5  # the pool's, for pools these tests build themselves
FALLBACK = Engine("http", "127.0.0.1", 9)  # a pool only names it; nothing connects to it


@pytest.fixture
def orch_options() -> dict[str, Any]:
    return {"engines": 2}


@pytest.fixture(params=["v2.1", "v1"])
def dialect(request: pytest.FixtureRequest) -> Dialect:
    value: Dialect = request.param
    return value


@pytest.fixture
async def orch(orch_options: dict[str, Any], dialect: Dialect) -> AsyncIterator[SimOrchestrator]:
    orchestrator = SimOrchestrator(
        api_key=KEY, dialect=dialect, **{"stat_interval": 0.5, **orch_options}
    )
    await orchestrator.serve()
    yield orchestrator
    await orchestrator.stop()
    assert_clean(orchestrator)


def assert_clean(orchestrator: SimOrchestrator) -> None:
    assert orchestrator.unexpected == []
    # every session the proxy started on a pool engine was stopped, once
    for engine in orchestrator.engines:
        if engine.alive:
            sim = engine.sim
            assert sim.active() == [], engine.container_name
            assert sim.counters["stop"] + sim.counters["stop_unknown"] == sim.counters["start"]
    assert orchestrator.counters["ended_by_quirk"] == 0
    assert orchestrator.counters["ended_again"] == 0
    assert orchestrator.counters["ended_unmatched"] == 0
    assert orchestrator.counters["started_again"] == 0
    assert orchestrator.counters["unknown_engine"] == 0


class Door:
    """The simulated orchestrator on a port of its own, which can be shut as a stopped
    orchestrator's is (connections refused) or held as a hung one's is (connections accepted
    and never answered), and opened again.

    Shutting is graceful, as a server stopping is: a request already under way is answered.
    """

    def __init__(self, orch: SimOrchestrator) -> None:
        self.orch = orch
        self.port = 0
        self._runner = web.AppRunner(orch.app, access_log=None)
        self._site: web.TCPSite | None = None
        self._holder: asyncio.Server | None = None
        self._held: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        await self.shut()
        if self._runner.server is None:
            await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()
        self.port = self._runner.addresses[0][1]

    async def shut(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
            assert self._runner.server is not None
            for connection in self._runner.server.connections:
                connection.close()  # idle ones at once, busy ones after their answer
        if self._holder is not None:
            self._holder.close()
            for writer in self._held:
                writer.close()
            self._held.clear()
            await self._holder.wait_closed()
            self._holder = None

    async def hold(self) -> None:
        await self.shut()
        self._holder = await asyncio.start_server(self._hold, "127.0.0.1", self.port)

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.append(writer)
        await reader.read()  # until the client gives up

    async def close(self) -> None:
        await self.shut()
        await self._runner.cleanup()


@pytest.fixture
async def door(orch_options: dict[str, Any], dialect: Dialect) -> AsyncIterator[Door]:
    orchestrator = SimOrchestrator(
        api_key=KEY, dialect=dialect, **{"stat_interval": 0.5, **orch_options}
    )
    await orchestrator.start()
    opened = Door(orchestrator)
    await opened.open()
    yield opened
    assert_clean(orchestrator)
    await orchestrator.stop()
    await opened.close()


async def after_a_refresh(orch: SimOrchestrator) -> None:
    """Until the pool's next background refresh makes its last request, which is answered
    whatever the door does next: the refresh after it is seconds away, so what happens
    next is not a refresh's doing."""
    status = f"GET {orch.prefix}/orchestrator/status"
    seen = orch.counters[status]
    await orch.wait_until(lambda: orch.counters[status] > seen)


def fallback_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()]


def recovered(caplog: pytest.LogCaptureFixture) -> bool:
    return any("answers again" in r.getMessage() for r in caplog.records)


def pool_sessions(orch: SimOrchestrator) -> int:
    return sum(len(e.sim.active()) for e in orch.engines if e.alive)


async def play(client: Any, cid: str, packets: int = 50) -> Any:
    resp = await client.get("/ace/getstream", params={"id": cid})
    assert resp.status == 200, await resp.text()
    await asyncio.wait_for(resp.content.readexactly(188 * packets), 20)
    return resp


async def test_contents_spread_over_engines_and_the_third_provisions(
    proxy: ProxyFactory, sim: RunningSim, orch: SimOrchestrator
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey=KEY, max_streams_per_engine="1")
    players = [await play(client, content_id(n + 1)) for n in range(3)]
    assert orch.counters["provisioned"] == 1
    assert len(orch.engines) == 3
    assert all(len(e.sim.active()) == 1 for e in orch.engines)
    assert sim.counters["start"] == 0  # the fallback engine was never needed
    for p in players:
        p.close()


async def test_ts_and_hls_viewers_of_one_content_share_one_engine_session(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey=KEY)
    assert (await client.get("/ace/manifest.m3u8", params={"id": CID})).status == 200
    ts = await play(client, CID)
    assert pool_sessions(orch) == 1
    ts.close()


async def test_events_are_sent_once_per_session_and_match(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey=KEY, linger="0s", container_id="proxy-1")
    for cid in (CID, CID2):
        (await play(client, cid)).close()
    await eventually(lambda: len(orch.events_ended) == 2)
    assert sorted(orch.started_ids()) == sorted(orch.ended_ids())
    assert len(set(orch.started_ids())) == 2
    assert {e["reason"] for e in orch.events_ended} == {"client_disconnected"}
    engine_ids = {e.container_id for e in orch.engines}
    if orch.dialect == "v2.1":
        # filed by content, charged to the engine it played on, and the count back to 0
        assert set(orch.started_ids()) == {CID, CID2}
        assert {e["engine_id"] for e in orch.events_started} <= engine_ids
        assert all(orch.stream_counts[e] == 0 for e in engine_ids)
        assert "proxy-1" not in str(orch.events_ended)
    else:
        assert all(e["container_id"] == "proxy-1" for e in orch.events_started + orch.events_ended)
        assert all(e["labels"]["engine_container_id"] in engine_ids for e in orch.events_started)


async def test_keys_go_where_the_api_asks_for_them(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    client = await proxy(
        orch_url=orch.url, orch_apikey=KEY, linger="0s", max_streams_per_engine="1"
    )
    players = [await play(client, content_id(n)) for n in (1, 2, 3)]  # the third provisions
    for player in players:
        player.close()
    await eventually(lambda: len(orch.events_ended) == 3)
    assert orch.counters["provisioned"] == 1 and orch.counters["auth_failed"] == 0
    keyed = {"Authorization": f"Bearer {KEY}"} if orch.dialect == "v1" else {"X-API-Key": KEY}
    for call, headers in orch.headers_seen:
        expected = (
            keyed if "provision" in call or (orch.dialect == "v1" and "events" in call) else {}
        )
        assert headers == expected, call


async def test_an_unreachable_orchestrator_falls_back_and_recovers(
    proxy: ProxyFactory, sim: RunningSim, orch: SimOrchestrator
) -> None:
    orch.faults.down = True
    client = await proxy(orch_url=orch.url, orch_apikey=KEY)
    fallback = await play(client, CID)
    assert sim.counters["start"] == 1 and pool_sessions(orch) == 0
    orch.faults.down = False
    status = f"GET {orch.prefix}/orchestrator/status"
    refreshed = orch.counters[status]
    # the pool refreshes in the background; after two answered refreshes it uses the pool
    await eventually(lambda: orch.counters[status] >= refreshed + 2)
    back = await play(client, CID2)
    assert pool_sessions(orch) == 1
    fallback.close()
    back.close()


@pytest.mark.parametrize("orch_options", [{"engines": 1}], ids=["one-engine"])
async def test_blocked_provisioning_is_a_503_with_the_eta(
    proxy: ProxyFactory, orch: SimOrchestrator, orch_options: dict[str, Any]
) -> None:
    # v1 tells a blocked VPN's ETA; v2.1 blocks only on its circuit breaker, with no ETA
    v1 = orch.dialect == "v1"
    orch.faults.provision_blocked = "vpn_disconnected" if v1 else "circuit_breaker"
    client = await proxy(orch_url=orch.url, orch_apikey=KEY)
    first = await play(client, CID)
    async with client.get("/ace/getstream", params={"id": CID2}) as resp:
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) == (60 if v1 else 30)
        assert "engine" in (await resp.json())["message"]
    first.close()


async def test_a_killed_engines_stream_moves_to_another_engine(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey=KEY, upstream_retries="4")
    resp = await play(client, CID)
    (victim,) = [e for e in orch.engines if e.sim.active()]
    await orch.kill_engine(victim.container_id)
    data = await asyncio.wait_for(resp.content.readexactly(188 * 2000), 30)
    assert data[0] == 0x47
    (survivor,) = [e for e in orch.engines if e.alive and e.sim.active()]
    assert survivor is not victim
    resp.close()


async def test_a_killed_engines_hls_stream_moves_with_a_discontinuity(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey=KEY, hls_prefetch="0")
    manifest = f"/ace/manifest.m3u8?id={CID}"
    before = await (await client.get(manifest)).text()
    (victim,) = [e for e in orch.engines if e.sim.active()]
    await orch.kill_engine(victim.container_id)

    async def moved() -> str:
        while True:  # players reload about every target duration; so does this
            text = await (await client.get(manifest)).text()
            if "#EXT-X-DISCONTINUITY\n" in text:
                return text
            await asyncio.sleep(1.0)

    after = await asyncio.wait_for(moved(), 30)
    assert "#EXT-X-ENDLIST" not in after
    (survivor,) = [e for e in orch.engines if e.alive and e.sim.active()]
    assert survivor is not victim
    segment = [line for line in after.splitlines() if line.startswith("/ace/hls/")][-1]
    assert (await client.get(segment)).status == 200
    assert before != after


@pytest.mark.parametrize("dialect", ["v1"], ids=["v1"])
async def test_wrapped_engine_lists_are_understood(
    proxy: ProxyFactory, sim: RunningSim, orch: SimOrchestrator
) -> None:
    orch.faults.wrapped_lists = True
    client = await proxy(orch_url=orch.url, orch_apikey=KEY)
    (await play(client, CID)).close()
    assert sim.counters["start"] == 0  # the pool, not the fallback
    assert pool_sessions(orch) == 1


@pytest.mark.parametrize("orch_options", [{"engines": 1}], ids=["one-engine"])
async def test_a_wrong_api_key_is_reported_once(
    proxy: ProxyFactory, orch: SimOrchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey="wrong", linger="0s")
    first = await play(client, CID)
    for cid in (CID2, content_id(3)):  # each would need a new engine
        async with client.get("/ace/getstream", params={"id": cid}) as resp:
            assert resp.status == 503
    await eventually(lambda: orch.counters["auth_failed"] >= 2)
    complaints = [r for r in caplog.records if "ACEXY_ORCH_APIKEY" in r.getMessage()]
    assert len(complaints) == 1
    assert "wrong" not in caplog.text
    first.close()


def key(n: int) -> ContentKey:
    return ContentKey("content_id", content_id(n))


PoolFactory = Callable[..., OrchestratorPool]


@pytest.fixture
async def make_pool() -> AsyncIterator[PoolFactory]:
    """Pools of our own in front of a simulated orchestrator, with a short request timeout."""
    made: list[OrchestratorPool] = []
    async with aiohttp.ClientSession() as http:

        def make(url: str, max_per_engine: int = 1) -> OrchestratorPool:
            pool = OrchestratorPool(
                http,
                url=url,
                api_key=KEY,
                container_id="",
                max_per_engine=max_per_engine,
                fallback=FALLBACK,
                provision_timeout=5.0,
                request_timeout=REQUEST_TIMEOUT,
            )
            pool.start()
            made.append(pool)
            return pool

        yield make
        for pool in made:
            await pool.aclose()


@pytest.mark.parametrize("orch_options", [{"engines": 1}], ids=["one-engine"])
async def test_a_stopped_orchestrator_sends_new_contents_to_the_fallback_at_once(
    door: Door, proxy: ProxyFactory, sim: RunningSim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "hlsproxy.engine.orchestrator")
    client = await proxy(orch_url=door.url, orch_apikey=KEY, max_streams_per_engine="1")
    first = await play(client, CID)  # the pool's one engine is full now
    await after_a_refresh(door.orch)
    await door.shut()
    started = time.monotonic()
    second = await play(client, CID2)
    assert time.monotonic() - started < 1.5  # not after the next refresh, 2 s away
    assert sim.counters["start"] == 1
    assert len(fallback_lines(caplog)) == 1

    await door.open()
    await eventually(lambda: recovered(caplog))
    third = await play(client, content_id(3))
    assert sim.counters["start"] == 1
    assert door.orch.counters["provisioned"] == 1
    assert pool_sessions(door.orch) == 2
    assert len(fallback_lines(caplog)) == 1
    for player in (first, second, third):
        player.close()


Fault = Callable[[Door, bool], Awaitable[None]]


async def stopped(door: Door, on: bool) -> None:
    await (door.shut() if on else door.open())


async def hung(door: Door, on: bool) -> None:
    await (door.hold() if on else door.open())


async def reads_garbage(door: Door, on: bool) -> None:
    door.orch.faults.garbage = on


async def provisions_garbage(door: Door, on: bool) -> None:
    door.orch.faults.provision_answer = "garbage" if on else "normal"


async def provisions_never(door: Door, on: bool) -> None:
    door.orch.faults.provision_answer = "none" if on else "normal"


@pytest.mark.parametrize("orch_options", [{"engines": 1}], ids=["one-engine"])
@pytest.mark.parametrize(
    "fault",
    [stopped, hung, reads_garbage, provisions_garbage, provisions_never],
    ids=lambda fault: fault.__name__.replace("_", "-"),
)
async def test_a_full_pool_falls_back_at_once_when_the_orchestrator_fails(
    door: Door, make_pool: PoolFactory, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "hlsproxy.engine.orchestrator")
    pool = make_pool(door.url)
    first = await pool.acquire(key(1))
    (engine,) = door.orch.engines
    assert first.container_id == engine.container_id  # and the pool is full
    await after_a_refresh(door.orch)
    await fault(door, True)
    started = time.monotonic()
    assert await pool.acquire(key(2)) == FALLBACK
    assert time.monotonic() - started < REQUEST_TIMEOUT + 0.5
    assert len(fallback_lines(caplog)) == 1

    await fault(door, False)
    await eventually(lambda: recovered(caplog))
    back = await pool.acquire(key(3))
    assert back.container_id in {e.container_id for e in door.orch.engines if e is not engine}
    assert len(fallback_lines(caplog)) == 1
    pool.release(first, key(1))
    pool.release(back, key(3))


@pytest.mark.parametrize("orch_options", [{"engines": 2}], ids=["two-engines"])
async def test_the_content_engine_memory_forgets_the_least_recently_asked(
    orch: SimOrchestrator, make_pool: PoolFactory
) -> None:
    pool = make_pool(orch.url, max_per_engine=2)
    usual = await pool.acquire(key(0))
    moved = await pool.acquire(key(1))  # to the other engine: the usual one is busier
    assert moved.container_id != usual.container_id
    pool.release(moved, key(1))
    pool.release(usual, key(0))
    assert await pool.acquire(key(1)) == moved  # remembered
    pool.release(moved, key(1))

    for n in range(2, 2 + REMEMBERED_CONTENTS):
        engine = await pool.acquire(key(n))
        assert engine == usual
        pool.release(engine, key(n))
    assert await pool.acquire(key(1)) == usual  # forgotten, so placed by load
    pool.release(usual, key(1))


# No stat polls: they would end these streams, which no engine plays, before their end events.
QUIET = {"engines": 1, "stat_interval": 3600.0}


@pytest.mark.parametrize("orch_options", [QUIET], ids=["one-engine"])
async def test_events_for_a_hung_orchestrator_queue_up_to_a_bound(
    door: Door, make_pool: PoolFactory
) -> None:
    (engine,) = door.orch.engines
    on = Engine("http", engine.host, engine.port, engine.container_id)
    pool = make_pool(door.url)
    await after_a_refresh(door.orch)  # the pool knows which API it speaks
    await door.hold()

    def session(n: int) -> EngineSession:
        stat = f"{on.base_url}/ace/stat/{n}"
        info = PlaybackInfo(
            playback_url=stat, stat_url=stat, command_url=stat, playback_session_id=f"s{n}"
        )
        return EngineSession(on, StreamRequest(key(n), ()), "ts", f"p{n}", info)

    sessions = [session(n) for n in range(EVENTS_QUEUED + 50)]
    for started in sessions:
        pool.session_started(started)
    await door.open()
    v1 = door.orch.dialect == "v1"
    kept = {f"{key(n).value}|s{n}" if v1 else key(n).value for n in range(EVENTS_QUEUED)}
    await door.orch.wait_until(lambda: len(door.orch.events_started) >= len(kept), 30)
    for ended in sessions:
        pool.session_ended(ended, "client_disconnected")
    await door.orch.wait_until(lambda: len(door.orch.events_ended) >= len(kept), 30)
    await pool.aclose()
    assert set(door.orch.started_ids()) == kept
    # a stream the orchestrator never heard of gets no end event, which it would misfile
    assert sorted(door.orch.ended_ids()) == sorted(kept)


# --- which API answers --------------------------------------------------------------------


def detections(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if " speaks the " in r.getMessage()]


async def test_the_api_is_found_from_the_base_url_and_logged_once(
    orch: SimOrchestrator, make_pool: PoolFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "hlsproxy.engine.orchestrator")
    pool = make_pool(orch.url)
    engine = await pool.acquire(key(1))
    assert engine.container_id in {e.container_id for e in orch.engines}
    await after_a_refresh(orch)
    await after_a_refresh(orch)
    (line,) = detections(caplog)
    assert f"the {orch.dialect} API" in line
    # v2.1 answers the first path tried; v1 costs one 404 at the start, then never again
    assert orch.counters["other_dialect"] == (1 if orch.dialect == "v1" else 0)
    pool.release(engine, key(1))


@pytest.mark.parametrize("dialect", ["v2.1"], ids=["v2.1"])
async def test_a_url_ending_in_api_v1_works(orch: SimOrchestrator, make_pool: PoolFactory) -> None:
    pool = make_pool(orch.url + "/api/v1/")
    engine = await pool.acquire(key(1))
    assert engine.container_id in {e.container_id for e in orch.engines}
    assert orch.counters["other_dialect"] == 0
    pool.release(engine, key(1))


async def test_a_misconfigured_url_is_logged_with_what_it_got(
    orch: SimOrchestrator, make_pool: PoolFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "hlsproxy.engine.orchestrator")
    pool = make_pool(orch.url + "/acestream")
    assert await pool.acquire(key(1)) == FALLBACK
    (line,) = fallback_lines(caplog)
    assert f"orchestrator at {orch.url}/acestream unusable" in line
    assert "GET /api/v1/engines → 404, GET /engines → 404" in line
    assert "ACEXY_ORCH_URL" in line
    assert orch.unexpected == ["GET /acestream/api/v1/engines", "GET /acestream/engines"]
    orch.unexpected.clear()


@pytest.mark.parametrize("dialect", ["v1"], ids=["v1-then-v2.1"])
@pytest.mark.parametrize("orch_options", [{"engines": 1}], ids=["one-engine"])
async def test_the_api_is_found_again_after_an_outage(
    door: Door, make_pool: PoolFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "hlsproxy.engine.orchestrator")
    pool = make_pool(door.url)
    old = await pool.acquire(key(1))
    pool.release(old, key(1))
    await door.shut()
    await eventually(lambda: len(fallback_lines(caplog)) == 1)
    # it comes back on its port, upgraded
    upgraded = SimOrchestrator(api_key=KEY, dialect="v2.1", engines=1, stat_interval=0.5)
    await upgraded.serve(door.port)
    try:
        await eventually(lambda: recovered(caplog))
        new = await pool.acquire(key(2))
        assert new.container_id == upgraded.engines[0].container_id
        assert [line.split(" speaks ")[1] for line in detections(caplog)] == [
            "the v1 API (/)",
            "the v2.1 API (/api/v1)",
        ]
        pool.release(new, key(2))
    finally:
        await pool.aclose()
        await upgraded.stop()
    assert upgraded.unexpected == []


# --- v2.1 as it is ---------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["v2.1"], ids=["v2.1"])
@pytest.mark.parametrize("orch_options", [{"engines": 3}], ids=["three-engines"])
async def test_only_healthy_engines_that_are_not_draining_take_new_streams(
    orch: SimOrchestrator, make_pool: PoolFactory
) -> None:
    starting, draining, usable = orch.engines
    starting.listed = False  # its startup probe has not passed: listed as `unknown`
    orch.drain(draining.container_id)
    pool = make_pool(orch.url, max_per_engine=3)
    engines = [await pool.acquire(key(n)) for n in range(3)]
    assert {e.container_id for e in engines} == {usable.container_id}
    for n, engine in enumerate(engines):
        pool.release(engine, key(n))


@pytest.mark.parametrize("dialect", ["v2.1"], ids=["v2.1"])
@pytest.mark.parametrize("orch_options", [{"engines": 1}], ids=["one-engine"])
async def test_a_provisioning_that_shows_no_engine_is_a_503_not_a_hang(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    orch.faults.provision_delay = 3600.0  # accepted, and no engine comes up in time
    client = await proxy(
        orch_url=orch.url, orch_apikey=KEY, orch_provision_timeout="1s", linger="0s"
    )
    first = await play(client, CID)
    async with asyncio.timeout(15), client.get("/ace/getstream", params={"id": CID2}) as resp:
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) > 0
    assert orch.counters["provisioned"] == 1
    first.close()


@pytest.mark.parametrize("dialect", ["v2.1"], ids=["v2.1"])
@pytest.mark.parametrize("orch_options", [{"engines": 1, "max_engines": 1}], ids=["at-maximum"])
async def test_at_the_replica_maximum_no_provisioning_is_asked(
    proxy: ProxyFactory, orch: SimOrchestrator
) -> None:
    client = await proxy(orch_url=orch.url, orch_apikey=KEY)
    first = await play(client, CID)
    async with client.get("/ace/getstream", params={"id": CID2}) as resp:
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) > 0
        assert "maximum" in (await resp.json())["message"]
    assert orch.counters["POST /api/v1/provision/acestream"] == 0
    first.close()


# --- the orchestrator away -------------------------------------------------------------------


async def test_pool_engines_refusing_while_the_orchestrator_is_away_give_the_fallback(
    door: Door, proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(orch_url=door.url, orch_apikey=KEY)
    await after_a_refresh(door.orch)  # the pool lists both engines as healthy
    await door.shut()
    for engine in door.orch.engines:
        await door.orch.kill_engine(engine.container_id)
    player = await play(client, CID)
    assert sim.counters["start"] == 1
    player.close()


@pytest.mark.parametrize("orch_options", [{"engines": 2, "stat_interval": 3600.0}], ids=["two"])
async def test_a_contents_next_start_waits_for_its_previous_end(
    orch: SimOrchestrator, make_pool: PoolFactory
) -> None:
    # A stream failing over: its new session starts on another engine before the old one's
    # stop (and so its end) is done. v2.1 files both under the content: the end must go
    # first, or it would end the new stream and leave the old engine's count at 1.
    pool = make_pool(orch.url)
    await after_a_refresh(orch)
    old_engine, new_engine = orch.engines

    def session(pool_engine: Any, n: int) -> EngineSession:
        on = Engine("http", pool_engine.host, pool_engine.port, pool_engine.container_id)
        stat = f"{on.base_url}/ace/stat/{n}"
        info = PlaybackInfo(
            playback_url=stat, stat_url=stat, command_url=stat, playback_session_id=f"s{n}"
        )
        return EngineSession(on, StreamRequest(key(1), ()), "ts", f"p{n}", info)

    old, new = session(old_engine, 1), session(new_engine, 2)
    pool.session_started(old)
    await orch.wait_until(lambda: len(orch.events_started) == 1)
    pool.session_started(new)
    pool.session_ended(old, "engine_error")
    await orch.wait_until(lambda: len(orch.events_started) == 2 and len(orch.events_ended) == 1)
    ids = [key(1).value] if orch.dialect == "v2.1" else [f"{key(1).value}|s1"]
    assert orch.ended_ids() == ids
    if orch.dialect == "v2.1":
        assert orch.calls[-2:] == [
            "POST /api/v1/events/stream_ended",
            "POST /api/v1/events/stream_started",
        ]
        assert orch.stream_counts[old_engine.container_id] == 0
        assert orch.stream_counts[new_engine.container_id] == 1
        assert orch.events_started[-1]["engine_id"] == new_engine.container_id
    pool.session_ended(new, "client_disconnected")
    await orch.wait_until(lambda: len(orch.events_ended) == 2)
    assert sorted(orch.started_ids()) == sorted(orch.ended_ids())
    assert all(count == 0 for count in orch.stream_counts.values())
