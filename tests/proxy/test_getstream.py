"""`/ace/getstream` end to end: real HTTP clients, the proxy, the simulated engine."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import (
    CID,
    CID2,
    ProxyFactory,
    RunningSim,
    content_id,
    decode_warnings,
    discontinuity_marks,
    eventually,
)

PACKET = 188


async def read_bytes(resp: aiohttp.ClientResponse, n: int, timeout: float = 20.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await resp.content.readexactly(n)


async def wait_for_clients(client: TestClient[Any, Any], cid: str, n: int) -> dict[str, Any]:
    """The proxy's own count, once it has seen clients come or go."""
    async with asyncio.timeout(10):
        while True:
            status: dict[str, Any] = await (
                await client.get("/ace/status", params={"id": cid})
            ).json()
            if status["clients"] == n:
                return status
            await asyncio.sleep(0.05)


async def test_fifty_clients_share_one_session_and_get_identical_bytes(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    responses = await asyncio.gather(
        *(client.get("/ace/getstream", params={"id": CID}) for _ in range(50))
    )
    assert {r.status for r in responses} == {200}
    assert {r.headers["Content-Type"] for r in responses} == {"video/mp2t"}
    captures = await asyncio.gather(*(read_bytes(r, 300 * PACKET) for r in responses))
    assert len(set(captures)) == 1
    assert captures[0][0] == 0x47 and captures[0][PACKET] == 0x47
    for r in responses:
        r.close()
    assert sim.counters["start"] == 1
    assert sim.counters["content_read"] == 1
    assert sim.counters["corrupt_read"] == 0


async def test_engine_sees_our_pid_and_the_clients_parameters(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    async with client.get(
        "/ace/getstream/",
        params={"id": CID, "pid": "from-a-playlist", "transcode_audio": "0"},
    ) as resp:
        assert resp.status == 200
        await read_bytes(resp, PACKET)
    (session,) = sim.engine.sessions
    assert session.pid != "from-a-playlist"
    assert len(session.pid) == 36  # a uuid4
    assert session.params.get("transcode_audio") == "0"
    assert session.fmt == "ts"


async def test_first_byte_arrives_without_waiting_for_a_buffer_to_fill(
    proxy: ProxyFactory,
) -> None:
    client = await proxy()
    started = time.monotonic()
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        await read_bytes(resp, PACKET)
        first_byte = time.monotonic() - started
    # The engine answers at once here; acexy would wait for 4 MiB (seconds of video).
    assert first_byte < 2.0


async def test_a_capture_decodes_without_warnings(proxy: ProxyFactory) -> None:
    client = await proxy()
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        data = await read_bytes(resp, 2000 * PACKET)
    assert decode_warnings(data) == ""


async def test_a_late_joiner_starts_cleanly(proxy: ProxyFactory) -> None:
    client = await proxy()
    async with client.get("/ace/getstream", params={"id": CID}) as first:
        await read_bytes(first, 1500 * PACKET)  # past the prebuffer, into real time
        async with client.get("/ace/getstream", params={"id": CID}) as late:
            data = await read_bytes(late, 1500 * PACKET)
            await read_bytes(first, 500 * PACKET)
    assert data[0] == 0x47
    assert decode_warnings(data) == ""


@pytest.mark.parametrize("sim_options", [{"bitrate": 4_000_000}], ids=["4Mbps"])
async def test_stalled_clients_are_cut_and_do_not_slow_the_others(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    client = await proxy(buffer_size="256KiB")
    stalled = []
    for _ in range(2):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", client.port))
        sock.sendall(f"GET /ace/getstream?id={CID} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        stalled.append(sock)
    await eventually(lambda: sim.counters["content_read"] == 1)
    readers = [await client.get("/ace/getstream", params={"id": CID}) for _ in range(20)]

    async def rate(resp: aiohttp.ClientResponse) -> float:
        await resp.content.readany()
        started, received = time.monotonic(), 0
        while time.monotonic() - started < 4.0:
            received += len(await resp.content.readany())
        return received * 8 / (time.monotonic() - started)

    rates = await asyncio.gather(*(rate(r) for r in readers))
    assert min(rates) > 0.95 * 4_000_000, rates
    # a cut client has CUT_GRACE to take its EOF before it is dropped
    status = await wait_for_clients(client, CID, 20)
    assert status["clients_cut"] == 2
    for sock in stalled:
        # What was queued drains, then EOF or a reset: never an open, silent connection.
        assert await asyncio.to_thread(ends_within, sock, 10.0)
        sock.close()
    for r in readers:
        r.close()


async def test_an_http_1_0_client_gets_plain_ts_until_the_connection_ends(
    proxy: ProxyFactory,
) -> None:
    client = await proxy()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(f"GET /ace/getstream?id={CID} HTTP/1.0\r\n\r\n".encode())
        async with asyncio.timeout(20):
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(1500 * PACKET)  # into real time, past the prebuffer
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.0 200")
    assert b"chunked" not in head.lower()
    assert all(body[i] == 0x47 for i in range(0, len(body), PACKET))


def ends_within(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(1 << 16):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


async def test_rapid_connects_and_disconnects_leave_no_session_open(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(linger="0s")
    contents = [content_id(n + 1) for n in range(10)]

    async def cycle(i: int) -> None:
        async with client.get("/ace/getstream", params={"id": contents[i % 10]}) as resp:
            assert resp.status == 200
            await read_bytes(resp, PACKET)

    for batch in range(10):
        await asyncio.gather(*(cycle(batch * 30 + i) for i in range(30)))
    await eventually(lambda: sim.engine.active() == [])
    assert sim.stop_calls() == sim.counters["start"]
    assert sim.counters["corrupt_read"] == 0
    assert (await (await client.get("/ace/status")).json()) == {"streams": 0}


async def test_a_client_that_leaves_mid_stream_is_counted_out_while_others_play(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    async with client.get("/ace/getstream", params={"id": CID}) as stays:
        await read_bytes(stays, 1500 * PACKET)  # into real time: chunks go out as they come
        leaving = socket.create_connection(("127.0.0.1", client.port))
        leaving.sendall(f"GET /ace/getstream?id={CID} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await asyncio.to_thread(leaving.recv, 65536)
        await wait_for_clients(client, CID, 2)
        leaving.close()
        status = await wait_for_clients(client, CID, 1)
        await read_bytes(stays, 500 * PACKET)
    assert status["clients_cut"] == 0
    assert sim.counters["start"] == 1


async def test_linger_lets_a_client_come_back_to_the_same_session(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(linger="3s")
    for _ in range(3):
        async with client.get("/ace/getstream", params={"id": CID}) as resp:
            await read_bytes(resp, PACKET)
    assert sim.counters["start"] == 1
    assert sim.counters["stop"] == 0
    await eventually(lambda: sim.counters["stop"] == 1, timeout=8)
    assert sim.engine.active() == []


async def test_a_client_arriving_during_teardown_gets_a_fresh_session(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(linger="0s")
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        await read_bytes(resp, PACKET)
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        assert resp.status == 200
        data = await read_bytes(resp, 500 * PACKET)
    assert data[0] == 0x47
    assert sim.counters["start"] == 2
    assert sim.counters["corrupt_read"] == 0


@pytest.mark.parametrize("sim_options", [{"prebuffer_segments": 0}], ids=["no-prebuffer"])
async def test_empty_upstream_ends_the_stream_with_eof(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    client = await proxy(empty_timeout="1s", upstream_retries="0")
    sim.faults.stall_after = 50 * PACKET
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        async with asyncio.timeout(10):
            data = await resp.content.read()
    assert len(data) == 50 * PACKET
    await eventually(lambda: sim.counters["stop"] == 1)


@pytest.mark.parametrize("sim_options", [{"prebuffer_segments": 0}], ids=["no-prebuffer"])
async def test_a_stalled_upstream_is_reopened(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    client = await proxy(empty_timeout="1s", upstream_retries="2")
    sim.faults.stall_after = 50 * PACKET
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        await read_bytes(resp, 50 * PACKET)
        sim.faults.stall_after = None
        more = await read_bytes(resp, 200 * PACKET)
    assert more[0] == 0x47
    assert sim.counters["content_read"] == 2


async def test_a_cut_upstream_is_reopened_while_clients_stay(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(upstream_retries="3")
    sim.faults.cut_after = 400 * PACKET
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        data = await read_bytes(resp, 1500 * PACKET)
    assert data[0] == 0x47
    assert sim.counters["content_read"] >= 3
    # the second failure in a row starts a fresh engine session
    assert sim.counters["start"] >= 2


async def test_clients_get_eof_when_retries_run_out(proxy: ProxyFactory, sim: RunningSim) -> None:
    client = await proxy(upstream_retries="1")
    sim.faults.cut_after = 100 * PACKET
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        async with asyncio.timeout(15):
            data = await resp.content.read()
    # The whole first read, then the retry's from its first join point on (PAT and PMT and a
    # discontinuity mark per PID in front), then EOF.
    assert len(data) % PACKET == 0
    assert 100 * PACKET < len(data) <= (200 + 2 + 8) * PACKET
    marks = discontinuity_marks(data)
    assert len(marks) >= 3, "PAT, PMT and each elementary stream get a discontinuity mark"
    assert min(marks) >= 100 * PACKET
    assert sim.counters["content_read"] == 2


async def test_head_answers_headers_and_starts_nothing(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    async with client.head("/ace/getstream", params={"id": CID}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "video/mp2t"
    assert sim.engine.requests == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/ace/getstream", 400),
        ("GET", f"/ace/getstream?id={CID}&infohash={CID2}", 400),
        ("GET", "/ace/getstream?id=not-hex", 400),
        ("GET", "/ace/getstream?url=http://192.168.1.1/x.torrent", 400),
        ("POST", f"/ace/getstream?id={CID}", 405),
        ("DELETE", f"/ace/getstream?id={CID}", 405),
        ("GET", "/ace/nothing-here", 404),
        ("GET", "/ace/status?id=zz", 400),
        ("GET", f"/ace/status?id={CID}", 404),
    ],
    ids=str,
)
async def test_bad_input_gets_a_4xx_with_a_message(
    proxy: ProxyFactory, sim: RunningSim, method: str, path: str, status: int
) -> None:
    client = await proxy()
    async with client.request(method, path) as resp:
        assert resp.status == status
        body = await resp.json()
    assert body["message"]
    assert "Traceback" not in body["message"]
    assert sim.engine.requests == []


@pytest.mark.parametrize(
    ("fault", "value", "status"),
    [
        ("error", "failed to load content", 502),
        ("down", True, 502),
        ("start_delay", 3.0, 504),
    ],
    ids=["engine-error", "engine-down", "engine-slow"],
)
async def test_engine_failures_map_to_5xx_without_engine_details(
    proxy: ProxyFactory, sim: RunningSim, fault: str, value: object, status: int
) -> None:
    client = await proxy(no_response_timeout="1s")
    setattr(sim.faults, fault, value)
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        assert resp.status == status
        text = await resp.text()
    assert str(sim.port) not in text and "127.0.0.1" not in text
    assert all(s.pid not in text for s in sim.engine.sessions)
    if fault == "error":
        assert "failed to load content" in text
    sim.faults.start_delay = 0.0


async def test_unknown_content_is_a_502_naming_the_engine_reason(proxy: ProxyFactory) -> None:
    client = await proxy()
    async with client.get("/ace/getstream", params={"id": "dead" + "0" * 36}) as resp:
        assert resp.status == 502
        assert "failed to load content" in (await resp.json())["message"]


async def test_refused_connection_is_a_502(proxy: ProxyFactory) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    client = await proxy(port=str(free_port))
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        assert resp.status == 502
        body = await resp.json()
    assert body["error"] == "engine_unreachable"
    assert str(free_port) not in body["message"]


async def test_stream_limit_answers_503_with_retry_after(proxy: ProxyFactory) -> None:
    client = await proxy(max_streams="1", linger="5s")
    async with client.get("/ace/getstream", params={"id": CID}) as first:
        await read_bytes(first, PACKET)
        async with client.get("/ace/getstream", params={"id": CID2}) as second:
            assert second.status == 503
            assert int(second.headers["Retry-After"]) > 0
    await wait_for_clients(client, CID, 0)
    # an idle, lingering stream makes room instead of refusing
    async with client.get("/ace/getstream", params={"id": CID2}) as third:
        assert third.status == 200


async def test_status_counts_streams_and_describes_one(proxy: ProxyFactory) -> None:
    client = await proxy()
    assert await (await client.get("/ace/status")).json() == {"streams": 0}
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        await read_bytes(resp, PACKET)
        assert await (await client.get("/ace/status")).json() == {"streams": 1}
        one = await (await client.get("/ace/status", params={"id": CID})).json()
    assert one["stream_id"] == CID
    assert one["clients"] == 1
    assert "pid" not in str(one) and "127.0.0.1" not in str(one)


async def test_health_answers_while_the_engine_is_slow(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    sim.faults.start_delay = 2.0
    slow = asyncio.ensure_future(client.get("/ace/getstream", params={"id": CID}))
    await eventually(lambda: sim.engine.requests != [])
    started = time.monotonic()
    async with client.get("/healthz") as resp:
        assert resp.status == 200
    assert time.monotonic() - started < 0.5
    (await slow).close()
    sim.faults.start_delay = 0.0


async def test_shutdown_stops_every_session_and_ends_every_client(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(linger="30s")
    responses = [await client.get("/ace/getstream", params={"id": cid}) for cid in (CID, CID2)]
    for r in responses:
        await read_bytes(r, PACKET)
    started = time.monotonic()
    runner = client.server.runner
    assert runner is not None
    await runner.shutdown()  # what SIGTERM triggers
    for r in responses:
        async with asyncio.timeout(5):
            await r.content.read()
    assert time.monotonic() - started < 5
    assert sim.counters["stop"] == 2


async def test_a_capitalised_id_is_redirected_to_its_one_spelling(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    for path in ("/ace/getstream", "/ace/manifest.m3u8"):
        async with client.get(
            path, params={"id": CID.upper(), "transcode_audio": "0"}, allow_redirects=False
        ) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == f"{path}?id={CID}&transcode_audio=0"
    assert sim.engine.requests == []


async def test_a_pasted_acestream_link_is_redirected_to_its_content_id(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    for path in ("/ace/getstream", "/ace/manifest.m3u8"):
        async with client.get(
            path, params={"id": f"acestream://{CID}"}, allow_redirects=False
        ) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == f"{path}?id={CID}"
        async with client.get(path, params={"id": "acestream://not-an-id"}) as resp:
            assert resp.status == 400
            assert "40 hexadecimal" in (await resp.json())["message"]
    assert sim.engine.requests == []
