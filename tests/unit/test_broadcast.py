"""The ring, with plain bytes: no sockets, no clock."""

from __future__ import annotations

import asyncio

import pytest

from hlsproxy.ts.broadcast import ClientLagged, Cursor, Ring
from hlsproxy.ts.packets import JoinPoint


def chunk(n: int, size: int = 1000) -> bytes:
    return bytes([n % 256]) * size


async def read_all_now(cursor: Cursor) -> bytes:
    out = b""
    while True:
        try:
            async with asyncio.timeout(0.01):
                chunks = await cursor.read()
        except TimeoutError:
            return out
        if chunks is None:
            return out
        out += b"".join(bytes(c) for c in chunks)


async def test_first_client_gets_the_stream_from_its_start() -> None:
    ring = Ring(10_000)
    cursor = ring.attach()
    ring.publish(chunk(1))
    ring.publish(chunk(2))
    assert await read_all_now(cursor) == chunk(1) + chunk(2)


async def test_reader_waits_and_wakes_on_publish() -> None:
    ring = Ring(10_000)
    cursor = ring.attach()
    reading = asyncio.ensure_future(cursor.read())
    await asyncio.sleep(0)
    assert not reading.done()
    ring.publish(chunk(7))
    assert b"".join(bytes(c) for c in (await reading) or []) == chunk(7)


async def test_close_drains_then_eof() -> None:
    ring = Ring(10_000)
    cursor = ring.attach()
    ring.publish(chunk(1))
    ring.close()
    assert await cursor.read() == [chunk(1)]
    assert await cursor.read() is None


async def test_joiner_starts_at_latest_join_point_with_its_prefix() -> None:
    ring = Ring(100_000)
    keep = ring.attach()  # a reader that holds everything in the ring
    ring.publish(chunk(1), [JoinPoint(0, b"PSI-1")])
    ring.publish(chunk(2))
    ring.publish(chunk(3), [JoinPoint(376, b"PSI-3")])
    ring.publish(chunk(4))
    joiner = ring.attach()
    assert await read_all_now(joiner) == b"PSI-3" + chunk(3)[376:] + chunk(4)
    assert await read_all_now(keep) == chunk(1) + chunk(2) + chunk(3) + chunk(4)


async def test_without_laggards_the_ring_keeps_only_since_the_last_join_point() -> None:
    ring = Ring(1_000_000)
    cursor = ring.attach()
    for n in range(10):
        ring.publish(chunk(n), [JoinPoint(0, b"P")] if n % 4 == 0 else [])
        await read_all_now(cursor)
    # chunks 8 and 9 hold the latest join point and what followed it
    assert ring.held_bytes == 2 * 1000


async def test_laggard_is_cut_and_counted_and_others_continue() -> None:
    cuts: list[str] = []
    ring = Ring(5_000)
    slow = ring.attach(lambda: cuts.append("slow"))
    fast = ring.attach(lambda: cuts.append("fast"))
    received = b""
    for n in range(20):
        ring.publish(chunk(n))
        received += await read_all_now(fast)
    assert received == b"".join(chunk(n) for n in range(20))
    assert cuts == ["slow"]
    assert ring.lagged == 1
    with pytest.raises(ClientLagged):
        await slow.read()
    assert ring.held_bytes <= 5_000


async def test_read_limit_batches_chunks() -> None:
    ring = Ring(100_000)
    cursor = ring.attach()
    for n in range(10):
        ring.publish(chunk(n))
    first = await cursor.read(limit=3000)
    assert first is not None and sum(len(c) for c in first) == 3000
    rest = await read_all_now(cursor)
    assert len(rest) == 7000


async def test_closed_cursor_does_not_hold_data() -> None:
    ring = Ring(1_000_000)
    cursor = ring.attach()
    cursor.close()
    for n in range(5):
        ring.publish(chunk(n), [JoinPoint(0, b"")])
    assert ring.held_bytes == 1000


