"""Real players (ffmpeg, mpv, GStreamer's playbin) playing a URL, and what a viewer would
notice: when the first picture came, how much was played, what was jumped over, whether the
stream ended under the player, and what it complained about.

Each runs as a viewer runs it, in real time with null outputs and its usual network
timeouts (mpv: --network-timeout=10; playbin's souphttpsrc: its default 15 s), and prints
where it is: ffmpeg its progress (`-re` reads the input at its own rate, as a player does;
without it ffmpeg would read a live stream's opening burst as fast as the bytes come), mpv
its `time-pos` once a picture is up (`--term-status-msg`), playbin the time of every picture
its video sink gets (fakesink with `sync=true`, so pictures come at their time). From those
positions one count serves all three: see `Playback.advance`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Player = Literal["ffmpeg", "mpv", "gstreamer"]
PLAYERS: tuple[Player, ...] = ("ffmpeg", "mpv", "gstreamer")
EXECUTABLES: dict[Player, str] = {"ffmpeg": "ffmpeg", "mpv": "mpv", "gstreamer": "gst-launch-1.0"}

JUMP = 2.0
"""Players report their position several times a second: a larger step forward is a jump."""

# What a decoder says when it gets a broken picture (libavcodec's words, which mpv and
# ffmpeg print) and what GStreamer prints for an element's error or warning.
_DECODE_ERROR = re.compile(
    r"error while decoding|concealing \d+|Invalid NAL|non-existing PPS|"
    r"decode_slice_header error|^(?:ERROR|WARNING): from element",
    re.IGNORECASE,
)


# mpv clears the line before each status line, as on a terminal.
_TERMINAL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def available(player: Player) -> bool:
    return shutil.which(EXECUTABLES[player]) is not None


def executable(player: Player) -> str:
    path = shutil.which(EXECUTABLES[player])
    if path is None:
        raise FileNotFoundError(f"{EXECUTABLES[player]} is missing: ./scripts/test installs it")
    return path


@dataclass(repr=False)
class Playback:
    """What one player did; times are wall-clock seconds from its launch."""

    player: Player | str
    first_picture: float | None = None
    played: float = 0.0
    """Seconds of media played, step by step: what a viewer watched."""
    skipped: float = 0.0
    """Seconds of media jumped over forward (a step of more than `JUMP` at once)."""
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(when, seconds played by then), at each position the player reported."""
    ended_at: float | None = None
    """When the player ended by itself (its length played, end of stream, an error); None
    if it was still playing when it was stopped."""
    exit_code: int | None = None
    """Its exit status if it ended by itself."""
    decode_errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Every line the player printed that is not its own progress report: at the levels
    each is run with, its warnings and errors."""
    log: list[str] = field(default_factory=list)
    """The last lines it printed, progress reports left out."""
    _last: tuple[float, float] | None = None  # (when, position)

    def advance(self, at: float, position: float) -> None:
        """The player shows `position` (seconds of media) `at` seconds from its launch.

        A step back is a discontinuity starting the timestamps over: only advances count
        from there on. A step forward of more than `JUMP` is skipped, not played; one that
        is played counts for no more than the time that passed (and half a second for
        reports that come in a batch)."""
        if self._last is None:
            self.first_picture = at
        else:
            when, before = self._last
            step = position - before
            if step > JUMP:
                self.skipped += step
            elif step > 0:
                self.played += min(step, at - when + 0.5)
        self._last = (at, position)
        self.samples.append((at, self.played))

    def played_since(self, at: float) -> float:
        """Seconds played from `at` seconds after the launch on."""
        before = max((played for t, played in self.samples if t <= at), default=0.0)
        return self.played - before

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log[-lines:])

    def summary(self) -> str:
        first = "never" if self.first_picture is None else f"{self.first_picture:.1f}s"
        end = (
            "still playing"
            if self.ended_at is None
            else f"ended at {self.ended_at:.1f}s (exit {self.exit_code})"
        )
        return (
            f"{self.player}: first picture {first}, played {self.played:.1f}s, skipped "
            f"{self.skipped:.1f}s, {end}, {len(self.decode_errors)} decode errors, "
            f"{len(self.warnings)} warnings"
        )

    def __repr__(self) -> str:
        return f"{self.summary()}\n{self.tail()}"


class _Reader:
    """How one player's output reads: its progress reports and the positions in them."""

    def progress(self, line: str) -> bool:
        raise NotImplementedError

    def position(self, line: str) -> float | None:
        raise NotImplementedError

    def warning(self, line: str) -> bool:
        return not self.progress(line)


