"""HLS playlists as text: recognise them, read their metadata, rewrite every URI they carry.

Pure: text in, text or data out; no I/O, no clock.

Rewriting goes line by line, because parsing into objects and dumping back loses what the
parser does not model (custom tags, comments, spacing). A line that carries no URI comes out
byte for byte, with its own line end; only the URI inside a URI line or a URI attribute is
replaced. The `m3u8` library reads the playlist-level metadata; which lines are segments, and
their URLs and byte ranges, come from the same scan that rewriting uses, so that the segments
`read_playlist` reports are exactly the URIs `rewrite_playlist` hands to the namer.

URIs that are not http(s) after resolution (`skd://`, `data:`, ...) are left as they are: the
player handles them itself.

Byte ranges (`n[@o]`), when `@o` is omitted:
- `EXT-X-BYTERANGE` continues after the previous segment range of the same URI (RFC 8216
  §4.3.2.2 requires that previous segment to be of the same resource);
- `EXT-X-PART` continues after the previous part range of the same URI;
- `EXT-X-MAP` starts at 0: an init section repeated after a discontinuity is the same bytes;
- `EXT-X-PRELOAD-HINT` uses BYTERANGE-START (default 0) and BYTERANGE-LENGTH; without a
  length the hint runs to the end of the resource, which a `ByteRange` cannot say, so the
  URI carries no range and the player's own `Range` header selects the bytes.

A proxy that switches to a new upstream session mid-stream keeps its players going with
`Splice.between` (once, at the break) and `mark_discontinuity` (on every playlist of the new
session): media sequence numbers keep growing and the break carries EXT-X-DISCONTINUITY.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urljoin, urlsplit

import m3u8  # type: ignore[import-untyped]

UriKind = Literal["segment", "playlist", "key", "init", "part", "other"]


@dataclass(frozen=True, slots=True)
class ByteRange:
    length: int
    offset: int
    """Resolved: an omitted `@o` is worked out by the rules in the module docstring."""

    def __str__(self) -> str:
        return f"{self.length}@{self.offset}"


@dataclass(frozen=True, slots=True)
class Uri:
    kind: UriKind
    url: str
    """Absolute http(s), resolved against the playlist's base URL; the query kept exactly."""
    byterange: ByteRange | None = None


Namer = Callable[[Uri], str]
"""Returns the text that replaces a URI: not empty, not starting with '#', and with no '"',
CR or LF (it goes inside a quoted attribute, or on a line of its own)."""


@dataclass(frozen=True, slots=True)
class MediaSegment:
    url: str
    """As `Uri.url`; a URI that is not http(s) (left alone by rewriting) is given as written."""
    duration: float
    sequence: int
    byterange: ByteRange | None
    discontinuity: bool
    """An EXT-X-DISCONTINUITY precedes this segment."""


@dataclass(frozen=True, slots=True)
class PlaylistInfo:
    multivariant: bool
    target_duration: float | None
    media_sequence: int
    discontinuity_sequence: int
    segments: tuple[MediaSegment, ...]
    ended: bool
    """EXT-X-ENDLIST is present: no segment will be added."""
    playlist_type: str | None
    """"VOD", "EVENT" or None."""

    @property
    def duration(self) -> float:
        return sum(segment.duration for segment in self.segments)


# --- recognising --------------------------------------------------------------------------

_BOM = "\ufeff"
_BOM_BYTES = _BOM.encode()
# An origin may pad the front of a body; the first line is all that is looked at.
_SNIFF_BYTES = 1024


def looks_like_playlist(body: bytes) -> bool:
    """Whether the body is an HLS playlist: its first line is #EXTM3U.

    Many origins send playlists as text/plain or octet-stream, so the content type cannot
    decide. A UTF-8 BOM, leading blank lines, surrounding spaces and CRLF are tolerated.
    """
    head = body[:_SNIFF_BYTES].removeprefix(_BOM_BYTES).lstrip()
    return head.split(b"\n", 1)[0].strip() == b"#EXTM3U"


# --- scanning -----------------------------------------------------------------------------

