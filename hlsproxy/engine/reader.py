"""A body the engine is sending, read with its failures already in the EngineError tree.

Callers (a stream's read of its MPEG-TS body, the segment cache's of a segment) catch our
errors only: aiohttp's and the OS's stop here (docs/ARCHITECTURE.md, principle 5).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from ..errors import EngineError, EngineTimeout, EngineUnreachable


class EngineReader:
    """The body of one engine answer. `read_timeout` bounds each read; None leaves the bound to
    the caller (an MPEG-TS body's, which waits for data by its own rules). A connection that
    fails mid-body raises EngineUnreachable with `dropped` as its message."""

    __slots__ = ("_content", "_dropped", "_read_timeout")

    def __init__(
        self, content: aiohttp.StreamReader, *, read_timeout: float | None, dropped: str
    ) -> None:
        self._content = content
        self._read_timeout = read_timeout
        self._dropped = dropped

    def __repr__(self) -> str:
        return f"<EngineReader {self._content!r}>"

    async def readany(self) -> bytes:
        """What has arrived, at least one byte; b"" at the body's end."""
        try:
            if self._read_timeout is None:
                return await self._content.readany()
            async with asyncio.timeout(self._read_timeout):
                return await self._content.readany()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._failure(exc) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body in the pieces it was read in. (`readany` would join every piece waiting
        into one: a copy of a whole segment when it arrives at once.)"""
        content = self._content
        while True:
            # Handled inline, not by a context manager: this runs for every piece of every
            # segment.
            try:
                async with asyncio.timeout(self._read_timeout):
                    chunk, chunk_ended = await content.readchunk()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise self._failure(exc) from exc
            if chunk:
                yield chunk
            elif not chunk_ended:  # nothing, and not at an HTTP chunk's end: the body's end
                return

    def _failure(self, exc: BaseException) -> EngineError:
        # Only our own bound raises TimeoutError here: a caller's shows up as its own timeout.
        if isinstance(exc, TimeoutError):
            return EngineTimeout("the engine stopped sending mid-answer")
        return EngineUnreachable(self._dropped)
