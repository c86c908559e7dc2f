"""The segment cache against a real origin on 127.0.0.1 that counts its requests.

The origin can hold a response before its headers or halfway through the body until the
test lets it go, and can drop the connection halfway, so every "while the body is still
arriving" case is reached by events, not by timing.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hlsproxy.errors import EngineError, EngineProtocolError, NotFound, ShuttingDown, Unavailable
from hlsproxy.hls.cache import SegmentCache
from hlsproxy.hls.flight import Cached, Fetch, Flight, Source
from tests.helpers import Clock

TTL = 60.0
STEP = 5.0  # seconds: no single test step should come near this


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


BODY = payload(256 * 1024)


@dataclass
class Script:
    """How the origin answers one path."""

    body: bytes
    status: int = 200
    content_type: str = "video/mp2t"
    before_headers: asyncio.Event | None = None  # answer only once this is set
    midway: asyncio.Event | None = None  # send half the body, wait for this, then the rest
    break_midway: bool = False  # after the first half (and `midway`), drop the connection
    endless: bool = False  # no length; the body, `midway`, then it again and again until cut
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    half_sent: asyncio.Event = field(default_factory=asyncio.Event)
    all_sent: asyncio.Event = field(default_factory=asyncio.Event)
    cut: asyncio.Event = field(default_factory=asyncio.Event)  # the client went away

    def gates(self) -> list[asyncio.Event]:
        return [gate for gate in (self.before_headers, self.midway) if gate is not None]


class Origin:
    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.served: list[Script] = []
        self.requests: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.app = web.Application()
        self.app.router.add_get("/{name}", self.handle)
        self.url: Callable[[str], str] = str

    def serve(self, name: str, script: Script) -> Script:
        self.scripts[name] = script
        return script

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        script = self.scripts.get(name)
        if script is None:
            self.unexpected.append(name)
            raise web.HTTPInternalServerError()
        self.requests[name] += 1
        self.served.append(script)
        script.arrived.set()
        if script.before_headers is not None:
            await script.before_headers.wait()
        if script.status != 200:
            return web.Response(status=script.status)
        response = web.StreamResponse(headers={"Content-Type": script.content_type})
        if script.endless:
            await response.prepare(request)
            try:
                await response.write(script.body)
                if script.midway is not None:
                    await script.midway.wait()
                while True:
                    await response.write(script.body)
            finally:  # the test server cancels a handler whose client went away
                script.cut.set()
        response.content_length = len(script.body)
        await response.prepare(request)
        half = len(script.body) // 2
        await response.write(script.body[:half])
        script.half_sent.set()
        if script.midway is not None:
            await script.midway.wait()
        if script.break_midway:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(script.body[half:])
        script.all_sent.set()
        await response.write_eof()
        return response


class ResponseSource:
    """A `Source` over an aiohttp client response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.content_type = response.content_type
        self.length = response.content_length

    async def chunks(self) -> AsyncIterator[bytes]:
        async for piece in self._response.content.iter_any():
            yield piece

    async def close(self) -> None:
        self._response.release()


class ListedSource:
    """A `Source` whose body is a list of pieces, for announcing a length the body breaks.

    aiohttp itself refuses such a body, so a real origin cannot reach the cache's own check.
    It sends the first piece, then the rest once `go` is set.
    """

    def __init__(self, pieces: list[bytes], length: int, go: asyncio.Event) -> None:
        self.content_type = "video/mp2t"
        self.length: int | None = length
        self._pieces = pieces
        self._go = go
        self.closed = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._pieces[0]
        await self._go.wait()
        for piece in self._pieces[1:]:
            yield piece

    async def close(self) -> None:
        self.closed += 1


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    running = Origin()
    server = TestServer(running.app, host="127.0.0.1")
    await server.start_server()
    running.url = lambda name: str(server.make_url(f"/{name}"))
    yield running
    for script in running.served:  # let any held handler finish before the server closes
        for gate in script.gates():
            gate.set()
    await server.close()
    assert running.unexpected == [], "the cache asked the origin for something unscripted"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def fetcher(origin: Origin, session: aiohttp.ClientSession) -> Callable[[str], Fetch]:
    def fetch_for(name: str) -> Fetch:
        async def fetch() -> Source:
            response = await session.get(origin.url(name))
            if response.status == 404:
                response.release()
                raise NotFound("no such segment")
            if response.status != 200:
                response.release()
                raise EngineError(f"the origin answered {response.status}")
            return ResponseSource(response)

        return fetch

    return fetch_for


