"""HLS playlists as text: recognise them, read their metadata, rewrite every URI they carry.

Pure: text in, text or data out; no I/O, no clock.

Rewriting goes line by line, because parsing into objects and dumping back loses what the
parser does not model (custom tags, comments, spacing). A line that carries no URI comes out
byte for byte, with its own line end; only the URI inside a URI line or a URI attribute is
replaced. What each tag means is registered once (`_TAGS`: which attributes hold URIs, whether
it belongs to a segment, what it tells the scan); one scan collects the lines' edits, the
segments and the playlist's numbers, so that the segments `read_playlist` reports are exactly
the URIs `rewrite_playlist` hands to the namer. A tag nobody registered is still searched for
`URI` and `*-URI` attributes.

No line leaves with the upstream's host in it, outside a named URI: players must not learn
where the engine is. A non-URI attribute carrying it is removed, an EXTINF title is dropped,
any other line goes (a segment whose URI is not http(s) goes with its tags).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import unquote, urljoin, urlsplit

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

_RANGE = re.compile(r"\s*(\d+)(?:@(\d+))?\s*")
_HTTP = ("http", "https")


@dataclass(frozen=True, slots=True)
class _Attribute:
    name: str
    value: str
    start: int
    """Where the value (inside its quotes, if quoted) starts and ends in the line."""
    end: int
    first: int
    """Where the attribute starts (its name) and ends (after a closing quote)."""
    last: int


_Edit = tuple[int, int, Uri | str]


@dataclass(slots=True)
class _Line:
    text: str
    """The line without its line end."""
    end: str
    """"\\n", "\\r\\n", or "" for a last line with none."""
    name: str = ""
    """The tag's name, for a tag line."""
    edits: list[_Edit] = field(default_factory=list)
    """Spans of `text` to replace, left to right: a URI to name, or text to put instead."""
    dropped: bool = False
    """Left out of the output: it named the upstream."""

    @property
    def uris(self) -> list[Uri]:
        return [uri for _, _, uri in _uri_edits(self)]

    def kept(self) -> str:
        """The text that stays as it is: everything outside the edits, the pieces apart so
        that the text either side of an edit cannot spell a host name together."""
        pieces, position = [], 0
        for start, end, _ in self.edits:
            pieces.append(self.text[position:start])
            position = end
        pieces.append(self.text[position:])
        return " ".join(pieces)


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
    """One pass over a playlist: its lines with their edits, its segments, its metadata."""

    base_url: str
    upstream: re.Pattern[str]
    """The upstream's host name: no line may carry it outside a named URI."""
    lines: list[_Line]
    segments: list[_Segment] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    """Playlist tags' values as written (numbers are read by `_info`, which may fail)."""
    head: int | None = None
    """Index of the #EXTM3U line."""
    multivariant: bool = False
    ended: bool = False
    orphans: list[int] = field(default_factory=list)
    """URI lines with no EXTINF or STREAM-INF before them: their kind is known at the end."""
    # Where each URI's last range ended, by chain: omitted offsets continue from there.
    segment_ends: dict[str, int] = field(default_factory=dict)
    part_ends: dict[str, int] = field(default_factory=dict)
    # The media segment (or variant) being read: what its tags said so far.
    extinf: str | None = None
    pending_range: tuple[int, int | None] | None = None
    discontinuity: bool = False
    stream_inf: bool = False
    block_start: int | None = None


_Read = Callable[[_Scan, int, str, list[_Attribute]], None]
"""What a tag tells the scan: (scan, line index, the value after ':', its attributes)."""
_Locate = Callable[[_Scan, UriKind, str, list[_Attribute]], Uri]
"""The Uri a URI attribute of the tag names: (scan, kind, resolved URL, the attributes)."""


@dataclass(frozen=True, slots=True)
class _Tag:
    uris: Mapping[str, UriKind]
    """Attributes that hold a URI, and what it points to; beyond these, in every tag,
    `URI` and `*-URI` attributes name an "other" resource."""
    segment: bool
    """Belongs to the media segment after it (marks where that segment starts)."""
    attributes: bool
    """Its value is an attribute list."""
    read: _Read | None
    locate: _Locate | None


