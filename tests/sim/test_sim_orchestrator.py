"""The simulated orchestrator in each dialect: v1 (FastAPI, v1.4.1) first, then v2.1 (Go,
v2.1.0.2), each as its module docstring states from the orchestrator's source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, NamedTuple

import aiohttp
import pytest

from hlsproxy.sim.orchestrator import SimOrchestrator, SimPoolEngine

CID = "0a4848271c91ce2d8965ce416267c25047dc8141"
CID2 = "94c2fd8fb9bc8f2fc71a2cbe9d4b866f227a0209"
KEY = "sim-orchestrator-key"

Make = Callable[..., Awaitable[SimOrchestrator]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[SimOrchestrator] = []

    async def make(**options: Any) -> SimOrchestrator:
        orch = SimOrchestrator(**{"dialect": "v1", **options})
        made.append(orch)
        await orch.serve()
        return orch

    yield make
    for orch in made:
        await orch.stop()
    for orch in made:
        assert orch.unexpected == []
        for pool in orch.engines:
            assert pool.sim.unexpected == []


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str, **params: str) -> tuple[int, Any]:
    async with http.get(url, params=params) as resp:
        return resp.status, await resp.json()


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, key: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def engine_session(http: aiohttp.ClientSession, pool: SimPoolEngine, cid: str = CID) -> Any:
    """A real playback session on a pool engine, as the proxy would start it."""
    url = f"http://127.0.0.1:{pool.port}/ace/getstream"
    async with http.get(url, params={"format": "json", "id": cid, "pid": cid}) as resp:
        body = await resp.json()
    assert body["error"] is None
    return body["response"]


def started_event(
    pool: SimPoolEngine, session: Any, *, key: str = CID, **extra: Any
) -> dict[str, Any]:
    return {
        "engine": {"host": pool.host, "port": pool.port},
        "stream": {"key_type": "content_id", "key": key},
        "session": {
            "playback_session_id": session["playback_session_id"],
            "stat_url": session["stat_url"],
            "command_url": session["command_url"],
            "is_live": 1,
        },
        **extra,
    }


def zoned(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    assert moment.tzinfo is not None, stamp
    return moment


# --- reads ------------------------------------------------------------------------------


async def test_engines_is_a_bare_array_sorted_by_port_of_engines_that_answer(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=3)
    orch.engines.reverse()  # the listing must not follow the pool's own order
    status, engines = await get(http, f"{orch.url}/engines")
    assert status == 200
    assert isinstance(engines, list)
    ports = [e["port"] for e in engines]
    assert ports == sorted(ports)
    assert set(ports) == {pool.port for pool in orch.engines}
    assert len({e["container_id"] for e in engines}) == 3
    for entry in engines:
        assert entry["host"] == "127.0.0.1"
        assert entry["labels"]["host.http_port"] == str(entry["port"])
        assert entry["health_status"] == "healthy"
        assert entry["streams"] == []
        assert (entry["platform"], entry["version"]) == ("linux", "3.2.3")
        assert entry["last_stream_usage"] is None
        for stamp in ("first_seen", "last_seen", "last_health_check"):
            zoned(entry[stamp])
        url = f"http://{entry['host']}:{entry['port']}/webui/api/service"
        status, version = await get(http, url, method="get_version")
        assert status == 200
        assert version["result"]["version"] == "3.2.3"
    assert [e["forwarded"] for e in engines].count(True) == 1


async def test_wrapped_lists_are_served_on_demand(make: Make, http: aiohttp.ClientSession) -> None:
    orch = await make(engines=2)
    session = await engine_session(http, orch.engines[0])
    await post(http, f"{orch.url}/events/stream_started", started_event(orch.engines[0], session))
    orch.faults.wrapped_lists = True
    _, engines = await get(http, f"{orch.url}/engines")
    assert set(engines) == {"engines", "total"}
    assert engines["total"] == len(engines["engines"]) == 2
    _, streams = await get(http, f"{orch.url}/streams", status="started")
    assert set(streams) == {"streams"}
    assert [s["key"] for s in streams["streams"]] == [CID]


@pytest.mark.parametrize(
    "params",
    [{"status": "active"}, {"status": ""}, {"status": "STARTED"}],
    ids=["active", "empty", "upper-case"],
)
async def test_streams_status_must_be_started_or_ended(
    make: Make, http: aiohttp.ClientSession, params: dict[str, str]
) -> None:
    orch = await make(engines=1)
    status, body = await get(http, f"{orch.url}/streams", **params)
    assert status == 422
    assert body["detail"][0]["loc"] == ["query", "status"]


async def test_streams_filter_by_container_and_status(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=2)
    a, b = orch.engines
    for pool, cid in ((a, CID), (b, CID2)):
        session = await engine_session(http, pool, cid)
        event = started_event(pool, session, key=cid, container_id=pool.container_id)
        assert (await post(http, f"{orch.url}/events/stream_started", event))[0] == 200
    _, on_a = await get(http, f"{orch.url}/streams", container_id=a.container_id)
    assert [s["key"] for s in on_a] == [CID]
    _, everything = await get(http, f"{orch.url}/streams")
    assert [s["key"] for s in everything] == [CID, CID2]
    _, ended = await get(http, f"{orch.url}/streams", status="ended")
    assert ended == []


async def test_status_blocks(make: Make, http: aiohttp.ClientSession) -> None:
    orch = await make(engines=2, max_engines=5)
    session = await engine_session(http, orch.engines[0])
    await post(http, f"{orch.url}/events/stream_started", started_event(orch.engines[0], session))
    status, body = await get(http, f"{orch.url}/orchestrator/status")
    assert status == 200
    assert body["status"] == "healthy"
    assert body["engines"] == {"total": 2, "running": 2, "healthy": 2, "unhealthy": 0}
    assert body["streams"] == {"active": 1, "total": 1}
    assert body["capacity"] == {
        "total": 2,
        "used": 1,
        "available": 1,
        "max_replicas": 5,
        "min_replicas": 2,
    }
    assert body["vpn"]["connected"] is True
    assert body["provisioning"] == {
        "can_provision": True,
        "circuit_breaker_state": "closed",
        "blocked_reason": None,
        "blocked_reason_details": None,
    }
    zoned(body["timestamp"])


async def test_status_is_unavailable_with_no_engines(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=0)
    _, body = await get(http, f"{orch.url}/orchestrator/status")
    assert body["status"] == "unavailable"
    assert body["engines"]["total"] == 0
    _, engines = await get(http, f"{orch.url}/engines")
    assert engines == []


# --- auth -------------------------------------------------------------------------------

PROTECTED = ["/provision/acestream", "/events/stream_started", "/events/stream_ended"]


MISSING = (401, {"detail": "missing bearer token"})
INVALID = (403, {"detail": "invalid token"})


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, MISSING),
        ({"Authorization": f"Basic {KEY}"}, MISSING),
        ({"Authorization": "Bearer "}, MISSING),
        ({"Authorization": "Bearer wrong"}, INVALID),
        ({"X-API-Key": "wrong"}, INVALID),
    ],
    ids=["none", "basic", "empty-bearer", "wrong-bearer", "wrong-x-api-key"],
)
async def test_protected_routes_refuse_without_the_key(
    make: Make,
    http: aiohttp.ClientSession,
    path: str,
    headers: dict[str, str],
    expected: tuple[int, dict[str, str]],
) -> None:
    orch = await make(engines=1, api_key=KEY)
    async with http.post(f"{orch.url}{path}", json={}, headers=headers) as resp:
        assert (resp.status, await resp.json()) == expected
    assert orch.counters["auth_failed"] == 1
    assert len(orch.engines) == 1
    assert orch.events_started == orch.events_ended == []


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}],
    ids=["bearer", "x-api-key"],
)
async def test_the_key_opens_protected_routes_and_reads_are_public(
    make: Make, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    orch = await make(engines=1, api_key=KEY)
    body = {"container_id": orch.engines[0].container_id, "stream_id": "nothing|here"}
    async with http.post(f"{orch.url}/events/stream_ended", json=body, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.json() == {"updated": False, "stream": None}
    for path in ("/engines", "/streams", "/orchestrator/status"):
        async with http.get(f"{orch.url}{path}") as resp:
            assert resp.status == 200, path
    assert orch.counters["auth_failed"] == 0


async def test_open_mode_needs_no_key(make: Make, http: aiohttp.ClientSession) -> None:
    orch = await make(engines=1)
    status, _ = await post(http, f"{orch.url}/provision/acestream", {"labels": {}, "env": {}})
    assert status == 200
    assert len(orch.engines) == 2


# --- provisioning -----------------------------------------------------------------------


async def test_provisioning_starts_an_engine_that_answers(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=1, api_key=KEY)
    status, body = await post(
        http, f"{orch.url}/provision/acestream", {"labels": {}, "env": {}}, KEY
    )
    assert status == 200
    assert set(body) == {
        "container_id",
        "container_name",
        "host_http_port",
        "container_http_port",
        "container_https_port",
    }
    port = body["host_http_port"]
    assert port != orch.engines[0].port
    status, version = await get(
        http, f"http://127.0.0.1:{port}/webui/api/service", method="get_version"
    )
    assert status == 200
    assert version["error"] is None
    _, engines = await get(http, f"{orch.url}/engines")
    new = next(e for e in engines if e["container_id"] == body["container_id"])
    assert new["port"] == port
    assert new["container_name"] == body["container_name"] != orch.engines[0].container_name
    assert new["health_status"] == "healthy"


async def test_a_provisioned_engine_appears_after_the_delay(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=1)
    orch.faults.provision_delay = 0.2
    _, body = await post(http, f"{orch.url}/provision/acestream", {"labels": {}, "env": {}})
    _, engines = await get(http, f"{orch.url}/engines")
    assert body["container_id"] not in {e["container_id"] for e in engines}
    # Still starting: the container's port is bound but the engine does not answer.
    with pytest.raises(aiohttp.ClientError):
        await get(http, f"http://127.0.0.1:{body['host_http_port']}/webui/api/service")
    pool = orch.engine(body["container_id"])
    await orch.wait_until(lambda: pool.listed)
    _, engines = await get(http, f"{orch.url}/engines")
    appeared = next(e for e in engines if e["container_id"] == body["container_id"])
    assert appeared["health_status"] == "healthy"


class Block(NamedTuple):
    code: str
    eta: int
    can_retry: bool
    health: str
    """The orchestrator's overall status while blocked."""