# Tag -> its attributes that hold a URI, and what that URI points to.
_URI_ATTRIBUTES: dict[str, tuple[tuple[str, UriKind], ...]] = {
    "#EXT-X-MEDIA": (("URI", "playlist"),),
    "#EXT-X-I-FRAME-STREAM-INF": (("URI", "playlist"),),
    "#EXT-X-IMAGE-STREAM-INF": (("URI", "playlist"),),
    "#EXT-X-RENDITION-REPORT": (("URI", "playlist"),),
    "#EXT-X-KEY": (("URI", "key"),),
    "#EXT-X-SESSION-KEY": (("URI", "key"),),
    "#EXT-X-MAP": (("URI", "init"),),
    "#EXT-X-PART": (("URI", "part"),),
    "#EXT-X-PRELOAD-HINT": (("URI", "part"),),
    "#EXT-X-SESSION-DATA": (("URI", "other"),),
    "#EXT-X-CONTENT-STEERING": (("SERVER-URI", "other"),),
    # HLS interstitials: the asset is a multivariant playlist, the asset list is JSON.
    "#EXT-X-DATERANGE": (("X-ASSET-URI", "playlist"), ("X-ASSET-LIST", "other")),
}
# Tags that belong to the media segment after them (used to find where a segment starts).
_SEGMENT_TAGS = frozenset(
    {
        "#EXTINF",
        "#EXT-X-BYTERANGE",
        "#EXT-X-DISCONTINUITY",
        "#EXT-X-PROGRAM-DATE-TIME",
        "#EXT-X-KEY",
        "#EXT-X-MAP",
        "#EXT-X-DATERANGE",
        "#EXT-X-GAP",
        "#EXT-X-BITRATE",
        "#EXT-X-PART",
    }
)
_RANGE = re.compile(r"\s*(\d+)(?:@(\d+))?\s*")
_HTTP = ("http", "https")


@dataclass(frozen=True, slots=True)
class _Attribute:
    name: str
    value: str
    start: int
    """Where the value (inside its quotes, if quoted) starts and ends in the line."""
    end: int


@dataclass(slots=True)
class _Line:
    text: str
    """The line without its line end."""
    end: str
    """"\\n", "\\r\\n", or "" for a last line with none."""
    uris: list[tuple[int, int, Uri]] = field(default_factory=list)
    """Spans of `text` to replace, left to right."""


@dataclass(frozen=True, slots=True)
class _Segment:
    url: str
    duration: str
    """The EXTINF value as written: `<duration>,[<title>]`."""
    byterange: ByteRange | None
    discontinuity: bool
    start: int
    """Index of the segment's first line (its first media segment tag)."""


@dataclass(slots=True)
class _Scan:
    lines: list[_Line]
    segments: list[_Segment]


def _split_lines(text: str) -> list[_Line]:
    pieces = text.removeprefix(_BOM).split("\n")
    lines = [
        _Line(piece[:-1], "\r\n") if piece.endswith("\r") else _Line(piece, "\n")
        for piece in pieces[:-1]
    ]
    if pieces[-1]:
        lines.append(_Line(pieces[-1], ""))
    return lines


def _tag_name(stripped: str) -> str:
    return stripped.partition(":")[0]


def _attributes(line: str, start: int) -> list[_Attribute]:
    """Parses an attribute list: NAME=value pairs split by commas outside quoted strings.

    Lenient where real playlists are sloppy (spaces around names and '=', a token with no
    '=', an unterminated quote, which runs to the end of the line).
    """
    found: list[_Attribute] = []
    i, n = start, len(line)
    while i < n:
        while i < n and line[i] in " \t,":
            i += 1
        equals = line.find("=", i)
        comma = line.find(",", i)
        if equals < 0:
            break
        if 0 <= comma < equals:
            i = comma + 1
            continue
        name = line[i:equals].strip().upper()
        j = equals + 1
        while j < n and line[j] in " \t":
            j += 1
        if j < n and line[j] == '"':
            close = line.find('"', j + 1)
            if close < 0:
                close = n
            found.append(_Attribute(name, line[j + 1 : close], j + 1, close))
            comma = line.find(",", close)
        else:
            comma = line.find(",", j)
            value = line[j : n if comma < 0 else comma].rstrip()
            found.append(_Attribute(name, value, j, j + len(value)))
        i = n if comma < 0 else comma + 1
    return found


def _first(attributes: list[_Attribute], name: str) -> str | None:
    return next((a.value for a in attributes if a.name == name), None)


