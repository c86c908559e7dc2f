"""The HLS load: virtual viewers that play one live stream as players do, in one process.

A viewer opens one keep-alive connection, loads the playlist, starts three segments from
the live edge, fetches each new segment once, in order, and reloads the playlist a random
half to one target duration after its last reload. It plays its segments on a model
player's clock, which counts stalls. The client is a small HTTP/1.1 client
(`asyncio.BufferedProtocol`, one reusable read buffer per process) that counts body bytes
instead of keeping them, so that the load costs little.

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

START_BEHIND = 3
"""A viewer joins this many segments from the live edge, as players do."""
REQUEST_TIMEOUT = 20.0
READ_BUFFER = 256 * 1024
MAX_HEAD = 64 * 1024
MAX_LINE = 4096
LAG_TICK = 0.1


class HttpError(Exception):
    pass


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    size: int
    t_first: float
    t_done: float


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)


class _Reader(asyncio.BufferedProtocol):
    def __init__(self, buffer: memoryview) -> None:
        self.buffer = buffer
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[Response] | None = None
        self._start(False)

    def _start(self, keep_body: bool) -> None:
        self.keep = keep_body
        self.state = _HEAD
        self.head = bytearray()
        self.line = bytearray()
        self.body = bytearray()
        self.status = 0
        self.remaining = 0
        self.size = 0
        self.t_first = 0.0
        self.close_after = False

    def expect(self, waiter: asyncio.Future[Response], keep_body: bool) -> None:
        self._start(keep_body)
        self.waiter = waiter

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self.waiter is None or self.waiter.done():
            self._abort(HttpError("bytes with no request outstanding"))
            return
        try:
            self._feed(self.buffer[:nbytes])
        except (HttpError, ValueError) as exc:
            self._abort(HttpError(f"bad response: {exc}"))

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.state == _UNTIL_CLOSE:
            self._finish()
        else:
            waiter.set_exception(ConnectionError("the server closed the connection"))

    def _abort(self, exc: Exception) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _finish(self) -> None:
        assert self.waiter is not None
        self.state = _DONE
        body = bytes(self.body) if self.keep else b""
        self.waiter.set_result(
            Response(self.status, body, self.size, self.t_first, time.monotonic())
        )
        if self.close_after and self.transport is not None:
            self.closed = True
            self.transport.close()

    def _take(self, data: memoryview) -> memoryview:
        n = min(len(data), self.remaining)
        if self.keep:
            self.body += data[:n]
        self.size += n
        self.remaining -= n
        return data[n:]

    def _line(self, data: memoryview) -> tuple[bytes | None, memoryview]:
        # Chunk-size and trailer lines are short: look for the end of one near the start.
        end = bytes(data[:MAX_LINE]).find(b"\n")
        if end < 0:
            if len(data) >= MAX_LINE:
                raise HttpError("line too long")
            self.line += data
            if len(self.line) > MAX_LINE:
                raise HttpError("line too long")
            return None, data[len(data) :]
        line = bytes(self.line) + bytes(data[:end])
        self.line = bytearray()
        return line.rstrip(b"\r"), data[end + 1 :]

    def _feed(self, data: memoryview) -> None:
        if self.state == _HEAD:
            if not self.t_first:
                self.t_first = time.monotonic()
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > MAX_HEAD:
                    raise HttpError("header too long")
                return
            rest = memoryview(bytes(self.head[end + 4 :]))
            self._parse_head(bytes(self.head[:end]))
            data = rest
        while self.state != _DONE:
            if self.state == _LENGTH:
                data = self._take(data)
                if self.remaining == 0:
                    self._finish()
                    break
            elif self.state == _UNTIL_CLOSE:
                self.remaining = len(data)
                data = self._take(data)
            elif self.state == _CHUNK_SIZE:
                line, data = self._line(data)
                if line is None:
                    break
                self.remaining = int(line.split(b";")[0].strip(), 16)
                self.state = _CHUNK_DATA if self.remaining else _TRAILER
                continue
            elif self.state == _CHUNK_DATA:
                data = self._take(data)
                if self.remaining == 0:
                    self.state = _CHUNK_END
                    continue
            elif self.state == _CHUNK_END:
                line, data = self._line(data)
                if line is None:
                    break
                if line:
                    raise HttpError("chunk not followed by CRLF")
                self.state = _CHUNK_SIZE
                continue
            elif self.state == _TRAILER:
                line, data = self._line(data)
                if line is None:
                    break
                if not line:
                    self._finish()
                    break
                continue
            if not data:
                break
        if self.state == _DONE and len(data):
            raise HttpError("bytes after the response")

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        self.status = int(parts[1])
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                self.close_after = "close" in value.lower()
        if chunked:
            self.state = _CHUNK_SIZE
        elif length is not None:
            self.state = _LENGTH
            self.remaining = length
            if length == 0:
                self._finish()
        else:
            self.state = _UNTIL_CLOSE
            self.close_after = True


class Client:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, port: int, buffer: memoryview) -> None:
        self.port = port
        self._buffer = buffer
        self._reader: _Reader | None = None

    async def get(self, path: str, *, keep_body: bool = False) -> Response:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(REQUEST_TIMEOUT):
            reader = self._reader
            if reader is None or reader.closed:
                _, reader = await loop.create_connection(
                    lambda: _Reader(self._buffer), HOST, self.port
                )
                self._reader = reader
            assert reader.transport is not None
            waiter: asyncio.Future[Response] = loop.create_future()
            reader.expect(waiter, keep_body)
            reader.transport.write(
                f"GET {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
                "User-Agent: hls-viewers-bench\r\nAccept: */*\r\n\r\n".encode()
            )
            try:
                return await waiter
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and reader.transport is not None:
            reader.closed = True
            reader.transport.abort()


# --- viewers (run inside a load worker process) ----------------------------------------


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
