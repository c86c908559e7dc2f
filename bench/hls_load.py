"""The HLS load: virtual viewers that play one live stream as players do, in one process.

A viewer opens one keep-alive connection, loads the playlist, starts three segments from
the live edge, fetches each new segment once, in order, and reloads the playlist a random
half to one target duration after its last reload. It plays its segments on a model
player's clock, which counts stalls. Its client is bench/http_client.py.

bench/hls_viewers.py starts this as `python bench/hls_load.py PLAN.json`; the plan names
the file the record of every request goes to.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from harness import HOST
from http_client import READ_BUFFER, Client, HttpError

START_BEHIND = 3
"""A viewer joins this many segments from the live edge, as players do."""
LAG_TICK = 0.1


@dataclass(slots=True)
class MediaPlaylist:
    first: int
    target: float
    uris: list[str]
    durations: list[float]

    @property
    def last(self) -> int:
        return self.first + len(self.uris) - 1


def parse_media_playlist(body: bytes) -> MediaPlaylist:
    first = 0
    target = 0.0
    uris: list[str] = []
    durations: list[float] = []
    duration = 0.0
    lines = body.decode("utf-8", errors="replace").splitlines()
    if not lines or lines[0].strip() != "#EXTM3U":
        raise HttpError("not a playlist")
    for raw in lines:
        line = raw.strip()
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            first = int(line.partition(":")[2])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.partition(":")[2])
        elif line.startswith("#EXTINF:"):
            duration = float(line.partition(":")[2].partition(",")[0])
        elif line and not line.startswith("#"):
            uris.append(line)
            durations.append(duration)
    return MediaPlaylist(first, target, uris, durations)


@dataclass(slots=True)
class Playback:
    """A player's buffer: it plays from the first segment's arrival, and stalls whenever the
    next segment arrives after the playhead ran out of media."""

    started_at: float | None = None
    buffered: float = 0.0
    """Seconds of media received."""
    stalls: int = 0

    def received(self, duration: float, at: float) -> None:
        if self.started_at is None:
            self.started_at = at
        else:
            late = at - (self.started_at + self.buffered)
            if late > 0:
                self.stalls += 1
                self.started_at += late  # it waits, then plays on
        self.buffered += duration

    def starving(self, now: float) -> bool:
        return self.started_at is not None and now > self.started_at + self.buffered


@dataclass
class LoadPlan:
    mode: str  # "hlsproxy": the manifest URL is the playlist; "nginx": format=json first
    port: int
    engine_port: int
    content_id: str
    indices: list[int]
    total: int
    start_at: float
    ramp: float
    end_at: float
    probe: bool
    seed: int
    out: str


@dataclass
class Record:
    segments: list[tuple[int, float, float, float, int, int, float]] = field(default_factory=list)
    """(media sequence, request start, first byte, done, body bytes, status, duration)"""
    playlists: list[tuple[float, float, int]] = field(default_factory=list)
    probes: list[tuple[int, float, float, float, int, int]] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    lags: list[float] = field(default_factory=list)
    started: int = 0
    never_stalled: int = 0
    stalls: int = 0
    target: float = 0.0


class Probe:
    """Fetches each new segment once straight from the engine: its own latency, for scale."""

    def __init__(self, plan: LoadPlan, record: Record) -> None:
        self.infohash = hashlib.sha1(plan.content_id.lower().encode()).hexdigest()
        self.record = record
        self.client = Client(plan.engine_port, memoryview(bytearray(READ_BUFFER)))
        self.baseline: int | None = None
        self.queue: asyncio.Queue[int] = asyncio.Queue()

    def saw(self, newest: int) -> None:
        # Only segments that appear while viewers watch: older ones are not news to anyone.
        if self.baseline is None:
            self.baseline = newest
        elif newest > self.baseline:
            for seq in range(self.baseline + 1, newest + 1):
                self.queue.put_nowait(seq)
            self.baseline = newest

    async def run(self) -> None:
        while True:
            seq = await self.queue.get()
            began = time.monotonic()
            try:
                r = await self.client.get(f"/ace/c/{self.infohash}/{seq}.ts?probe=1")
            except (OSError, TimeoutError, HttpError) as exc:
                self.record.errors[f"probe: {type(exc).__name__}"] += 1
                continue
            self.record.probes.append((seq, began, r.t_first, r.t_done, r.size, r.status))


def _local_path(uri: str, port: int) -> str:
    if uri.startswith("/"):
        return uri
    parts = urlsplit(uri)
    if parts.netloc != f"{HOST}:{port}":
        raise HttpError(f"a URI that does not point at the server: {parts.netloc}")
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def _entry(plan: LoadPlan, client: Client) -> str:
    """The playlist path a viewer reloads."""
    manifest = f"/ace/manifest.m3u8?id={plan.content_id}"
    if plan.mode != "nginx":
        return manifest
    r = await client.get(manifest + "&format=json", keep_body=True)
    if r.status != 200:
        raise HttpError(f"session start answered {r.status}")
    answer = json.loads(r.body)
    if not answer.get("response"):
        raise HttpError(f"session start failed: {answer.get('error')}")
    return _local_path(str(answer["response"]["playback_url"]), plan.port)


async def viewer(
    plan: LoadPlan,
    *,
    start_at: float,
    rng: random.Random,
    record: Record,
    buffer: memoryview,
    probe: Probe | None,
) -> None:
    await _sleep_until(start_at)
    record.started += 1
    client = Client(plan.port, buffer)
    playlist: str | None = None
    next_seq: int | None = None
    playback = Playback()
    target = 5.0
    try:
        while True:
            began = time.monotonic()
            try:
                if playlist is None:
                    playlist = await _entry(plan, client)
                r = await client.get(playlist, keep_body=True)
                record.playlists.append((began, r.t_done, r.status))
                if r.status != 200:
                    record.errors[f"playlist status {r.status}"] += 1
                    await _sleep_until(began + target / 2)
                    continue
                media = parse_media_playlist(r.body)
                target = media.target or target
                record.target = target
                if probe is not None:
                    probe.saw(media.last)
                if next_seq is None:
                    next_seq = max(media.first, media.last - START_BEHIND + 1)
                elif next_seq < media.first:
                    record.errors["fell out of the playlist window"] += 1
                    next_seq = media.first
                for offset, uri in enumerate(media.uris):
                    seq = media.first + offset
                    if seq < next_seq:
                        continue
                    t0 = time.monotonic()
                    s = await client.get(_local_path(uri, plan.port))
                    duration = media.durations[offset]
                    record.segments.append(
                        (seq, t0, s.t_first, s.t_done, s.size, s.status, duration)
                    )
                    if s.status == 200:
                        playback.received(duration, s.t_done)
                    else:
                        record.errors[f"segment status {s.status}"] += 1
                    next_seq = seq + 1
            except (OSError, TimeoutError, HttpError, ValueError, KeyError) as exc:
                record.errors[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
                await asyncio.sleep(1.0)
                continue
            await _sleep_until(began + rng.uniform(target / 2, target))
    finally:
        client.close()
        stalls = playback.stalls + playback.starving(time.monotonic())
        record.stalls += stalls
        record.never_stalled += playback.started_at is not None and stalls == 0


async def _watch_lag(record: Record) -> None:
    """How late the worker's event loop wakes up: a late loop inflates every latency."""
    while True:
        due = time.monotonic() + LAG_TICK
        await asyncio.sleep(LAG_TICK)
        record.lags.append(time.monotonic() - due)