def _resolve(reference: str, base_url: str) -> str | None:
    """The absolute http(s) URL a reference names, or None when it names something else
    (`skd://`, `data:`, ...: urljoin keeps those as they are).

    `urljoin` alone would drop an empty query ("a.ts?") and mishandle a query-only
    reference, so the query and fragment are cut off first and put back as written.
    """
    before_fragment, hash_mark, fragment = reference.partition("#")
    path, question_mark, query = before_fragment.partition("?")
    base = base_url.partition("#")[0]
    if path:
        joined = urljoin(base, path)
    elif question_mark:
        joined = base.partition("?")[0]
    else:
        joined = base
    url = joined + question_mark + query + hash_mark + fragment
    return url if urlsplit(url).scheme.lower() in _HTTP else None


def _check_base(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme.lower() not in _HTTP or not parts.netloc:
        raise ValueError(f"the base URL must be an absolute http(s) URL, not {base_url!r}")


def _parse_range(spec: str) -> tuple[int, int | None] | None:
    match = _RANGE.fullmatch(spec)
    if match is None:
        return None
    offset = match.group(2)
    return int(match.group(1)), None if offset is None else int(offset)


def _scan(text: str, base_url: str) -> _Scan:
    _check_base(base_url)
    lines = _split_lines(text)
    multivariant = any(line.text.strip().startswith("#EXT-X-STREAM-INF") for line in lines)
    segments: list[_Segment] = []
    # Where each URI's last range ended, by chain: omitted offsets continue from there.
    segment_ends: dict[str, int] = {}
    part_ends: dict[str, int] = {}

    extinf: str | None = None
    pending_range: tuple[int, int | None] | None = None
    discontinuity = False
    stream_inf = False
    block_start: int | None = None

    for index, line in enumerate(lines):
        stripped = line.text.strip()
        if not stripped:
            continue
        indent = len(line.text) - len(line.text.lstrip())
        if stripped.startswith("#"):
            name = _tag_name(stripped)
            if name in _SEGMENT_TAGS and block_start is None:
                block_start = index
            if name == "#EXTINF":
                extinf = stripped[len(name) + 1 :]
            elif name == "#EXT-X-BYTERANGE":
                pending_range = _parse_range(stripped[len(name) + 1 :])
            elif name == "#EXT-X-DISCONTINUITY":
                discontinuity = True
            elif name == "#EXT-X-STREAM-INF":
                stream_inf = True
            elif name in _URI_ATTRIBUTES:
                attributes = _attributes(line.text, indent + len(name) + 1)
                line.uris = _attribute_uris(
                    name, attributes, _URI_ATTRIBUTES[name], base_url, part_ends
                )
            continue

        # A URI line. One with no EXTINF or STREAM-INF before it is malformed, but it is
        # still rewritten, so that no upstream address reaches a player.
        if stream_inf:
            kind: UriKind = "playlist"
        elif extinf is not None:
            kind = "segment"
        else:
            kind = "playlist" if multivariant else "segment"
        url = _resolve(stripped, base_url)
        byterange = None
        if kind == "segment" and pending_range is not None:
            byterange = _chain(pending_range, url or stripped, segment_ends)
        if url is not None:
            line.uris = [(indent, indent + len(stripped), Uri(kind, url, byterange))]
        if extinf is not None and not stream_inf:
            segments.append(
                _Segment(
                    url or stripped,
                    extinf,
                    byterange,
                    discontinuity,
                    index if block_start is None else block_start,
                )
            )
        extinf = pending_range = block_start = None
        discontinuity = stream_inf = False
    return _Scan(lines, segments)


def _chain(spec: tuple[int, int | None], url: str, ends: dict[str, int]) -> ByteRange:
    length, offset = spec
    if offset is None:
        offset = ends.get(url, 0)
    ends[url] = offset + length
    return ByteRange(length, offset)


def _attribute_uris(
    tag: str,
    attributes: list[_Attribute],
    wanted: tuple[tuple[str, UriKind], ...],
    base_url: str,
    part_ends: dict[str, int],
) -> list[tuple[int, int, Uri]]:
    found: list[tuple[int, int, Uri]] = []
    for attribute in attributes:
        kind = next((kind for name, kind in wanted if name == attribute.name), None)
        if kind is None:
            continue
        url = _resolve(attribute.value, base_url)
        if url is None:
            continue
        byterange = None
        if tag == "#EXT-X-MAP":
            spec = _parse_range(_first(attributes, "BYTERANGE") or "")
            if spec is not None:
                byterange = ByteRange(spec[0], spec[1] or 0)
        elif tag == "#EXT-X-PART":
            spec = _parse_range(_first(attributes, "BYTERANGE") or "")
            if spec is not None:
                byterange = _chain(spec, url, part_ends)
        elif tag == "#EXT-X-PRELOAD-HINT":
            if (_first(attributes, "TYPE") or "").upper() == "MAP":
                kind = "init"
            length = _first(attributes, "BYTERANGE-LENGTH") or ""
            start = _first(attributes, "BYTERANGE-START") or "0"
            if length.isdigit() and start.isdigit():
                byterange = ByteRange(int(length), int(start))
        found.append((attribute.start, attribute.end, Uri(kind, url, byterange)))
    return found


# --- rewriting ----------------------------------------------------------------------------


def playlist_uris(text: str, base_url: str) -> list[Uri]:
    """Every URI `rewrite_playlist` would hand to the namer, in the order they appear."""
    return [uri for line in _scan(text, base_url).lines for _, _, uri in line.uris]


def rewrite_playlist(text: str, base_url: str, name: Namer) -> str:
    """The playlist with every http(s) URI replaced by `name(uri)`; nothing else changes.

    `base_url` is the URL the playlist was finally fetched from (after redirects).
    A leading BOM is dropped.
    """
    out: list[str] = []
    for line in _scan(text, base_url).lines:
        if not line.uris:
            out.append(line.text + line.end)
            continue
        names = [_checked(name(uri), uri) for _, _, uri in line.uris]
        pieces: list[str] = []
        position = 0
        for (start, end, _), new in zip(line.uris, names, strict=True):
            pieces += [line.text[position:start], new]
            position = end
        pieces += [line.text[position:], line.end]
        out.append("".join(pieces))
    return "".join(out)


def _checked(new: str, uri: Uri) -> str:
    if not new or new.startswith("#") or any(c in new for c in '"\r\n'):
        raise ValueError(f"a namer gave {new!r} for a {uri.kind} URI: unusable in a playlist")
    return new


# --- reading ------------------------------------------------------------------------------


def read_playlist(text: str, base_url: str) -> PlaylistInfo:
    """The playlist's metadata and media segments. Raises ValueError if it cannot be read."""
    scan = _scan(text, base_url)
    try:
        parsed = m3u8.loads(text.removeprefix(_BOM))
    # The parser raises whatever its casts raise (ValueError, IndexError, ...) on bad input.
    except Exception as exc:
        raise ValueError(f"unreadable playlist: {exc}") from exc
    media_sequence = int(parsed.media_sequence or 0)
    # In a delta update (EXT-X-SKIP) the first segment listed follows the skipped ones.
    skipped = int(parsed.skip.skipped_segments or 0) if parsed.skip else 0
    segments: list[MediaSegment] = []
    for number, segment in enumerate(scan.segments, start=media_sequence + skipped):
        try:
            duration = float(segment.duration.partition(",")[0])
        except ValueError as exc:
            raise ValueError(f"unreadable EXTINF: {segment.duration!r}") from exc
        segments.append(
            MediaSegment(segment.url, duration, number, segment.byterange, segment.discontinuity)
        )
    target_duration = parsed.target_duration
    playlist_type = parsed.playlist_type
    return PlaylistInfo(
        multivariant=bool(parsed.is_variant),
        target_duration=None if target_duration is None else float(target_duration),
        media_sequence=media_sequence,
        discontinuity_sequence=int(parsed.discontinuity_sequence or 0),
        segments=tuple(segments),
        ended=bool(parsed.is_endlist),
        playlist_type=None if playlist_type is None else str(playlist_type).upper(),
    )


# --- editing ------------------------------------------------------------------------------


def end_playlist(text: str) -> str:
    """The same media playlist with EXT-X-ENDLIST appended, unless it already has one.

    Served when a live stream ends, so that players stop instead of retrying a dead
    playlist. A multivariant playlist cannot carry the tag (players do not reload it
    anyway): it comes back unchanged.
    """
    lines = _split_lines(text)
    names = {_tag_name(line.text.strip()) for line in lines}
    if "#EXT-X-ENDLIST" in names or "#EXT-X-STREAM-INF" in names:
        return text
    end = next((line.end for line in lines if line.end), "\n")
    if text and not text.endswith("\n"):
        text += end
    return f"{text}#EXT-X-ENDLIST{end}"


# Sequence numbers do not depend on where the URIs point, so any base serves to count them.
_ANY_BASE = "http://playlist.invalid/"


@dataclass(frozen=True, slots=True)
class Splice:
    """How a new upstream session's playlists continue the playlist already served.

    The new session numbers its segments afresh; players need media sequence numbers that
    only grow, and a discontinuity at the break, or they stall (hls.js) or replay. Made once
    at the break with `between`; `mark_discontinuity` then applies it to every playlist of
    the new session. Each segment keeps its discontinuity sequence number across reloads,
    counted as players do: EXT-X-DISCONTINUITY-SEQUENCE plus the EXT-X-DISCONTINUITY tags up
    to and including the segment's own.

    Not for LL-HLS: LAST-MSN, `_HLS_msn` and the like are not renumbered.
    """

    media_offset: int
    """Added to the new session's media sequence numbers."""
    discontinuity_offset: int
    """Added to the new session's discontinuity sequence numbers."""
    first_sequence: int
    """The media sequence number (as served) of the new session's first segment, the one
    that carries the EXT-X-DISCONTINUITY."""

    @classmethod
    def between(cls, served: str, new: str) -> Splice:
        """`served`: the last playlist served to players (itself possibly spliced);
        `new`: the first playlist of the new session."""
        before = read_playlist(served, _ANY_BASE)
        if before.segments:
            last = before.segments[-1]
            next_sequence = last.sequence + 1
            next_discontinuity = _discontinuity_numbers(before)[-1] + 1
        else:
            next_sequence = before.media_sequence
            next_discontinuity = before.discontinuity_sequence + 1
        after = read_playlist(new, _ANY_BASE)
        if after.segments:
            first = after.segments[0]
            first_sequence = first.sequence
            first_discontinuity = after.discontinuity_sequence + int(first.discontinuity)
        else:
            # The next segment the session adds will carry the media sequence number.
            first_sequence = after.media_sequence
            first_discontinuity = after.discontinuity_sequence
        return cls(
            media_offset=next_sequence - first_sequence,
            discontinuity_offset=next_discontinuity - first_discontinuity,
            first_sequence=next_sequence,
        )


def _discontinuity_numbers(info: PlaylistInfo) -> list[int]:
    numbers: list[int] = []
    current = info.discontinuity_sequence
    for segment in info.segments:
        current += int(segment.discontinuity)
        numbers.append(current)
    return numbers


def mark_discontinuity(text: str, splice: Splice) -> str:
    """A playlist of the new session, renumbered to continue the served one (see `Splice`).

    Sets EXT-X-MEDIA-SEQUENCE and EXT-X-DISCONTINUITY-SEQUENCE (adding them after #EXTM3U
    if missing), and puts EXT-X-DISCONTINUITY before the break segment while it is still
    in the playlist. Every other line is kept byte for byte.
    """
    scan = _scan(text, _ANY_BASE)
    info = read_playlist(text, _ANY_BASE)
    if info.multivariant:
        raise ValueError("only a media playlist can be spliced")
    lines = scan.lines
    head = next((i for i, line in enumerate(lines) if line.text.strip() == "#EXTM3U"), None)
    if head is None:
        raise ValueError("not a playlist: no #EXTM3U line")

    break_at: int | None = None
    for segment, read in zip(scan.segments, info.segments, strict=True):
        if read.sequence + splice.media_offset == splice.first_sequence:
            if not read.discontinuity:
                break_at = segment.start
            break
    discontinuity_sequence = info.discontinuity_sequence + splice.discontinuity_offset
    if break_at is not None:
        # The inserted tag counts towards the break segment's number: start one lower.
        discontinuity_sequence -= 1
    end = next((line.end for line in lines if line.end), "\n")
    headers = {
        "#EXT-X-MEDIA-SEQUENCE": info.media_sequence + splice.media_offset,
        "#EXT-X-DISCONTINUITY-SEQUENCE": discontinuity_sequence,
    }
    present = {_tag_name(line.text.strip()) for line in lines}
    # Headers missing from the text go right after #EXTM3U, which is before any segment and
    # any EXT-X-DISCONTINUITY, as RFC 8216 requires.
    missing = [f"{name}:{value}{end}" for name, value in headers.items() if name not in present]
    out: list[str] = []
    for index, line in enumerate(lines):
        if index == break_at:
            out.append(f"#EXT-X-DISCONTINUITY{end}")
        name = _tag_name(line.text.strip())
        if name in headers:
            out.append(f"{name}:{headers[name]}{line.end}")
        elif index == head and missing:
            out += [line.text + (line.end or end), *missing]
        else:
            out.append(line.text + line.end)
    return "".join(out)
