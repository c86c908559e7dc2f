"""Opaque, stable names for the resources a playlist lists: what clients ask for instead of URLs.

Pure. The same URI (and byte range) always gets the same token, so every viewer of a stream
asks for a segment by one name, and the name keeps a media extension: players (ffmpeg 7.1
and later) check segment extensions.
"""

from __future__ import annotations

import hashlib
import posixpath
from urllib.parse import urlsplit

from .media_types import MEDIA_TYPES
from .uri import UriKind

DEFAULT_EXTENSION: dict[UriKind, str] = {
    "segment": ".ts",
    "part": ".ts",
    "init": ".mp4",
    "key": ".key",
    "playlist": ".m3u8",
    "other": ".json",
}


def token_for(kind: UriKind, url: str, byterange: object) -> str:
    digest = hashlib.blake2b(f"{url} {byterange}".encode(), digest_size=10).hexdigest()
    if kind == "playlist":
        return digest + ".m3u8"
    ext = posixpath.splitext(urlsplit(url).path)[1].lower()
    return digest + (ext if ext in MEDIA_TYPES else DEFAULT_EXTENSION[kind])
