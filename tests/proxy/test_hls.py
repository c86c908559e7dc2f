"""HLS end to end: rewritten playlists, shared segments, headers for real players, eviction."""

from __future__ import annotations

import asyncio
import collections
import re
import shutil
import subprocess
from typing import Any

import pytest

from tests.helpers import CID, CID2, ProxyFactory, RunningSim, decode_warnings, eventually

MANIFEST = f"/ace/manifest.m3u8?id={CID}"


def uri_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def engine_segments(sim: RunningSim) -> collections.Counter[str]:
    return collections.Counter(
        r.split()[1] for r in sim.engine.requests if re.search(r"/ace/c/\w+/\d+\.ts", r)
    )


async def test_playlist_points_every_uri_at_the_proxy(proxy: ProxyFactory, sim: RunningSim) -> None:
    client = await proxy()
    async with client.get(MANIFEST) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        text = await resp.text()
    assert text.startswith("#EXTM3U")
    assert "#EXT-X-TARGETDURATION:" in text and "#EXT-X-MEDIA-SEQUENCE:" in text
    uris = uri_lines(text)
    assert len(uris) >= 3
    for uri in uris:
        assert re.fullmatch(rf"/ace/hls/id/{CID}/[0-9a-f]{{20}}\.ts", uri), uri
    assert "127.0.0.1" not in text and str(sim.port) not in text
    (session,) = sim.engine.sessions
    assert session.fmt == "hls"


