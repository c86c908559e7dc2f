"""The pages' stylesheets and script, fetched the way a browser fetches them."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from tests.helpers import CID, ProxyFactory

TOKEN = "s3cret-token"


async def named_assets(client: Any, page: str) -> list[str]:
    resp = await client.get(page)
    assert resp.status == 200
    found = re.findall(r'(?:href|src)="(/static/[^"]+)"', await resp.text())
    return [unescape(url) for url in found]


async def test_the_status_page_stylesheet_is_served_and_kept(proxy: ProxyFactory) -> None:
    client = await proxy()
    (url,) = await named_assets(client, "/")
    resp = await client.get(url)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/css; charset=utf-8"
    assert "@media (prefers-color-scheme: dark)" in await resp.text()
    # The URL names this very content, so a browser may keep it without asking again.
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    again = await client.get(url, headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    assert await again.read() == b""


async def test_the_player_page_script_and_stylesheet(proxy: ProxyFactory) -> None:
    client = await proxy()
    served = {}
    for url in await named_assets(client, f"/player?id={CID}"):
        resp = await client.get(url)
        assert resp.status == 200
        served[url.partition("?")[0]] = (resp.headers["Content-Type"], await resp.text())
    assert sorted(served) == ["/static/player.css", "/static/player.js"]
    assert served["/static/player.css"][0] == "text/css; charset=utf-8"
    kind, script = served["/static/player.js"]
    assert kind == "text/javascript; charset=utf-8"
    assert "window.playerState" in script


async def test_an_asset_asked_for_without_its_version_is_revalidated(
    proxy: ProxyFactory,
) -> None:
    client = await proxy()
    resp = await client.get("/static/status.css")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["ETag"]
    for path in ("/static/nothing.css", "/static/..%2Fstatus.py", "/static/"):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert "Traceback" not in await resp.text()


async def test_with_a_token_the_pages_carry_it_to_their_assets(proxy: ProxyFactory) -> None:
    client = await proxy(access_token=TOKEN)
    for page in (f"/?token={TOKEN}", f"/player?id={CID}&token={TOKEN}"):
        urls = await named_assets(client, page)
        assert urls
        for url in urls:
            assert (await client.get(url)).status == 200, url
            assert (await client.get(url.partition("&token")[0])).status == 401, url