async def run_viewers(plan: LoadPlan) -> Record:
    record = Record()
    rng = random.Random(plan.seed)
    probe = Probe(plan, record) if plan.probe else None
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(_watch_lag(record))]
    if probe is not None:
        tasks.append(asyncio.create_task(probe.run()))
    # One read buffer for every connection: each read is parsed before the next one starts.
    buffer = memoryview(bytearray(READ_BUFFER))
    for index in plan.indices:
        start = plan.start_at + plan.ramp * index / max(1, plan.total)
        seeded = random.Random(rng.random())
        run = viewer(plan, start_at=start, rng=seeded, record=record, buffer=buffer, probe=probe)
        tasks.append(asyncio.create_task(run))
    await _sleep_until(plan.end_at)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            record.errors[f"viewer crashed: {type(result).__name__}: {result}"] += 1
    if probe is not None:
        probe.client.close()
    return record


def load_worker(plan_path: str) -> int:
    plan = LoadPlan(**json.loads(Path(plan_path).read_text()))
    record = asyncio.run(run_viewers(plan))
    out = {
        "segments": record.segments,
        "playlists": record.playlists,
        "probes": record.probes,
        "errors": dict(record.errors),
        "lags": record.lags,
        "started": record.started,
        "never_stalled": record.never_stalled,
        "stalls": record.stalls,
        "target": record.target,
    }
    Path(plan.out).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(load_worker(sys.argv[1]))
