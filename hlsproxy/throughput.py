"""Bit rates from byte counters: a history of the proxy's throughput, and one stream's bit rate.

Pure: the caller passes the time with every reading (a monotonic clock, in seconds), so that
tests drive time by hand and nothing here sleeps or reads a clock.

Counters are totals that only grow while their source lives. A total that goes down means the
source changed under us (a stream ended and left a sum over streams, or a session restarted its
count), so the reading becomes the new baseline and that step adds nothing: counting the whole
new total as fresh bytes would draw a burst of traffic that never flowed, and a plain
difference would be negative.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    """Clock time, in seconds, of the end of the interval."""
    bits_in: float
    """Bits per second received from engines over the interval."""
    bits_out: float
    """Bits per second sent to clients over the interval."""


class _Counter:
    """The bytes a growing total gained since the last reading, never negative."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: int | None = None

    def advance(self, total: int) -> int:
        last, self._last = self._last, total
        if last is None or total < last:
            return 0
        return total - last


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")


class Throughput:
    """Samples the proxy's total bytes in and out into bit rates, one sample per `interval`.

    `record` may be called as often as wished; readings are pooled until `interval` seconds
    have passed since the last sample, and a sample covers exactly the time it pooled, so a
    late call gives a longer interval rather than a wrong rate. Samples older than `keep`
    seconds before the newest are dropped.
    """

    __slots__ = (
        "_bytes_in",
        "_bytes_out",
        "_in",
        "_interval",
        "_keep",
        "_out",
        "_samples",
        "_start",
    )

    def __init__(self, *, interval: float = 5.0, keep: float = 600.0) -> None:
        _check_positive("interval", interval)
        _check_positive("keep", keep)
        if keep < interval:
            raise ValueError(f"keep ({keep}s) must be at least one interval ({interval}s)")
        self._interval = interval
        self._keep = keep
        # The epsilon keeps 0.3 / 0.1 (2.9999...) from flooring to 2 samples.
        self._samples: deque[Sample] = deque(maxlen=int(keep / interval + 1e-9))
        self._in = _Counter()
        self._out = _Counter()
        self._start: float | None = None
        self._bytes_in = 0
        self._bytes_out = 0

    def __repr__(self) -> str:
        newest = f" newest={self._samples[-1]}" if self._samples else ""
        return (
            f"<Throughput interval={self._interval}s keep={self._keep}s "
            f"samples={len(self._samples)}{newest}>"
        )

    def record(self, now: float, bytes_in_total: int, bytes_out_total: int) -> None:
        """Take a reading of the totals at `now`; emits a sample once an interval is complete."""
        gained_in = self._in.advance(bytes_in_total)
        gained_out = self._out.advance(bytes_out_total)
        if self._start is None or now < self._start:
            # The first reading, or a clock that went back: either way there is no interval
            # to measure yet, only a new start. Samples timed by the old clock would sort
            # after the new ones, so they go too.
            if self._start is not None:
                self._samples.clear()
            self._start = now
            self._bytes_in = self._bytes_out = 0
            return
        self._bytes_in += gained_in
        self._bytes_out += gained_out
        elapsed = now - self._start
        if elapsed < self._interval:
            return
        self._samples.append(
            Sample(
                at=now,
                bits_in=self._bytes_in * 8 / elapsed,
                bits_out=self._bytes_out * 8 / elapsed,
            )
        )
        self._start = now
        self._bytes_in = self._bytes_out = 0
        while self._samples[0].at < now - self._keep:
            self._samples.popleft()

    def samples(self) -> list[Sample]:
        """The history, oldest first: at most keep / interval samples."""
        return list(self._samples)

    def rate(self, now: float) -> tuple[float, float]:
        """The latest bits per second in and out; zero once no sample came for two intervals.

        A sampler that is no longer fed knows nothing of the present, and an old rate shown as
        current would be a lie.
        """
        if not self._samples:
            return (0.0, 0.0)
        newest = self._samples[-1]
        if now - newest.at > 2 * self._interval:
            return (0.0, 0.0)
        return (newest.bits_in, newest.bits_out)


class RateMeter:
    """One stream's bit rates in and out, averaged over the last `window` seconds of readings."""

    __slots__ = ("_in", "_out", "_points", "_window")

    def __init__(self, *, window: float = 5.0) -> None:
        _check_positive("window", window)
        self._window = window
        self._in = _Counter()
        self._out = _Counter()
        # (time, bytes in, bytes out), the byte counts cumulative since the meter began, so
        # that a rate over any span is one subtraction even across counter resets.
        self._points: deque[tuple[float, int, int]] = deque()

    def __repr__(self) -> str:
        return f"<RateMeter window={self._window}s readings={len(self._points)}>"

    def update(self, now: float, bytes_in_total: int, bytes_out_total: int) -> None:
        """Take a reading of the stream's byte totals at `now`."""
        gained_in = self._in.advance(bytes_in_total)
        gained_out = self._out.advance(bytes_out_total)
        if self._points and now < self._points[-1][0]:
            self._points.clear()
        if not self._points:
            self._points.append((now, 0, 0))
            return
        _, total_in, total_out = self._points[-1]
        self._points.append((now, total_in + gained_in, total_out + gained_out))
        # Keep the newest reading at or before the window's start, so the span measured
        # covers the whole window once the meter has run that long.
        while len(self._points) > 2 and self._points[1][0] <= now - self._window:
            self._points.popleft()

    def rate(self, now: float) -> tuple[float, float]:
        """Bits per second in and out over the window's readings; zero before two readings
        and once readings stop coming."""
        if len(self._points) < 2:
            return (0.0, 0.0)
        first_at, first_in, first_out = self._points[0]
        last_at, last_in, last_out = self._points[-1]
        if now - last_at > self._window:
            return (0.0, 0.0)
        # Readings a moment apart measure the chunking of reads, not a rate: the span counts
        # as at least a tenth of the window, so a stream's first moments read low, never wild.
        span = max(last_at - first_at, self._window / 10)
        return ((last_in - first_in) * 8 / span, (last_out - first_out) * 8 / span)