BLOCKS = [
    Block("vpn_disconnected", 60, True, "degraded"),
    Block("circuit_breaker", 30, False, "degraded"),
    Block("max_capacity", 30, False, "healthy"),
]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.code for b in BLOCKS])
async def test_blocked_provisioning(make: Make, http: aiohttp.ClientSession, block: Block) -> None:
    code, eta, can_retry, health = block
    orch = await make(engines=1)
    orch.faults.provision_blocked = code
    status, body = await post(http, f"{orch.url}/provision/acestream", {"labels": {}, "env": {}})
    assert status == 503
    detail = body["detail"]
    assert detail["error"] == "provisioning_blocked"
    assert detail["code"] == code
    assert detail["recovery_eta_seconds"] == eta
    assert detail["can_retry"] is can_retry
    assert detail["should_wait"] is True
    assert detail["message"]
    assert len(orch.engines) == 1
    _, state = await get(http, f"{orch.url}/orchestrator/status")
    assert state["status"] == health
    provisioning = state["provisioning"]
    assert provisioning["can_provision"] is False
    assert provisioning["blocked_reason"]
    assert provisioning["blocked_reason_details"]["code"] == code
    assert provisioning["blocked_reason_details"]["recovery_eta_seconds"] == eta
    assert state["vpn"]["connected"] is (code != "vpn_disconnected")
    assert provisioning["circuit_breaker_state"] == (
        "open" if code == "circuit_breaker" else "closed"
    )


