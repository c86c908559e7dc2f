"""What a hostile client or origin on the proxy's network must not get out of it."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from hlsproxy.engine.client import MAX_REDIRECTS

from .canary import Canary, canary
from .conftest import CID, ProxyFactory, RunningSim

__all__ = ["canary"]


async def _playlist(client: TestClient[Any, Any], **params: str) -> str:
    async with client.get("/ace/manifest.m3u8", params={"id": CID, **params}) as resp:
        assert resp.status == 200
        return await resp.text()


def _uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def test_a_redirect_off_the_engine_is_a_502_that_names_no_address(
    proxy: ProxyFactory, sim: RunningSim, canary: Canary
) -> None:
    client = await proxy()
    segment = _uris(await _playlist(client))[-1]
    sim.faults.redirect_to = f"{canary.url}/elsewhere{{path}}"
    async with client.get(segment) as resp:
        assert resp.status == 502
        body = await resp.text()
    assert "127.0.0.1" not in body and str(canary.port) not in body
    assert canary.requests == []


async def test_a_redirect_within_the_engine_is_followed(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    segment = _uris(await _playlist(client))[-1]
    sim.faults.redirect_to = f"http://127.0.0.1:{sim.port}{{path}}?moved"
    async with client.get(segment) as resp:
        assert resp.status == 200
        assert len(await resp.read()) > 188
    assert sim.counters["segment"] >= 1


async def test_redirects_are_followed_a_bounded_number_of_times(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    segment = _uris(await _playlist(client))[-1]
    sim.faults.redirect_to = "{path}"  # to itself, for ever
    before = len(sim.engine.requests)
    async with client.get(segment) as resp:
        assert resp.status == 502
    assert len(sim.engine.requests) - before == MAX_REDIRECTS + 1


async def test_a_ts_stream_redirected_off_the_engine_never_reaches_the_other_address(
    proxy: ProxyFactory, sim: RunningSim, canary: Canary
) -> None:
    client = await proxy()
    sim.faults.redirect_to = f"{canary.url}{{path}}"
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        body = await resp.read()
    assert b"canary" not in body
    assert resp.status >= 500
    assert canary.requests == []
