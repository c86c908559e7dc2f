"""An HLS session's segments, concatenated in order: how MPEG-TS clients share an HLS session.

The engine allows one session per content, so when a content plays as HLS, its MPEG-TS
clients are fed from the same session's segments (through the shared segment cache)
rather than from a second engine session that would end the first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Protocol

from .cache import Cached, Flight


class EmptyFeed(Exception):
    """No new segment for longer than the feed may wait."""


class SegmentSource(Protocol):
    async def segments(self) -> tuple[float, list[tuple[int, str]]]: ...

    async def resource(self, token: str) -> Cached | Flight: ...


async def concatenated(
    source: SegmentSource, *, empty_timeout: float, start_back: int = 1
) -> AsyncGenerator[bytes | memoryview, None]:
    """Segment bytes in media-sequence order, forever, starting `start_back` segments from
    the live edge. Raises EmptyFeed when no new segment appears for `empty_timeout`."""
    loop = asyncio.get_running_loop()
    last: int | None = None
    progress = loop.time()
    while True:
        target, listed = await source.segments()
        fresh = [(n, token) for n, token in listed if last is None or n > last]
        if last is None:
            fresh = fresh[-start_back:]
        for sequence, token in fresh:
            found = await source.resource(token)
            if isinstance(found, Cached):
                yield found.body
            else:
                async for chunk in found.chunks():
                    yield chunk
            last = sequence
            progress = loop.time()
        if not fresh:
            if loop.time() - progress > empty_timeout:
                raise EmptyFeed
            # New segments appear about once per target duration.
            await asyncio.sleep(min(target / 2, 1.0))