async def test_max_engines_blocks_provisioning(make: Make, http: aiohttp.ClientSession) -> None:
    orch = await make(engines=1, max_engines=2)
    assert (await post(http, f"{orch.url}/provision/acestream", {}))[0] == 200
    status, body = await post(http, f"{orch.url}/provision/acestream", {})
    assert status == 503
    assert body["detail"]["code"] == "max_capacity"
    assert len(orch.engines) == 2
    _, state = await get(http, f"{orch.url}/orchestrator/status")
    assert state["provisioning"]["blocked_reason"] == "Maximum capacity reached"


async def test_concurrent_provisioning_respects_max_engines(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=0, max_engines=2)
    answers = await asyncio.gather(
        *(post(http, f"{orch.url}/provision/acestream", {}) for _ in range(4))
    )
    assert sorted(status for status, _ in answers) == [200, 200, 503, 503]
    assert len(orch.engines) == 2


@pytest.mark.parametrize(
    ("body", "loc"),
    [(None, ["body"]), ([], ["body"]), ({"labels": []}, ["body", "labels"])],
    ids=["no-body", "array", "labels-not-object"],
)
async def test_provisioning_validates_its_body(
    make: Make, http: aiohttp.ClientSession, body: Any, loc: list[str]
) -> None:
    orch = await make(engines=1)
    data = None if body is None else aiohttp.JsonPayload(body)
    async with http.post(f"{orch.url}/provision/acestream", data=data) as resp:
        assert resp.status == 422
        assert (await resp.json())["detail"][0]["loc"] == loc
    assert len(orch.engines) == 1