async def test_segments_are_the_engines_bytes_with_player_headers(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    text = await (await client.get(MANIFEST)).text()
    sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))  # type: ignore[union-attr]
    first = uri_lines(text)[0]
    async with client.get(first) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "video/mp2t"
        assert "immutable" in resp.headers["Cache-Control"]
        assert resp.headers["Accept-Ranges"] == "bytes"
        body = await resp.read()
        assert int(resp.headers["Content-Length"]) == len(body)
    assert body == sim.engine.media.segment(sequence)
    async with client.head(first) as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) == len(body)
        assert await resp.read() == b""
    async with client.get(first, headers={"Range": "bytes=188-375"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 188-375/{len(body)}"
        assert await resp.read() == body[188:376]
    async with client.get(first, headers={"Range": f"bytes={len(body)}-"}) as resp:
        assert resp.status == 416
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_two_hundred_viewers_make_one_fetch_per_segment(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(hls_prefetch="0")

    async def viewer() -> list[bytes]:
        text = await (await client.get(MANIFEST)).text()
        return [await (await client.get(uri)).read() for uri in uri_lines(text)[-3:]]

    results = await asyncio.gather(*(viewer() for _ in range(200)))
    assert all(r == results[0] for r in results)
    fetched = engine_segments(sim)
    assert fetched and max(fetched.values()) == 1, fetched
    assert sim.counters["playlist"] <= 2
    assert sim.counters["start"] == 1


async def test_prefetch_makes_the_newest_segments_hits(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(hls_prefetch="2")
    text = await (await client.get(MANIFEST)).text()
    await eventually(lambda: sum(engine_segments(sim).values()) == 2)
    for uri in uri_lines(text)[-2:]:
        assert (await client.get(uri)).status == 200
    assert sum(engine_segments(sim).values()) == 2


async def test_the_proxy_fetches_only_what_a_playlist_named(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(hls_prefetch="0")
    text = await (await client.get(MANIFEST)).text()
    seen = len(sim.engine.requests)
    for path in (
        f"/ace/hls/id/{CID}/{'0' * 20}.ts",
        f"/ace/hls/id/{CID}/..%2F..%2Fetc.ts",
        f"/ace/hls/id/{CID2}/{uri_lines(text)[0].rsplit('/', 1)[1]}",
        f"/ace/hls/id/{CID}/{'0' * 20}.m3u8",
    ):
        async with client.get(path) as resp:
            assert resp.status == 404, path
    assert len(sim.engine.requests) == seen


async def test_cors_preflight(proxy: ProxyFactory) -> None:
    client = await proxy()
    async with client.options(
        MANIFEST,
        headers={"Origin": "http://player.test", "Access-Control-Request-Method": "GET"},
    ) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "GET" in resp.headers["Access-Control-Allow-Methods"]
        assert "Range" in resp.headers["Access-Control-Allow-Headers"]
        assert "Age" in resp.headers["Access-Control-Expose-Headers"]


async def test_an_idle_stream_is_stopped_once_and_restarts_on_demand(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(m3u8_stream_timeout="1s")
    text = await (await client.get(MANIFEST)).text()
    await (await client.get(uri_lines(text)[-1])).read()
    await eventually(lambda: sim.counters["stop"] == 1, timeout=5)
    assert await (await client.get("/ace/status")).json() == {"streams": 0}
    async with client.get(uri_lines(text)[-1]) as resp:
        assert resp.status == 404  # its cache entries went with it
    assert (await client.get(MANIFEST)).status == 200
    assert sim.counters["start"] == 2


async def test_m3u8_mode_answers_getstream_with_hls(proxy: ProxyFactory) -> None:
    client = await proxy(m3u8="true")
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
        assert (await resp.text()).startswith("#EXTM3U")


async def test_a_playlist_blip_is_bridged_with_the_last_good_playlist(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    good = await (await client.get(MANIFEST)).text()
    await asyncio.sleep(3.6)  # past half a target duration: the next request refreshes
    sim.faults.down = True
    async with client.get(MANIFEST) as resp:
        assert resp.status == 200
        assert await resp.text() == good
    sim.faults.down = False


@pytest.mark.parametrize("sim_options", [{"time_scale": 1.0}], ids=["real-time"])
async def test_ffmpeg_reads_the_proxied_hls_without_warnings(
    proxy: ProxyFactory, sim_options: dict[str, Any]
) -> None:
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is missing: ./scripts/test installs it"
    client = await proxy()
    url = f"http://127.0.0.1:{client.port}{MANIFEST}"
    process = await asyncio.create_subprocess_exec(
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-v",
        "warning",
        "-i",
        url,
        "-t",
        "10",
        "-f",
        "null",
        "-",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    assert stderr.decode().strip() == ""


async def test_ts_clients_of_an_hls_content_ride_its_session(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    text = await (await client.get(MANIFEST)).text()
    async with client.get("/ace/getstream", params={"id": CID}) as ts:
        assert ts.status == 200
        data = await asyncio.wait_for(ts.content.readexactly(600 * 188), 20)
        # the HLS client is not knocked off
        again = await client.get(uri_lines(text)[-1])
        assert again.status == 200
    assert sim.counters["start"] == 1
    (session,) = sim.engine.sessions
    assert session.fmt == "hls" and not session.superseded
    assert sim.counters["content_read"] == 0
    assert decode_warnings(data) == ""


async def test_an_hls_client_of_a_ts_content_gets_hls_cut_from_it_without_disturbing_it(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()
    async with client.get("/ace/getstream", params={"id": CID}) as ts:
        data = await asyncio.wait_for(ts.content.readexactly(300 * 188), 20)
        async with client.get(MANIFEST) as hls:
            assert hls.status == 200
            text = await hls.text()
        assert "#EXT-X-PROGRAM-DATE-TIME:" in text  # a playlist the proxy made
        async with client.get(uri_lines(text)[-1]) as segment:
            assert segment.status == 200
            assert decode_warnings(await segment.read()) == ""
        # The TS client goes on from the same read: no gap, no time stamps going back.
        data += await asyncio.wait_for(ts.content.readexactly(3000 * 188), 30)
    assert decode_warnings(data) == ""
    assert [s.fmt for s in sim.engine.sessions] == ["ts"]
    assert sim.counters["content_read"] == 1
    assert sim.counters["segment"] == 0


@pytest.mark.parametrize("sim_options", [{"idle_expiry": 1.0}], ids=["engine-expires-in-1s"])
async def test_a_session_the_engine_dropped_is_restarted_across_a_discontinuity(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    client = await proxy(hls_prefetch="0")
    first = await (await client.get(MANIFEST)).text()
    # Past the engine's own expiry and the playlist's TTL (half a target duration).
    await asyncio.sleep(2.6)
    assert sim.engine.active() == []
    async with client.get(MANIFEST) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "#EXT-X-ENDLIST" not in text
    assert "#EXT-X-DISCONTINUITY\n" in text
    sequence = re.compile(r"#EXT-X-MEDIA-SEQUENCE:(\d+)")
    assert int(sequence.search(text).group(1)) >= int(sequence.search(first).group(1))  # type: ignore[union-attr]
    assert len(sim.engine.sessions) == 2
    async with client.get(uri_lines(text)[-1]) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("sim_options", [{"idle_expiry": 1.0}], ids=["engine-expires-in-1s"])
async def test_a_stream_that_cannot_go_on_gets_endlist_not_errors(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    client = await proxy(hls_prefetch="0")
    first = await (await client.get(MANIFEST)).text()
    await asyncio.sleep(2.6)
    sim.faults.error = "failed to load content"  # the channel is gone: no new session
    async with client.get(MANIFEST) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    assert uri_lines(text) == uri_lines(first)


@pytest.mark.parametrize("sim_options", [{"time_scale": 4.0}], ids=["4x"])
async def test_live_viewers_cost_one_fetch_per_segment_and_few_playlist_fetches(
    proxy: ProxyFactory, sim: RunningSim, sim_options: dict[str, Any]
) -> None:
    client = await proxy(hls_prefetch="0")
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def viewer() -> int:
        seen: set[str] = set()
        while loop.time() - started < 6.0:
            text = await (await client.get(MANIFEST)).text()
            for uri in uri_lines(text)[-3:]:
                if uri not in seen:
                    seen.add(uri)
                    assert (await client.get(uri)).status == 200
            await asyncio.sleep(0.5)  # a player's reload interval
        return len(seen)

    seen = await asyncio.gather(*(viewer() for _ in range(50)))
    elapsed = loop.time() - started
    fetched = engine_segments(sim)
    assert max(fetched.values()) == 1, fetched
    assert len(fetched) >= max(seen) > 3
    target = 5.0  # the simulated engine's EXT-X-TARGETDURATION
    assert sim.counters["playlist"] <= 2 * (elapsed / target) + 1