class _Ffmpeg(_Reader):
    _KEY = re.compile(r"^\w+=")  # "frame=25", "speed=   1x", "progress=continue"
    _FRAME = re.compile(r"^frame=(\d+)$")
    _TIME = re.compile(r"^out_time_us=(\d+)$")

    def __init__(self) -> None:
        self.frames = 0

    def progress(self, line: str) -> bool:
        return self._KEY.match(line) is not None

    def position(self, line: str) -> float | None:
        # ffmpeg reports a time before its first frame: a position counts once frames come.
        if m := self._FRAME.match(line):
            self.frames = int(m.group(1))
        m = self._TIME.match(line)
        return None if m is None or self.frames == 0 else int(m.group(1)) / 1e6


class _Mpv(_Reader):
    _AT = re.compile(r"^AT (-?\d+(?:\.\d+)?)$")

    def progress(self, line: str) -> bool:
        return line.startswith("AT ")

    def position(self, line: str) -> float | None:
        m = self._AT.match(line)
        return None if m is None else float(m.group(1))


class _Gstreamer(_Reader):
    _PICTURE = re.compile(r"\(pictures:sink\).*?pts: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
    _PROBLEM = re.compile(r"\b(?:ERROR|WARNING)\b")

    def progress(self, line: str) -> bool:
        return "last-message" in line

    def position(self, line: str) -> float | None:
        m = self._PICTURE.search(line)
        if m is None:
            return None
        hours, minutes, seconds = m.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)

    def warning(self, line: str) -> bool:
        # -v prints every property change too: only its errors and warnings count.
        return self._PROBLEM.search(line) is not None


def command(player: Player, url: str, length: float | None = None) -> list[str]:
    """How `player` plays `url`; ffmpeg and mpv end by themselves after `length` seconds."""
    if player == "ffmpeg":
        return [
            executable(player), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
            "-progress", "pipe:1", "-stats_period", "0.5",
            "-re", "-i", url,
            *([] if length is None else ["-t", f"{length:g}"]),
            "-f", "null", "-",
        ]  # fmt: skip
    if player == "mpv":
        return [
            executable(player), "--no-config", "--ytdl=no", "--vo=null", "--ao=null",
            "--network-timeout=10",
            "--msg-level=all=warn,statusline=status",
            *([] if length is None else [f"--length={length:g}"]),
            # The status line while it plays: the position once a picture is up.
            "--term-status-msg=${?vo-configured==yes:AT ${=time-pos}}",
            url,
        ]  # fmt: skip
    return [
        executable(player), "-v", "playbin", f"uri={url}",
        "video-sink=fakesink name=pictures sync=true silent=false",
        "audio-sink=fakesink sync=true",
    ]  # fmt: skip


_READERS: dict[Player, Callable[[], _Reader]] = {
    "ffmpeg": _Ffmpeg,
    "mpv": _Mpv,
    "gstreamer": _Gstreamer,
}


async def play(
    player: Player,
    url: str,
    *,
    deadline: float,
    length: float | None = None,
    seen: Playback | None = None,
    until: Callable[[Playback], bool] = lambda _: False,
) -> Playback:
    """Play `url` until the player ends by itself, `until` says so or `deadline` seconds
    have passed, then stop it. `length`: seconds of media to play (ffmpeg and mpv then end
    by themselves; playbin has no such option, so it is stopped once it has played that
    long). What the player does goes into `seen` as it plays, for a caller to poll."""
    seen = Playback(player) if seen is None else seen
    reader = _READERS[player]()
    proc = await asyncio.create_subprocess_exec(
        *command(player, url, length),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    began = time.monotonic()
    stop_at = length if player == "gstreamer" else None
    pending = b""
    try:
        async with asyncio.timeout(deadline):
            while data := await proc.stdout.read(65536):
                at = time.monotonic() - began
                *lines, pending = re.split(rb"[\r\n]", pending + data)
                for raw in lines:
                    if line := _TERMINAL.sub("", raw.decode(errors="replace")).strip():
                        _saw(seen, reader, at, line)
                if until(seen) or (stop_at is not None and seen.played >= stop_at):
                    break
            else:
                seen.exit_code = await proc.wait()
                seen.ended_at = time.monotonic() - began
    except TimeoutError:
        pass
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return seen


def _saw(seen: Playback, reader: _Reader, at: float, line: str) -> None:
    if _DECODE_ERROR.search(line):
        seen.decode_errors.append(line)
    if reader.warning(line):
        seen.warnings.append(line)
    position = reader.position(line)
    if position is not None:
        seen.advance(at, position)
    if not reader.progress(line):
        seen.log = [*seen.log[-49:], line]
