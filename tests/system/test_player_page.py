"""The player page when the stream cannot play: the proxy's own reason, in Chromium."""

from __future__ import annotations

import socket

import pytest
from playwright.async_api import BrowserContext, Page

from tests.helpers import CID, ProxyFactory, RunningSim

pytestmark = pytest.mark.e2e

DEAD = "dead" + CID[4:]  # a well-formed id the simulated engine cannot load


async def shown_problem(page: Page) -> tuple[str, str]:
    await page.wait_for_function(
        "() => window.playerState && window.playerState.error", timeout=30_000
    )
    assert await page.is_visible("#problem")
    assert not await page.is_visible("#notice"), "no advice to try VLC: it gets the same error"
    assert not await page.is_visible("video")
    return await page.inner_text("#problem-title"), await page.inner_text("#problem-message")


async def test_content_the_engine_cannot_load_is_said_in_the_proxys_words(
    proxy: ProxyFactory, sim: RunningSim, browser: BrowserContext
) -> None:
    sim.engine.unknown_content_delay = 0.0
    client = await proxy()
    page = await browser.new_page()
    await page.goto(f"http://127.0.0.1:{client.port}/player?id={DEAD}")
    title, message = await shown_problem(page)
    assert title == "The engine could not load this channel."
    assert "failed to load content" in message
    state = await page.evaluate("window.playerState")
    assert state["error"].startswith("content_load_failed: ") and not state["playing"]
    assert "MEDIA_ERR" not in await page.inner_text("body")
    await page.close()


async def test_an_unreachable_engine_is_said_without_its_address(
    proxy: ProxyFactory, browser: BrowserContext
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = await proxy(port=str(port), upstream_retries="0")
    page = await browser.new_page()
    await page.goto(f"http://127.0.0.1:{client.port}/player?id={CID}")
    title, message = await shown_problem(page)
    assert title == "The engine is unreachable."
    assert message and str(port) not in await page.inner_text("body")
    await page.close()


@pytest.mark.parametrize("query", ["id=abc", "", "id=" + CID + "&infohash=" + CID], ids=str)
async def test_an_address_with_no_stream_gets_a_page_not_json(
    proxy: ProxyFactory, sim: RunningSim, browser: BrowserContext, query: str
) -> None:
    client = await proxy()
    async with client.get(f"/player?{query}") as resp:
        assert resp.status == 400
        assert resp.content_type == "text/html"
    page = await browser.new_page()
    answer = await page.goto(f"http://127.0.0.1:{client.port}/player?{query}")
    assert answer is not None and answer.status == 400
    text = await page.inner_text("#problem")
    assert "This is not a stream the proxy can play." in text
    assert "/player?id=" in text
    assert await page.locator("video").count() == 0
    assert sim.counters["start"] == 0
    await page.close()
