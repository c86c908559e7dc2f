"""The HLS flavours of the simulated engine besides plain MPEG-TS, and its playlists.

Real engines serve HLS as MPEG-TS media playlists, and so does the simulated one, except for
content named by a 40-hex content id or infohash that starts with one of `FLAVOUR_PREFIXES`
(case does not matter): an HLS session of it is served in another flavour, from the smaller
media in `sim/media/low`, `fmp4` and `aes` (see fixtures/make_media.sh):

- `f4f4...` fMP4: version 7, `EXT-X-MAP` naming `/ace/c/<infohash>/init.mp4`, segments
  `/ace/c/<infohash>/<n>.m4s`, both `video/mp4`;
- `aeae...` AES-128: MPEG-TS segments encrypted under one key, `/ace/c/<infohash>/key.bin`
  (`application/octet-stream`), with one fixed IV;
- `aaaa...` multivariant: the playback_url is a multivariant playlist of two live media
  playlists of the same session, `/ace/m/<infohash>/<token>/high.m3u8` (the usual
  segments) and `.../low.m3u8` (segments `/ace/c/<infohash>/low/<n>.ts`).

A TS session (`/ace/getstream`) is plain MPEG-TS whatever the content. Every flavour's
segments follow the channel's timeline (window, media sequence, expiry), so its media must
have the same segment durations as the channel's. fMP4 and the low variant loop without a
break, their timestamps moved on by whole loops like the MPEG-TS; encrypted segments cannot
be changed, so the AES-128 playlist marks each return to the loop's start with
EXT-X-DISCONTINUITY, as an origin that loops a recording does. The engine's `bitrate` pads
only the channel's MPEG-TS (the multivariant playlist's high variant included).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .fmp4 import Fmp4Loop
from .media import MediaLoop

HlsFlavour = Literal["mpegts", "fmp4", "aes-128", "multivariant"]
FLAVOUR_PREFIXES: Mapping[str, HlsFlavour] = {
    "f4f4": "fmp4",
    "aeae": "aes-128",
    "aaaa": "multivariant",
}
"""Content ids and infohashes starting with these play over HLS in that flavour. Four hex
digits, so that a random id (a benchmark's) is all but never taken for one."""
VARIANTS = ("high", "low")


def flavour_of(kind: str, value: str) -> HlsFlavour:
    """The flavour an HLS session of the content a start names (`kind`, `value`) plays in."""
    if kind in ("content_id", "infohash"):
        lowered = value.lower()
        for prefix, flavour in FLAVOUR_PREFIXES.items():
            if lowered.startswith(prefix):
                return flavour
    return "mpegts"


def offers(flavour: HlsFlavour, ext: str, variant: str) -> bool:
    """Whether a session of `flavour` has segments named `<variant>/<n>.<ext>`."""
    if flavour == "fmp4":
        return ext == "m4s" and variant == "high"
    return ext == "ts" and (variant == "high" or flavour == "multivariant")


def media_playlist(
    host: str,
    infohash: str,
    flavour: HlsFlavour,
    first: int,
    durations: Sequence[float],
    *,
    variant: str = "high",
    extra: Sequence[str] = (),
    aes: AesLoop | None = None,
) -> str:
    """A live media playlist of the segments `first`, `first + 1`, ... lasting `durations`.

    `extra` lines go after the header, `{host}` standing for `host`; `aes` is the AES-128
    flavour's media, which its playlist names.
    """
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{7 if flavour == 'fmp4' else 3}",
        f"#EXT-X-TARGETDURATION:{math.ceil(max(durations)) + 1}",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
        *(line.replace("{host}", host) for line in extra),
    ]
    base = f"http://{host}/ace/c/{infohash}"
    if flavour == "fmp4":
        lines.append(f'#EXT-X-MAP:URI="{base}/init.mp4"')
    if aes is not None:
        lines += [
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{aes.discontinuity_sequence(first)}",
            f'#EXT-X-KEY:METHOD=AES-128,URI="{base}/key.bin",IV=0x{aes.iv.hex()}',
        ]
    if variant == "low":
        base += "/low"
    ext = "m4s" if flavour == "fmp4" else "ts"
    for n, duration in enumerate(durations, start=first):
        if aes is not None and aes.loops_back(n):
            lines.append("#EXT-X-DISCONTINUITY")
        lines += [f"#EXTINF:{duration:.6f},", f"{base}/{n}.{ext}"]
    return "\n".join(lines) + "\n"


