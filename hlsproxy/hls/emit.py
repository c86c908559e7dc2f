"""A scanned playlist written back out as text, with its edits applied.

Only what the scan marked changes: a line's URIs (through the namer, when there is one), its
cut spans, the lines dropped, and the header values a `Renumbering` sets. Every other byte,
line end included, comes out as it came in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from .lines import Line, line_end
from .tags import Scan
from .uri import Uri

Namer = Callable[[Uri], str]
"""Returns the text that replaces a URI: not empty, not starting with '#', and with no '"',
CR or LF (it goes inside a quoted attribute, or on a line of its own)."""


class Renumbering(NamedTuple):
    headers: Mapping[str, int]
    """Header tags' new values, by tag name."""
    missing: Sequence[str]
    """Header lines, line end included, to add after #EXTM3U."""
    break_at: int | None
    """The line before which an EXT-X-DISCONTINUITY goes."""


_UNCHANGED = Renumbering({}, (), None)


def emit(scan: Scan, name: Namer | None, renumbering: Renumbering | None = None) -> str:
    """The playlist's text: URIs replaced by `name(uri)`, or kept as written without a namer."""
    lines = scan.lines
    end = line_end(lines)
    headers, missing, break_at = renumbering or _UNCHANGED
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


def _edited(line: Line, name: Namer | None) -> str:
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
