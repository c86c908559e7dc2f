"""The simulated engine's MPEG-TS playback: one reader per stream, paced by the clock.

A read starts `prebuffer_segments` behind the live edge, sends those at once, then each
segment in ~40 ms slices over its playing time. With the `burst_seconds` fault, the segments
covering that much media also go at once, as a real engine sends its cache after
prebuffering; the read then runs that far ahead of the channel's clock, which no reader of
an MPEG-TS stream can tell. A second reader while one is open gets
garbage, as on a real engine; a supersession cuts the read, any other end closes it cleanly.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time

from aiohttp import web

from ..ts.packets import PACKET_SIZE, SYNC_BYTE
from .server import drop, flushed, gone
from .sessions import EngineState, Live

_SLICE_SECONDS = 0.04
_GARBAGE_BYTES = 64 * 1024


class TsReads(EngineState):
    """The playback_url of a TS session and the content it redirects to."""

    async def _ts_playback(self, request: web.Request) -> web.StreamResponse:
        self._count("playback")
        live = self._session(request)
        if live is None or live.session.fmt != "ts":
            raise web.HTTPNotFound()
        live.last_seen = self._now()
        raise web.HTTPFound(
            f"http://{request.host}/content/{live.session.infohash}/{live.content_token}"
        )

    async def _content(self, request: web.Request) -> web.StreamResponse:
        live = self._by_content_token.get(request.match_info["token"])
        if (
            live is None
            or live.session.infohash != request.match_info["infohash"]
            or not live.session.live
        ):
            raise web.HTTPNotFound()
        live.last_seen = self._now()
        live.session.reads += 1
        self._count("content_read")
        transport = request.transport
        if transport is None:
            raise web.HTTPNotFound()
        live.connections.add(transport)
        live.session.open_reads += 1
        try:
            if live.reader is not None:
                self._count("corrupt_read")
                return await self._garbage(request)
            live.reader = request
            try:
                return await self._stream(request, live)
            finally:
                live.reader = None
        finally:
            live.connections.discard(transport)
            live.session.open_reads -= 1
            live.last_seen = self._now()
            self._wake()

    async def _stream(self, request: web.Request, live: Live) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "video/mp2t"})
        header_delay = self.faults.header_delay
        held = header_delay > 0 and not await self._pause(request, live, header_delay)
        if held or not await self._prebuffered(request, live):
            if live.end_reason == "supersede":
                return drop(request)
            return web.Response(status=404, text="Not Found")
        # Taken once per read: a fault set mid-read applies to the next one.
        stall, cut = self.faults.stall_after, self.faults.cut_after
        burst_seconds = self.faults.burst_seconds
        limit = min((x for x in (stall, cut) if x is not None), default=None)
        cutting = cut is not None and cut == limit
        try:
            await resp.prepare(request)
            sent = 0
            n = max(0, self._newest(live) - self.prebuffer_segments + 1)
            burst = self.prebuffer_segments
            due = time.monotonic()
            while True:
                data = self._segment_bytes(n)
                if burst > 0 or burst_seconds > 0:
                    chunks = [data]
                    spacing = 0.0
                    burst -= 1
                    burst_seconds -= self.media.duration(n)
                else:
                    chunks = _slices(data, self.media.duration(n) / self.time_scale)
                    spacing = self.media.duration(n) / self.time_scale / len(chunks)
                for chunk in chunks:
                    wait = due - time.monotonic()
                    if wait > 0 and not await self._pause(request, live, wait):
                        return await _finish(request, resp, live)
                    due += spacing
                    if limit is not None and sent + len(chunk) >= limit:
                        await resp.write(chunk[: limit - sent])
                        live.served += limit - sent
                        if cutting:
                            await flushed(request)
                            return drop(request, resp)
                        await self._pause(request, live, math.inf)
                        return await _finish(request, resp, live)
                    await resp.write(chunk)
                    sent += len(chunk)
                    live.served += len(chunk)
                if spacing == 0.0:
                    due = time.monotonic()
                n += 1
        except ConnectionError:
            return resp

    async def _garbage(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "video/mp2t"})
        noise = bytearray(os.urandom(_GARBAGE_BYTES))
        # Never a sync byte where a packet would start: this must not pass for TS.
        for at in range(0, len(noise), PACKET_SIZE):
            if noise[at] == SYNC_BYTE:
                noise[at] ^= 0xFF
        with contextlib.suppress(ConnectionError):
            await resp.prepare(request)
            await resp.write(bytes(noise))
            await resp.write_eof()
        return resp


def _slices(data: bytes, seconds: float) -> list[bytes]:
    """Cut a segment into whole-packet pieces, one per ~40 ms of its playing time."""
    packets = len(data) // PACKET_SIZE
    pieces = max(1, min(packets, round(seconds / _SLICE_SECONDS)))
    bounds = [i * packets // pieces * PACKET_SIZE for i in range(pieces)] + [len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


async def _finish(
    request: web.BaseRequest, resp: web.StreamResponse, live: Live
) -> web.StreamResponse:
    """End a TS body the way the session ended: cut on supersession, a clean end otherwise."""
    if live.end_reason == "supersede" or gone(request):
        return drop(request, resp)
    with contextlib.suppress(ConnectionError):
        await resp.write_eof()
    return resp