def multivariant_playlist(host: str, infohash: str, token: str, rates: Mapping[str, int]) -> str:
    """The multivariant playlist of a session: one live media playlist per variant, each
    with its BANDWIDTH in `rates`."""
    base = f"http://{host}/ace/m/{infohash}/{token}"
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for variant in VARIANTS:
        lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={rates[variant]}", f"{base}/{variant}.m3u8"]
    return "\n".join(lines) + "\n"


def peak_bitrate(loop: MediaLoop, padded_to: int | None) -> int:
    """The highest bitrate of any one segment, in bit/s: what BANDWIDTH must not fall below."""
    peak = max(len(loop.segment(i)) * 8 / loop.duration(i) for i in range(loop.segment_count))
    return math.ceil(max(peak, padded_to or 0))


@dataclass(frozen=True)
class FlavourMedia:
    """The media of the flavours besides the channel's own MPEG-TS."""

    low: MediaLoop
    fmp4: Fmp4Loop
    aes: AesLoop

    @classmethod
    def load(cls, directory: Path, timeline: MediaLoop) -> FlavourMedia:
        """Read the flavours from `directory`, and check that they follow `timeline`."""
        low = MediaLoop.load(directory / "low")
        if low.segment_count != timeline.segment_count or any(
            abs(low.duration(i) - timeline.duration(i)) > 0.001
            for i in range(timeline.segment_count)
        ):
            raise ValueError(f"{directory / 'low'} has other segments than the channel's media")
        fmp4_dir, aes_dir = directory / "fmp4", directory / "aes"
        fmp4 = Fmp4Loop(
            (fmp4_dir / "init.mp4").read_bytes(),
            _numbered(fmp4_dir, "m4s"),
            timeline,
        )
        aes = AesLoop(
            _numbered(aes_dir, "ts"),
            key=(aes_dir / "key.bin").read_bytes(),
            iv=(aes_dir / "iv.bin").read_bytes(),
        )
        if len(aes.segments) != timeline.segment_count:
            raise ValueError(f"{aes_dir} has other segments than the channel's media")
        return cls(low, fmp4, aes)


def _numbered(directory: Path, ext: str) -> list[bytes]:
    """The bytes of seg0.<ext>, seg1.<ext>, ... in `directory`."""
    found = sorted(
        (int(m.group(1)), path)
        for path in directory.iterdir()
        if (m := re.fullmatch(rf"seg(\d+)\.{ext}", path.name))
    )
    if [n for n, _ in found] != list(range(len(found))) or not found:
        raise FileNotFoundError(f"no seg0.{ext}, seg1.{ext}, ... in {directory}")
    return [path.read_bytes() for _, path in found]


@dataclass(frozen=True)
class AesLoop:
    """Encrypted MPEG-TS segments, played in a loop.

    Their timestamps cannot be moved on without the cipher, so each loop starts a new
    discontinuity: segment n opens one when it is the first of a loop (n > 0).
    """

    segments: list[bytes]
    key: bytes
    iv: bytes

    def __post_init__(self) -> None:
        if len(self.key) != 16 or len(self.iv) != 16:
            raise ValueError("an AES-128 key and IV are 16 bytes each")
        if not self.segments or any(len(s) % 16 for s in self.segments):
            raise ValueError("AES-128 segments are whole 16-byte blocks")

    def segment(self, n: int) -> bytes:
        return self.segments[n % len(self.segments)]

    def loops_back(self, n: int) -> bool:
        return n > 0 and n % len(self.segments) == 0

    def discontinuity_sequence(self, first: int) -> int:
        """EXT-X-DISCONTINUITY-SEQUENCE of a window starting at `first`: the discontinuities
        that have left it."""
        return max(0, (first - 1) // len(self.segments))
