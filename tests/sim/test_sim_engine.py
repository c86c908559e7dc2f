"""The simulated engine against docs/ARCHITECTURE.md, "The AceStream engine"."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from yarl import URL

from hlsproxy.sim import start_engine
from hlsproxy.sim.engine import SimEngine, SimSession
from hlsproxy.sim.media import MEDIA_DIR, MediaLoop, pad
from hlsproxy.ts.packets import NULL_PID, PACKET_SIZE

CID = "0a4848271c91ce2d8965ce416267c25047dc8141"
CID2 = "94c2fd8fb9bc8f2fc71a2cbe9d4b866f227a0209"
HEX32 = re.compile(r"[0-9a-f]{32}")
HEX40 = re.compile(r"[0-9a-f]{40}")
START = {"ts": "/ace/getstream", "hls": "/ace/manifest.m3u8"}
FMP4_ID = "f4f4" + CID[4:]
AES_ID = "aeae" + CID[4:]
MULTI_ID = "aaaa" + CID[4:]
needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg and ffprobe are not installed",
)


class Clock:
    """The engine's clock, stepped by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Client = TestClient[Any, Any]
Sim = Callable[..., Awaitable[tuple[SimEngine, Client]]]


@pytest.fixture(scope="module")
def media() -> MediaLoop:
    return MediaLoop.load()


@pytest.fixture
async def sim(aiohttp_client: AiohttpClient, media: MediaLoop) -> AsyncIterator[Sim]:
    engines: list[SimEngine] = []

    async def make(**options: Any) -> tuple[SimEngine, Client]:
        engine = SimEngine(media, **options)
        engines.append(engine)
        return engine, await aiohttp_client(engine.app)

    yield make
    for engine in engines:
        assert engine.unexpected == []


async def start(
    client: Client, fmt: str = "ts", *, headers: dict[str, str] | None = None, **params: str
) -> dict[str, Any]:
    async with client.get(START[fmt], params={"format": "json", **params}, headers=headers) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
    return body


async def started(client: Client, fmt: str = "ts", **params: str) -> dict[str, Any]:
    body = await start(client, fmt, headers=None, **params)
    assert body["error"] is None, body
    response: dict[str, Any] = body["response"]
    return response


def path(url: str) -> str:
    return URL(url).path_qs


