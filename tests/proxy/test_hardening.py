"""What a hostile client or origin on the proxy's network must not get out of it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hlsproxy.engine.client import MAX_REDIRECTS
from hlsproxy.logs import TEXT_FORMAT
from tests.helpers import CID, Canary, ProxyFactory, RunningSim


async def _playlist(client: TestClient[Any, Any], **params: str) -> str:
    async with client.get("/ace/manifest.m3u8", params={"id": CID, **params}) as resp:
        assert resp.status == 200
        return await resp.text()


def _uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def _segment_redirected(
    proxy: ProxyFactory, sim: RunningSim, to: str
) -> tuple[int, bytes, int]:
    """A segment fetched once the engine redirects segments `to` (see `Faults`): the
    status, the body, and how many requests the engine saw for it."""
    client = await proxy(hls_prefetch="0")  # so that only the client's fetch meets it
    segment = _uris(await _playlist(client))[-1]
    sim.faults.redirect_to = to
    before = len(sim.engine.requests)
    async with client.get(segment) as resp:
        return resp.status, await resp.read(), len(sim.engine.requests) - before


async def test_a_redirect_off_the_engine_is_a_502_that_names_no_address(
    proxy: ProxyFactory, sim: RunningSim, canary: Canary
) -> None:
    status, body, _ = await _segment_redirected(proxy, sim, f"{canary.url}/elsewhere{{path}}")
    assert status == 502
    assert b"127.0.0.1" not in body and str(canary.port).encode() not in body
    assert canary.requests == []


async def test_a_redirect_within_the_engine_is_followed(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    to = f"http://127.0.0.1:{sim.port}{{path}}?moved"
    status, body, requests = await _segment_redirected(proxy, sim, to)
    assert status == 200
    assert len(body) > 188 and requests == 2


async def test_redirects_are_followed_a_bounded_number_of_times(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    status, _, requests = await _segment_redirected(proxy, sim, "{path}")  # to itself
    assert status == 502
    assert requests == MAX_REDIRECTS + 1


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


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bytes=" + "9" * 4400 + "-", 416),
        ("bytes=0-" + "9" * 4400, 206),
        ("bytes=-" + "9" * 4400, 206),
    ],
    ids=["huge-start", "huge-end", "huge-suffix"],
)
async def test_a_range_with_thousands_of_digits_is_answered_not_a_500(
    proxy: ProxyFactory, header: str, status: int
) -> None:
    client = await proxy()
    segment = _uris(await _playlist(client))[-1]
    async with client.get(segment) as resp:
        whole = await resp.read()
    async with client.get(segment, headers={"Range": header}) as resp:
        assert resp.status == status
        if status == 206:
            assert await resp.read() == whole
        else:
            assert resp.headers["Content-Range"] == f"bytes */{len(whole)}"


async def test_a_forged_line_in_a_path_or_pid_stays_on_one_log_line(
    proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    client = await proxy(access_log="true")
    forged = '%0a2026-01-01 00:00:00,000 INFO hlsproxy.access: 10.0.0.9 "GET /admin" 200'
    await client.get(f"/ace/nothing{forged}%0d%1b[2J")
    async with client.get(f"/ace/getstream?id={CID}&pid=x{forged}") as resp:
        await resp.content.readexactly(188)
    text = caplog.text
    assert "\\n2026-01-01" in text  # escaped, in the line of the request that sent it
    assert not any(line.startswith("2026-01-01 00:00:00,000") for line in text.splitlines())
    assert "\x1b" not in text and "\r" not in text


async def test_only_what_players_fetch_is_readable_by_other_web_pages(
    proxy: ProxyFactory,
) -> None:
    client = await proxy()
    origin = {"Origin": "http://evil.test"}
    text = await _playlist(client)
    for path in (f"/ace/manifest.m3u8?id={CID}", _uris(text)[-1], "/ace/hls/id/0/nothing"):
        async with client.get(path, headers=origin) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == "*", path
    for path in ("/", "/metrics", "/ace/status", f"/ace/status?id={CID}"):
        async with client.get(path, headers=origin) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers, path
    async with client.options(
        "/ace/status", headers={**origin, "Access-Control-Request-Method": "GET"}
    ) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_only_engine_parameters_reach_the_engine(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    query = {
        "id": CID,
        "transcode_audio": "1",
        "preferred_audio_language": "spa",
        "stream_id": "2",
        "method": "stop",
        "node_id": "x",
        "_": "1712345678",
    }
    async with client.get("/ace/getstream", params=query) as resp:
        assert resp.status == 200
        await resp.content.readexactly(188)
    (session,) = sim.engine.sessions
    assert {k: v for k, v in session.params.items() if k not in ("format", "pid", "id")} == {
        "transcode_audio": "1",
        "preferred_audio_language": "spa",
        "stream_id": "2",
    }


async def test_a_url_key_with_control_characters_is_refused(proxy: ProxyFactory) -> None:
    client = await proxy(allow_remote_content="true")
    async with client.get("/ace/getstream", params={"url": "http://a.test/x\n.torrent"}) as resp:
        assert resp.status == 400
        assert "control characters" in (await resp.json())["message"]


TOKEN = "phone-7f3a"


async def test_the_token_goes_only_into_uris_that_point_at_the_proxy(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    sim.faults.playlist_lines = (
        '#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI="skd://drm.example/ace/hls/key"',
        '#EXT-X-COM-EXAMPLE-AD:ID=1,X-LINK="https://ads.example/ace/hls/spot"',
        "# mirror: https://mirror.example/ace/hls/id/x/y.ts",
    )
    client = await proxy(access_token=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for headers, params in (({}, {"token": TOKEN}), (bearer, {})):
        async with client.get(
            "/ace/manifest.m3u8", params={"id": CID, **params}, headers=headers
        ) as resp:
            assert resp.status == 200
            text = await resp.text()
        carrying = [line for line in text.splitlines() if TOKEN in line]
        assert carrying == [uri for uri in _uris(text) if uri.startswith("/ace/hls/id/")]
        assert carrying  # every segment, whichever way the player presented the token
        for line in sim.faults.playlist_lines:
            assert line in text  # third-party lines pass through as they were
    async with client.get(_uris(text)[-1]) as resp:  # from the playlist alone
        assert resp.status == 200


async def test_no_line_of_a_served_playlist_names_the_engine(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    sim.faults.playlist_lines = (
        '#EXT-X-COM-EXAMPLE-THUMBS:ID="t",URI="http://{host}/ace/c/thumbs/1.jpg"',
        '#EXT-X-COM-EXAMPLE-THUMBS:ID="u",SERVER-URI="/ace/c/thumbs/2.jpg",X-PEER={host}',
        '#EXT-X-COM-EXAMPLE-DATA:ID="d",X-DATA="http://{host}/ace/stat/x",LABEL="kept"',
        "#EXT-X-COM-EXAMPLE-NOTE:served by {host}",
        "# engine at HTTP%3A%2F%2F{host}",
    )
    client = await proxy()
    text = await _playlist(client)
    assert "127.0.0.1" not in text
    assert f":{sim.port}" not in text
    lines = text.splitlines()
    thumbs = [line for line in lines if line.startswith("#EXT-X-COM-EXAMPLE-THUMBS")]
    assert len(thumbs) == 2
    assert all('URI="/ace/hls/id/' in line for line in thumbs)  # resources: named
    assert '#EXT-X-COM-EXAMPLE-DATA:ID="d",LABEL="kept"' in lines  # the attribute went
    assert not any("NOTE" in line or "engine at" in line for line in lines)  # lines went
    assert len(_uris(text)) >= 1
    async with client.get(_uris(text)[-1]) as resp:
        assert resp.status == 200
