"""The simulated engine's HLS: live playlists of a sliding window, and their segments.

A session's window holds `hls_initial_window` segments when it starts, grows by one each
segment duration up to `hls_window`, then slides. Segments a little older than the window
are still served; newer ones are not. See `flavours` for what else than MPEG-TS is served.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from .flavours import (
    FlavourMedia,
    HlsFlavour,
    media_playlist,
    multivariant_playlist,
    offers,
    peak_bitrate,
)
from .media import MEDIA_DIR
from .server import drop, flushed
from .sessions import EngineState, Live

_SEGMENT_SLACK = 3
_PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_SEGMENT_TYPES = {"ts": "video/mp2t", "m4s": "video/mp4"}


class HlsServing(EngineState):
    """The playlists, segments, init sections and keys of HLS sessions."""

    async def _playlist(self, request: web.Request) -> web.StreamResponse:
        self._count("playback")
        self._count("playlist")
        live = await self._held_playlist_session(request)
        if live.session.flavour == "multivariant":
            return _playlist_response(self._multivariant_playlist(request.host, live))
        return _playlist_response(self._media_playlist(request.host, live))

    async def _variant_playlist(self, request: web.Request) -> web.StreamResponse:
        self._count("playlist")
        live = await self._held_playlist_session(request)
        if live.session.flavour != "multivariant":
            raise web.HTTPNotFound()
        return _playlist_response(
            self._media_playlist(request.host, live, request.match_info["variant"])
        )

    async def _held_playlist_session(self, request: web.Request) -> Live:
        """`_playlist_session`, once the channel has prebuffered: a real engine holds a
        session's playlists back until it has segments. A held request keeps its session
        from expiring, as an open TS read does."""
        live = self._playlist_session(request)
        transport = request.transport
        if transport is not None and self.prebuffering(live) is not None:
            live.connections.add(transport)
            try:
                await self._prebuffered(request, live)
            finally:
                live.connections.discard(transport)
            live = self._playlist_session(request)
        if live.cold:
            # What it prebuffered is what it offers: a window as fresh as a warm start's.
            live.cold = False
            newest = self._newest(live)
            live.first_segment = max(live.first_segment, newest - self.hls_initial_window + 1)
        return live

    def _playlist_session(self, request: web.Request) -> Live:
        """The session a playlist URL names, or the error the engine answers for it."""
        live = self._by_token.get(request.match_info["token"])
        if (
            live is None
            or live.session.infohash != request.match_info["infohash"]
            or live.session.fmt != "hls"
            or live.session.expired
        ):
            raise web.HTTPNotFound()
        if live.session.superseded:
            raise web.HTTPForbidden()
        if live.session.stopped:
            raise web.HTTPInternalServerError()
        live.last_seen = self._now()
        return live

    def _media_playlist(self, host: str, live: Live, variant: str = "high") -> str:
        s = live.session
        first, newest = self._window(live)
        if _main_media(s.flavour, variant):
            # An engine holds a segment before it lists it: the segment's first request must
            # not wait while it is made (padding to the bitrate takes milliseconds).
            self._segment_bytes(newest)
        return media_playlist(
            host,
            s.infohash,
            s.flavour,
            first,
            [self.media.duration(n) for n in range(first, newest + 1)],
            variant=variant,
            extra=self.faults.playlist_lines,
            aes=self._flavour_media().aes if s.flavour == "aes-128" else None,
        )

    def _multivariant_playlist(self, host: str, live: Live) -> str:
        rates = {
            "high": peak_bitrate(self.media, self.bitrate),
            "low": peak_bitrate(self._flavour_media().low, None),
        }
        return multivariant_playlist(host, live.session.infohash, live.session.token, rates)

    async def _segment(self, request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        ext = request.match_info["ext"]
        variant = request.match_info.get("variant", "high")
        live = self._hls_session(request.match_info["infohash"])
        if live is not None and offers(live.session.flavour, ext, variant):
            first, newest = self._window(live)
            if max(0, first - _SEGMENT_SLACK) <= n <= newest:
                live.last_seen = self._now()
                data = self._hls_segment(live.session.flavour, variant, n)
                live.served += len(data)
                self._count("segment")
                faults = self.faults
                if (
                    faults.segment_stall_after is None
                    and faults.segment_cut_after is None
                    and not faults.segment_unsized
                ):
                    return web.Response(body=data, content_type=_SEGMENT_TYPES[ext])
                return await self._faulty_segment(request, live, data, _SEGMENT_TYPES[ext])
        self._count("segment_missing")
        raise web.HTTPNotFound()

    async def _faulty_segment(
        self, request: web.Request, live: Live, data: bytes, content_type: str
    ) -> web.StreamResponse:
        """A segment sent as the faults say: with no length, with a pause, or broken off
        after the headers promised all of it."""
        faults = self.faults
        stall, cut = faults.segment_stall_after, faults.segment_cut_after
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        if not faults.segment_unsized:
            resp.content_length = len(data)
        with contextlib.suppress(ConnectionError):
            await resp.prepare(request)
            if cut is not None and (stall is None or cut <= stall):
                await resp.write(data[:cut])
                await flushed(request)
            else:
                resumed = True
                if stall is not None:
                    await resp.write(data[:stall])
                    resumed = await self._pause(request, live, faults.segment_stall_seconds)
                if resumed:
                    await resp.write(data[stall:])
                    await resp.write_eof()
                    return resp
        self._count("segment_broken")
        return drop(request, resp)

    async def _init_section(self, request: web.Request) -> web.StreamResponse:
        live = self._hls_session(request.match_info["infohash"])
        if live is None or live.session.flavour != "fmp4":
            self._count("segment_missing")
            raise web.HTTPNotFound()
        return self._whole(live, "init", self._flavour_media().fmp4.init, "video/mp4")

    async def _key(self, request: web.Request) -> web.StreamResponse:
        live = self._hls_session(request.match_info["infohash"])
        if live is None or live.session.flavour != "aes-128":
            self._count("segment_missing")
            raise web.HTTPNotFound()
        key = self._flavour_media().aes.key
        return self._whole(live, "key", key, "application/octet-stream")

    def _whole(self, live: Live, counter: str, data: bytes, content_type: str) -> web.Response:
        live.last_seen = self._now()
        live.served += len(data)
        self._count(counter)
        return web.Response(body=data, content_type=content_type)

    def _hls_segment(self, flavour: HlsFlavour, variant: str, n: int) -> bytes:
        if _main_media(flavour, variant):
            return self._segment_bytes(n)
        media = self._flavour_media()
        if flavour == "fmp4":
            return media.fmp4.segment(n)
        if flavour == "aes-128":
            return media.aes.segment(n)
        return media.low.segment(n)

    def _hls_session(self, infohash: str) -> Live | None:
        """The playing HLS session of a content; a start supersedes any other, so one at most."""
        return next(
            (
                live
                for live in self._playing.values()
                if live.session.fmt == "hls" and live.session.infohash == infohash
            ),
            None,
        )

    def _flavour_media(self) -> FlavourMedia:
        if self._flavours is None:
            self._flavours = FlavourMedia.load(MEDIA_DIR, self.media)
        return self._flavours

    def _window(self, live: Live) -> tuple[int, int]:
        newest = self._newest(live)
        return max(live.first_segment, newest - self.hls_window + 1), newest


def _main_media(flavour: HlsFlavour, variant: str) -> bool:
    """Whether a playlist's segments are the main media (padded to the bitrate, if set)."""
    return flavour == "mpegts" or (flavour == "multivariant" and variant == "high")


def _playlist_response(text: str) -> web.Response:
    return web.Response(text=text, content_type=_PLAYLIST_TYPE)