async def read_exactly(resp: aiohttp.ClientResponse, n: int, timeout: float = 5.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await resp.content.readexactly(n)


def is_ts(data: bytes) -> bool:
    return len(data) >= PACKET_SIZE and all(
        data[i] == 0x47 for i in range(0, len(data) - PACKET_SIZE + 1, PACKET_SIZE)
    )


def media_packets(data: bytes) -> bytes:
    packets = (data[i : i + PACKET_SIZE] for i in range(0, len(data), PACKET_SIZE))
    return b"".join(p for p in packets if ((p[1] & 0x1F) << 8 | p[2]) != NULL_PID)


def playlist_entries(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    lines = text.splitlines()
    tags = dict(line.split(":", 1) for line in lines if line.startswith("#EXT-X-"))
    entries = [(line, lines[i + 1]) for i, line in enumerate(lines) if line.startswith("#EXTINF:")]
    return tags, entries


def session(engine: SimEngine, token: str) -> SimSession:
    (found,) = (s for s in engine.sessions if s.token == token)
    return found


# --- starting ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["ts", "hls"])
async def test_a_start_answers_the_middleware_envelope(sim: Sim, fmt: str) -> None:
    engine, client = await sim()
    body = await start(client, fmt, headers={"Host": "engine.example:6878"}, id=CID, pid="p1")
    assert set(body) == {"response", "error"}
    assert body["error"] is None
    r = body["response"]
    infohash = hashlib.sha1(CID.encode()).hexdigest()
    assert r["infohash"] == infohash != CID
    token = r["playback_url"].split("/")[-1].removesuffix(".m3u8")
    assert HEX32.fullmatch(token)
    assert HEX40.fullmatch(r["playback_session_id"])
    assert r["playback_session_id"] != token
    base = "http://engine.example:6878/ace"
    suffix = ".m3u8" if fmt == "hls" else ""
    kind = "m" if fmt == "hls" else "r"
    assert r["playback_url"] == f"{base}/{kind}/{infohash}/{token}{suffix}"
    assert r["stat_url"] == f"{base}/stat/{infohash}/{token}"
    assert r["command_url"] == f"{base}/cmd/{infohash}/{token}"
    assert (r["is_live"], r["is_encrypted"], r["client_session_id"]) == (1, 0, -1)
    (s,) = engine.sessions
    assert (s.content_id, s.infohash, s.token, s.pid, s.fmt) == (CID, infohash, token, "p1", fmt)
    assert s.params == {"format": "json", "id": CID, "pid": "p1"}
    assert engine.counters["start"] == 1


async def test_content_can_be_named_every_way_the_engine_knows(sim: Sim) -> None:
    engine, client = await sim()
    by_content_id = await started(client, content_id=CID, pid="a")
    by_id = await started(client, id=CID.upper(), pid="a")
    assert by_id == by_content_id  # the same content, pid and format: the same session
    by_infohash = await started(client, infohash=CID2, pid="b")
    assert by_infohash["infohash"] == CID2
    by_url = await started(client, url="http://example.test/x.torrent", pid="c")
    by_magnet = await started(client, magnet="magnet:?xt=urn:btih:abc", pid="d")
    assert by_url["infohash"] == hashlib.sha1(b"http://example.test/x.torrent").hexdigest()
    assert by_magnet["infohash"] != by_url["infohash"]
    # content_id wins over infohash when both are given
    both = await started(client, content_id=CID, infohash=CID2, pid="a")
    assert both == by_content_id
    assert engine.counters["start"] == 4
    assert engine.counters["start_reused"] == 2
    assert len(engine.active()) == 4


async def test_a_start_without_parameters_is_http_500(sim: Sim) -> None:
    engine, client = await sim()
    async with client.get("/ace/getstream") as r:
        assert r.status == 500
    assert engine.sessions == []


@pytest.mark.parametrize(
    "params",
    [{"id": "not-a-content-id"}, {"id": "dead" + CID[4:]}, {"infohash": "DEAD" + CID2[4:]}],
    ids=["malformed", "unknown-id", "unknown-infohash"],
)
async def test_unknown_content_fails_with_http_200_after_a_delay(
    sim: Sim, params: dict[str, str]
) -> None:
    engine, client = await sim(unknown_content_delay=0.2)
    began = time.monotonic()
    body = await start(client, headers=None, **params)
    assert time.monotonic() - began >= 0.2
    assert body == {"response": None, "error": "failed to load content"}
    assert engine.counters["start_failed"] == 1
    assert engine.sessions == []


async def test_redirect_mode_answers_302_to_the_playback_url(sim: Sim) -> None:
    engine, client = await sim()
    async with client.get(START["ts"], params={"id": CID}, allow_redirects=False) as r:
        assert r.status == 302
        location = r.headers["Location"]
    (s,) = engine.sessions
    assert path(location) == f"/ace/r/{s.infohash}/{s.token}"
    async with client.get(START["ts"], params={"id": "dead" + CID[4:]}) as r:
        assert r.status == 500
        assert "failed to load content" in await r.text()


# --- MPEG-TS -------------------------------------------------------------------------------


async def test_ts_playback_redirects_to_an_endless_live_stream(sim: Sim, media: MediaLoop) -> None:
    engine, client = await sim(clock=Clock(), time_scale=40.0)
    r = await started(client, id=CID, pid="a")
    async with client.get(path(r["playback_url"]), allow_redirects=False) as redirect:
        assert redirect.status == 302
        content = path(redirect.headers["Location"])
    assert re.fullmatch(rf"/content/{r['infohash']}/[0-9a-f]{{32}}", content)
    async with client.get(content) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"] == "video/mp2t"
        # The engine had 3 segments when the channel started: the newest comes at once,
        # then the next ones in (scaled) real time.
        expected = media.segment(2) + media.segment(3) + media.segment(4)
        assert await read_exactly(stream, len(expected)) == expected
    (s,) = engine.sessions
    assert s.reads == 1
    assert engine.counters["playback"] == 1
    assert engine.counters["content_read"] == 1


async def test_after_the_prebuffer_the_stream_is_paced_in_real_time(
    sim: Sim, media: MediaLoop
) -> None:
    _, client = await sim(clock=Clock())
    r = await started(client, id=CID)
    async with client.get(path(r["playback_url"])) as stream:
        await read_exactly(stream, len(media.segment(2)))
        began = time.monotonic()
        await read_exactly(stream, len(media.segment(3)) // 4)
        # a quarter of a 4 s segment takes about 1 s; allow for slicing
        assert 0.8 <= time.monotonic() - began <= 2.0


async def test_a_second_concurrent_reader_gets_garbage(sim: Sim) -> None:
    engine, client = await sim()
    r = await started(client, id=CID)
    async with client.get(path(r["playback_url"])) as first:
        assert is_ts(await read_exactly(first, 10 * PACKET_SIZE))
        async with client.get(path(r["playback_url"])) as second:
            assert second.status == 200
            async with asyncio.timeout(5):
                garbage = await second.read()
        assert len(garbage) > 10 * PACKET_SIZE
        assert not is_ts(garbage[: 10 * PACKET_SIZE])
        assert is_ts(await read_exactly(first, 10 * PACKET_SIZE))
    assert engine.counters["content_read"] == 2
    assert engine.counters["corrupt_read"] == 1
    assert engine.sessions[0].reads == 2


async def test_a_reader_that_leaves_frees_the_stream_for_the_next(sim: Sim) -> None:
    engine, client = await sim()
    r = await started(client, id=CID)
    async with client.get(path(r["playback_url"])) as first:
        await read_exactly(first, PACKET_SIZE)
        assert engine.sessions[0].open_reads == 1
    await engine.wait_until(lambda: engine.sessions[0].open_reads == 0)
    async with client.get(path(r["playback_url"])) as second:
        assert is_ts(await read_exactly(second, 100 * PACKET_SIZE))
    assert engine.counters["corrupt_read"] == 0


async def test_bitrate_pads_the_stream_with_null_packets(sim: Sim, media: MediaLoop) -> None:
    _, client = await sim(bitrate=2_000_000, clock=Clock(), time_scale=40.0)
    r = await started(client, id=CID)
    # 2 Mbit/s for 4 s segments: 1 MB each.
    expected = pad(media.segment(2), 1_000_000) + pad(media.segment(3), 1_000_000)
    assert 2_000_000 - 2 * PACKET_SIZE < len(expected) <= 2_000_000
    async with client.get(path(r["playback_url"])) as stream:
        assert await read_exactly(stream, len(expected)) == expected
    assert media_packets(expected) == media.segment(2) + media.segment(3)
    hls = await started(client, "hls", id=CID2, pid="other")
    async with client.get(f"/ace/c/{hls['infohash']}/2.ts") as resp:
        assert await resp.read() == pad(media.segment(2), 1_000_000)


# --- supersession --------------------------------------------------------------------------


async def test_another_pid_supersedes_and_cuts_the_open_read(sim: Sim) -> None:
    engine, client = await sim()
    old = await started(client, id=CID, pid="a")
    async with client.get(path(old["playback_url"])) as reader:
        await read_exactly(reader, PACKET_SIZE)
        new = await started(client, id=CID, pid="b")
        with pytest.raises(aiohttp.ClientPayloadError):
            async with asyncio.timeout(5):
                await reader.read()
    first, second = engine.sessions
    assert first.superseded and not first.stopped
    assert engine.active() == [second]
    assert new["playback_url"] != old["playback_url"]
    async with client.get(path(old["playback_url"]), allow_redirects=False) as again:
        assert again.status == 404


async def test_a_superseded_hls_session_answers_403(sim: Sim) -> None:
    engine, client = await sim()
    old = await started(client, "hls", id=CID, pid="a")
    async with client.get(path(old["playback_url"])) as r:
        assert r.status == 200
    await started(client, "ts", id=CID, pid="a")  # the same pid, another format
    async with client.get(path(old["playback_url"])) as r:
        assert r.status == 403
    assert [s.superseded for s in engine.sessions] == [True, False]


async def test_a_pid_serves_one_content_at_a_time(sim: Sim) -> None:
    engine, client = await sim()
    await started(client, id=CID, pid="shared")
    await started(client, id=CID2, pid="shared")
    assert [s.superseded for s in engine.sessions] == [True, False]
    await started(client, id=CID, pid="own")
    assert {s.content_id for s in engine.active()} == {CID, CID2}


# --- stop ----------------------------------------------------------------------------------


async def test_stop_ends_the_open_read_cleanly(sim: Sim) -> None:
    engine, client = await sim()
    r = await started(client, id=CID)
    async with client.get(path(r["playback_url"])) as reader:
        await read_exactly(reader, PACKET_SIZE)
        async with client.get(path(r["command_url"]), params={"method": "stop"}) as stop:
            assert await stop.json() == {"response": "ok", "error": None}
        async with asyncio.timeout(5):
            await reader.read()  # ends without a payload error
    assert engine.sessions[0].stopped
    assert engine.active() == []
    async with client.get(path(r["playback_url"]), allow_redirects=False) as again:
        assert again.status == 404


async def test_a_stop_ends_every_session_of_the_content(sim: Sim) -> None:
    engine, client = await sim()
    stale = await started(client, "ts", id=CID, pid="first-proxy")
    current = await started(client, "hls", id=CID, pid="second-proxy")
    other = await started(client, "hls", id=CID2, pid="third-proxy")
    async with client.get(path(current["playback_url"])) as r:
        assert r.status == 200
    # The first proxy stops its superseded session: the engine ends the content for everyone.
    async with client.get(path(stale["command_url"]), params={"method": "stop"}) as r:
        assert await r.json() == {"response": "ok", "error": None}
    async with client.get(path(current["playback_url"])) as r:
        assert r.status == 500
    async with client.get(path(current["command_url"]), params={"method": "stop"}) as r:
        assert await r.json() == {"response": None, "error": "unknown playback session id"}
    assert [s.content_id for s in engine.active()] == [CID2]
    async with client.get(path(other["playback_url"])) as r:
        assert r.status == 200
    assert engine.counters["stop"] == 1
    assert engine.counters["stop_unknown"] == 1


async def test_stop_of_unknown_sessions_and_other_methods(sim: Sim) -> None:
    engine, client = await sim()
    r = await started(client, id=CID)
    command = path(r["command_url"])
    async with client.get(command, params={"method": "pause"}) as resp:
        assert await resp.json() == {"response": None, "error": "unknown method"}
    assert engine.active() != []
    unknown = {"response": None, "error": "unknown playback session id"}
    async with client.get(
        f"/ace/cmd/{r['infohash']}/{'0' * 32}", params={"method": "stop"}
    ) as resp:
        assert await resp.json() == unknown
    assert engine.active() != []
    async with client.get(command, params={"method": "stop"}) as resp:
        assert await resp.json() == {"response": "ok", "error": None}
    async with client.get(command, params={"method": "stop"}) as resp:
        assert await resp.json() == unknown
    assert engine.counters["stop"] == 1
    assert engine.counters["stop_unknown"] == 2


# --- stat ----------------------------------------------------------------------------------


async def test_stat_goes_from_empty_to_idle_prebuf_then_dl(sim: Sim) -> None:
    engine, client = await sim()
    r = await started(client, id=CID)
    answers = []
    for _ in range(5):
        async with client.get(path(r["stat_url"])) as resp:
            answers.append(await resp.json())
    assert all(a["error"] is None for a in answers)
    assert answers[0]["response"] == {}
    assert [a["response"]["status"] for a in answers[1:]] == ["idle", "prebuf", "dl", "dl"]
    dl = answers[3]["response"]
    assert dl["peers"] > 0 and dl["speed_down"] > 0
    assert dl["is_live"] == 1 and dl["total_progress"] == 0
    assert (dl["infohash"], dl["playback_session_id"]) == (
        r["infohash"],
        r["playback_session_id"],
    )
    assert all(isinstance(v, str) for v in dl["livepos"].values())
    assert {"pos", "first_ts", "last_ts"} <= set(dl["livepos"])
    for key in ("speed_down", "speed_up", "downloaded", "uploaded", "peers"):
        assert isinstance(dl[key], int)
    assert engine.counters["stat"] == 5


async def test_stat_of_an_unknown_or_stopped_session(sim: Sim) -> None:
    _, client = await sim()
    r = await started(client, id=CID)
    async with client.get(f"/ace/stat/{r['infohash']}/{'f' * 32}") as resp:
        assert await resp.json() == {"response": None, "error": "unknown playback session id"}
    await client.get(path(r["command_url"]), params={"method": "stop"})
    async with client.get(path(r["stat_url"])) as resp:
        assert await resp.json() == {"response": None, "error": "unknown playback session id"}


# --- HLS -----------------------------------------------------------------------------------


async def test_the_hls_playlist_and_its_segments(sim: Sim, media: MediaLoop) -> None:
    engine, client = await sim(clock=Clock())
    r = await started(client, "hls", id=CID)
    async with client.get(path(r["playback_url"])) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/vnd.apple.mpegurl"
        text = await resp.text()
    assert text.startswith("#EXTM3U\n")
    assert "#EXT-X-ENDLIST" not in text
    tags, entries = playlist_entries(text)
    assert tags == {
        "#EXT-X-VERSION": "3",
        "#EXT-X-TARGETDURATION": "5",
        "#EXT-X-MEDIA-SEQUENCE": "0",
    }
    host = URL(r["playback_url"]).authority
    assert entries == [
        ("#EXTINF:4.000000,", f"http://{host}/ace/c/{r['infohash']}/{n}.ts") for n in range(3)
    ]
    for n in range(3):
        async with client.get(path(entries[n][1])) as resp:
            assert resp.status == 200
            assert resp.content_type == "video/mp2t"
            assert int(resp.headers["Content-Length"]) == len(media.segment(n))
            assert await resp.read() == media.segment(n)
    async with client.get(path(entries[1][1])) as resp:
        assert await resp.read() == media.segment(1)
    assert engine.counters["playlist"] == 1
    assert engine.counters["segment"] == 4


async def test_the_window_grows_then_slides_with_the_clock(sim: Sim) -> None:
    clock = Clock()
    engine, client = await sim(clock=clock, time_scale=10.0, hls_window=5, hls_initial_window=2)
    r = await started(client, "hls", id=CID)
    infohash = r["infohash"]

    async def window() -> tuple[int, list[int]]:
        async with client.get(path(r["playback_url"])) as resp:
            tags, entries = playlist_entries(await resp.text())
        numbers = [int(uri.rsplit("/", 1)[1].removesuffix(".ts")) for _, uri in entries]
        return int(tags["#EXT-X-MEDIA-SEQUENCE"]), numbers

    assert await window() == (0, [0, 1])
    clock.advance(0.399)  # 3.99 s of media: the next segment is not complete yet
    assert await window() == (0, [0, 1])
    clock.advance(0.001)
    assert await window() == (0, [0, 1, 2])
    clock.advance(0.8)
    assert await window() == (0, [0, 1, 2, 3, 4])
    clock.advance(0.8)
    assert await window() == (2, [2, 3, 4, 5, 6])
    clock.advance(1.6)  # a whole loop of the fixture further
    assert await window() == (6, [6, 7, 8, 9, 10])

    async def status(n: int) -> int:
        async with client.get(f"/ace/c/{infohash}/{n}.ts") as resp:
            return resp.status

    # A few segments behind the window are still served; nothing ahead of the live edge.
    assert [await status(n) for n in (2, 3, 6, 10, 11)] == [404, 200, 200, 200, 404]
    assert engine.counters["segment_missing"] == 2


async def test_a_new_session_joins_the_channel_at_its_live_edge(sim: Sim) -> None:
    clock = Clock()
    _, client = await sim(clock=clock)
    await started(client, "hls", id=CID, pid="a")
    clock.advance(40.0)
    second = await started(client, "hls", id=CID, pid="b")
    async with client.get(path(second["playback_url"])) as resp:
        tags, entries = playlist_entries(await resp.text())
    assert tags["#EXT-X-MEDIA-SEQUENCE"] == "10"
    assert len(entries) == 3


# --- HLS flavours ---------------------------------------------------------------------------


async def fetch(client: Client, url: str) -> tuple[str, bytes]:
    async with client.get(path(url)) as resp:
        assert resp.status == 200, url
        return resp.content_type, await resp.read()


async def playlist(client: Client, url: str) -> str:
    content_type, body = await fetch(client, url)
    assert content_type == "application/vnd.apple.mpegurl"
    return body.decode()


async def run_tool(*args: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ffmpeg or ffprobe, run off the event loop."""
    process = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def attribute(line: str, name: str) -> str:
    match = re.search(rf'{name}=("[^"]*"|[^,]*)', line)
    assert match is not None, line
    return match.group(1).strip('"')


@pytest.mark.parametrize(
    ("given", "fmt", "flavour"),
    [
        ({"id": FMP4_ID}, "hls", "fmp4"),
        ({"id": AES_ID.upper()}, "hls", "aes-128"),
        ({"infohash": MULTI_ID}, "hls", "multivariant"),
        ({"id": FMP4_ID}, "ts", "mpegts"),
        ({"id": "f4" + CID[2:]}, "hls", "mpegts"),
        ({"url": f"http://example.test/{AES_ID}"}, "hls", "mpegts"),
        ({"id": CID}, "hls", "mpegts"),
    ],
    ids=["fmp4", "aes-uppercase", "multivariant-infohash", "ts-start", "short", "url", "plain"],
)
async def test_a_content_ids_first_digits_choose_the_hls_flavour(
    sim: Sim, given: dict[str, str], fmt: str, flavour: str
) -> None:
    engine, client = await sim()
    await started(client, fmt, **given)
    assert [s.flavour for s in engine.sessions] == [flavour]


async def test_the_fmp4_flavour_names_its_init_section_and_m4s_segments(sim: Sim) -> None:
    engine, client = await sim(clock=Clock())
    r = await started(client, "hls", id=FMP4_ID)
    text = await playlist(client, r["playback_url"])
    assert "#EXT-X-ENDLIST" not in text
    tags, entries = playlist_entries(text)
    host = URL(r["playback_url"]).authority
    base = f"http://{host}/ace/c/{r['infohash']}"
    assert tags == {
        "#EXT-X-VERSION": "7",
        "#EXT-X-TARGETDURATION": "5",
        "#EXT-X-MEDIA-SEQUENCE": "0",
        "#EXT-X-MAP": f'URI="{base}/init.mp4"',
    }
    # The init section comes ahead of the first segment it applies to.
    assert text.index("#EXT-X-MAP") < text.index("#EXTINF")
    assert entries == [("#EXTINF:4.000000,", f"{base}/{n}.m4s") for n in range(3)]
    files = MEDIA_DIR / "fmp4"
    assert await fetch(client, f"{base}/init.mp4") == (
        "video/mp4",
        (files / "init.mp4").read_bytes(),
    )
    for n in range(3):
        assert await fetch(client, f"{base}/{n}.m4s") == (
            "video/mp4",
            (files / f"seg{n}.m4s").read_bytes(),
        )
    assert (engine.counters["init"], engine.counters["segment"]) == (1, 3)


def fmp4_header(data: bytes) -> tuple[list[tuple[int, int]], int]:
    """(timescale, earliest presentation time) of each `sidx` box ahead of the first
    `moof`, and the `mfhd` sequence number."""
    head = data[: data.index(b"moof")]
    sidx: list[tuple[int, int]] = []
    at = head.find(b"sidx")
    while at != -1:
        size = 8 if head[at + 4] == 1 else 4
        timescale = int.from_bytes(head[at + 12 : at + 16], "big")
        sidx.append((timescale, int.from_bytes(head[at + 16 : at + 16 + size], "big")))
        at = head.find(b"sidx", at + 4)
    at = data.index(b"mfhd")
    return sidx, int.from_bytes(data[at + 8 : at + 12], "big")


@needs_ffmpeg
async def test_fmp4_segments_run_on_across_the_loop(sim: Sim, tmp_path: Path) -> None:
    _, client = await sim(clock=Clock(), hls_initial_window=10)
    r = await started(client, "hls", id=FMP4_ID)
    _, entries = playlist_entries(await playlist(client, r["playback_url"]))
    init_url = f"{URL(r['playback_url']).origin()}/ace/c/{r['infohash']}/init.mp4"
    parts = [(await fetch(client, url))[1] for url in [init_url, *(uri for _, uri in entries)]]
    # Ten segments, two and a half loops of the media: one fragmented MP4 file.
    movie = tmp_path / "channel.mp4"
    movie.write_bytes(b"".join(parts))
    # Segment indexes and fragment numbers run on as well.
    first_sidx, _ = fmp4_header(parts[1])
    assert len(first_sidx) == 2
    for n, data in enumerate(parts[1:]):
        sidx, sequence = fmp4_header(data)
        assert sequence == n + 1
        loops = n // 4
        for (scale, earliest), (same_scale, later) in zip(
            fmp4_header(parts[1 + n % 4])[0], sidx, strict=True
        ):
            assert (same_scale, later - earliest) == (scale, loops * 16 * scale)

    status, out, err = await run_tool(
        *["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts,dts"],
        *["-of", "csv=p=0", str(movie)],
    )
    assert (status, err) == (0, "")
    pts: dict[str, list[int]] = defaultdict(list)
    dts: dict[str, list[int]] = defaultdict(list)
    for line in out.split():
        stream, presented, decoded = line.strip(",").split(",")[:3]
        pts[stream].append(int(presented))
        dts[stream].append(int(decoded))
    # Every frame one frame after the last, across both returns to the loop's start. The
    # mp4 muxer times 25 fps video in 1/12800 s, and AAC in samples, 1024 to a frame.
    video_step, audio_step = 12800 // 25, 1024
    assert len(pts["0"]) == 10 * 100
    assert {b - a for a, b in itertools.pairwise(sorted(pts["0"]))} == {video_step}
    assert {b - a for a, b in itertools.pairwise(dts["0"])} == {video_step}
    assert {b - a for a, b in itertools.pairwise(dts["1"])} == {audio_step}
    status, _, err = await run_tool(
        *["ffmpeg", "-nostdin", "-v", "warning", "-i", str(movie), "-f", "null", "-"]
    )
    assert (status, err) == (0, "")


async def test_the_aes_flavour_names_its_key_and_iv(sim: Sim) -> None:
    engine, client = await sim(clock=Clock())
    r = await started(client, "hls", id=AES_ID)
    text = await playlist(client, r["playback_url"])
    tags, entries = playlist_entries(text)
    host = URL(r["playback_url"]).authority
    base = f"http://{host}/ace/c/{r['infohash']}"
    files = MEDIA_DIR / "aes"
    iv = (files / "iv.bin").read_bytes()
    assert tags == {
        "#EXT-X-VERSION": "3",
        "#EXT-X-TARGETDURATION": "5",
        "#EXT-X-MEDIA-SEQUENCE": "0",
        "#EXT-X-DISCONTINUITY-SEQUENCE": "0",
        "#EXT-X-KEY": f'METHOD=AES-128,URI="{base}/key.bin",IV=0x{iv.hex()}',
    }
    assert text.index("#EXT-X-KEY") < text.index("#EXTINF")
    assert entries == [("#EXTINF:4.000000,", f"{base}/{n}.ts") for n in range(3)]
    key = (files / "key.bin").read_bytes()
    assert len(key) == len(iv) == 16
    assert await fetch(client, f"{base}/key.bin") == ("application/octet-stream", key)
    for n in range(3):
        content_type, data = await fetch(client, f"{base}/{n}.ts")
        assert (content_type, data) == ("video/mp2t", (files / f"seg{n}.ts").read_bytes())
        # Ciphertext: no TS sync byte pattern left in it.
        assert not is_ts(data)
    assert (engine.counters["key"], engine.counters["segment"]) == (1, 3)


@needs_ffmpeg
async def test_ffmpeg_decrypts_the_aes_segments_with_the_key_and_iv(
    sim: Sim, tmp_path: Path
) -> None:
    _, client = await sim(clock=Clock(), hls_initial_window=4)
    r = await started(client, "hls", id=AES_ID)
    text = await playlist(client, r["playback_url"])
    base = f"{URL(r['playback_url']).origin()}/ace/c/{r['infohash']}"
    # The same playlist, over files: ffmpeg reads it without a server on this event loop.
    (tmp_path / "key.bin").write_bytes((await fetch(client, f"{base}/key.bin"))[1])
    for n in range(4):
        (tmp_path / f"{n}.ts").write_bytes((await fetch(client, f"{base}/{n}.ts"))[1])
    (tmp_path / "index.m3u8").write_text(text.replace(f"{base}/", "") + "#EXT-X-ENDLIST\n")

    index = str(tmp_path / "index.m3u8")
    status, _, err = await run_tool(
        *["ffmpeg", "-nostdin", "-v", "warning", "-allowed_extensions", "ALL"],
        *["-i", index, "-f", "null", "-"],
    )
    assert (status, err) == (0, "")
    status, out, err = await run_tool(
        *["ffprobe", "-v", "error", "-allowed_extensions", "ALL", "-count_packets"],
        *["-show_entries", "stream=codec_name,nb_read_packets", "-of", "csv=p=0", index],
    )
    assert (status, err) == (0, "")
    streams = dict(line.split(",") for line in out.split())
    assert streams["h264"] == str(4 * 100)


async def test_the_aes_playlist_marks_each_return_to_the_loops_start(sim: Sim) -> None:
    clock = Clock()
    _, client = await sim(clock=clock, hls_window=5, hls_initial_window=5)
    r = await started(client, "hls", id=AES_ID)

    async def window() -> tuple[int, int, list[int]]:
        text = await playlist(client, r["playback_url"])
        tags, entries = playlist_entries(text.replace("#EXT-X-DISCONTINUITY\n", ""))
        lines = text.splitlines()
        numbers = [int(uri.rsplit("/", 1)[1].removesuffix(".ts")) for _, uri in entries]
        breaks = [
            int(lines[i + 2].rsplit("/", 1)[1].removesuffix(".ts"))
            for i, line in enumerate(lines)
            if line == "#EXT-X-DISCONTINUITY"
        ]
        assert [n for n in numbers if n and n % 4 == 0] == breaks
        return (
            int(tags["#EXT-X-MEDIA-SEQUENCE"]),
            int(tags["#EXT-X-DISCONTINUITY-SEQUENCE"]),
            breaks,
        )

    # (media sequence, discontinuity sequence, segments after a discontinuity)
    assert await window() == (0, 0, [4])
    clock.advance(16.0)
    assert await window() == (4, 0, [4, 8])
    clock.advance(4.0)
    assert await window() == (5, 1, [8])
    clock.advance(12.0)
    assert await window() == (8, 1, [8, 12])
    clock.advance(4.0)
    assert await window() == (9, 2, [12])


async def test_the_multivariant_flavour_offers_two_live_variants(
    sim: Sim, media: MediaLoop
) -> None:
    engine, client = await sim(clock=Clock())
    r = await started(client, "hls", id=MULTI_ID)
    text = await playlist(client, r["playback_url"])
    host = URL(r["playback_url"]).authority
    lines = text.splitlines()
    assert lines[:2] == ["#EXTM3U", "#EXT-X-VERSION:3"]
    assert "#EXTINF" not in text and "#EXT-X-TARGETDURATION" not in text
    variants = [(line, lines[i + 1]) for i, line in enumerate(lines) if "STREAM-INF" in line]
    session = f"http://{host}/ace/m/{r['infohash']}/{URL(r['playback_url']).name[:-5]}"
    assert [uri for _, uri in variants] == [f"{session}/high.m3u8", f"{session}/low.m3u8"]
    high_rate, low_rate = (int(attribute(line, "BANDWIDTH")) for line, _ in variants)
    assert high_rate > low_rate > 0

    low = MediaLoop.load(MEDIA_DIR / "low")
    segments = f"http://{host}/ace/c/{r['infohash']}"
    for (_, uri), prefix, loop, rate in [
        (variants[0], segments, media, high_rate),
        (variants[1], f"{segments}/low", low, low_rate),
    ]:
        tags, entries = playlist_entries(await playlist(client, uri))
        assert tags == {
            "#EXT-X-VERSION": "3",
            "#EXT-X-TARGETDURATION": "5",
            "#EXT-X-MEDIA-SEQUENCE": "0",
        }
        assert entries == [("#EXTINF:4.000000,", f"{prefix}/{n}.ts") for n in range(3)]
        for n in range(3):
            assert await fetch(client, f"{prefix}/{n}.ts") == ("video/mp2t", loop.segment(n))
            # BANDWIDTH is the peak: no segment needs more.
            assert len(loop.segment(n)) * 8 / loop.duration(n) <= rate
    # Only the multivariant playlist is the playback URL.
    assert (engine.counters["playback"], engine.counters["playlist"]) == (1, 3)
    assert engine.counters["segment"] == 6


async def test_a_padded_channel_announces_its_padded_bandwidth(sim: Sim) -> None:
    _, client = await sim(bitrate=2_000_000)
    r = await started(client, "hls", id=MULTI_ID)
    lines = (await playlist(client, r["playback_url"])).splitlines()
    rates = [int(attribute(line, "BANDWIDTH")) for line in lines if "STREAM-INF" in line]
    assert rates[0] == 2_000_000 > rates[1]


async def test_a_flavour_serves_none_of_another_flavours_resources(sim: Sim) -> None:
    engine, client = await sim(clock=Clock())
    sessions = {
        flavour: await started(client, "hls", id=cid, pid=flavour)
        for flavour, cid in [
            ("mpegts", CID),
            ("fmp4", FMP4_ID),
            ("aes-128", AES_ID),
            ("multivariant", MULTI_ID),
        ]
    }
    not_offered = {
        "mpegts": ["0.m4s", "init.mp4", "key.bin", "low/0.ts"],
        "fmp4": ["0.ts", "key.bin", "low/0.ts"],
        "aes-128": ["0.m4s", "init.mp4", "low/0.ts"],
        "multivariant": ["0.m4s", "init.mp4", "key.bin"],
    }
    asked = 0
    for flavour, names in not_offered.items():
        infohash = sessions[flavour]["infohash"]
        for name in names:
            async with client.get(f"/ace/c/{infohash}/{name}") as resp:
                assert resp.status == 404, (flavour, name)
            asked += 1
        token = URL(sessions[flavour]["playback_url"]).name[:-5]
        if flavour != "multivariant":
            async with client.get(f"/ace/m/{infohash}/{token}/low.m3u8") as resp:
                assert resp.status == 404, flavour
    assert engine.counters["segment_missing"] == asked
    assert engine.counters["segment"] == engine.counters["init"] == engine.counters["key"] == 0


async def test_variant_playlists_and_keys_end_with_their_session(sim: Sim) -> None:
    _, client = await sim()
    multi = await started(client, "hls", id=MULTI_ID, pid="a")
    variant = f"{path(multi['playback_url'])[:-5]}/low.m3u8"
    assert (await client.get(variant)).status == 200
    await started(client, "hls", id=MULTI_ID, pid="b")
    assert (await client.get(variant)).status == 403  # superseded

    aes = await started(client, "hls", id=AES_ID)
    key = f"/ace/c/{aes['infohash']}/key.bin"
    assert (await client.get(key)).status == 200
    await client.get(path(aes["command_url"]), params={"method": "stop"})
    assert (await client.get(key)).status == 404
    assert (await client.get(path(aes["playback_url"]))).status == 500  # stopped


# --- expiry --------------------------------------------------------------------------------


async def test_an_unread_session_expires(sim: Sim) -> None:
    clock = Clock()
    engine, client = await sim(clock=clock, idle_expiry=0.2)
    hls = await started(client, "hls", id=CID, pid="a")
    ts = await started(client, "ts", id=CID2, pid="b")
    async with client.get(path(ts["playback_url"])) as reader:
        await read_exactly(reader, PACKET_SIZE)
        clock.advance(60.0)
        hls_session = engine.sessions[0]
        await engine.wait_until(lambda: hls_session.expired)  # the sweep found it
        assert engine.active() == [engine.sessions[1]]  # the read keeps the other alive
    async with client.get(path(hls["playback_url"])) as resp:
        assert resp.status == 404
    async with client.get(path(hls["stat_url"])) as resp:
        assert (await resp.json())["error"] == "unknown playback session id"
    await engine.wait_until(lambda: engine.sessions[1].open_reads == 0)
    clock.advance(60.0)
    assert engine.active() == []


# --- faults --------------------------------------------------------------------------------


async def test_fault_error_answers_every_start_with_it(sim: Sim) -> None:
    engine, client = await sim()
    engine.faults.error = "engine overloaded"
    for fmt in ("ts", "hls"):
        assert await start(client, fmt, id=CID) == {"response": None, "error": "engine overloaded"}
    assert engine.counters["start_failed"] == 2
    assert engine.sessions == []


async def test_fault_start_delay_holds_the_answer(sim: Sim) -> None:
    engine, client = await sim()
    engine.faults.start_delay = 0.3
    began = time.monotonic()
    await started(client, id=CID)
    assert time.monotonic() - began >= 0.3


async def test_a_long_start_delay_does_not_hold_up_shutdown(sim: Sim) -> None:
    engine, client = await sim()
    engine.faults.start_delay = 60.0
    request = asyncio.ensure_future(client.get(START["ts"], params={"id": CID}))
    await engine.wait_until(lambda: len(engine.requests) == 1)
    began = time.monotonic()
    await client.close()
    assert time.monotonic() - began < 3.0
    with pytest.raises(aiohttp.ClientError):
        await request
    assert engine.sessions == []


async def test_fault_stop_delay_holds_the_stop_and_its_effect(sim: Sim) -> None:
    engine, client = await sim()
    r = await started(client, id=CID)
    engine.faults.stop_delay = 0.3
    stop = asyncio.ensure_future(client.get(path(r["command_url"]), params={"method": "stop"}))
    await engine.wait_until(lambda: any("method=stop" in x for x in engine.requests))
    began = time.monotonic()
    assert engine.sessions[0].live  # asked, not yet done
    async with await stop as resp:
        assert await resp.json() == {"response": "ok", "error": None}
    assert time.monotonic() - began >= 0.2
    assert not engine.sessions[0].live


async def test_fault_header_delay_holds_the_stream_headers(sim: Sim) -> None:
    engine, client = await sim()
    r = await started(client, id=CID)
    engine.faults.header_delay = 0.3
    async with client.get(path(r["playback_url"]), allow_redirects=False) as redirect:
        content = path(redirect.headers["Location"])
    began = time.monotonic()
    async with client.get(content) as stream:
        assert time.monotonic() - began >= 0.3
        assert is_ts(await read_exactly(stream, PACKET_SIZE))


async def stat_of(client: Client, session: dict[str, Any]) -> dict[str, Any]:
    async with client.get(path(session["stat_url"])) as resp:
        body: dict[str, Any] = await resp.json()
    assert body["error"] is None, body
    answer: dict[str, Any] = body["response"]
    return answer


async def test_fault_prebuffer_holds_the_stream_while_stat_says_prebuf(sim: Sim) -> None:
    engine, client = await sim()
    engine.faults.prebuffer = 1.0
    began = time.monotonic()
    r = await started(client, id=CID)
    stat = await stat_of(client, r)
    assert stat["status"] == "prebuf"
    assert stat["peers"] >= 1 and 0 <= stat["progress"] < 100
    async with client.get(path(r["playback_url"])) as stream:
        assert time.monotonic() - began >= 1.0
        assert is_ts(await read_exactly(stream, PACKET_SIZE))
    assert (await stat_of(client, r))["status"] != "prebuf"


async def test_fault_prebuffer_for_one_content_only(sim: Sim) -> None:
    _, client = await sim(cold_channels={CID: 60.0})
    cold = await started(client, id=CID, pid="a")
    warm = await started(client, "hls", id=CID2, pid="b")
    assert (await stat_of(client, cold))["status"] == "prebuf"
    assert (await stat_of(client, warm)) == {}
    async with client.get(path(warm["playback_url"])) as resp:
        assert resp.status == 200


async def test_fault_prebuffer_holds_the_first_playlist_and_a_later_session_keeps_its_end(
    sim: Sim,
) -> None:
    engine, client = await sim(hls_initial_window=3)
    engine.faults.prebuffer = 1.0
    began = time.monotonic()
    first = await started(client, "hls", id=CID)
    async with client.get(path(first["playback_url"])) as resp:
        assert resp.status == 200
        assert time.monotonic() - began >= 1.0
        _, entries = playlist_entries(await resp.text())
    # What it prebuffered is what it offers, as a warm start would.
    assert len(entries) == 3
    async with client.get(path(first["command_url"]), params={"method": "stop"}):
        pass
    # The engine kept the channel: a new session of it has its media at once.
    second = await started(client, "hls", id=CID)
    assert (await stat_of(client, second)) == {}
    asked = time.monotonic()
    async with client.get(path(second["playback_url"])) as resp:
        assert resp.status == 200
        assert time.monotonic() - asked < 1.0


async def test_fault_prebuffer_ends_a_held_answer_with_its_session(sim: Sim) -> None:
    engine, client = await sim()
    engine.faults.prebuffer = 60.0
    r = await started(client, "hls", id=CID)
    held = asyncio.ensure_future(client.get(path(r["playback_url"])))
    await asyncio.wait({held}, timeout=0.2)
    assert not held.done()
    async with client.get(path(r["command_url"]), params={"method": "stop"}):
        pass
    async with asyncio.timeout(5):
        resp = await held
    assert resp.status == 500  # a stopped session's playlist
    resp.release()


async def test_fault_stall_sends_n_bytes_then_holds_the_connection(sim: Sim) -> None:
    engine, client = await sim()
    engine.faults.stall_after = 100 * PACKET_SIZE
    r = await started(client, id=CID)
    async with client.get(path(r["playback_url"])) as stream:
        assert is_ts(await read_exactly(stream, 100 * PACKET_SIZE))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await stream.content.readany()
        async with client.get(path(r["command_url"]), params={"method": "stop"}):
            pass
        async with asyncio.timeout(5):
            assert await stream.read() == b""  # the stop ends the stalled body cleanly


async def test_fault_burst_sends_seconds_of_media_at_once_then_real_time(
    sim: Sim, media: MediaLoop
) -> None:
    engine, client = await sim(clock=Clock())
    engine.faults.burst_seconds = 30.0
    r = await started(client, id=CID)
    # the read starts at the newest segment (2): segments 2..9 cover 30 s of media
    burst = [media.segment(n) for n in range(2, 10)]
    assert sum(media.duration(n) for n in range(2, 9)) < 30.0
    began = time.monotonic()
    async with client.get(path(r["playback_url"])) as stream:
        data = await read_exactly(stream, sum(map(len, burst)))
        # 32 s of media in far less than their playing time
        assert time.monotonic() - began < 10.0
        assert data == b"".join(burst)
        began = time.monotonic()
        quarter = await read_exactly(stream, len(media.segment(10)) // 4)
        assert 0.8 <= time.monotonic() - began <= 2.0  # then real time, as without the fault
        assert quarter == media.segment(10)[: len(quarter)]


async def test_fault_cut_drops_the_read_after_n_bytes(sim: Sim) -> None:
    engine, client = await sim()
    engine.faults.cut_after = 100 * PACKET_SIZE + 7
    r = await started(client, id=CID)
    received = bytearray()
    async with client.get(path(r["playback_url"])) as stream:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with asyncio.timeout(5):
                async for chunk in stream.content.iter_any():
                    received += chunk
    assert len(received) == 100 * PACKET_SIZE + 7
    assert engine.active() == engine.sessions  # the session lives on; only the read is gone


async def test_fault_playlist_error_answers_every_playlist_for_a_while(sim: Sim) -> None:
    engine, client = await sim()
    r = await started(client, "hls", id=MULTI_ID)
    multivariant = path(r["playback_url"])
    async with client.get(multivariant) as resp:
        variant = path(next(x for x in (await resp.text()).splitlines() if x.endswith(".m3u8")))
    async with client.get(variant) as resp:
        segment = path(playlist_entries(await resp.text())[1][-1][1])
    engine.faults.playlist_error = 500
    for url in (multivariant, variant):
        async with client.get(url) as resp:
            assert resp.status == 500
    async with client.get(segment) as resp:
        assert resp.status == 200  # segments are not playlists
    engine.faults.playlist_error = None
    async with client.get(variant) as resp:
        assert resp.status == 200
    assert engine.counters["injected_error"] == 2


async def test_fault_segment_error_answers_segments_keys_and_init_sections(sim: Sim) -> None:
    engine, client = await sim()
    fmp4 = await started(client, "hls", id=FMP4_ID, pid="a")
    aes = await started(client, "hls", id=AES_ID, pid="b")
    urls: list[str] = []
    for r, line in ((fmp4, "#EXT-X-MAP:URI="), (aes, "#EXT-X-KEY:")):
        async with client.get(path(r["playback_url"])) as resp:
            text = await resp.text()
        tag = next(x for x in text.splitlines() if x.startswith(line))
        urls += [path(re.findall(r'URI="([^"]+)"', tag)[0]), path(text.splitlines()[-1])]
    engine.faults.segment_error = 404
    for url in urls:
        async with client.get(url) as resp:
            assert resp.status == 404, url
    async with client.get(path(fmp4["playback_url"])) as resp:
        assert resp.status == 200  # playlists are not segments
    engine.faults.segment_error = None
    for url in urls:
        async with client.get(url) as resp:
            assert resp.status == 200, url
    assert engine.counters["injected_error"] == 4


@pytest.mark.parametrize("fault", ["segment_cut_after", "segment_stall_after"])
async def test_fault_segment_breaks_off_after_its_headers_promised_it_all(
    sim: Sim, fault: str
) -> None:
    engine, client = await sim()
    r = await started(client, "hls", id=CID)
    async with client.get(path(r["playback_url"])) as resp:
        segment = path(playlist_entries(await resp.text())[1][-1][1])
    setattr(engine.faults, fault, PACKET_SIZE)
    async with client.get(segment) as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) > PACKET_SIZE
        assert is_ts(await read_exactly(resp, PACKET_SIZE))
        if fault == "segment_stall_after":
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await resp.content.readany()
            # The stop ends the session, and the stalled body with it.
            async with client.get(path(r["command_url"]), params={"method": "stop"}):
                pass
        with pytest.raises(aiohttp.ClientPayloadError):
            async with asyncio.timeout(5):
                await resp.read()
    assert engine.counters["segment_broken"] == 1


async def test_every_stop_is_counted_on_the_session_it_names(sim: Sim) -> None:
    engine, client = await sim()
    r = await started(client, id=CID)
    for _ in range(2):
        async with client.get(path(r["command_url"]), params={"method": "stop"}):
            pass
    assert [s.stops for s in engine.sessions] == [2]
    assert engine.crossed_stops == []


async def test_a_stop_that_ends_a_newer_session_of_its_content_is_recorded(sim: Sim) -> None:
    engine, client = await sim()
    old = await started(client, "ts", id=CID, pid="a")
    await started(client, "hls", id=CID, pid="b")
    await started(client, "hls", id=CID2, pid="c")
    async with client.get(path(old["command_url"]), params={"method": "stop"}):
        pass
    first, second, _ = engine.sessions
    assert engine.crossed_stops == [(first, second)]
    assert second.stopped and not second.live


async def test_fault_down_drops_every_connection(sim: Sim) -> None:
    engine, client = await sim()
    engine.faults.down = True
    for url in (f"{START['ts']}?id={CID}&format=json", "/webui/api/service?method=get_version"):
        with pytest.raises(aiohttp.ClientConnectionError):
            async with client.get(url) as resp:
                await resp.read()
    assert engine.requests == [
        f"GET {START['ts']}?id={CID}&format=json",
        "GET /webui/api/service?method=get_version",
    ]
    assert engine.sessions == []
    engine.faults.down = False
    await started(client, id=CID)


# --- the rest of the API ---------------------------------------------------------------------


async def test_version_and_status(sim: Sim) -> None:
    engine, client = await sim()
    async with client.get("/webui/api/service", params={"method": "get_version"}) as r:
        assert await r.json() == {
            "result": {"code": 3020300, "platform": "linux", "version": "3.2.3"},
            "error": None,
        }
    async with client.get("/server/api", params={"api_version": "3", "method": "get_status"}) as r:
        assert r.status == 200
        body = await r.json()
    assert body["result"]["playlist_loaded"] is True
    assert body["result"]["version"]["version"] == "3.2.3"
    assert (engine.counters["version"], engine.counters["status"]) == (1, 1)


async def test_requests_are_recorded_and_unmatched_ones_flagged(sim: Sim) -> None:
    engine, client = await sim()
    await started(client, id=CID)
    async with client.get("/ace/nonsense?x=1") as r:
        assert r.status == 404
    async with client.post("/ace/getstream") as r:
        assert r.status == 404
    assert engine.requests == [
        f"GET /ace/getstream?format=json&id={CID}",
        "GET /ace/nonsense?x=1",
        "POST /ace/getstream",
    ]
    assert engine.unexpected == ["GET /ace/nonsense?x=1", "POST /ace/getstream"]
    engine.unexpected.clear()


async def test_closing_the_app_ends_open_reads_and_leaves_no_task(sim: Sim) -> None:
    engine, client = await sim()
    engine.faults.stall_after = PACKET_SIZE
    r = await started(client, id=CID)
    stream = await client.get(path(r["playback_url"]))
    await read_exactly(stream, PACKET_SIZE)
    began = time.monotonic()
    await client.close()
    assert time.monotonic() - began < 3.0
    stream.close()
    pending = [t for t in asyncio.all_tasks() if "sim" in t.get_name()]
    assert pending == []


async def test_closing_the_app_cuts_a_client_that_stopped_reading(sim: Sim) -> None:
    engine, client = await sim(bitrate=50_000_000)
    r = await started(client, id=CID)
    async with client.get(path(r["playback_url"]), allow_redirects=False) as redirect:
        content = path(redirect.headers["Location"])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", client.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {content} HTTP/1.1\r\nHost: sim\r\n\r\n".encode())
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    # and then never read again: the engine's 25 MB burst fills every buffer on the way
    began = time.monotonic()
    await client.close()
    assert time.monotonic() - began < 3.0
    writer.close()
    assert engine.sessions[0].open_reads == 0


async def test_start_engine_serves_on_a_free_port() -> None:
    engine, runner, port = await start_engine(time_scale=2.0)
    try:
        assert port > 0 and engine.time_scale == 2.0
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/ace/getstream"
            async with http.get(url, params={"id": CID, "format": "json"}) as r:
                body = await r.json()
            assert body["response"]["playback_url"].startswith(f"http://127.0.0.1:{port}/ace/r/")
            async with http.get(body["response"]["playback_url"]) as stream:
                assert is_ts(await read_exactly(stream, 10 * PACKET_SIZE))
    finally:
        await runner.cleanup()


async def test_python_m_hlsproxy_sim_runs_standalone() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hlsproxy.sim",
        "--port",
        "0",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        match = None
        async with asyncio.timeout(10):
            while match is None:
                line = (await process.stderr.readline()).decode()
                assert line, "the engine exited before it logged its URL"
                match = re.search(r"engine on (http://127\.0\.0\.1:\d+)", line)
        async with aiohttp.ClientSession() as http:
            url = f"{match.group(1)}/webui/api/service?method=get_version"
            async with http.get(url) as r:
                assert (await r.json())["result"]["version"] == "3.2.3"
    finally:
        process.terminate()
        async with asyncio.timeout(10):
            assert await process.wait() == 0


@pytest.mark.parametrize("unsized", [False, True], ids=["content-length", "chunked"])
async def test_fault_segment_pauses_then_sends_the_rest(sim: Sim, unsized: bool) -> None:
    engine, client = await sim()
    r = await started(client, "hls", id=CID)
    async with client.get(path(r["playback_url"])) as resp:
        segment = path(playlist_entries(await resp.text())[1][-1][1])
    async with client.get(segment) as resp:
        whole = await resp.read()
    engine.faults.segment_stall_after = PACKET_SIZE
    engine.faults.segment_stall_seconds = 0.5
    engine.faults.segment_unsized = unsized
    async with client.get(segment) as resp:
        assert resp.status == 200
        assert ("Content-Length" in resp.headers) is not unsized
        assert (resp.headers.get("Transfer-Encoding") == "chunked") is unsized
        assert await read_exactly(resp, PACKET_SIZE) == whole[:PACKET_SIZE]
        with pytest.raises(TimeoutError):  # the pause
            async with asyncio.timeout(0.3):
                await resp.content.readany()
        async with asyncio.timeout(5):
            assert await resp.content.read() == whole[PACKET_SIZE:]
    assert engine.counters["segment_broken"] == 0
