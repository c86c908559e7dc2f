"""The simulated engine's channel: the real MPEG-TS segments in `sim/media/`, looped."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from ..ts import loop
from ..ts.loop import CLOCK_HZ, Timestamp, pad, pcrs, timestamps
from ..ts.packets import NULL_PACKET, NULL_PID, PACKET_SIZE, SYNC_BYTE

__all__ = [
    "CLOCK_HZ",
    "MEDIA_DIR",
    "NULL_PACKET",
    "NULL_PID",
    "PACKET_SIZE",
    "SYNC_BYTE",
    "MediaLoop",
    "Timestamp",
    "pad",
    "pcrs",
    "timestamps",
]

MEDIA_DIR = Path(__file__).parent / "media"


class MediaLoop(loop.MediaLoop):
    """Segments 0, 1, 2, ... of the simulated engine's live channel."""

    @classmethod
    def load(cls, directory: Path | None = None) -> Self:
        """Read `seg<i>.ts` from `directory` (the package's media by default)."""
        return super().load(MEDIA_DIR if directory is None else directory)