_TAGS: dict[str, _Tag] = {}
_UNKNOWN = _Tag({}, segment=False, attributes=True, read=None, locate=None)


def _tag(
    name: str,
    *,
    uris: Mapping[str, UriKind] | None = None,
    segment: bool = False,
    attributes: bool = True,
    read: _Read | None = None,
    locate: _Locate | None = None,
) -> None:
    _TAGS[name] = _Tag(uris or {}, segment, attributes, read, locate)


def _reads(
    name: str, *, segment: bool = False, attributes: bool = False
) -> Callable[[_Read], _Read]:
    def register(read: _Read) -> _Read:
        _tag(name, segment=segment, attributes=attributes, read=read)
        return read

    return register


def _locates(
    name: str, uris: Mapping[str, UriKind], *, segment: bool = False
) -> Callable[[_Locate], _Locate]:
    def register(locate: _Locate) -> _Locate:
        _tag(name, uris=uris, segment=segment, locate=locate)
        return locate

    return register


def _keep_value(scan: _Scan, index: int, value: str, attributes: list[_Attribute]) -> None:
    scan.values[scan.lines[index].name] = value.strip()


for _name in (
    "#EXT-X-TARGETDURATION",
    "#EXT-X-MEDIA-SEQUENCE",
    "#EXT-X-DISCONTINUITY-SEQUENCE",
    "#EXT-X-PLAYLIST-TYPE",
):
    _tag(_name, attributes=False, read=_keep_value)
for _name in ("#EXT-X-PROGRAM-DATE-TIME", "#EXT-X-BITRATE", "#EXT-X-GAP"):
    _tag(_name, segment=True, attributes=False)
_tag("#EXT-X-KEY", uris={"URI": "key"}, segment=True)
_tag("#EXT-X-SESSION-KEY", uris={"URI": "key"})
_tag("#EXT-X-SESSION-DATA", uris={"URI": "other"})
_tag("#EXT-X-CONTENT-STEERING", uris={"SERVER-URI": "other"})
# HLS interstitials: the asset is a multivariant playlist, the asset list is JSON.
_tag("#EXT-X-DATERANGE", uris={"X-ASSET-URI": "playlist", "X-ASSET-LIST": "other"}, segment=True)
for _name in (
    "#EXT-X-MEDIA",
    "#EXT-X-I-FRAME-STREAM-INF",
    "#EXT-X-IMAGE-STREAM-INF",
    "#EXT-X-RENDITION-REPORT",
):
    _tag(_name, uris={"URI": "playlist"})


@_reads("#EXTM3U")
def _header(scan: _Scan, index: int, value: str, attributes: list[_Attribute]) -> None:
    if scan.head is None:
        scan.head = index


@_reads("#EXTINF", segment=True)
def _extinf(scan: _Scan, index: int, value: str, attributes: list[_Attribute]) -> None:
    scan.extinf = value.strip()


@_reads("#EXT-X-BYTERANGE", segment=True)
def _byterange(scan: _Scan, index: int, value: str, attributes: list[_Attribute]) -> None:
    scan.pending_range = _parse_range(value)


@_reads("#EXT-X-DISCONTINUITY", segment=True)
def _discontinuity(scan: _Scan, index: int, value: str, attributes: list[_Attribute]) -> None:
    scan.discontinuity = True


@_reads("#EXT-X-ENDLIST")
def _endlist(scan: _Scan, index: int, value: str, attributes: list[_Attribute]) -> None:
    scan.ended = True


@_reads("#EXT-X-STREAM-INF", attributes=True)
def _stream_inf(scan: _Scan, index: int, value: str, attributes: list[_Attribute]) -> None:
    scan.stream_inf = scan.multivariant = True


@_reads("#EXT-X-SKIP", attributes=True)
def _skip(scan: _Scan, index: int, value: str, attributes: list[_Attribute]) -> None:
    scan.values["SKIPPED-SEGMENTS"] = _first(attributes, "SKIPPED-SEGMENTS") or "0"


