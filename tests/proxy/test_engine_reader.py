"""An MPEG-TS body from the engine client fails with the proxy's own errors, never aiohttp's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from hlsproxy.content import parse_stream_request
from hlsproxy.engine.client import Engine, EngineClient
from hlsproxy.errors import EngineTimeout, EngineUnreachable
from tests.helpers import CID, RunningSim

PACKET = 188


@pytest.fixture
async def client() -> AsyncIterator[EngineClient]:
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        yield EngineClient(http, response_timeout=5.0)


async def test_a_body_the_engine_drops_raises_engine_unreachable(
    sim: RunningSim, client: EngineClient
) -> None:
    sim.faults.cut_after = 40 * PACKET
    engine = Engine("http", "127.0.0.1", sim.port)
    session = await client.start(engine, parse_stream_request([("id", CID)]), "ts")
    received = 0
    with pytest.raises(EngineUnreachable) as caught:
        async with client.open_stream(session) as body:
            while data := await body.readany():
                received += len(data)
    assert caught.value.message == "the engine dropped the stream"
    assert received <= 40 * PACKET
    await client.stop(session)


async def test_a_resource_that_stops_arriving_raises_engine_timeout(sim: RunningSim) -> None:
    sim.faults.stall_after = 10 * PACKET
    engine = Engine("http", "127.0.0.1", sim.port)
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        # A resource's reads are bounded by the client's response timeout.
        client = EngineClient(http, response_timeout=0.5)
        session = await client.start(engine, parse_stream_request([("id", CID)]), "ts")
        resource = await client.fetch(session, session.info.playback_url)
        received = 0
        with pytest.raises(EngineTimeout) as caught:
            async for chunk in resource.chunks():
                received += len(chunk)
        await resource.close()
        await client.stop(session)
    assert caught.value.message == "the engine stopped sending mid-answer"
    assert received == 10 * PACKET
