"""The one pass over a playlist's lines that every reading or rewriting of it starts from.

It collects each line's edits, the segments and the playlist's numbers together, so that the
segments `read_playlist` reports are exactly the URIs `rewrite_playlist` hands to the namer.

No line leaves with the upstream's host in it, outside a named URI: players must not learn
where the engine is. A non-URI attribute carrying it is removed, an EXTINF title is dropped,
any other line goes (a segment whose URI is not http(s) goes with its tags).
"""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import unquote, urlsplit

from .lines import Attribute, Line, attribute_list, split_lines, tag_name
from .tags import TAGS, UNKNOWN, Scan, Segment, chain, uri_kind
from .uri import HTTP_SCHEMES, Uri, UriKind, resolve


def scan_playlist(text: str, base_url: str) -> Scan:
    """Raises ValueError if `base_url` is not an absolute http(s) URL."""
    scan = Scan(base_url, _upstream(base_url), split_lines(text))
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
                for a, b, uri in line.uri_edits()
            ]
    return scan


def _upstream(base_url: str) -> re.Pattern[str]:
    parts = urlsplit(base_url)
    if parts.scheme.lower() not in HTTP_SCHEMES or not parts.hostname:
        raise ValueError(f"the base URL must be an absolute http(s) URL, not {base_url!r}")
    # Anywhere, even inside a longer name or address: a false alarm costs only a line.
    return re.compile(re.escape(parts.hostname.lower()))


def _names_upstream(scan: Scan, text: str) -> bool:
    """Whether text carries the upstream's host, in any case, percent-encoded or not."""
    lowered = text.lower()
    return bool(scan.upstream.search(lowered) or scan.upstream.search(unquote(lowered)))


def _plain(scan: Scan, kind: UriKind, url: str, attributes: list[Attribute]) -> Uri:
    return Uri(kind, url)


def _scan_tag(scan: Scan, index: int, line: Line, stripped: str) -> None:
    indent = len(line.text) - len(line.text.lstrip())
    line.name = name = tag_name(stripped)
    tag = TAGS.get(name, UNKNOWN)
    if tag.segment and scan.block_start is None:
        scan.block_start = index
    value_at = indent + len(name) + 1
    attributes = attribute_list(line.text, value_at) if tag.attributes else []
    if tag.read is not None:
        tag.read(scan, index, line.text[value_at:], attributes)
    for attribute in attributes:
        kind = uri_kind(tag, attribute.name)
        url = None if kind is None else resolve(attribute.value, scan.base_url)
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


def _cut(text: str, attribute: Attribute) -> tuple[int, int]:
    """The span that removes an attribute and one comma next to it."""
    start, end = attribute.first, attribute.last
    after = text[end:].lstrip(" \t")
    if after.startswith(","):
        return start, len(text) - len(after) + 1
    before = text[:start].rstrip(" \t")
    if before.endswith(","):
        return len(before) - 1, end
    return start, end


def _scan_uri(scan: Scan, index: int, line: Line, stripped: str) -> None:
    # A URI line with no EXTINF or STREAM-INF before it is malformed, but it is still
    # rewritten, so that no upstream address reaches a player.
    indent = len(line.text) - len(line.text.lstrip())
    kind: UriKind = "playlist" if scan.stream_inf else "segment"
    url = resolve(stripped, scan.base_url)
    byterange = None
    if kind == "segment" and scan.pending_range is not None:
        byterange = chain(scan.pending_range, url or stripped, scan.segment_ends)
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
        segment = Segment(url or stripped, scan.extinf, byterange, scan.discontinuity, start)
        scan.segments.append(segment)
    scan.extinf = scan.pending_range = scan.block_start = None
    scan.discontinuity = scan.stream_inf = False