async def read(entry: Cached | Flight) -> bytes:
    if isinstance(entry, Cached):
        return bytes(entry.body)
    return b"".join([bytes(piece) async for piece in entry.chunks()])


def serve_bodies(origin: Origin, names: str) -> dict[str, bytes]:
    """A body of 10 000 bytes for each one-letter name."""
    bodies = {name: payload(10_000, seed) for seed, name in enumerate(names)}
    for name, body in bodies.items():
        origin.serve(name, Script(body))
    return bodies


def cached_body(cache: SegmentCache, key: Hashable) -> bytes | None:
    entry = cache.peek(key)
    return None if entry is None else bytes(entry.body)


async def test_concurrent_gets_make_one_upstream_fetch(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    script = origin.serve("seg", Script(BODY, midway=asyncio.Event()))
    cache = SegmentCache(max_bytes=10 * len(BODY))
    fetch = fetcher("seg")

    async with asyncio.timeout(STEP):
        entries = await asyncio.gather(*(cache.get("seg", fetch, TTL) for _ in range(200)))
        assert all(entry is entries[0] for entry in entries)
        assert isinstance(entries[0], Flight)
        assert entries[0].length == len(BODY)
        assert entries[0].content_type == "video/mp2t"
        assert script.midway is not None
        script.midway.set()
        # Half the clients stream the body, half wait for it whole.
        bodies = await asyncio.gather(
            *(read(e) if i % 2 else _whole(e) for i, e in enumerate(entries))
        )
        again = await cache.get("seg", fetch, TTL)

    assert origin.requests["seg"] == 1
    assert len(bodies) == 200
    assert all(body == BODY for body in bodies)
    assert isinstance(again, Cached)
    assert bytes(again.body) == BODY
    stats = cache.stats
    assert (stats.misses, stats.coalesced, stats.hits) == (1, 199, 1)
    assert stats.upstream_fetches == 1
    assert stats.bytes_fetched == len(BODY)
    assert stats.current_bytes == len(BODY)


async def _whole(entry: Cached | Flight) -> bytes:
    return bytes(entry.body if isinstance(entry, Cached) else (await entry.result()).body)


async def test_bytes_reach_waiters_before_the_origin_sends_the_last(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    script = origin.serve("seg", Script(BODY, midway=asyncio.Event()))
    assert script.midway is not None
    cache = SegmentCache(max_bytes=10 * len(BODY))
    half = len(BODY) // 2

    async with asyncio.timeout(STEP):
        first = await cache.get("seg", fetcher("seg"), TTL)
        assert isinstance(first, Flight)
        early = first.chunks()
        got = b""
        while len(got) < half:
            got += bytes(await anext(early))
        assert got == BODY[:half]
        assert not script.all_sent.is_set()

        # A client joining now gets the arrived bytes at once, from byte 0.
        late = await cache.get("seg", fetcher("seg"), TTL)
        assert late is first
        late_pieces = late.chunks()
        late_got = b""
        while len(late_got) < half:
            late_got += bytes(await anext(late_pieces))
        assert late_got == BODY[:half]
        assert not script.all_sent.is_set()

        script.midway.set()
        got += b"".join([bytes(piece) async for piece in early])
        late_got += b"".join([bytes(piece) async for piece in late_pieces])

    assert got == BODY
    assert late_got == BODY
    assert origin.requests["seg"] == 1
    assert cache.stats.coalesced == 1


@pytest.mark.parametrize("stage", ["waiting for headers", "reading the body"])
@pytest.mark.parametrize("others", [0, 1], ids=["alone", "with another client"])
async def test_a_client_leaving_does_not_cancel_the_fetch(
    origin: Origin, fetcher: Callable[[str], Fetch], stage: str, others: int
) -> None:
    held = asyncio.Event()
    if stage == "waiting for headers":
        script = origin.serve("seg", Script(BODY, before_headers=held))
    else:
        script = origin.serve("seg", Script(BODY, midway=held))
    cache = SegmentCache(max_bytes=10 * len(BODY))
    fetch = fetcher("seg")
    reading = asyncio.Event()

    async def leaving() -> None:
        entry = await cache.get("seg", fetch, TTL)
        assert isinstance(entry, Flight)
        async for _ in entry.chunks():
            reading.set()

    async def staying() -> bytes:
        return await read(await cache.get("seg", fetch, TTL))

    async with asyncio.timeout(STEP):
        leaver = asyncio.create_task(leaving())
        stayers = [asyncio.create_task(staying()) for _ in range(others)]
        await (script.arrived if stage == "waiting for headers" else reading).wait()
        leaver.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaver
        held.set()
        assert [await stayer for stayer in stayers] == [BODY] * others
        after = await read(await cache.get("seg", fetch, TTL))

    assert after == BODY
    assert cached_body(cache, "seg") == BODY
    assert origin.requests["seg"] == 1
    assert cache.stats.upstream_fetches == 1


async def test_a_failure_midway_reaches_every_client_and_is_not_cached(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    script = origin.serve("seg", Script(BODY, midway=asyncio.Event(), break_midway=True))
    assert script.midway is not None
    cache = SegmentCache(max_bytes=10 * len(BODY))
    fetch = fetcher("seg")

    async with asyncio.timeout(STEP):
        early = await asyncio.gather(*(cache.get("seg", fetch, TTL) for _ in range(3)))
        flight = early[0]
        assert isinstance(flight, Flight)
        pieces = flight.chunks()
        await anext(pieces)
        late = await cache.get("seg", fetch, TTL)  # joins after bytes have arrived
        assert late is flight
        script.midway.set()
        outcomes = await asyncio.gather(
            _drain(pieces),
            *(read(entry) for entry in early),
            read(late),
            flight.result(),
            return_exceptions=True,
        )
        assert all(isinstance(o, aiohttp.ClientPayloadError) for o in outcomes), outcomes
        assert cache.peek("seg") is None
        assert cache.stats.errors == 1
        assert cache.stats.flights == 0

        origin.serve("seg", Script(BODY))
        again = await read(await cache.get("seg", fetch, TTL))

    assert again == BODY
    assert origin.requests["seg"] == 2
    assert cached_body(cache, "seg") == BODY


async def _drain(pieces: AsyncIterator[bytes | memoryview]) -> None:
    async for _ in pieces:
        pass


async def test_an_error_before_the_headers_reaches_every_client_and_is_not_cached(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    origin.serve("gone", Script(b"", status=404))
    cache = SegmentCache(max_bytes=len(BODY))
    fetch = fetcher("gone")

    async with asyncio.timeout(STEP):
        outcomes = await asyncio.gather(
            *(cache.get("gone", fetch, TTL) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(o, NotFound) for o in outcomes), outcomes
        assert origin.requests["gone"] == 1
        with pytest.raises(NotFound):
            await cache.get("gone", fetch, TTL)

    assert origin.requests["gone"] == 2
    assert cache.peek("gone") is None
    stats = cache.stats
    assert (stats.misses, stats.coalesced, stats.errors) == (2, 4, 2)
    assert stats.entries == 0


@pytest.mark.parametrize(
    ("pieces", "announced"),
    [
        ([b"a" * 100, b"b" * 50], 200),
        ([b"a" * 100, b"b" * 150], 200),
    ],
    ids=["shorter than announced", "longer than announced"],
)
async def test_a_body_that_breaks_its_announced_length_is_a_failure(
    pieces: list[bytes], announced: int
) -> None:
    sources: list[ListedSource] = []
    go = asyncio.Event()

    async def fetch() -> Source:
        sources.append(ListedSource(pieces, announced, go))
        return sources[-1]

    cache = SegmentCache(max_bytes=10_000)
    async with asyncio.timeout(STEP):
        entry = await cache.get("seg", fetch, TTL)
        assert isinstance(entry, Flight)
        assert entry.length == announced
        go.set()
        with pytest.raises(EngineProtocolError):
            await read(entry)
        with pytest.raises(EngineProtocolError):
            await entry.result()

    assert cache.peek("seg") is None
    assert cache.stats.errors == 1
    assert [source.closed for source in sources] == [1]


async def test_entries_expire_after_their_own_ttl(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    short, long = payload(1000, 1), payload(2000, 2)
    origin.serve("short", Script(short))
    origin.serve("long", Script(long))
    clock = Clock()
    cache = SegmentCache(max_bytes=10_000, clock=clock)

    async def get(name: str, ttl: float) -> bytes:
        return await read(await cache.get(name, fetcher(name), ttl))

    async with asyncio.timeout(STEP):
        assert await get("short", 10) == short
        assert await get("long", 30) == long
        stored = cache.peek("short")
        assert stored is not None
        assert (stored.stored_at, stored.expires_at) == (1000.0, 1010.0)

        clock.now += 9.9
        assert await get("short", 10) == short
        assert await get("long", 30) == long
        assert origin.requests == Counter(short=1, long=1)

        clock.now += 0.1
        assert cache.peek("short") is None
        assert cache.stats.expired == 1
        assert cache.stats.current_bytes == len(long)
        assert await get("short", 10) == short
        assert await get("long", 30) == long
        assert origin.requests == Counter(short=2, long=1)

        clock.now += 20
        assert cache.peek("long") is None

    stats = cache.stats
    assert stats.expired == 3
    assert stats.evicted == 0
    assert stats.entries == 0


async def test_the_byte_budget_evicts_the_least_recently_used(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    bodies = serve_bodies(origin, "abc")
    cache = SegmentCache(max_bytes=25_000)

    async def get(name: str) -> bytes:
        return await read(await cache.get(name, fetcher(name), TTL))

    async with asyncio.timeout(STEP):
        assert await get("a") == bodies["a"]
        assert await get("b") == bodies["b"]
        assert await get("a") == bodies["a"]  # a is now the more recently used
        assert await get("c") == bodies["c"]

        assert cache.peek("b") is None
        assert cached_body(cache, "a") == bodies["a"]
        assert cached_body(cache, "c") == bodies["c"]
        stats = cache.stats
        assert (stats.evicted, stats.expired) == (1, 0)
        assert (stats.entries, stats.current_bytes) == (2, 20_000)

        assert await get("b") == bodies["b"]

    assert origin.requests == Counter(a=1, b=2, c=1)


async def test_a_body_larger_than_the_budget_is_served_but_not_kept(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    small, big = payload(10_000, 1), payload(30_000, 2)
    origin.serve("small", Script(small))
    origin.serve("big", Script(big))
    cache = SegmentCache(max_bytes=25_000)

    async def get(name: str) -> bytes:
        return await read(await cache.get(name, fetcher(name), TTL))

    async with asyncio.timeout(STEP):
        assert await get("small") == small
        assert await get("big") == big
        assert cache.peek("big") is None
        # While it arrived it took memory, which the budget counts.
        assert cache.peek("small") is None
        assert await get("big") == big

    assert origin.requests == Counter(small=1, big=2)
    stats = cache.stats
    assert (stats.oversize, stats.evicted, stats.current_bytes) == (2, 1, 0)


async def test_bodies_still_arriving_count_against_the_budget(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    bodies = serve_bodies(origin, "ab")
    big = payload(20_000, 9)
    script = origin.serve("big", Script(big, midway=asyncio.Event()))
    assert script.midway is not None
    cache = SegmentCache(max_bytes=25_000)

    async with asyncio.timeout(STEP):
        for name, body in bodies.items():
            assert await read(await cache.get(name, fetcher(name), TTL)) == body
        flight = await cache.get("big", fetcher("big"), TTL)
        assert isinstance(flight, Flight)
        pieces, arrived = flight.chunks(), 0
        while arrived < len(big) // 2:  # the origin holds the rest back
            arrived += len(await anext(pieces))

        assert cache.peek("a") is None  # 20 000 cached + 10 000 arriving is over budget
        assert cached_body(cache, "b") == bodies["b"]
        assert (cache.stats.flight_bytes, cache.stats.evicted) == (10_000, 1)
        script.midway.set()
        assert await read(flight) == big

    assert cached_body(cache, "big") == big
    stats = cache.stats
    assert (stats.flight_bytes, stats.current_bytes) == (0, 20_000)


async def test_a_body_announced_beyond_the_segment_cap_fails_every_client(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    origin.serve("big", Script(payload(50_000)))
    cache = SegmentCache(max_bytes=1_000_000, max_segment_bytes=40_000)
    fetch = fetcher("big")

    async with asyncio.timeout(STEP):
        outcomes = await asyncio.gather(
            *(cache.get("big", fetch, TTL) for _ in range(3)), return_exceptions=True
        )

    assert all(isinstance(o, EngineProtocolError) for o in outcomes), outcomes
    assert origin.requests["big"] == 1
    assert cache.peek("big") is None
    assert (cache.stats.too_large, cache.stats.flights) == (1, 0)


async def test_an_endless_body_is_cut_at_the_segment_cap_for_every_client(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    script = origin.serve("endless", Script(payload(10_000), endless=True, midway=asyncio.Event()))
    assert script.midway is not None
    cache = SegmentCache(max_bytes=1_000_000, max_segment_bytes=100_000)
    fetch = fetcher("endless")

    async def received(entry: Cached | Flight) -> int:
        assert isinstance(entry, Flight)
        count = 0
        with pytest.raises(EngineProtocolError):
            async for piece in entry.chunks():
                count += len(piece)
        return count

    async with asyncio.timeout(STEP):
        entries = await asyncio.gather(*(cache.get("endless", fetch, TTL) for _ in range(3)))
        script.midway.set()
        counts = await asyncio.gather(*(received(entry) for entry in entries))
        await script.cut.wait()  # the cache let go of the upstream

    # each got what arrived before the piece that would have crossed the cap
    assert len(set(counts)) == 1 and 10_000 <= counts[0] <= 100_000, counts
    assert origin.requests["endless"] == 1
    assert cache.peek("endless") is None
    stats = cache.stats
    assert (stats.too_large, stats.flights, stats.flight_bytes) == (1, 0, 0)


async def test_drop_forgets_entries_and_cancels_flights_of_matching_keys(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    bodies = {name: payload(5000, seed) for seed, name in enumerate(["a1", "a2", "a3", "b1"])}
    for name, body in bodies.items():
        origin.serve(name, Script(body))
    held = origin.serve("a3", Script(bodies["a3"], midway=asyncio.Event()))
    cache = SegmentCache(max_bytes=100_000)

    def key(name: str) -> tuple[str, str]:
        return (name[0], name)

    async def get(name: str) -> bytes:
        return await read(await cache.get(key(name), fetcher(name), TTL))

    async with asyncio.timeout(STEP):
        for name in ("a1", "a2", "b1"):
            assert await get(name) == bodies[name]
        waiter = asyncio.create_task(get("a3"))
        await held.half_sent.wait()

        assert cache.drop(lambda k: isinstance(k, tuple) and k[0] == "a") == 3
        with pytest.raises(Unavailable):
            await waiter
        assert cache.peek(key("a1")) is None
        assert cache.peek(key("a2")) is None
        assert cached_body(cache, key("b1")) == bodies["b1"]

        origin.serve("a3", Script(bodies["a3"]))
        assert await get("a3") == bodies["a3"]
        assert await get("a1") == bodies["a1"]
        assert cache.drop(lambda k: False) == 0

    assert origin.requests == Counter(a1=2, a2=1, a3=2, b1=1)
    assert cache.stats.aborted == 1


async def test_prefetch_then_get_is_a_hit(origin: Origin, fetcher: Callable[[str], Fetch]) -> None:
    origin.serve("seg", Script(BODY))
    cache = SegmentCache(max_bytes=10 * len(BODY))

    async with asyncio.timeout(STEP):
        flight = cache.prefetch("seg", fetcher("seg"), TTL)
        assert flight is not None
        assert cache.prefetch("seg", fetcher("seg"), TTL) is flight
        assert bytes((await flight.result()).body) == BODY
        assert cache.prefetch("seg", fetcher("seg"), TTL) is None
        entry = await cache.get("seg", fetcher("seg"), TTL)

    assert isinstance(entry, Cached)
    assert bytes(entry.body) == BODY
    assert origin.requests["seg"] == 1
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.coalesced) == (1, 0, 0)


async def test_a_get_joins_a_prefetch_under_way(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    script = origin.serve("seg", Script(BODY, midway=asyncio.Event()))
    assert script.midway is not None
    cache = SegmentCache(max_bytes=10 * len(BODY))

    async with asyncio.timeout(STEP):
        flight = cache.prefetch("seg", fetcher("seg"), TTL)
        entry = await cache.get("seg", fetcher("seg"), TTL)
        assert entry is flight
        script.midway.set()
        assert await read(entry) == BODY

    assert origin.requests["seg"] == 1
    assert cache.stats.coalesced == 1


async def test_a_failed_prefetch_is_not_cached(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    origin.serve("gone", Script(b"", status=404))
    cache = SegmentCache(max_bytes=len(BODY))

    async with asyncio.timeout(STEP):
        flight = cache.prefetch("gone", fetcher("gone"), TTL)
        assert flight is not None
        with pytest.raises(NotFound):
            await flight.result()
        again = cache.prefetch("gone", fetcher("gone"), TTL)
        assert again is not None
        assert again is not flight
        with pytest.raises(NotFound):  # joins the second prefetch and shares its answer
            await cache.get("gone", fetcher("gone"), TTL)

    assert origin.requests["gone"] == 2
    stats = cache.stats
    assert (stats.errors, stats.coalesced, stats.entries) == (2, 1, 0)


async def test_aclose_ends_every_flight_and_leaves_no_task(
    origin: Origin, fetcher: Callable[[str], Fetch]
) -> None:
    before = origin.serve("before", Script(BODY, before_headers=asyncio.Event()))
    midway = origin.serve("midway", Script(BODY, midway=asyncio.Event()))
    prefetched = origin.serve("prefetched", Script(BODY, midway=asyncio.Event()))
    origin.serve("done", Script(BODY))
    cache = SegmentCache(max_bytes=10 * len(BODY))

    async def get(name: str) -> bytes:
        return await read(await cache.get(name, fetcher(name), TTL))

    async with asyncio.timeout(STEP):
        assert await get("done") == BODY
        waiters = [asyncio.create_task(get(name)) for name in ("before", "midway")]
        cache.prefetch("prefetched", fetcher("prefetched"), TTL)
        await before.arrived.wait()
        await midway.half_sent.wait()
        await prefetched.half_sent.wait()
        assert "3 flights" in repr(cache)

        await cache.aclose()
        assert [t for t in asyncio.all_tasks() if t.get_name().startswith("segment fetch")] == []
        for waiter in waiters:
            with pytest.raises(ShuttingDown):
                await waiter
        await cache.aclose()
        with pytest.raises(ShuttingDown):
            await cache.get("done", fetcher("done"), TTL)

    assert cache.prefetch("other", fetcher("other"), TTL) is None
    assert "closed" in repr(cache)
    stats = cache.stats
    assert (stats.flights, stats.entries, stats.aborted) == (0, 0, 3)
