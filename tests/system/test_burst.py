"""Real players through the engine's opening burst: 30 s of media sent at once, then real time.

A player reading in real time is then 30 s behind what the proxy has. It has done nothing
wrong: it plays on, and so does a player that joins later; the engine sees one session. With
a ring shorter than the burst, a player still reading is moved forward and plays on; a client
that stops reading is still cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import aiohttp
import pytest

from tests.helpers import CID, ProxyFactory, RunningSim, eventually, scrape

from .players import PLAYERS, Playback, Player, available, play

BURST = {"bitrate": 4_000_000}
PLAY_SECONDS = 30.0
# Without the burst's clients kept on the line, they were cut within a second and played
# what they had read ahead: 11 to 15 s. A player that plays this much has played through.
PLAYED_AT_LEAST = 18.0


def needs(player: Player) -> Any:
    return pytest.mark.skipif(not available(player), reason=f"{player} is not installed")


async def status(port: int | None) -> dict[str, Any]:
    assert port is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/ace/status", params={"id": CID}) as resp,
    ):
        found: dict[str, Any] = await resp.json()
        return found


def played_through(seen: Playback) -> None:
    assert seen.ended_at is None, f"the stream ended under it: {seen!r}"
    assert seen.first_picture is not None, seen
    assert seen.played >= PLAYED_AT_LEAST, seen


@pytest.mark.parametrize("sim_options", [BURST], ids=["4Mbps"])
@pytest.mark.parametrize("player", [pytest.param(p, marks=needs(p)) for p in PLAYERS])
async def test_a_player_plays_through_a_30s_burst(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any], player: Player
) -> None:
    sim.faults.burst_seconds = 30.0
    client = await proxy()
    url = f"http://127.0.0.1:{client.port}/ace/getstream?id={CID}"
    seen = await play(player, url, deadline=PLAY_SECONDS)
    played_through(seen)
    assert seen.decode_errors == []
    assert (await status(client.port))["clients_cut"] == 0
    assert len(sim.engine.sessions) == 1


@pytest.mark.parametrize("sim_options", [BURST], ids=["4Mbps"])
@pytest.mark.skipif(
    not (available("mpv") and available("gstreamer")), reason="needs mpv and GStreamer"
)
async def test_a_player_joining_after_the_burst_plays_too(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    sim.faults.burst_seconds = 30.0
    client = await proxy()
    url = f"http://127.0.0.1:{client.port}/ace/getstream?id={CID}"
    seen = Playback("mpv")
    first = asyncio.create_task(play("mpv", url, deadline=PLAY_SECONDS + 10, seen=seen))
    try:
        # the burst has landed; the first player is well into it
        await eventually(lambda: seen.played >= 6.0, timeout=30.0)
        late = await play("gstreamer", url, deadline=PLAY_SECONDS)
        played_through(late)
        played_through(await first)
        assert late.decode_errors == seen.decode_errors == []
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first  # the player is stopped
    assert (await status(client.port))["clients_cut"] == 0
    assert len(sim.engine.sessions) == 1


@pytest.mark.parametrize("sim_options", [BURST], ids=["4Mbps"])
@pytest.mark.skipif(not (available("mpv") and available("ffmpeg")), reason="needs mpv and ffmpeg")
async def test_behind_a_ring_shorter_than_the_burst_readers_move_on_and_a_stalled_one_is_cut(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    sim.faults.burst_seconds = 30.0
    client = await proxy(buffer_time="10s")
    url = f"http://127.0.0.1:{client.port}/ace/getstream?id={CID}"
    seen = Playback("mpv")
    first = asyncio.create_task(play("mpv", url, deadline=PLAY_SECONDS + 10, seen=seen))
    await eventually(lambda: sim.engine.counters["content_read"] == 1)
    # A client that reads its head and a little, then nothing more.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", client.port))
    stalled.sendall(f"GET /ace/getstream?id={CID} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        await eventually(lambda: seen.played >= 6.0, timeout=30.0)
        played_through(await play("ffmpeg", url, deadline=PLAY_SECONDS))
        played_through(await first)
        figures = await status(client.port)
        assert figures["clients_cut"] == 1, figures  # the stalled one, and only it
        assert figures["clients_moved_forward"] >= 1, figures
        # The same counts, as Prometheus reads them.
        _, metrics = await scrape(client)
        assert metrics[("hlsproxy_clients_cut_total", ())] == 1
        moved = metrics[("hlsproxy_clients_moved_forward_total", ())]
        assert moved == figures["clients_moved_forward"], metrics
        assert len(sim.engine.sessions) == 1
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first  # the player is stopped
        stalled.close()
