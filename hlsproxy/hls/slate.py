"""The "starting" slate: what an HLS player plays while the engine prebuffers a cold channel.

A real engine holds a session's first playlist until it has prebuffered: 10 to 30 s on a
cold channel, sometimes more (acexy issue 48). Players give up on a playlist request long
before that (hls.js, mpv and ffmpeg after 10 s). So the proxy answers at once with a valid
live playlist of a short slate segment that it ships (`slate.ts`, made by
fixtures/make_slate.sh), looped as a live channel that gains one segment every segment
duration; once the channel's first playlist comes, it follows the slate's across one
EXT-X-DISCONTINUITY (`splice.Splice.between`), media sequence numbers only growing. When
the slate goes up, and for which stream, is `starting.StartingSlate`'s to decide.

The looping itself (timestamps and continuity counters carried on from one repetition to
the next) is MPEG-TS work, done outside this package and handed in as `SlateMedia`.
Pure, but for `Source`, which serves bytes already in memory.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from .uri import Uri

FILE = Path(__file__).parent / "slate.ts"
_HOST = "http://slate.invalid/"
"""Where slate segments are said to be: never fetched (`.invalid` cannot resolve), only
named by tokens as any segment is (`tokens.token_for`)."""
WINDOW = 3
"""Segments in each slate playlist: players start a few segments behind the live edge."""
CONTENT_TYPE = "video/mp2t"


class SlateMedia(Protocol):
    """The slate looped: segment n follows n - 1 without a break."""

    def segment(self, n: int) -> bytes: ...

    def duration(self, n: int) -> float: ...


def uri(n: int) -> Uri:
    return Uri("segment", f"{_HOST}{n}.ts")


def playlist(elapsed: float, seconds: float, locate: Callable[[int], str]) -> str:
    """The slate playlist `elapsed` seconds after it was first served, its segments each
    `seconds` long: a live window of `WINDOW` segments that moves on one every `seconds`.
    `locate(n)` is where players fetch segment n."""
    first = max(0, math.floor(elapsed / seconds))
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{math.ceil(seconds)}",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
    ]
    for n in range(first, first + WINDOW):
        lines += [f"#EXTINF:{seconds:.6f},", locate(n)]
    return "\n".join(lines) + "\n"


class Source:
    """A slate segment as the segment cache reads a resource (`cache.Source`)."""

    content_type = CONTENT_TYPE

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __repr__(self) -> str:
        return f"<slate.Source {self.length} B>"

    @property
    def length(self) -> int:
        return len(self._data)

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._data

    async def close(self) -> None:
        pass