@_locates("#EXT-X-MAP", {"URI": "init"}, segment=True)
def _map(scan: _Scan, kind: UriKind, url: str, attributes: list[_Attribute]) -> Uri:
    spec = _parse_range(_first(attributes, "BYTERANGE") or "")
    return Uri(kind, url, None if spec is None else ByteRange(spec[0], spec[1] or 0))


@_locates("#EXT-X-PART", {"URI": "part"}, segment=True)
def _part(scan: _Scan, kind: UriKind, url: str, attributes: list[_Attribute]) -> Uri:
    spec = _parse_range(_first(attributes, "BYTERANGE") or "")
    return Uri(kind, url, None if spec is None else _chain(spec, url, scan.part_ends))


@_locates("#EXT-X-PRELOAD-HINT", {"URI": "part"})
def _preload_hint(scan: _Scan, kind: UriKind, url: str, attributes: list[_Attribute]) -> Uri:
    if (_first(attributes, "TYPE") or "").upper() == "MAP":
        kind = "init"
    length = _first(attributes, "BYTERANGE-LENGTH") or ""
    start = _first(attributes, "BYTERANGE-START") or "0"
    if length.isdigit() and start.isdigit():
        return Uri(kind, url, ByteRange(int(length), int(start)))
    return Uri(kind, url)


def _uri_kind(tag: _Tag, attribute: str) -> UriKind | None:
    kind = tag.uris.get(attribute)
    if kind is None and (attribute == "URI" or attribute.endswith("-URI")):
        return "other"
    return kind


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
            last = n if close < 0 else close + 1
            close = n if close < 0 else close
            found.append(_Attribute(name, line[j + 1 : close], j + 1, close, i, last))
            comma = line.find(",", close)
        else:
            comma = line.find(",", j)
            value = line[j : n if comma < 0 else comma].rstrip()
            found.append(_Attribute(name, value, j, j + len(value), i, j + len(value)))
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


def _upstream(base_url: str) -> re.Pattern[str]:
    parts = urlsplit(base_url)
    if parts.scheme.lower() not in _HTTP or not parts.hostname:
        raise ValueError(f"the base URL must be an absolute http(s) URL, not {base_url!r}")
    # Anywhere, even inside a longer name or address: a false alarm costs only a line.
    return re.compile(re.escape(parts.hostname.lower()))


def _names_upstream(scan: _Scan, text: str) -> bool:
    """Whether text carries the upstream's host, in any case, percent-encoded or not."""
    lowered = text.lower()
    return bool(scan.upstream.search(lowered) or scan.upstream.search(unquote(lowered)))


def _parse_range(spec: str) -> tuple[int, int | None] | None:
    match = _RANGE.fullmatch(spec)
    if match is None:
        return None
    offset = match.group(2)
    return int(match.group(1)), None if offset is None else int(offset)


def _chain(spec: tuple[int, int | None], url: str, ends: dict[str, int]) -> ByteRange:
    length, offset = spec
    if offset is None:
        offset = ends.get(url, 0)
    ends[url] = offset + length
    return ByteRange(length, offset)


def _scan(text: str, base_url: str) -> _Scan:
    scan = _Scan(base_url, _upstream(base_url), _split_lines(text))
    for index, line in enumerate(scan.lines):
        stripped = line.text.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            _scan_tag(scan, index, line, stripped)
        else:
            _scan_uri(scan, index, line, stripped)
    if scan.multivariant:  # then an orphan is a playlist, and a playlist has no range
        for index in scan.orphans:
            line = scan.lines[index]
            line.edits = [
                (a, b, replace(uri, kind="playlist", byterange=None))
                for a, b, uri in _uri_edits(line)
            ]
    return scan


def _uri_edits(line: _Line) -> list[tuple[int, int, Uri]]:
    return [(a, b, new) for a, b, new in line.edits if isinstance(new, Uri)]


def _plain(scan: _Scan, kind: UriKind, url: str, attributes: list[_Attribute]) -> Uri:
    return Uri(kind, url)


