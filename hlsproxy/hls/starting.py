"""What an HLS stream's playlist shows while the engine prebuffers: the starting slate.

One owner for both HLS streams, the engine's (`stream.HlsStream`) and the one the proxy
cuts from MPEG-TS (`cut_stream.CutHlsStream`), so that players see the same either way:
- when the slate goes up: once the engine has accepted the session and then held its first
  media back `SLATE_AFTER` seconds (a warm channel's media comes sooner, and gets none);
- what each playlist request gets meanwhile (`slate.playlist`, a live window that moves on
  one slate segment every segment duration), and which slate segments those playlists
  named (only those can be fetched);
- what the channel's first playlist continues (`last`): it follows the last slate segment
  served, across one EXT-X-DISCONTINUITY, media sequence numbers only growing
  (`splice.Splice.between`).

Each stream says what "media came" and "the channel is live" mean for it: for the engine's
HLS both are its first playlist; for cut HLS the first is the MPEG-TS stream's first bytes
and the second its first cut segment, so the slate stays up until a segment can be listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from . import slate
from .tokens import token_for

log = logging.getLogger(__name__)

SLATE_AFTER = 1.5
"""Seconds a warm channel's first media takes at most: only a longer wait, while the
engine has accepted the session, puts the slate before it."""
_KEPT = 4 * slate.WINDOW
"""Slate segments still fetchable behind the newest listed: a player fetches what its last
playlist listed, a few segment durations after it got it."""


class StartingSlate:
    """The slate of one stream; `media` None: players wait for the channel instead."""

    def __init__(
        self,
        media: slate.SlateMedia | None,
        locate: Callable[[str], str],
        *,
        label: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._media = media
        self._locate = locate
        self._label = label
        self._clock = clock
        self._since: float | None = None  # when it was first served
        self._last: str | None = None  # the last slate playlist served
        self._named: dict[str, int] = {}  # token -> slate segment, for those still listed

    def __repr__(self) -> str:
        shown = "off" if self._since is None else f"up since {self._since:.1f}"
        return f"<StartingSlate {self._label} {shown} named={len(self._named)}>"

    async def playlist(
        self,
        *,
        accepted: Callable[[], Awaitable[bool]],
        media: Callable[[], Awaitable[None]],
        live: Callable[[], bool],
    ) -> str | None:
        """The slate playlist for a player asking now, or None when the channel's own is
        (or is about to be) what it gets.

        `accepted()` waits until the media came (True) or the engine accepted the session
        and its media is awaited (False); `media()` waits for the media; `live()` says
        whether the channel's own playlist can be served. Raises their failures."""
        if self._media is None:
            return None
        if self._since is None:
            if await accepted():
                return None
            came = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SLATE_AFTER):
                    await media()
                    came = True
            if came or live():
                return None
            if self._since is None:
                self._since = self._clock()
                log.info("%s: players get the slate while the engine prebuffers", self._label)
        elif live():
            return None
        return self._render(self._media, self._clock() - self._since)

    def _render(self, media: slate.SlateMedia, elapsed: float) -> str:
        seconds = media.duration(0)
        oldest = math.floor(elapsed / seconds) - _KEPT
        for token in [t for t, n in self._named.items() if n < oldest]:
            del self._named[token]
        self._last = slate.playlist(elapsed, seconds, self._name)
        return self._last

    def _name(self, n: int) -> str:
        token = token_for("segment", slate.uri(n).url, None)
        self._named[token] = n
        return self._locate(token)

    def fetch(self, token: str) -> Callable[[], Awaitable[slate.Source]] | None:
        """How the segment cache gets the slate segment `token` names, if a slate playlist
        listed it lately; None for any other token."""
        n = self._named.get(token)
        media = self._media
        if n is None or media is None:
            return None

        async def held() -> slate.Source:
            return slate.Source(media.segment(n))

        return held

    def lists(self, token: str) -> bool:
        """Whether `token` names a slate segment (one still fetchable)."""
        return token in self._named

    @property
    def last(self) -> str | None:
        """The last slate playlist served, if any: what the channel's first playlist
        continues (`splice.Splice.between`), so that no player sees numbers go back."""
        return self._last
