"""Real MPEG-TS players (mpv, GStreamer's playbin, ffmpeg) playing a URL, and what they saw.

Each plays in real time with null outputs and prints where it is: mpv its `time-pos`
through `--term-status-msg`, playbin every picture its video sink gets (fakesink with
`sync=true`, so pictures come at their time), ffmpeg its progress (`-re` reads the input at
its own rate, as a player does; without it ffmpeg would read as fast as bytes come).
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

Player = Literal["mpv", "gstreamer", "ffmpeg"]
PLAYERS: tuple[Player, ...] = ("mpv", "gstreamer", "ffmpeg")
EXECUTABLES: dict[Player, str] = {"mpv": "mpv", "gstreamer": "gst-launch-1.0", "ffmpeg": "ffmpeg"}

# Players report their position several times a second: a larger step forward is a jump.
_JUMP = 2.0
_MPV_POSITION = re.compile(r"POSITION=(\d+(?:\.\d+)?)")
_GST_PICTURE = re.compile(r"\(pictures:sink\).*?pts: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_FFMPEG_TIME = re.compile(r"^out_time_us=(\d+)$")
_FFMPEG_FRAME = re.compile(r"^frame=(\d+)$")
# What a decoder says when it gets a broken picture (libavcodec's words, which mpv and
# ffmpeg print) and what GStreamer prints for an element's error or warning.
_DECODE_ERROR = re.compile(
    r"error while decoding|concealing \d+|Invalid NAL|non-existing PPS|"
    r"decode_slice_header error|^(?:ERROR|WARNING): from element",
    re.IGNORECASE,
)


def available(player: Player) -> bool:
    return shutil.which(EXECUTABLES[player]) is not None


def command(player: Player, url: str) -> list[str]:
    if player == "mpv":
        return [
            "mpv",
            "--no-config",
            "--vo=null",
            "--ao=null",
            "--network-timeout=10",
            "--term-status-msg=POSITION=${=time-pos}",
            url,
        ]
    if player == "gstreamer":
        return [
            "gst-launch-1.0",
            "-v",
            "playbin",
            f"uri={url}",
            "video-sink=fakesink sync=true silent=false name=pictures",
            "audio-sink=fakesink sync=true",
        ]
    return [
        "ffmpeg",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "warning",
        "-re",
        "-i",
        url,
        "-f",
        "null",
        "-",
        "-progress",
        "pipe:1",
    ]


@dataclass
class Playback:
    """What one player saw; times are wall-clock seconds from its launch."""

    player: Player
    first_picture: float | None = None
    position: float | None = None
    played: float = 0.0
    """Seconds of media played, step by step: what a viewer watched."""
    skipped: float = 0.0
    """Seconds of media jumped over forward (a step of more than `_JUMP` at once)."""
    ended_at: float | None = None
    """When the player stopped by itself (end of file, an error); None if it was still
    playing when it was stopped."""
    decode_errors: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)

    def summary(self) -> str:
        first = "none" if self.first_picture is None else f"{self.first_picture:.1f}s"
        end = "still playing" if self.ended_at is None else f"ended at {self.ended_at:.1f}s"
        return (
            f"{self.player}: first picture {first}, played {self.played:.1f}s, skipped "
            f"{self.skipped:.1f}s, {end}, "
            f"{len(self.decode_errors)} decode errors"
        )

    def _saw(self, at: float, line: str) -> None:
        self.tail = [*self.tail[-19:], line]
        if _DECODE_ERROR.search(line):
            self.decode_errors.append(line)
        position = _position(self.player, line)
        if position is not None:
            if self.position is None:
                self.first_picture = at
            else:
                step = position - self.position
                if step > _JUMP:
                    self.skipped += step
                elif step > 0:
                    self.played += step
            self.position = position


def _position(player: Player, line: str) -> float | None:
    if player == "mpv":
        m = _MPV_POSITION.search(line)
        return None if m is None else float(m.group(1))
    if player == "gstreamer":
        m = _GST_PICTURE.search(line)
        if m is None:
            return None
        hours, minutes, seconds = m.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    m = _FFMPEG_TIME.match(line)
    return None if m is None else int(m.group(1)) / 1e6


class _FfmpegProgress:
    """ffmpeg reports a time before its first frame; a position counts once frames come."""

    def __init__(self) -> None:
        self.frames = 0

    def keep(self, line: str) -> bool:
        m = _FFMPEG_FRAME.match(line)
        if m is not None:
            self.frames = int(m.group(1))
        return not _FFMPEG_TIME.match(line) or self.frames > 0


async def play(
    player: Player,
    url: str,
    seconds: float,
    *,
    seen: Playback | None = None,
    until: Callable[[Playback], bool] = lambda _: False,
) -> Playback:
    """Play `url` for `seconds` of wall-clock time (or until the player stops by itself, or
    `until` says so), then stop the player. What it sees goes into `seen` as it plays."""
    proc = await asyncio.create_subprocess_exec(
        *command(player, url),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    began = time.monotonic()
    seen = Playback(player) if seen is None else seen
    ffmpeg = _FfmpegProgress()
    pending = b""
    try:
        async with asyncio.timeout(seconds):
            while data := await proc.stdout.read(65536):
                at = time.monotonic() - began
                *lines, pending = re.split(rb"[\r\n]", pending + data)
                for raw in lines:
                    line = raw.decode(errors="replace").strip()
                    if line and (player != "ffmpeg" or ffmpeg.keep(line)):
                        seen._saw(at, line)
                if until(seen):
                    break
            else:
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
