"""A playlist's text cut into pieces that know their place: lines with their own line ends,
tag names, attribute lists with the span of every value.

Rewriting goes line by line, because parsing into objects and dumping back loses what the
parser does not model (custom tags, comments, spacing). A line that carries no URI comes out
byte for byte, with its own line end; only the spans a line's edits name are replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .uri import Uri

BOM = "\ufeff"

Edit = tuple[int, int, Uri | str]


@dataclass(slots=True)
class Line:
    text: str
    """The line without its line end."""
    end: str
    """"\\n", "\\r\\n", or "" for a last line with none."""
    name: str = ""
    """The tag's name, for a tag line."""
    edits: list[Edit] = field(default_factory=list)
    """Spans of `text` to replace, left to right: a URI to name, or text to put instead."""
    dropped: bool = False
    """Left out of the output: it named the upstream."""

    @property
    def uris(self) -> list[Uri]:
        return [uri for _, _, uri in self.uri_edits()]

    def uri_edits(self) -> list[tuple[int, int, Uri]]:
        return [(a, b, new) for a, b, new in self.edits if isinstance(new, Uri)]

    def kept(self) -> str:
        """The text that stays as it is: everything outside the edits, the pieces apart so
        that the text either side of an edit cannot spell a host name together."""
        pieces, position = [], 0
        for start, end, _ in self.edits:
            pieces.append(self.text[position:start])
            position = end
        pieces.append(self.text[position:])
        return " ".join(pieces)


def split_lines(text: str) -> list[Line]:
    pieces = text.removeprefix(BOM).split("\n")
    lines = [
        Line(piece[:-1], "\r\n") if piece.endswith("\r") else Line(piece, "\n")
        for piece in pieces[:-1]
    ]
    if pieces[-1]:
        lines.append(Line(pieces[-1], ""))
    return lines


def line_end(lines: list[Line]) -> str:
    """The playlist's own line end, for lines added to it."""
    return next((line.end for line in lines if line.end), "\n")


def tag_name(stripped: str) -> str:
    return stripped.partition(":")[0]


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    value: str
    start: int
    """Where the value (inside its quotes, if quoted) starts and ends in the line."""
    end: int
    first: int
    """Where the attribute starts (its name) and ends (after a closing quote)."""
    last: int


def attribute_list(line: str, start: int) -> list[Attribute]:
    """Parses an attribute list: NAME=value pairs split by commas outside quoted strings.

    Lenient where real playlists are sloppy (spaces around names and '=', a token with no
    '=', an unterminated quote, which runs to the end of the line).
    """
    found: list[Attribute] = []
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
            found.append(Attribute(name, line[j + 1 : close], j + 1, close, i, last))
            comma = line.find(",", close)
        else:
            comma = line.find(",", j)
            value = line[j : n if comma < 0 else comma].rstrip()
            found.append(Attribute(name, value, j, j + len(value), i, j + len(value)))
        i = n if comma < 0 else comma + 1
    return found


def value_of(attributes: list[Attribute], name: str) -> str | None:
    return next((a.value for a in attributes if a.name == name), None)
