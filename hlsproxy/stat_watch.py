"""What the engine says of one stream's session, read from its stat: while the session's first
media is awaited, where it moves the wait's deadline, and while someone looks.

Here "status" is only ever what a stat answer says ("prebuf", "dl", ...); the pages that show
it are "the status page", "/ace/status".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .content import ContentKey
from .engine.client import EngineClient, EngineSession, Format
from .errors import EngineError, EnginePrebuffering, EngineTimeout
from .state import EngineWord, MediaWait, WaitBounds

log = logging.getLogger(__name__)

T = TypeVar("T")

# A session whose media is awaited has its stat read this often, and never more often.
STAT_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Prebuffer:
    """A wait for an engine session's first media, as the status page, /ace/status and /metrics
    show it."""

    waited: float
    """Seconds so far."""
    engine_status: str | None
    """What the engine's stat last said ("prebuf", ...); None before it said anything."""
    peers: int
    speed_down: int
    """KB/s, as the engine counts."""
    progress: int
    """Percent, when the engine reports it."""

    def as_json(self) -> dict[str, object]:
        return {
            "waited": round(self.waited, 1),
            "engine_status": self.engine_status,
            "peers": self.peers,
            "speed_down_kbps": self.speed_down,
            "progress": self.progress,
        }


def word_of(answer: dict[str, Any]) -> EngineWord:
    """What a stat answer says, as far as waiting for media goes."""
    return EngineWord(
        status=str(answer.get("status", "")),
        peers=_count(answer.get("peers")),
        speed_down=_count(answer.get("speed_down")),
        progress=_count(answer.get("progress", answer.get("total_progress"))),
    )


def _count(value: object) -> int:
    if isinstance(value, int | float | str):
        try:
            return max(0, int(value))
        except ValueError:
            return 0
    return 0


class StatWatch:
    """One stream's reads of its sessions' stat. `mode` and `key` name the stream in logs."""

    def __init__(
        self,
        client: EngineClient,
        bounds: WaitBounds,
        *,
        mode: Format,
        key: ContentKey,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._bounds = bounds
        self._mode = mode
        self._key = key
        self._clock = clock
        self.waiting: MediaWait | None = None
        """While an engine session's first media is awaited: since when, what the engine says."""
        self.awaiting = asyncio.Event()
        """Set once the stream first waits for an engine session's media."""
        # The engine's last word on the session, read while someone looks (`engine_word`).
        self._heard: tuple[EngineSession, EngineWord] | None = None
        self._looked_at = float("-inf")
        self._look: asyncio.Task[None] | None = None

    def prebuffer(self) -> Prebuffer | None:
        """While a session's first media is awaited: how long, and what the engine says."""
        wait = self.waiting
        if wait is None:
            return None
        word = wait.word
        return Prebuffer(
            waited=max(0.0, self._clock() - wait.since),
            engine_status=word.status if word else None,
            peers=word.peers if word else 0,
            speed_down=word.speed_down if word else 0,
            progress=word.progress if word else 0,
        )

    def engine_word(self, session: EngineSession | None) -> EngineWord | None:
        """What the engine last said of `session`, the stream's own (None when it holds
        none); None when the engine has not said yet.

        The stat is read only while someone looks (the status page, /metrics, /ace/status):
        a look asks again, in the background, once the last ask is `STAT_INTERVAL` old, so
        the engine hears at most one stat a second per stream, and the answer shows at the
        next look. While the session's first media is awaited, the wait's own watch reads the
        stat (`_watch_media`) and its word is the one given."""
        wait = self.waiting
        if wait is not None:
            return wait.word
        if session is None:
            return None
        now = self._clock()
        if self._look is None and now - self._looked_at >= STAT_INTERVAL:
            self._looked_at = now
            self._look = asyncio.create_task(self._read_stat(session), name=f"stat-{self._key}")
        heard = self._heard
        return heard[1] if heard is not None and heard[0] is session else None

    async def _read_stat(self, session: EngineSession) -> None:
        try:
            # The client bounds the read; a failed one leaves the last word standing.
            with contextlib.suppress(EngineError):
                self._heard = (session, word_of(await self._client.stat(session)))
        finally:
            self._look = None

    async def stop_looking(self) -> None:
        look = self._look
        if look is not None:
            look.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await look

    async def await_media(self, session: EngineSession, opening: Awaitable[T]) -> T:
        """The first media of `session` (what `opening` waits for), waited for while the
        engine says it is prebuffering (see `state.MediaWait`). Raises EngineTimeout after
        the no-response timeout of silence, EnginePrebuffering past the prebuffer bound.

        `opening` is awaited in the caller's task, under a timeout that the engine's stat,
        read beside it, moves: the caller reads the media the moment it comes (aiohttp drops
        what a response had buffered once its connection fails, so a late first read may
        lose it).
        """
        loop = asyncio.get_running_loop()
        # On the loop's clock, which the timeout keeps; `self.waiting` is what the pages show.
        wait = [MediaWait(loop.time())]
        self.waiting = MediaWait(self._clock())
        self.awaiting.set()
        deadline, _ = wait[0].deadline(self._bounds)
        try:
            async with asyncio.timeout_at(deadline) as timeout:
                watch = asyncio.create_task(
                    self._watch_media(session, wait, timeout), name=f"wait-{self._key}"
                )
                try:
                    result = await opening
                finally:
                    # Cancelled, not awaited: the caller must read the media at once (see
                    # above), and a stat read still under way has nobody to tell.
                    watch.cancel()
        except TimeoutError:
            if not timeout.expired():
                raise
            raise self._wait_failure(wait[0].deadline(self._bounds)[1]) from None
        finally:
            shown, self.waiting = self.waiting, None
        if shown is not None and shown.prebuffering:
            log.info(
                "%s stream %s: waited %.0f s for the engine to prebuffer, %d peers",
                self._mode,
                self._key,
                self._clock() - shown.since,
                shown.word.peers if shown.word else 0,
            )
        return result

    async def _watch_media(
        self, session: EngineSession, wait: list[MediaWait], timeout: asyncio.Timeout
    ) -> None:
        """Read the engine's stat once a second while the media is awaited, and move the
        wait's deadline by what it says. `wait[0]` holds the wait as last heard."""
        loop = asyncio.get_running_loop()
        while not timeout.expired():
            asked = loop.time()
            word: EngineWord | None = None
            with contextlib.suppress(EngineError):
                word = word_of(await self._client.stat(session))
            if word is not None and not timeout.expired():
                if word.prebuffering and not wait[0].prebuffering:
                    log.info(
                        "%s stream %s: the engine is prebuffering (%d peers); waiting",
                        self._mode,
                        self._key,
                        word.peers,
                    )
                wait[0] = wait[0].heard(word, loop.time())
                timeout.reschedule(wait[0].deadline(self._bounds)[0])
                shown = self.waiting
                if shown is not None:
                    self.waiting = shown.heard(word, self._clock())
            # At most one stat a second: the engine is busy enough.
            await asyncio.sleep(max(0.0, asked + STAT_INTERVAL - loop.time()))

    def _wait_failure(self, prebuffer_bound: bool) -> EngineError:
        if prebuffer_bound:
            return EnginePrebuffering(
                "the engine was still prebuffering after "
                f"{self._bounds.prebuffer:g}s (ACEXY_PREBUFFER_TIMEOUT)"
            )
        return EngineTimeout(
            f"the engine did not answer within {self._bounds.silence:g}s while opening the stream"
        )
