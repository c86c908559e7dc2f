"""Go's syntaxes for option values, as acexy reads them: pure functions of a string.

Durations are ``time.ParseDuration``'s (``1m30s``), sizes go-humanize's (``4MiB``), booleans
``strconv.ParseBool``'s (``T``), whole numbers ``strconv.Atoi``'s and listen addresses
``net.Listen``'s (``:8080``). Each parser raises :class:`ValueError` whose message says what
was expected, so a caller can name the variable or flag the text came from.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

# Go keeps durations in int64 nanoseconds; anything longer does not parse there either.
_MAX_DURATION_NS = 2**63 - 1
_DURATION_UNITS_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
# Go reads a unit as the whole run of characters up to the next digit or dot, so "1mss"
# and "1hm" are unknown units there; anchoring each number to one known unit matches that.
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
DURATION_EXAMPLES = "such as 300ms, 1.5s, 1m or 1h30m"


def parse_duration(text: str) -> float:
    """Parse a Go duration (``time.ParseDuration``) into seconds; the sign is kept."""
    rest = text
    sign = 1
    if rest[:1] in ("+", "-"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"a duration {DURATION_EXAMPLES}")
    total_ns = Fraction(0)
    position = 0
    while position < len(rest):
        part = _DURATION_PART.match(rest, position)
        number = part.group(1) if part else ""
        if part is None or number in ("", "."):
            raise ValueError(f"a duration {DURATION_EXAMPLES}")
        total_ns += Fraction(number) * _DURATION_UNITS_NS[part.group(2)]
        position = part.end()
    if total_ns > _MAX_DURATION_NS:
        raise ValueError(f"a duration of at most 2562047h, {DURATION_EXAMPLES}")
    # Go truncates to whole nanoseconds.
    return sign * math.floor(total_ns) / 1_000_000_000


_SIZE_UNITS: dict[str, int] = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgtpe", start=1):
    _SIZE_UNITS[_letter] = _SIZE_UNITS[f"{_letter}b"] = 1000**_power
    _SIZE_UNITS[f"{_letter}i"] = _SIZE_UNITS[f"{_letter}ib"] = 1024**_power
# go-humanize takes the longest run of digits, dots and commas as the number.
_SIZE_NUMBER = re.compile(r"[0-9.,]*")
_SIZE_FLOAT = re.compile(r"[0-9]+\.?[0-9]*|\.[0-9]+")
SIZE_EXAMPLES = "such as 4MiB, 4.2MiB, 4MB, 4M, 512k or 4194304"


def parse_size(text: str) -> int:
    """Parse a size the way go-humanize's ``ParseBytes`` does into bytes.

    Units are case-insensitive and may follow a space: ``4MB`` and ``4M`` are 4,000,000,
    ``4MiB`` and ``4Mi`` are 4 * 2**20; fractions round down to a whole byte.
    """
    stripped = text.strip()
    number_end = _SIZE_NUMBER.match(stripped)
    assert number_end is not None  # the pattern matches the empty string
    number = number_end.group(0).replace(",", "")
    unit = stripped[number_end.end() :].strip().lower()
    if not _SIZE_FLOAT.fullmatch(number) or unit not in _SIZE_UNITS:
        raise ValueError(f"a size {SIZE_EXAMPLES}")
    size = math.floor(Fraction(number) * _SIZE_UNITS[unit])
    if size >= 2**64:
        raise ValueError(f"a size below 16EiB, {SIZE_EXAMPLES}")
    return size


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(text: str) -> bool:
    """Parse a Go boolean (``strconv.ParseBool``): exactly those spellings, nothing else."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("a boolean: true, false, 1, 0, t, f, T, F, TRUE, FALSE, True or False")


_DECIMAL = re.compile(r"[+-]?[0-9]+")


def parse_int(text: str) -> int:
    """Parse a decimal integer the way Go's ``strconv.Atoi`` does (no spaces, no ``_``)."""
    if not _DECIMAL.fullmatch(text):
        raise ValueError("a whole number")
    return int(text)


PORT_EXPECTED = "a port number 1-65535"


def parse_port(text: str) -> int:
    try:
        port = parse_int(text)
    except ValueError:
        raise ValueError(PORT_EXPECTED) from None
    if not 1 <= port <= 65535:
        raise ValueError(PORT_EXPECTED)
    return port


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where to listen; ``host`` is None for every interface (Go's ``:8080``)."""

    host: str | None
    port: int

    def __str__(self) -> str:
        if self.host is None:
            return f":{self.port}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


LISTEN_EXPECTED = 'a listen address such as ":8080", "0.0.0.0:8080" or "[::]:8080" (port 1-65535)'


def parse_listen_address(text: str) -> ListenAddress:
    """Parse a Go listen address (``net.Listen`` syntax). Port 0 is refused."""
    if text.startswith("["):
        host, bracket, port_text = text[1:].partition("]:")
        if not bracket or not host or "]" in host:
            raise ValueError(LISTEN_EXPECTED)
    else:
        host, colon, port_text = text.rpartition(":")
        # "::1:8080" is ambiguous; Go demands brackets around an IPv6 host too.
        if not colon or ":" in host or "[" in host or "]" in host:
            raise ValueError(LISTEN_EXPECTED)
    if any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(LISTEN_EXPECTED)
    try:
        port = parse_port(port_text)
    except ValueError:
        raise ValueError(LISTEN_EXPECTED) from None
    return ListenAddress(host or None, port)