def _scan_tag(scan: _Scan, index: int, line: _Line, stripped: str) -> None:
    indent = len(line.text) - len(line.text.lstrip())
    line.name = name = _tag_name(stripped)
    tag = _TAGS.get(name, _UNKNOWN)
    if tag.segment and scan.block_start is None:
        scan.block_start = index
    value_at = indent + len(name) + 1
    attributes = _attributes(line.text, value_at) if tag.attributes else []
    if tag.read is not None:
        tag.read(scan, index, line.text[value_at:], attributes)
    for attribute in attributes:
        kind = _uri_kind(tag, attribute.name)
        url = None if kind is None else _resolve(attribute.value, scan.base_url)
        if kind is not None and url is not None:
            new = (tag.locate or _plain)(scan, kind, url, attributes)
            line.edits.append((attribute.start, attribute.end, new))
        elif _names_upstream(scan, line.text[attribute.first : attribute.last]):
            line.edits.append((*_cut(line.text, attribute), ""))
    if _names_upstream(scan, line.kept()):
        if name == "#EXTINF":  # the duration is needed; the title is not
            line.text, line.edits = f"#EXTINF:{(scan.extinf or '').partition(',')[0]},", []
        else:
            line.dropped = True


def _cut(text: str, attribute: _Attribute) -> tuple[int, int]:
    """The span that removes an attribute and one comma next to it."""
    start, end = attribute.first, attribute.last
    after = text[end:].lstrip(" \t")
    if after.startswith(","):
        return start, len(text) - len(after) + 1
    before = text[:start].rstrip(" \t")
    if before.endswith(","):
        return len(before) - 1, end
    return start, end


def _scan_uri(scan: _Scan, index: int, line: _Line, stripped: str) -> None:
    # A URI line with no EXTINF or STREAM-INF before it is malformed, but it is still
    # rewritten, so that no upstream address reaches a player.
    indent = len(line.text) - len(line.text.lstrip())
    kind: UriKind = "playlist" if scan.stream_inf else "segment"
    url = _resolve(stripped, scan.base_url)
    byterange = None
    if kind == "segment" and scan.pending_range is not None:
        byterange = _chain(scan.pending_range, url or stripped, scan.segment_ends)
    start = index if scan.block_start is None else scan.block_start
    if url is not None:
        line.edits = [(indent, indent + len(stripped), Uri(kind, url, byterange))]
        if scan.extinf is None and not scan.stream_inf:
            scan.orphans.append(index)
    elif _names_upstream(scan, stripped):
        # Not a resource the proxy can serve, and it would tell players where the
        # upstream is: the segment goes, with its tags.
        for dropped in scan.lines[start : index + 1]:
            dropped.dropped = True
    if scan.extinf is not None and not scan.stream_inf and not line.dropped:
        segment = _Segment(url or stripped, scan.extinf, byterange, scan.discontinuity, start)
        scan.segments.append(segment)
    scan.extinf = scan.pending_range = scan.block_start = None
    scan.discontinuity = scan.stream_inf = False


# --- reading ------------------------------------------------------------------------------


def _info(scan: _Scan) -> PlaylistInfo:
    """The playlist's numbers. Raises ValueError if one cannot be read."""
    values = scan.values

    def number(name: str) -> int:
        try:
            return int(values.get(name, "0"))
        except ValueError as exc:
            raise ValueError(f"unreadable {name}: {values[name]!r}") from exc

    target = values.get("#EXT-X-TARGETDURATION")
    try:
        target_duration = None if target is None else float(target)
    except ValueError as exc:
        raise ValueError(f"unreadable EXT-X-TARGETDURATION: {target!r}") from exc
    media_sequence = 0 if scan.multivariant else number("#EXT-X-MEDIA-SEQUENCE")
    # In a delta update (EXT-X-SKIP) the first segment listed follows the skipped ones.
    first = media_sequence + number("SKIPPED-SEGMENTS")
    segments: list[MediaSegment] = []
    for sequence, segment in enumerate(scan.segments, start=first):
        try:
            duration = float(segment.duration.partition(",")[0])
        except ValueError as exc:
            raise ValueError(f"unreadable EXTINF: {segment.duration!r}") from exc
        segments.append(
            MediaSegment(segment.url, duration, sequence, segment.byterange, segment.discontinuity)
        )
    playlist_type = values.get("#EXT-X-PLAYLIST-TYPE")
    return PlaylistInfo(
        multivariant=scan.multivariant,
        target_duration=target_duration,
        media_sequence=media_sequence,
        discontinuity_sequence=number("#EXT-X-DISCONTINUITY-SEQUENCE"),
        segments=tuple(segments),
        ended=scan.ended,
        playlist_type=None if playlist_type is None else playlist_type.upper(),
    )


