"""The types of option values: each takes the text a user typed, or a Python value when
:class:`~hlsproxy.config.Settings` is built in code, and says what it expected when neither fits.

Each carries a :class:`Syntax`, the word help text shows for its value (``-addr address``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import PlainSerializer, PlainValidator

from .gosyntax import (
    DURATION_EXAMPLES,
    LISTEN_EXPECTED,
    PORT_EXPECTED,
    SIZE_EXAMPLES,
    ListenAddress,
    parse_bool,
    parse_duration,
    parse_int,
    parse_listen_address,
    parse_port,
    parse_size,
)

_LEVELS: dict[str, Literal["DEBUG", "INFO", "WARNING", "ERROR"]] = {
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARN": "WARNING",
    "WARNING": "WARNING",
    "ERROR": "ERROR",
}


def parse_log_level(text: str) -> Literal["DEBUG", "INFO", "WARNING", "ERROR"]:
    """Parse a log level, case-insensitive, into Python's name for it (WARN is WARNING)."""
    try:
        return _LEVELS[text.strip().upper()]
    except KeyError:
        raise ValueError("a log level: DEBUG, INFO, WARN, WARNING or ERROR") from None


@dataclass(frozen=True, slots=True)
class Syntax:
    """What an option's value looks like, for help text (``-addr address``)."""

    name: str


def _text_or(value: object, kind: type | tuple[type, ...], parse: Callable[[str], Any]) -> Any:
    if isinstance(value, str):
        return parse(value)
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise ValueError("a string")


def _duration(
    *, minimum: float, inclusive: bool, expected: str, maximum: float = math.inf
) -> PlainValidator:
    def validate(value: object) -> float:
        try:
            seconds = float(_text_or(value, (int, float), parse_duration))
        except ValueError:
            raise ValueError(expected) from None
        if (
            not math.isfinite(seconds)
            or seconds < minimum
            or seconds > maximum
            or (seconds == minimum and not inclusive)
        ):
            raise ValueError(expected)
        return seconds

    return PlainValidator(validate)


def _whole(
    parse: Callable[[str], int], *, minimum: int, maximum: int | None, expected: str
) -> PlainValidator:
    def validate(value: object) -> int:
        try:
            number = int(_text_or(value, int, parse))
        except ValueError:
            raise ValueError(expected) from None
        if number < minimum or (maximum is not None and number > maximum):
            raise ValueError(expected)
        return number

    return PlainValidator(validate)


def _size(*, minimum: int, maximum: int | None, expected: str) -> PlainValidator:
    return _whole(parse_size, minimum=minimum, maximum=maximum, expected=expected)


def _count(*, minimum: int) -> PlainValidator:
    expected = f"a whole number {minimum} or more"
    return _whole(parse_int, minimum=minimum, maximum=None, expected=expected)


def _given_or_parsed(
    kind: type | tuple[type, ...], parse: Callable[[str], Any], expected: str
) -> PlainValidator:
    """Takes a value of ``kind`` as it is, and parses text."""

    def validate(value: object) -> Any:
        if isinstance(value, kind):
            return value
        if isinstance(value, str):
            return parse(value)
        raise ValueError(expected)

    return PlainValidator(validate)


def _validate_port(value: object) -> int:
    # A port given in code is range-checked like one given as text.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        return parse_port(value)
    raise ValueError(PORT_EXPECTED)


def _choice(choices: tuple[str, ...], expected: str) -> PlainValidator:
    """One of a few words, in any case and with spaces around."""

    def validate(value: object) -> str:
        text = value.strip().lower() if isinstance(value, str) else None
        if text is None or text not in choices:
            raise ValueError(expected)
        return text

    return PlainValidator(validate)


def _validate_host(value: object) -> str:
    expected = "a host name or IP address such as localhost, acestream or 192.168.1.10"
    if not isinstance(value, str):
        raise ValueError(expected)
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c.isspace() or c in "/?#@[]" for c in host):
        raise ValueError(expected)
    return host