# --- events -----------------------------------------------------------------------------


async def test_events_round_trip(make: Make, http: aiohttp.ClientSession) -> None:
    orch = await make(engines=2, api_key=KEY)
    pool = orch.engines[1]
    session = await engine_session(http, pool)
    stream_id = f"{CID}|{session['playback_session_id']}"
    event = started_event(
        pool, session, container_id=pool.container_id, labels={"stream_id": stream_id}
    )
    status, stored = await post(http, f"{orch.url}/events/stream_started", event, KEY)
    assert status == 200
    assert stored["id"] == stream_id
    assert stored["container_id"] == pool.container_id
    assert stored["status"] == "started"
    assert stored["ended_at"] is None
    assert stored["stat_url"] == session["stat_url"]
    assert stored["is_live"] is True
    zoned(stored["started_at"])
    assert orch.events_started == [event]
    assert [s["id"] for s in orch.streams_of(pool.container_id)] == [stream_id]
    assert orch.streams_of(orch.engines[0].container_id) == []

    _, engines = await get(http, f"{orch.url}/engines")
    by_id = {e["container_id"]: e for e in engines}
    assert by_id[pool.container_id]["streams"] == [stream_id]
    assert by_id[pool.container_id]["last_stream_usage"] is not None
    _, listed = await get(
        http, f"{orch.url}/streams", container_id=pool.container_id, status="started"
    )
    assert [s["id"] for s in listed] == [stream_id]

    ended = {"container_id": pool.container_id, "stream_id": stream_id, "reason": "client_gone"}
    status, answer = await post(http, f"{orch.url}/events/stream_ended", ended, KEY)
    assert status == 200
    assert answer["updated"] is True
    assert answer["stream"]["id"] == stream_id
    assert answer["stream"]["status"] == "ended"
    zoned(answer["stream"]["ended_at"])
    assert orch.events_ended == [ended]
    assert orch.streams_of(pool.container_id) == []
    _, listed = await get(http, f"{orch.url}/streams", status="ended")
    assert [s["id"] for s in listed] == [stream_id]
    _, listed = await get(http, f"{orch.url}/streams", status="started")
    assert listed == []
    assert orch.counters["ended_by_quirk"] == 0


async def test_a_second_end_of_the_same_stream_is_counted(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=1)
    pool = orch.engines[0]
    _, stored = await post(
        http,
        f"{orch.url}/events/stream_started",
        started_event(pool, await engine_session(http, pool)),
    )
    ended = {"container_id": pool.container_id, "stream_id": stored["id"]}
    for _ in range(2):
        _, answer = await post(http, f"{orch.url}/events/stream_ended", ended)
        assert answer["updated"] is True
    assert orch.counters["ended_again"] == 1
    assert orch.counters["ended_by_quirk"] == 0


async def test_the_engine_is_found_by_host_and_port(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=2)
    pool = orch.engines[1]
    session = await engine_session(http, pool)
    # No labels: the id is "<key>|<playback session id>". The container id is the proxy's
    # own, which names no engine.
    event = started_event(pool, session, container_id="the-proxy-container")
    _, stored = await post(http, f"{orch.url}/events/stream_started", event)
    assert stored["id"] == f"{CID}|{session['playback_session_id']}"
    assert stored["container_id"] == pool.container_id
    assert stored["container_name"] == pool.container_name
    assert orch.counters["unknown_engine"] == 0


