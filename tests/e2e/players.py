"""Real players run as a viewer runs them, reporting what a viewer would notice: when the
first picture came, and how far playback went since.

ffmpeg decodes as fast as the stream comes (a live stream comes in real time); mpv and
GStreamer's playbin render in real time to null outputs. Each is started with its usual
network timeouts (mpv: --network-timeout=10; souphttpsrc: its default 15 s), and each
reports the pictures it decoded or rendered, so that a picture counts the same for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

FRAME_SECONDS = 1 / 25
"""Both the simulated channel and the slate run at 25 frames a second."""


@dataclass
class Playback:
    """What one player did: (seconds since it started, seconds of video it has shown)."""

    player: str
    samples: list[tuple[float, float]] = field(default_factory=list)
    exit_code: int | None = None
    """None: it was still playing when it was stopped."""
    ended_at: float | None = None
    """When it ended by itself, seconds from its start."""
    log: list[str] = field(default_factory=list)

    @property
    def first_picture(self) -> float | None:
        """Seconds from the player's start to its first picture."""
        return next((t for t, shown in self.samples if shown > 0), None)

    @property
    def played(self) -> float:
        """Seconds of video shown."""
        return self.samples[-1][1] if self.samples else 0.0

    def played_since(self, at: float) -> float:
        """Seconds of video shown from `at` seconds after the start on."""
        before = max((shown for t, shown in self.samples if t <= at), default=0.0)
        return self.played - before

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log[-lines:])

    def __repr__(self) -> str:
        first = "never" if self.first_picture is None else f"{self.first_picture:.1f}s"
        return (
            f"{self.player}: first picture {first}, played {self.played:.1f}s, "
            f"exit {self.exit_code}\n{self.tail()}"
        )


Reader = Callable[[str, float, Playback], None]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: ./scripts/test installs it")
    return path


_FFMPEG_FRAME = re.compile(r"^frame=(\d+)$")


def _read_ffmpeg(line: str, now: float, playback: Playback) -> None:
    match = _FFMPEG_FRAME.match(line)
    if match:
        playback.samples.append((now, int(match.group(1)) * FRAME_SECONDS))


_MPV_POSITION = re.compile(r"AT (-?\d+(?:\.\d+)?)")


class Positions:
    """Seconds shown, from the playback positions a player reports: a position may jump
    back (a discontinuity starts the timestamps over), so only its advances count, and
    never more than the time that passed."""

    def __init__(self) -> None:
        self.shown = 0.0
        self.last: tuple[float, float] | None = None  # (wall, position)

    def add(self, now: float, position: float, playback: Playback) -> None:
        if self.last is not None:
            wall, before = self.last
            self.shown += min(max(0.0, position - before), now - wall + 0.5)
        else:
            self.shown = FRAME_SECONDS  # the first position comes with the first picture
        self.last = (now, position)
        playback.samples.append((now, self.shown))


class _MpvCounter(Positions):
    def __call__(self, line: str, now: float, playback: Playback) -> None:
        match = _MPV_POSITION.search(line)
        if match is not None:
            self.add(now, float(match.group(1)), playback)


class _GstCounter:
    def __init__(self) -> None:
        self.frames = 0

    def __call__(self, line: str, now: float, playback: Playback) -> None:
        # fakesink's last-message for each buffer it renders; the video sink is named.
        if "(vsink:sink)" in line and "chain" in line:
            self.frames += 1
            playback.samples.append((now, self.frames * FRAME_SECONDS))


def ffmpeg(url: str, seconds: float) -> tuple[list[str], Reader]:
    return [
        _tool("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "warning",
        "-progress", "pipe:1", "-stats_period", "0.5",
        "-i", url, "-map", "0:v:0", "-t", f"{seconds:g}", "-f", "null", "-",
    ], _read_ffmpeg  # fmt: skip


def mpv(url: str, seconds: float) -> tuple[list[str], Reader]:
    return [
        _tool("mpv"), "--no-config", "--ytdl=no", "--vo=null", "--ao=null",
        "--network-timeout=10",
        "--msg-level=all=warn,statusline=status", f"--length={seconds:g}",
        # mpv prints its status line while it plays: the position once a picture is up.
        "--term-status-msg=${?vo-configured==yes:AT ${=time-pos}}",
        url,
    ], _MpvCounter()  # fmt: skip


def gstreamer(url: str, seconds: float) -> tuple[list[str], Reader]:
    return [
        _tool("gst-launch-1.0"), "-v", "playbin", f"uri={url}",
        "video-sink=fakesink name=vsink sync=true silent=false",
        "audio-sink=fakesink sync=true",
    ], _GstCounter()  # fmt: skip


PLAYERS: dict[str, Callable[[str, float], tuple[list[str], Reader]]] = {
    "ffmpeg": ffmpeg,
    "mpv": mpv,
    "gstreamer": gstreamer,
}


async def play(player: str, url: str, seconds: float, *, deadline: float) -> Playback:
    """Run `player` on `url` for `seconds` of playback, or until `deadline` seconds have
    passed (then it is stopped: GStreamer plays a live stream until it is stopped)."""
    argv, reader = PLAYERS[player](url, seconds)
    playback = Playback(player)
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(deadline):
            pending = b""
            while chunk := await process.stdout.read(65536):
                pending += chunk
                *lines, pending = re.split(rb"[\r\n]", pending)
                now = time.monotonic() - started
                for raw in lines:
                    line = raw.decode(errors="replace").strip()
                    if line:
                        reader(line, now, playback)
                        if "last-message" not in line:
                            playback.log.append(line)
                            del playback.log[:-50]
            playback.exit_code = await process.wait()
            playback.ended_at = time.monotonic() - started
    except TimeoutError:
        pass
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                process.kill()
                with contextlib.suppress(ProcessLookupError):
                    await process.wait()
    return playback
