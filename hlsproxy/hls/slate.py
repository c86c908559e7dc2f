"""The "starting" slate: what an HLS player plays while the engine prebuffers a cold channel.

A real engine holds a session's first playlist until it has prebuffered: 10 to 30 s on a
cold channel, sometimes more (acexy issue 48). Players give up on a playlist request long
before that (hls.js, mpv and ffmpeg after 10 s). So the proxy answers at once with a valid
live playlist of a short slate segment that it ships (`slate.ts`, made by
fixtures/make_slate.sh), one more every `SECONDS`; once the channel's first playlist comes,
it follows the slate's across one EXT-X-DISCONTINUITY (`splice.Splice.between`), media
sequence numbers only growing.

The slate is one segment, repeated: each repetition starts its timestamps over, so each
carries EXT-X-DISCONTINUITY, as inserted segments (ads) do. Pure, but for reading the file.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator
from pathlib import Path

from .uri import Uri

FILE = Path(__file__).parent / "slate.ts"
SECONDS = 2.0
"""The slate segment's duration, as fixtures/make_slate.sh makes it."""
URL = "http://slate.invalid/starting.ts"
"""The name the slate goes by among the URIs of a stream's playlists: never fetched
(`.invalid` cannot resolve), it marks the one resource the proxy serves from itself."""
URI = Uri("segment", URL)
WINDOW = 3
"""Segments in each slate playlist: players start a few segments behind the live edge."""
CONTENT_TYPE = "video/mp2t"


@functools.cache
def segment() -> bytes:
    return FILE.read_bytes()


def playlist(elapsed: float, uri: str) -> str:
    """The slate playlist `elapsed` seconds after it was first served: a live window of
    `WINDOW` repetitions that moves on one every `SECONDS`. Segment n has media sequence
    number n and discontinuity sequence number n, in every playlist that lists it."""
    first = max(0, math.floor(elapsed / SECONDS))
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{math.ceil(SECONDS)}",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{first}",
    ]
    for n in range(WINDOW):
        if n:
            lines.append("#EXT-X-DISCONTINUITY")
        lines += [f"#EXTINF:{SECONDS:.6f},", uri]
    return "\n".join(lines) + "\n"


class Source:
    """The slate as the segment cache reads a resource (`cache.Source`)."""

    content_type = CONTENT_TYPE

    def __repr__(self) -> str:
        return f"<slate.Source {self.length} B>"

    @property
    def length(self) -> int:
        return len(segment())

    async def chunks(self) -> AsyncIterator[bytes]:
        yield segment()

    async def close(self) -> None:
        pass
