"""HLS playlists for players: what callers do with a playlist's text, each in one call.

Pure: text in, text or data out; no I/O, no clock. The work is spread by concern:
- `uri`: a URI a playlist carries (`Uri`, `ByteRange`);
- `lines`: the text cut into lines and attribute lists, every piece with its place;
- `tags`: the tag table, what each tag means to a scan;
- `scan`: the one pass every reading or rewriting starts from;
- `info`: what a playlist states (`PlaylistInfo`);
- `emit`: the scanned playlist written back out;
- `splice`: the playlist across a change of upstream session.
"""

from __future__ import annotations

from dataclasses import dataclass

from .emit import Namer, emit
from .info import PlaylistInfo, playlist_info
from .lines import BOM
from .scan import scan_playlist
from .splice import Splice, renumbering
from .uri import Uri

_BOM_BYTES = BOM.encode()
# An origin may pad the front of a body; the first line is all that is looked at.
_SNIFF_BYTES = 1024


def looks_like_playlist(body: bytes) -> bool:
    """Whether the body is an HLS playlist: its first line is #EXTM3U.

    Many origins send playlists as text/plain or octet-stream, so the content type cannot
    decide. A UTF-8 BOM, leading blank lines, surrounding spaces and CRLF are tolerated.
    """
    head = body[:_SNIFF_BYTES].removeprefix(_BOM_BYTES).lstrip()
    return head.split(b"\n", 1)[0].strip() == b"#EXTM3U"


def read_playlist(text: str, base_url: str) -> PlaylistInfo:
    """The playlist's metadata and media segments. Raises ValueError if it cannot be read."""
    return playlist_info(scan_playlist(text, base_url))


def playlist_uris(text: str, base_url: str) -> list[Uri]:
    """Every URI `rewrite_playlist` would hand to the namer, in the order they appear."""
    return [uri for line in scan_playlist(text, base_url).lines for uri in line.uris]


@dataclass(frozen=True, slots=True)
class Rewritten:
    text: str
    info: PlaylistInfo
    """Of the playlist as the upstream wrote it (its own media sequence numbers)."""


def rewrite(text: str, base_url: str, name: Namer, splice: Splice | None = None) -> Rewritten:
    """The playlist rewritten for players, and what it says, from one scan: every http(s)
    URI replaced by `name(uri)`, renumbered by `splice` if given (see `mark_discontinuity`).

    Raises ValueError if the playlist's numbers cannot be read.
    """
    scan = scan_playlist(text, base_url)
    info = playlist_info(scan)
    renumbered = None if splice is None else renumbering(scan, splice, info)
    return Rewritten(emit(scan, name, renumbered), info)


def rewrite_playlist(text: str, base_url: str, name: Namer) -> str:
    """The playlist with every http(s) URI replaced by `name(uri)`.

    `base_url` is the URL the playlist was finally fetched from (after redirects). No line
    keeps the host of `base_url` outside a URI that went through the namer: another
    attribute that carries it is removed, an EXTINF loses its title, any other line goes.
    Nothing else changes. A leading BOM is dropped.
    """
    return emit(scan_playlist(text, base_url), name)
