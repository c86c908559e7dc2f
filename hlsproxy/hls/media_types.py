"""The media types of the resources HLS playlists name, by file extension.

A resource keeps its upstream extension when it is one of these (players such as ffmpeg 7.1+
check segment extensions), and is served with the type listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

MEDIA_TYPES: Mapping[str, str] = MappingProxyType(
    {
        ".ts": "video/mp2t",
        ".m4s": "video/mp4",
        ".mp4": "video/mp4",
        ".m4v": "video/mp4",
        ".cmfv": "video/mp4",
        ".m4a": "audio/mp4",
        ".cmfa": "audio/mp4",
        ".aac": "audio/aac",
        ".mp3": "audio/mpeg",
        ".ac3": "audio/ac3",
        ".ec3": "audio/eac3",
        ".vtt": "text/vtt",
        ".webvtt": "text/vtt",
        ".key": "application/octet-stream",
        ".json": "application/json",
    }
)