def _url_validator(*, allow_path: bool, expected: str) -> PlainValidator:
    def validate(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(expected)
        text = value.strip()
        if not text:
            return ""
        parts = urlsplit(text)
        absolute = parts.scheme in ("http", "https") and bool(parts.hostname)
        path_only = allow_path and text.startswith("/") and not text.startswith("//")
        if (not absolute and not path_only) or parts.query or parts.fragment:
            raise ValueError(expected)
        if any(c.isspace() for c in text):
            raise ValueError(expected)
        # Callers join paths onto it; one spelling of the base keeps that simple.
        return text.rstrip("/")

    return PlainValidator(validate)


def parse_networks(text: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """Comma- or space-separated CIDR networks (a bare address is a /32 or /128)."""
    expected = "CIDR networks separated by commas, such as 192.168.1.0/24,127.0.0.1"
    networks = []
    for part in text.replace(",", " ").split():
        try:
            networks.append(ip_network(part, strict=False))
        except ValueError:
            raise ValueError(expected) from None
    return tuple(networks)


GoBool = Annotated[bool, _given_or_parsed(bool, parse_bool, "a boolean"), Syntax("bool")]
Networks = Annotated[
    tuple[IPv4Network | IPv6Network, ...],
    _given_or_parsed(tuple, parse_networks, "CIDR networks separated by commas"),
    PlainSerializer(lambda v: ",".join(map(str, v)), return_type=str),
    Syntax("networks"),
]
LogFormat = Annotated[
    Literal["text", "json"], _choice(("text", "json"), "text or json"), Syntax("format")
]
HlsSource = Annotated[
    Literal["engine", "proxy"], _choice(("engine", "proxy"), "engine or proxy"), Syntax("source")
]
# Apple's players refuse a segment longer than the target duration; past a minute a
# segment is no longer live.
SegmentDuration = Annotated[
    float,
    _duration(
        minimum=1, maximum=60, inclusive=True, expected="a duration from 1s to 60s, such as 6s"
    ),
    Syntax("duration"),
]
# RFC 8216 6.2.2: a live playlist should hold at least three target durations; six keeps a
# player that starts three from the end clear of the window's start.
WindowCount = Annotated[int, _count(minimum=6), Syntax("int")]
Port = Annotated[int, PlainValidator(_validate_port), Syntax("port")]
ListenAddr = Annotated[
    ListenAddress,
    _given_or_parsed(ListenAddress, parse_listen_address, LISTEN_EXPECTED),
    # Dumped in Go syntax, the form it is read in.
    PlainSerializer(str, return_type=str),
    Syntax("address"),
]
# A timeout of 0 would fire at once, so it can only be a mistake.
Timeout = Annotated[
    float,
    _duration(
        minimum=0,
        inclusive=False,
        expected=f"a duration greater than 0, {DURATION_EXAMPLES}",
    ),
    Syntax("duration"),
]
Delay = Annotated[
    float,
    _duration(minimum=0, inclusive=True, expected="a duration of 0 or more, such as 0, 5s or 1m"),
    Syntax("duration"),
]
BufferSize = Annotated[
    int,
    _size(minimum=64 * 1024, maximum=2**30, expected=f"a size from 64KiB to 1GiB, {SIZE_EXAMPLES}"),
    Syntax("size"),
]
CacheSize = Annotated[
    int,
    _size(minimum=2**20, maximum=None, expected=f"a size of 1MiB or more, {SIZE_EXAMPLES}"),
    Syntax("size"),
]
Count = Annotated[int, _count(minimum=0), Syntax("int")]
PositiveCount = Annotated[int, _count(minimum=1), Syntax("int")]
Scheme = Annotated[
    Literal["http", "https"], _choice(("http", "https"), "http or https"), Syntax("scheme")
]
HostName = Annotated[str, PlainValidator(_validate_host), Syntax("host")]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR"],
    _given_or_parsed((), parse_log_level, "a log level"),
    Syntax("level"),
]
HttpUrl = Annotated[
    str,
    _url_validator(allow_path=False, expected="empty, or an http:// or https:// URL"),
    Syntax("url"),
]
BaseUrl = Annotated[
    str,
    _url_validator(
        allow_path=True,
        expected='empty, an http:// or https:// URL, or a path such as "/tv"',
    ),
    Syntax("url"),
]