class Connection:
    """A client's connection as a sink: it takes chunks until `room` runs out."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.got: list[bytes] = []

    def __call__(self, data: bytes) -> bool:
        if len(data) > self.room:
            return False
        self.room -= len(data)
        self.got.append(data)
        return True


async def test_publish_hands_chunks_to_caught_up_clients_without_waking_their_readers() -> None:
    ring = Ring(100_000)
    cursor = ring.attach()
    connection = Connection(room=10_000)
    cursor.direct(connection)
    reading = asyncio.ensure_future(cursor.read())
    await asyncio.sleep(0)
    ring.publish(chunk(1))
    ring.publish(chunk(2))
    assert connection.got == [chunk(1), chunk(2)]  # during publish, not after a wake-up
    await asyncio.sleep(0)
    assert not reading.done()
    assert cursor.sent == 2000 and cursor.behind == 0
    reading.cancel()


async def test_a_full_connection_wakes_its_reader_to_catch_up_then_takes_chunks_again() -> None:
    ring = Ring(100_000)
    cursor = ring.attach()
    connection = Connection(room=1000)
    cursor.direct(connection)
    ring.publish(chunk(1))
    ring.publish(chunk(2))  # no room: it stays in the ring for the reader
    ring.publish(chunk(3))  # not handed over either: chunk 2 must go first
    assert connection.got == [chunk(1)]
    assert await read_all_now(cursor) == chunk(2) + chunk(3)
    connection.room = 1000
    ring.publish(chunk(4))
    assert connection.got == [chunk(1), chunk(4)]


async def test_a_joiner_gets_its_join_prefix_before_any_direct_chunk() -> None:
    ring = Ring(100_000)
    ring.publish(chunk(1), [JoinPoint(0, b"PSI")])
    ring.attach()  # holds the join point's chunk
    ring.publish(chunk(2))
    joiner = ring.attach()
    connection = Connection(room=100_000)
    joiner.direct(connection)
    ring.publish(chunk(3))
    assert connection.got == []
    assert await read_all_now(joiner) == b"PSI" + chunk(1) + chunk(2) + chunk(3)
    ring.publish(chunk(4))
    assert connection.got == [chunk(4)]


async def test_a_client_whose_connection_stays_full_is_cut_and_others_keep_receiving() -> None:
    cuts: list[str] = []
    ring = Ring(5_000)
    stuck = ring.attach(lambda: cuts.append("stuck"))
    stuck.direct(Connection(room=0))
    live = ring.attach(lambda: cuts.append("live"))
    connection = Connection(room=1_000_000)
    live.direct(connection)
    for n in range(20):
        ring.publish(chunk(n))
    assert connection.got == [chunk(n) for n in range(20)]
    assert cuts == ["stuck"] and ring.lagged == 1
    with pytest.raises(ClientLagged):
        await stuck.read()


# --- clients behind because the engine sent faster than real time -------------------------


class StepClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def marked(data: memoryview) -> bytes:
    """Stands for the discontinuity marks: names the bytes they were made from."""
    return b"MARKS<" + bytes(data[:4]) + b">"


async def test_a_client_still_reading_is_moved_forward_to_the_newest_join_point() -> None:
    clock = StepClock()
    cuts: list[str] = []
    ring = Ring(5_000, marks=marked, clock=clock)
    behind = ring.attach(lambda: cuts.append("behind"))
    assert await read_all_now(behind) == b""
    ring.publish(chunk(0))
    clock.now = 1.0
    assert await read_all_now(behind) == chunk(0)  # it reads, at its own pace
    # the engine's burst: far more than the ring holds, before the client reads again
    for n in range(1, 20):
        ring.publish(chunk(n), [JoinPoint(500, b"PSI")] if n % 3 == 0 else [])
    assert cuts == [] and ring.lagged == 0
    assert ring.skipped >= 1 and behind.skips == ring.skipped
    # the newest join point when it last fell out (chunk 15 from offset 500): its PSI, the
    # marks made from there, then the stream from there on
    assert await read_all_now(behind) == (
        b"PSI"
        + b"MARKS<"
        + chunk(15)[500:504]
        + b">"
        + chunk(15)[500:]
        + b"".join(chunk(n) for n in range(16, 20))
    )
    assert ring.held_bytes <= 5_000 + 1000


async def test_a_client_that_took_nothing_for_the_stall_time_is_cut() -> None:
    clock = StepClock()
    cuts: list[str] = []
    ring = Ring(5_000, marks=marked, stall_after=10.0, clock=clock)
    stalled = ring.attach(lambda: cuts.append("stalled"))
    reading = ring.attach(lambda: cuts.append("reading"))
    for n in range(20):
        clock.now = n
        ring.publish(chunk(n), [JoinPoint(0, b"PSI")] if n % 3 == 0 else [])
        if n % 7 == 0:
            await read_all_now(reading)  # behind at times, but reading
    assert cuts == ["stalled"] and ring.lagged == 1
    with pytest.raises(ClientLagged):
        await stalled.read()
    assert not reading.cut and reading.skips >= 1
    assert ring.held_bytes <= 5_000 + 1000


async def test_a_client_taking_chunks_through_its_connection_is_reading() -> None:
    clock = StepClock()
    ring = Ring(5_000, marks=marked, stall_after=10.0, clock=clock)
    connection = Connection(room=4_000)
    client = ring.attach()
    client.direct(connection)
    for n in range(3):
        ring.publish(chunk(n))
    clock.now = 9.5
    ring.publish(chunk(3))  # the last chunk its connection took
    assert connection.room == 0
    clock.now = 19.0
    for n in range(4, 10):
        ring.publish(chunk(n), [JoinPoint(0, b"PSI")])
    assert not client.cut and client.skips >= 1


@pytest.mark.parametrize(
    ("seconds", "limit"),
    [(20.0, 2_000_000), (1000.0, 5_000_000)],
    ids=["twenty-seconds-of-media", "capped-by-capacity"],
)
async def test_the_ring_holds_seconds_of_the_channels_own_media(seconds: float, limit: int) -> None:
    clock = StepClock()
    ring = Ring(5_000_000, seconds=seconds, marks=marked, clock=clock)
    assert ring.limit == 5_000_000  # until the channel's bitrate is known
    behind = ring.attach()
    # 100 kB per second of media, a keyframe a second; sent in a burst, all at once
    for n in range(100):
        ring.publish(chunk(n, 100_000), [JoinPoint(0, b"PSI", pts=n * 90_000)])
    assert ring.limit == limit
    assert ring.held_bytes <= limit
    assert behind.skips >= 1 and not behind.cut
    data = await read_all_now(behind)
    assert len(data) - len(b"PSI" + b"MARKS<....>") <= limit