def read_playlist(text: str, base_url: str) -> PlaylistInfo:
    """The playlist's metadata and media segments. Raises ValueError if it cannot be read."""
    return _info(_scan(text, base_url))


def playlist_uris(text: str, base_url: str) -> list[Uri]:
    """Every URI `rewrite_playlist` would hand to the namer, in the order they appear."""
    return [uri for line in _scan(text, base_url).lines for uri in line.uris]


# --- rewriting ----------------------------------------------------------------------------


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
    scan = _scan(text, base_url)
    info = _info(scan)
    return Rewritten(_emit(scan, name, None if splice is None else (splice, info)), info)


def rewrite_playlist(text: str, base_url: str, name: Namer) -> str:
    """The playlist with every http(s) URI replaced by `name(uri)`.

    `base_url` is the URL the playlist was finally fetched from (after redirects). No line
    keeps the host of `base_url` outside a URI that went through the namer: another
    attribute that carries it is removed, an EXTINF loses its title, any other line goes.
    Nothing else changes. A leading BOM is dropped.
    """
    return _emit(_scan(text, base_url), name, None)


def _emit(scan: _Scan, name: Namer | None, splice: tuple[Splice, PlaylistInfo] | None) -> str:
    lines = scan.lines
    end = next((line.end for line in lines if line.end), "\n")
    headers: dict[str, int] = {}
    missing: list[str] = []
    break_at: int | None = None
    if splice is not None:
        headers, missing, break_at = _renumbering(scan, *splice, end)
    out: list[str] = []
    for index, line in enumerate(lines):
        if index == break_at:
            out.append(f"#EXT-X-DISCONTINUITY{end}")
        if line.dropped:
            continue
        if line.name in headers:
            out.append(f"{line.name}:{headers[line.name]}{line.end}")
        elif index == scan.head and missing:
            out += [line.text + (line.end or end), *missing]
        else:
            out.append(_edited(line, name) + line.end)
    return "".join(out)


def _edited(line: _Line, name: Namer | None) -> str:
    pieces: list[str] = []
    position = 0
    for start, end, edit in line.edits:
        if isinstance(edit, str):
            new = edit
        else:
            new = line.text[start:end] if name is None else _checked(name(edit), edit)
        pieces += [line.text[position:start], new]
        position = end
    pieces.append(line.text[position:])
    return "".join(pieces)


def _checked(new: str, uri: Uri) -> str:
    if not new or new.startswith("#") or any(c in new for c in '"\r\n'):
        raise ValueError(f"a namer gave {new!r} for a {uri.kind} URI: unusable in a playlist")
    return new


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
    return _emit(scan, None, (splice, _info(scan)))


def _renumbering(
    scan: _Scan, splice: Splice, info: PlaylistInfo, end: str
) -> tuple[dict[str, int], list[str], int | None]:
    """The header values to set, the header lines to add, and the line before which the
    break's EXT-X-DISCONTINUITY goes."""
    if info.multivariant:
        raise ValueError("only a media playlist can be spliced")
    if scan.head is None:
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
    headers = {
        "#EXT-X-MEDIA-SEQUENCE": info.media_sequence + splice.media_offset,
        "#EXT-X-DISCONTINUITY-SEQUENCE": discontinuity_sequence,
    }
    present = {line.name for line in scan.lines}
    # Headers missing from the text go right after #EXTM3U, which is before any segment and
    # any EXT-X-DISCONTINUITY, as RFC 8216 requires.
    missing = [f"{name}:{value}{end}" for name, value in headers.items() if name not in present]
    return headers, missing, break_at