async def test_an_unknown_stream_id_ends_the_newest_open_stream_of_the_container(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=2)
    a, b = orch.engines
    ids = []
    for pool, cid in ((a, CID), (a, CID2), (b, CID)):
        event = started_event(pool, await engine_session(http, pool, cid), key=cid)
        ids.append((await post(http, f"{orch.url}/events/stream_started", event))[1]["id"])
    wrong = {"container_id": a.container_id, "stream_id": "not|a-stream"}
    _, answer = await post(http, f"{orch.url}/events/stream_ended", wrong)
    assert answer["updated"] is True
    assert answer["stream"]["id"] == ids[1]
    assert orch.counters["ended_by_quirk"] == 1
    assert [s["id"] for s in orch.streams_of(a.container_id)] == [ids[0]]
    assert [s["id"] for s in orch.streams_of(b.container_id)] == [ids[2]]
    # With no container named, any container's newest open stream goes.
    _, answer = await post(http, f"{orch.url}/events/stream_ended", {"stream_id": "nope"})
    assert answer["stream"]["id"] == ids[2]
    assert orch.counters["ended_by_quirk"] == 2


async def test_an_end_that_matches_nothing_updates_nothing(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=1)
    body = {"container_id": orch.engines[0].container_id, "stream_id": "x|y"}
    status, answer = await post(http, f"{orch.url}/events/stream_ended", body)
    assert (status, answer) == (200, {"updated": False, "stream": None})
    assert orch.counters["ended_by_quirk"] == 0


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        (("session", "stat_url", "not a url"), ["body", "session", "stat_url"]),
        (("session", "command_url", "/ace/cmd/x/y"), ["body", "session", "command_url"]),
        (("stream", "key_type", "torrent"), ["body", "stream", "key_type"]),
        (("engine", "port", "gluetun"), ["body", "engine", "port"]),
    ],
    ids=["stat-url", "relative-command-url", "key-type", "port"],
)
async def test_stream_started_is_validated(
    make: Make, http: aiohttp.ClientSession, change: tuple[str, str, str], loc: list[str]
) -> None:
    orch = await make(engines=1)
    pool = orch.engines[0]
    event = started_event(pool, await engine_session(http, pool))
    part, name, value = change
    event[part][name] = value
    status, body = await post(http, f"{orch.url}/events/stream_started", event)
    assert status == 422
    assert [error["loc"] for error in body["detail"]] == [loc]
    assert orch.events_started == []
    assert orch.streams_of(pool.container_id) == []


async def test_the_poller_ends_streams_the_engine_forgot(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=1, stat_interval=0.05)
    pool = orch.engines[0]
    for cid in (CID, CID2):
        session = await engine_session(http, pool, cid)
        await post(http, f"{orch.url}/events/stream_started", started_event(pool, session, key=cid))
    # The engine's stat of a live session reaches "dl" with peers on its fifth answer.
    await orch.wait_until(lambda: orch.streams_of(pool.container_id)[0]["peers"] == 4)
    assert orch.counters["ended_by_stat"] == 0
    assert len(orch.streams_of(pool.container_id)) == 2

    stopping = orch.streams_of(pool.container_id)[1]
    async with http.get(stopping["command_url"], params={"method": "stop"}) as resp:
        assert (await resp.json())["response"] == "ok"
    await orch.wait_until(lambda: orch.counters["ended_by_stat"] == 1)
    assert [s["key"] for s in orch.streams_of(pool.container_id)] == [CID]
    _, ended = await get(http, f"{orch.url}/streams", status="ended")
    assert [s["key"] for s in ended] == [CID2]
    assert orch.events_ended == []


# --- engine health ----------------------------------------------------------------------


async def test_a_killed_engine_is_unhealthy_and_its_connections_drop(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=2)
    victim, survivor = orch.engines
    session = await engine_session(http, victim)
    async with http.get(session["playback_url"]) as playing:
        assert playing.status == 200
        await playing.content.readexactly(188)
        await orch.kill_engine(victim.container_id)
        with pytest.raises(aiohttp.ClientError):
            async with asyncio.timeout(3):
                await playing.content.read()
    assert victim.health_status == "unhealthy"
    assert victim.alive is False
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(http, f"http://127.0.0.1:{victim.port}/webui/api/service")
    _, engines = await get(http, f"{orch.url}/engines")
    health = {e["container_id"]: e["health_status"] for e in engines}
    assert health == {victim.container_id: "unhealthy", survivor.container_id: "healthy"}
    _, state = await get(http, f"{orch.url}/orchestrator/status")
    assert state["engines"] == {"total": 2, "running": 1, "healthy": 1, "unhealthy": 1}


