"""The status page and the player page, as a person sees them in Chromium."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from playwright.async_api import BrowserContext

from hlsproxy.runner import DEMO_CHANNELS, DEMO_COLD_ID
from tests.helpers import CID, CID2, ProxyFactory, RunningSim, free_port, start_demo

from .conftest import Player
from .players import play

pytestmark = pytest.mark.e2e


async def test_the_status_page_lists_the_streams_that_are_playing(
    proxy: ProxyFactory, sim: RunningSim, browser: BrowserContext
) -> None:
    client = await proxy()
    ts = await client.get("/ace/getstream", params={"id": CID})
    await ts.content.readexactly(188 * 100)
    assert (await client.get("/ace/manifest.m3u8", params={"id": CID2})).status == 200
    page = await browser.new_page()
    await page.goto(f"http://127.0.0.1:{client.port}/")
    text = await page.inner_text("body")
    assert CID in text and CID2 in text
    assert await page.locator("svg").count() >= 1
    links = await page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
    assert f"/player?id={CID}" in links and f"/player?id={CID2}" in links
    ts.close()
    await page.close()


async def test_the_demo_lists_its_channels_to_play_at_phone_and_desktop_widths(
    browser: BrowserContext,
) -> None:
    port = free_port()
    process = await start_demo(port)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            while not (line := await process.stdout.readline()).startswith(b"status page:"):
                assert line, "the demo ended before it printed its status page"
        base = f"http://127.0.0.1:{port}"
        for width, height in ((390, 844), (1280, 800)):
            page = await browser.new_page()
            await page.set_viewport_size({"width": width, "height": height})
            await page.goto(f"{base}/")
            items = page.locator("section:has(h2#channels) .listed li")
            assert await items.count() == len(DEMO_CHANNELS)
            for item, channel in zip(await items.all(), DEMO_CHANNELS, strict=True):
                query = f"id={channel.content_id}"
                links = item.locator("a")
                hrefs = await links.evaluate_all("els => els.map(e => e.getAttribute('href'))")
                assert hrefs == [
                    f"/player?{query}",
                    f"/ace/getstream?{query}",
                    f"/ace/manifest.m3u8?{query}",
                ]
                assert "not playing" in await item.inner_text()
                for link in await links.all():
                    box = await link.bounding_box()
                    assert box is not None and await link.is_visible()
                    assert box["x"] >= 0 and box["x"] + box["width"] <= width, (width, box)
            cold = page.locator(".listed li", has_text=DEMO_COLD_ID).locator(".cold")
            assert await cold.inner_text() == "cold: the engine prebuffers it about 15 s first"
            # Nothing runs off the side of a phone: the page scrolls down, not across.
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{overflow}px wider than a {width}px screen"
            await page.close()
        # What a new user clicks first opens the channel's player page.
        page = await browser.new_page()
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(f"{base}/")
        first = DEMO_CHANNELS[0].content_id
        await page.locator(".listed li", has_text=first).get_by_role("link", name="Play").click()
        await page.wait_for_url(f"{base}/player?id={first}")
        assert await page.locator("h1").inner_text() == f"hlsproxy: {first}"
        await page.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("sim_options", [{"time_scale": 1.0}], ids=["real-time"])
async def test_the_player_page_plays_the_stream(
    proxy: ProxyFactory, sim: RunningSim, browser: BrowserContext, sim_options: dict[str, Any]
) -> None:
    client = await proxy()
    page = await browser.new_page()
    await page.goto(f"http://127.0.0.1:{client.port}/player?id={CID}")
    await page.wait_for_function(
        "() => window.playerState && window.playerState.currentTime > 3", timeout=30_000
    )
    state = await page.evaluate("window.playerState")
    assert state["playing"] and not state["error"]
    assert [s.fmt for s in sim.engine.sessions] == ["hls"]
    await page.close()


# HLS from the engine's session with MPEG-TS fed from its segments, or cut by the proxy from
# the channel's MPEG-TS session: either way one channel, one row.
SOURCES = {
    "engine-hls": ({}, "HLS session; MPEG-TS from its segments", ["hls"]),
    "cut-hls": (
        {"hls_source": "proxy", "hls_segment_target": "2s"},
        "MPEG-TS session; HLS cut by the proxy",
        ["ts"],
    ),
}


async def _players_by_kind(client: Any) -> dict[str, int]:
    resp = await client.get("/ace/status", params={"id": CID})
    assert resp.status == 200
    players: dict[str, int] = (await resp.json())["players"]
    return players


async def _until_players(client: Any, expected: dict[str, int], timeout: float) -> None:
    """Until the channel's players by kind are `expected` (a kind no longer played may be
    left out); fails with the last count seen."""
    seen: list[dict[str, int]] = []

    async def poll() -> None:
        while True:
            seen.append(await _players_by_kind(client))
            if {kind: n for kind, n in seen[-1].items() if n or kind in expected} == expected:
                return
            await asyncio.sleep(0.25)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        pytest.fail(f"players by kind not {expected} within {timeout}s: {seen[-3:]}")


@pytest.mark.parametrize("sim_options", [{"time_scale": 1.0}], ids=["real-time"])
@pytest.mark.parametrize("source", list(SOURCES))
async def test_real_players_show_as_people_in_one_row_at_desktop_and_phone_widths(
    proxy: ProxyFactory,
    sim: RunningSim,
    player: Player,
    sim_options: dict[str, Any],
    source: str,
) -> None:
    options, said, sessions = SOURCES[source]
    client = await proxy(**options)
    base = f"http://127.0.0.1:{client.port}"
    await player.play(f"{base}/ace/manifest.m3u8?id={CID}")
    await player.until("s.currentTime > 2", timeout=30)
    watching = [
        asyncio.create_task(
            play("ffmpeg", f"{base}/ace/manifest.m3u8?id={CID}", deadline=90, length=90)
        ),
        asyncio.create_task(
            play("ffmpeg", f"{base}/ace/getstream?id={CID}", deadline=90, length=90)
        ),
    ]
    try:
        # hls.js and ffmpeg asked for hundreds of playlists and segments: two people.
        await _until_players(client, {"hls": 2, "ts": 1}, timeout=30)
        status = await (await client.get("/ace/status", params={"id": CID})).json()
        assert status["source"] == said
        for width, height in ((1280, 800), (390, 844)):
            page = await player.page.context.new_page()
            await page.set_viewport_size({"width": width, "height": height})
            rows = page.locator("section:has(h2#channels) tbody tr")
            engine = rows.first.locator("td[data-label=Engine]")
            async with asyncio.timeout(20):
                # The engine's stat is read while the page is looked at: reload until it says.
                while True:
                    await page.goto(f"{base}/")
                    if "dl · 4 peers" in await engine.inner_text():
                        break
                    await page.wait_for_timeout(500)
            assert await rows.count() == 1
            players = await rows.first.locator("td[data-label=Players]").inner_text()
            assert players.split("\n")[:3] == ["2 HLS", "1 MPEG-TS", said]
            assert await rows.first.locator("td[data-label=Players]").is_visible()
            # Nothing runs off the side of a phone: the page scrolls down, not across.
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{overflow}px wider than a {width}px screen"
            await page.close()
    finally:
        for task in watching:
            task.cancel()
        await asyncio.gather(*watching, return_exceptions=True)
    await player.page.close()
    # Gone from the count within three target durations, while the stream still lingers.
    await _until_players(client, {"hls": 0}, timeout=40)
    assert [s.fmt for s in sim.engine.sessions] == sessions
