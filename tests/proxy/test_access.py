"""Access control: a token and client networks, checked before anything costs an engine session."""

from __future__ import annotations

import json
import logging

import pytest

from hlsproxy.logs import JsonFormatter
from tests.helpers import CID, ProxyFactory, RunningSim

TOKEN = "tv-at-home-7f3a"


async def test_without_the_token_nothing_is_served_or_started(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(access_token=TOKEN)
    for path in (f"/ace/getstream?id={CID}", f"/ace/manifest.m3u8?id={CID}", "/ace/status"):
        for query in ("", "&token=wrong" if "?" in path else "?token=wrong"):
            async with client.get(path + query) as resp:
                assert resp.status == 401, path + query
                body = await resp.json()
                assert "token" in body["message"]
                # a player's page may read why it was refused; no page may read the status
                cors = resp.headers.get("Access-Control-Allow-Origin")
                assert cors == (None if path == "/ace/status" else "*")
    assert sim.engine.requests == []
    assert (await client.get("/healthz")).status == 200  # probes need no token


async def test_the_token_opens_every_route_and_is_carried_into_playlists(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(access_token=TOKEN)
    async with client.get("/ace/status", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200
    async with client.get("/ace/manifest.m3u8", params={"id": CID, "token": TOKEN}) as resp:
        assert resp.status == 200
        text = await resp.text()
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert uris and all(uri.endswith(f"?token={TOKEN}") for uri in uris)
    async with client.get(uris[-1]) as resp:  # as a player would, from the playlist alone
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "video/mp2t"
    # the token is the proxy's: the engine never sees it
    assert all(TOKEN not in request for request in sim.engine.requests)
    assert all("token" not in s.params for s in sim.engine.sessions)


async def test_the_token_is_never_logged(
    proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await proxy(access_token=TOKEN, access_log="true")
    async with client.get("/ace/getstream", params={"id": CID, "token": TOKEN}) as resp:
        await resp.content.readexactly(188)
    await client.get("/ace/status", params={"token": "wrong-guess"})
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("hlsproxy")]
    assert any('"GET /ace/getstream" 499' in line for line in ours)
    assert any('"GET /ace/status" 401' in line for line in ours)
    assert not any(TOKEN in line or "wrong-guess" in line for line in ours)


@pytest.mark.parametrize(
    ("networks", "status"),
    [("127.0.0.0/8", 200), ("192.168.1.0/24", 403), ("10.0.0.0/8, 127.0.0.1", 200)],
    ids=["loopback-allowed", "lan-only", "list"],
)
async def test_client_networks(
    proxy: ProxyFactory, sim: RunningSim, networks: str, status: int
) -> None:
    client = await proxy(allow_networks=networks)
    async with client.get("/ace/status") as resp:
        assert resp.status == status
        if status == 403:
            assert "network" in (await resp.json())["message"]
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        assert resp.status == status
    assert (await client.get("/healthz")).status == 200
    assert sim.counters["start"] == (1 if status == 200 else 0)


def test_json_log_lines_are_one_object_each() -> None:
    record = logging.LogRecord(
        "hlsproxy.ts", logging.INFO, __file__, 1, 'stream "%s" ended', ("a\nb",), None
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "INFO" and parsed["logger"] == "hlsproxy.ts"
    assert parsed["message"] == 'stream "a\nb" ended'
    assert parsed["time"].endswith("+00:00")