async def test_a_restarted_engine_comes_back_on_its_port_knowing_no_session(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=1)
    pool = orch.engines[0]
    first, port = pool.sim, pool.port
    session = await engine_session(http, pool)
    await orch.restart_engine(pool.container_id)
    assert (pool.port, pool.alive, pool.health_status) == (port, True, "healthy")
    assert pool.past == [first] and pool.sim is not first
    async with http.get(session["command_url"], params={"method": "stop"}) as resp:
        assert (await resp.json())["error"] == "unknown playback session id"
    assert first.sessions[0].stops == 0  # the old engine never heard it
    again = await engine_session(http, pool)
    assert [s.playback_session_id for s in pool.sim.active()] == [again["playback_session_id"]]
    _, engines = await get(http, f"{orch.url}/engines")
    assert [(e["port"], e["health_status"]) for e in engines] == [(port, "healthy")]


async def test_an_orchestrator_that_stopped_serving_comes_back_on_its_port(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=1)
    url, port = orch.url, orch.port
    assert port is not None
    session = await engine_session(http, orch.engines[0])
    await orch.stop_serving()
    await orch.stop_serving()
    assert not orch.serving
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(http, f"{url}/engines")
    async with http.get(session["playback_url"]) as playing:  # its engines play on
        assert playing.status == 200
        await playing.content.readexactly(188)
    assert await orch.serve(port) == port
    assert orch.serving
    status, engines = await get(http, f"{url}/engines")
    assert status == 200 and [e["health_status"] for e in engines] == ["healthy"]


async def test_health_follows_whether_the_engine_answers(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=1)
    pool = orch.engines[0]
    pool.sim.faults.down = True
    _, engines = await get(http, f"{orch.url}/engines")
    assert engines[0]["health_status"] == "unhealthy"
    pool.sim.faults.down = False
    _, engines = await get(http, f"{orch.url}/engines")
    assert engines[0]["health_status"] == "healthy"
    # Each listing asks the engine afresh.
    probe = "GET /server/api?api_version=3&method=get_status"
    before = pool.sim.requests.count(probe)
    await get(http, f"{orch.url}/engines")
    assert pool.sim.requests.count(probe) == before + 1


# --- faults and bookkeeping -------------------------------------------------------------


async def test_down_drops_every_request(make: Make, http: aiohttp.ClientSession) -> None:
    orch = await make(engines=1)
    orch.faults.down = True
    for path in ("/engines", "/orchestrator/status"):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await get(http, f"{orch.url}{path}")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(http, f"{orch.url}/provision/acestream", {})
    assert len(orch.engines) == 1


async def test_garbage_answers_reads_with_non_json(make: Make, http: aiohttp.ClientSession) -> None:
    orch = await make(engines=1)
    orch.faults.garbage = True
    for path in ("/engines", "/streams", "/orchestrator/status"):
        async with http.get(f"{orch.url}{path}") as resp:
            assert resp.status == 200
            with pytest.raises(ValueError):
                await resp.json(content_type=None)
    status, _ = await post(http, f"{orch.url}/provision/acestream", {})
    assert status == 200


async def test_provisioning_can_answer_garbage_or_nothing(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=1)
    orch.faults.provision_answer = "garbage"
    async with http.post(f"{orch.url}/provision/acestream", json={}) as resp:
        assert resp.status == 200
        with pytest.raises(ValueError):
            await resp.json(content_type=None)
    orch.faults.provision_answer = "none"
    held = asyncio.create_task(post(http, f"{orch.url}/provision/acestream", {}))
    await orch.wait_until(lambda: orch.counters["POST /provision/acestream"] == 2)
    assert not held.done()
    await orch.stop()  # lets a held request go, without an answer
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await held
    assert len(orch.engines) == 1


