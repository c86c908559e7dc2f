"""The status page and the player page, as a person sees them in Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import BrowserContext

from ..conftest import CID, CID2, ProxyFactory, RunningSim

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
