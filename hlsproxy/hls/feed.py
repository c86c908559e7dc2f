"""An HLS session's segments, concatenated in order: how MPEG-TS clients share an HLS session.

The engine allows one session per content, so when a content plays as HLS, its MPEG-TS
clients are fed from the same session's segments (through the shared segment cache)
rather than from a second engine session that would end the first. A segment that is gone
is skipped and a stream changing engines is waited for: both are blips, not the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Protocol

from ..errors import EngineStalled, NotFound, Unavailable
from .flight import Cached, Flight

log = logging.getLogger(__name__)


class SegmentSource(Protocol):
    @property
    def closing(self) -> bool: ...

    async def segments(self) -> tuple[float, int, list[tuple[int, str]]]:
        """The target duration, the session generation (it changes with the engine session)
        and the live segments as (media sequence, token)."""
        ...

    async def resource(self, token: str) -> Cached | Flight: ...


async def concatenated(
    source: SegmentSource, *, empty_timeout: float, start_back: int = 1
) -> AsyncGenerator[bytes | memoryview | None, None]:
    """Segment bytes in media-sequence order, forever, starting `start_back` segments from
    the live edge, until the source closes. None marks where another engine session's
    segments begin. Raises EngineStalled when no new segment appears for `empty_timeout`."""
    loop = asyncio.get_running_loop()
    last: int | None = None
    generation: int | None = None
    progress = loop.time()
    while not source.closing:
        try:
            target, now_generation, listed = await source.segments()
        except Unavailable:
            target, now_generation, listed = 1.0, generation or 0, []
        if generation is not None and now_generation != generation:
            yield None
        generation = now_generation
        fresh = [(n, token) for n, token in listed if last is None or n > last]
        if last is None:
            fresh = fresh[-start_back:]
        for sequence, token in fresh:
            try:
                found = await source.resource(token)
            except (NotFound, Unavailable) as exc:
                log.info("skipping a segment for MPEG-TS clients: %s", exc.message)
                last = sequence
                continue
            if isinstance(found, Cached):
                yield found.body.view
            else:
                async for chunk in found.chunks():
                    yield chunk
            last = sequence
            progress = loop.time()
        if not fresh:
            if loop.time() - progress > empty_timeout:
                raise EngineStalled(f"no new segment from the engine for {empty_timeout:g}s")
            # New segments appear about once per target duration.
            await asyncio.sleep(min(target / 2, 1.0))