async def test_calls_are_recorded_and_unknown_routes_are_404(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(engines=1)
    await get(http, f"{orch.url}/engines")
    await get(http, f"{orch.url}/streams", container_id="x", status="started")
    await post(http, f"{orch.url}/events/stream_ended", {"stream_id": "x"})
    status, body = await get(http, f"{orch.url}/api/v1/engines")
    assert (status, body) == (404, {"detail": "Not Found"})
    status, _ = await post(http, f"{orch.url}/engines", {})
    assert status == 404
    assert orch.calls == [
        "GET /engines",
        "GET /streams",
        "POST /events/stream_ended",
        "GET /api/v1/engines",
        "POST /engines",
    ]
    assert orch.counters["GET /engines"] == 1
    assert orch.counters["GET /streams"] == 1
    # the other dialect's engine list is a probe a client may make, not a mistake
    assert orch.counters["other_dialect"] == 1
    assert orch.unexpected == ["POST /engines"]
    orch.unexpected.clear()


async def test_stop_takes_every_engine_down(make: Make, http: aiohttp.ClientSession) -> None:
    orch = await make(engines=2)
    orch.faults.provision_delay = 30  # a start still pending when the orchestrator stops
    await post(http, f"{orch.url}/provision/acestream", {})
    ports = [pool.port for pool in orch.engines]
    url = orch.url
    await orch.stop()
    await orch.stop()
    for port in [*ports, orch.port]:
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(http, f"http://127.0.0.1:{port}/engines")
    assert not any(pool.alive for pool in orch.engines)
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(http, f"{url}/engines")
    with pytest.raises(RuntimeError):
        await orch.start()


# --- v2.1 ---------------------------------------------------------------------------------


async def text(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, str]:
    async with http.request(method, url, **kw) as resp:
        return resp.status, await resp.text()


async def test_v2_1_serves_everything_under_api_v1(make: Make, http: aiohttp.ClientSession) -> None:
    orch = await make(dialect="v2.1", engines=3)
    assert await text(http, "GET", f"{orch.url}/engines") == (404, "404 page not found\n")
    assert orch.counters["other_dialect"] == 1
    status, engines = await get(http, f"{orch.url}/api/v1/engines")
    assert status == 200 and isinstance(engines, list)
    assert {e["port"] for e in engines} == {pool.port for pool in orch.engines}
    for entry in engines:
        assert entry["health_status"] == "healthy"
        assert (entry["stream_count"], entry["draining"], entry["streams"]) == (0, False, [])
        assert entry["api_port"] == entry["port"]
        assert "last_stream_usage" not in entry and "version" not in entry
    orders = set()
    for _ in range(8):  # no fixed order
        _, again = await get(http, f"{orch.url}/api/v1/engines")
        orders.add(tuple(e["container_id"] for e in again))
    assert len(orders) > 1


async def test_v2_1_status_blocks_only_on_its_circuit_breaker(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(dialect="v2.1", engines=1, max_engines=1)
    _, body = await get(http, f"{orch.url}/api/v1/orchestrator/status")
    assert body["status"] == "healthy"
    assert body["provisioning"]["can_provision"] is True  # even at the replica maximum
    assert body["provisioning"]["blocked_reason"] is None
    assert (body["capacity"]["total"], body["capacity"]["max_replicas"]) == (1, 1)
    orch.faults.provision_blocked = "circuit_breaker"
    _, body = await get(http, f"{orch.url}/api/v1/orchestrator/status")
    assert body["status"] == "degraded"
    assert body["provisioning"]["can_provision"] is False
    assert body["provisioning"]["blocked_reason"]["code"] == "circuit_breaker"


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({}, {}, (401, "unauthorized\n")),
        ({"X-API-Key": "wrong"}, {}, (403, "forbidden\n")),
        ({"X-API-Key": KEY}, {}, (200, '{"status":"provisioning"}')),
        ({"Authorization": f"Bearer {KEY}"}, {}, (200, '{"status":"provisioning"}')),
        ({}, {"key": KEY}, (200, '{"status":"provisioning"}')),
    ],
    ids=["no-key", "wrong-key", "x-api-key", "bearer", "query"],
)
async def test_v2_1_provisioning_takes_the_key_three_ways(
    make: Make,
    http: aiohttp.ClientSession,
    headers: dict[str, str],
    query: dict[str, str],
    expected: tuple[int, str],
) -> None:
    orch = await make(dialect="v2.1", engines=0, api_key=KEY)
    url = f"{orch.url}/api/v1/provision/acestream"
    status, body = await text(http, "POST", url, headers=headers, params=query)
    assert (status, body.strip().replace(" ", "")) == (expected[0], expected[1].strip())


