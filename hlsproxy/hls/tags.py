"""The tag table: what each playlist tag means to the `Scan` it fills.

Each tag is registered once: which attributes hold URIs, whether it belongs to a segment,
what it records in the scan. A tag nobody registered is still searched for `URI` and `*-URI`
attributes.

Byte ranges (`n[@o]`), when `@o` is omitted:
- `EXT-X-BYTERANGE` continues after the previous segment range of the same URI (RFC 8216
  §4.3.2.2 requires that previous segment to be of the same resource);
- `EXT-X-PART` continues after the previous part range of the same URI;
- `EXT-X-MAP` starts at 0: an init section repeated after a discontinuity is the same bytes;
- `EXT-X-PRELOAD-HINT` uses BYTERANGE-START (default 0) and BYTERANGE-LENGTH; without a
  length the hint runs to the end of the resource, which a `ByteRange` cannot say, so the
  URI carries no range and the player's own `Range` header selects the bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .lines import Attribute, Line, value_of
from .uri import ByteRange, Uri, UriKind

_RANGE = re.compile(r"\s*(\d+)(?:@(\d+))?\s*")


@dataclass(frozen=True, slots=True)
class Segment:
    url: str
    duration: str
    """The EXTINF value as written: `<duration>,[<title>]`."""
    byterange: ByteRange | None
    discontinuity: bool
    start: int
    """Index of the segment's first line (its first media segment tag)."""


@dataclass(slots=True)
class Scan:
    """One pass over a playlist: its lines with their edits, its segments, its metadata."""

    base_url: str
    upstream: re.Pattern[str]
    """The upstream's host name: no line may carry it outside a named URI."""
    lines: list[Line]
    segments: list[Segment] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    """Playlist tags' values as written (numbers are read by `playlist_info`, which may
    fail)."""
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


_Read = Callable[[Scan, int, str, list[Attribute]], None]
"""What a tag tells the scan: (scan, line index, the value after ':', its attributes)."""
_Locate = Callable[[Scan, UriKind, str, list[Attribute]], Uri]
"""The Uri a URI attribute of the tag names: (scan, kind, resolved URL, the attributes)."""


@dataclass(frozen=True, slots=True)
class Tag:
    uris: Mapping[str, UriKind]
    """Attributes that hold a URI, and what it points to; beyond these, in every tag,
    `URI` and `*-URI` attributes name an "other" resource."""
    segment: bool
    """Belongs to the media segment after it (marks where that segment starts)."""
    attributes: bool
    """Its value is an attribute list."""
    read: _Read | None
    locate: _Locate | None


TAGS: dict[str, Tag] = {}
UNKNOWN = Tag({}, segment=False, attributes=True, read=None, locate=None)


def _tag(
    name: str,
    *,
    uris: Mapping[str, UriKind] | None = None,
    segment: bool = False,
    attributes: bool = True,
    read: _Read | None = None,
    locate: _Locate | None = None,
) -> None:
    TAGS[name] = Tag(uris or {}, segment, attributes, read, locate)


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


def _keep_value(scan: Scan, index: int, value: str, attributes: list[Attribute]) -> None:
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
def _header(scan: Scan, index: int, value: str, attributes: list[Attribute]) -> None:
    if scan.head is None:
        scan.head = index


@_reads("#EXTINF", segment=True)
def _extinf(scan: Scan, index: int, value: str, attributes: list[Attribute]) -> None:
    scan.extinf = value.strip()


@_reads("#EXT-X-BYTERANGE", segment=True)
def _byterange(scan: Scan, index: int, value: str, attributes: list[Attribute]) -> None:
    scan.pending_range = _parse_range(value)


@_reads("#EXT-X-DISCONTINUITY", segment=True)
def _discontinuity(scan: Scan, index: int, value: str, attributes: list[Attribute]) -> None:
    scan.discontinuity = True


@_reads("#EXT-X-ENDLIST")
def _endlist(scan: Scan, index: int, value: str, attributes: list[Attribute]) -> None:
    scan.ended = True


@_reads("#EXT-X-STREAM-INF", attributes=True)
def _stream_inf(scan: Scan, index: int, value: str, attributes: list[Attribute]) -> None:
    scan.stream_inf = scan.multivariant = True


@_reads("#EXT-X-SKIP", attributes=True)
def _skip(scan: Scan, index: int, value: str, attributes: list[Attribute]) -> None:
    scan.values["SKIPPED-SEGMENTS"] = value_of(attributes, "SKIPPED-SEGMENTS") or "0"


@_locates("#EXT-X-MAP", {"URI": "init"}, segment=True)
def _map(scan: Scan, kind: UriKind, url: str, attributes: list[Attribute]) -> Uri:
    spec = _parse_range(value_of(attributes, "BYTERANGE") or "")
    return Uri(kind, url, None if spec is None else ByteRange(spec[0], spec[1] or 0))


@_locates("#EXT-X-PART", {"URI": "part"}, segment=True)
def _part(scan: Scan, kind: UriKind, url: str, attributes: list[Attribute]) -> Uri:
    spec = _parse_range(value_of(attributes, "BYTERANGE") or "")
    return Uri(kind, url, None if spec is None else chain(spec, url, scan.part_ends))


@_locates("#EXT-X-PRELOAD-HINT", {"URI": "part"})
def _preload_hint(scan: Scan, kind: UriKind, url: str, attributes: list[Attribute]) -> Uri:
    if (value_of(attributes, "TYPE") or "").upper() == "MAP":
        kind = "init"
    length = value_of(attributes, "BYTERANGE-LENGTH") or ""
    start = value_of(attributes, "BYTERANGE-START") or "0"
    if length.isdigit() and start.isdigit():
        return Uri(kind, url, ByteRange(int(length), int(start)))
    return Uri(kind, url)


def uri_kind(tag: Tag, attribute: str) -> UriKind | None:
    kind = tag.uris.get(attribute)
    if kind is None and (attribute == "URI" or attribute.endswith("-URI")):
        return "other"
    return kind


def _parse_range(spec: str) -> tuple[int, int | None] | None:
    match = _RANGE.fullmatch(spec)
    if match is None:
        return None
    offset = match.group(2)
    return int(match.group(1)), None if offset is None else int(offset)


def chain(spec: tuple[int, int | None], url: str, ends: dict[str, int]) -> ByteRange:
    length, offset = spec
    if offset is None:
        offset = ends.get(url, 0)
    ends[url] = offset + length
    return ByteRange(length, offset)
