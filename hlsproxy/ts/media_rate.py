"""A channel's own bitrate: bytes per second of its media, not per second of the clock.

Pure. An engine sends faster than real time at times (its cache, once prebuffered), so the
bytes that come per wall-clock second say little about the channel. The presentation times
of its keyframes do: the bytes between two keyframes over the media time between them.
A time stamp going back or leaping ahead (a new upstream, a time stamp wrapping after
26.5 hours) starts the measure over.
"""

from __future__ import annotations

from collections import deque

CLOCK_HZ = 90_000
WINDOW = 30.0
"""Seconds of media the rate is averaged over."""
MIN_SPAN = 2.0
"""Seconds of media before a rate is given: one GOP's bytes are too lumpy to go by."""
MAX_STEP = 60.0
"""A gap this long between two keyframes is a jump in time, not a GOP."""
_MAX_SAMPLES = 256


class MediaRate:
    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: deque[tuple[int, int]] = deque(maxlen=_MAX_SAMPLES)

    def __repr__(self) -> str:
        rate = self.bytes_per_second()
        return f"<MediaRate {'unknown' if rate is None else f'{rate * 8 / 1e6:.2f} Mbit/s'}>"

    def add(self, position: int, pts: int) -> None:
        """A keyframe whose PES has time stamp `pts` starts `position` bytes into the stream."""
        if self._samples:
            last_position, last_pts = self._samples[-1]
            step = pts - last_pts
            if position <= last_position or not 0 < step <= MAX_STEP * CLOCK_HZ:
                self._samples.clear()
        self._samples.append((position, pts))
        while (
            len(self._samples) > 2
            and self._samples[-1][1] - self._samples[1][1] >= WINDOW * CLOCK_HZ
        ):
            self._samples.popleft()

    def bytes_per_second(self) -> float | None:
        """Bytes per second of media, once `MIN_SPAN` of it has been seen; else None."""
        if len(self._samples) < 2:
            return None
        (first_position, first_pts), (last_position, last_pts) = self._samples[0], self._samples[-1]
        span = (last_pts - first_pts) / CLOCK_HZ
        if span < MIN_SPAN:
            return None
        return (last_position - first_position) / span