async def test_v2_1_provisioning_names_no_engine_and_lists_it_unknown_until_it_answers(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(dialect="v2.1", engines=1, max_engines=2)
    orch.faults.provision_delay = 0.5
    url = f"{orch.url}/api/v1/provision/acestream"
    assert await post(http, url, {"anything": "ignored"}) == (200, {"status": "provisioning"})
    _, engines = await get(http, f"{orch.url}/api/v1/engines")
    assert sorted(e["health_status"] for e in engines) == ["healthy", "unknown"]

    async def healthy() -> None:
        while True:
            _, listed = await get(http, f"{orch.url}/api/v1/engines")
            if [e["health_status"] for e in listed] == ["healthy", "healthy"]:
                return
            await asyncio.sleep(0.1)

    await asyncio.wait_for(healthy(), 10)
    # at the maximum it answers the same, and adds nothing
    assert await post(http, url, {}) == (200, {"status": "provisioning"})
    assert len(orch.engines) == 2 and orch.counters["provision_blocked"] == 1


def go_started(pool: SimPoolEngine, session: Any, key: str = CID, **extra: Any) -> dict[str, Any]:
    return {
        "content_id": key,
        "engine_id": pool.container_id,
        **started_event(pool, session, key=key),
        **extra,
    }


async def test_v2_1_events_take_no_key_and_count_per_engine(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(dialect="v2.1", engines=1, api_key=KEY)
    (pool,) = orch.engines
    session = await engine_session(http, pool)
    started = f"{orch.url}/api/v1/events/stream_started"
    ended = f"{orch.url}/api/v1/events/stream_ended"
    status, stream = await post(http, started, go_started(pool, session))
    assert status == 200 and stream["id"] == CID
    assert orch.stream_counts[pool.container_id] == 1
    # the same content again replaces the stream and counts twice
    assert (await post(http, started, go_started(pool, session)))[0] == 200
    assert orch.stream_counts[pool.container_id] == 2
    assert orch.counters["started_again"] == 1
    _, engines = await get(http, f"{orch.url}/api/v1/engines")
    assert engines[0]["stream_count"] == 2
    assert await post(http, ended, {"content_id": CID}) == (200, {"status": "ended"})
    assert orch.stream_counts[pool.container_id] == 1
    # matched or not, an end answers 200
    assert await post(http, ended, {"content_id": CID}) == (200, {"status": "ended"})
    assert orch.counters["ended_unmatched"] == 1
    assert orch.started_ids() == [CID, CID] and orch.ended_ids() == [CID, CID]
    assert orch.counters["auth_failed"] == 0


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("stream_started", {"engine_id": "x"}, {"error": "content_id required"}),
        (
            "stream_started",
            {"content_id": CID, "session": {"is_live": True}},
            {"error": "invalid json"},
        ),
        ("stream_started", [], {"error": "invalid json"}),
        ("stream_ended", {"reason": "gone"}, {"error": "content_id or stream_id required"}),
    ],
    ids=["no-content", "bool-is-live", "not-an-object", "end-names-nothing"],
)
async def test_v2_1_events_refuse_what_go_cannot_decode(
    make: Make, http: aiohttp.ClientSession, path: str, body: Any, expected: dict[str, str]
) -> None:
    orch = await make(dialect="v2.1", engines=0)
    assert await post(http, f"{orch.url}/api/v1/events/{path}", body) == (400, expected)
    assert orch.events_started == [] and orch.stream_counts == {}


async def test_v2_1_an_engine_id_that_is_no_engine_is_counted(
    make: Make, http: aiohttp.ClientSession
) -> None:
    orch = await make(dialect="v2.1", engines=1)
    (pool,) = orch.engines
    session = await engine_session(http, pool)
    body = go_started(pool, session, engine_id="", container_id="the-proxy-itself")
    assert (await post(http, f"{orch.url}/api/v1/events/stream_started", body))[0] == 200
    assert orch.counters["unknown_engine"] == 1
    assert orch.stream_counts == {"the-proxy-itself": 1}
