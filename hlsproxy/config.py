"""Settings: every option, read once at start from flags and ``ACEXY_*`` variables.

The values use acexy's syntaxes, so a setup written for acexy keeps working: Go durations
(``1m30s``), go-humanize sizes (``4MiB``), Go booleans (``T``) and Go listen addresses
(``:8080``). A bad value stops the program with a :class:`ConfigError` that names the
variable or flag, the value, and what was expected; it never quietly becomes 0 or the
default, which is what acexy does.

The parsers below are pure functions of a string, so they are usable (and tested) alone.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Any, Literal, cast
from urllib.parse import urlsplit

from pydantic import Field, PlainSerializer, PlainValidator, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ACEXY_"


# ---------------------------------------------------------------------------------------
# Go syntaxes


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
_DURATION_EXAMPLES = "such as 300ms, 1.5s, 1m or 1h30m"


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
        raise ValueError(f"a duration {_DURATION_EXAMPLES}")
    total_ns = Fraction(0)
    position = 0
    while position < len(rest):
        part = _DURATION_PART.match(rest, position)
        number = part.group(1) if part else ""
        if part is None or number in ("", "."):
            raise ValueError(f"a duration {_DURATION_EXAMPLES}")
        total_ns += Fraction(number) * _DURATION_UNITS_NS[part.group(2)]
        position = part.end()
    if total_ns > _MAX_DURATION_NS:
        raise ValueError(f"a duration of at most 2562047h, {_DURATION_EXAMPLES}")
    # Go truncates to whole nanoseconds.
    return sign * math.floor(total_ns) / 1_000_000_000


_SIZE_UNITS: dict[str, int] = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgtpe", start=1):
    _SIZE_UNITS[_letter] = _SIZE_UNITS[f"{_letter}b"] = 1000**_power
    _SIZE_UNITS[f"{_letter}i"] = _SIZE_UNITS[f"{_letter}ib"] = 1024**_power
# go-humanize takes the longest run of digits, dots and commas as the number.
_SIZE_NUMBER = re.compile(r"[0-9.,]*")
_SIZE_FLOAT = re.compile(r"[0-9]+\.?[0-9]*|\.[0-9]+")
_SIZE_EXAMPLES = "such as 4MiB, 4.2MiB, 4MB, 4M, 512k or 4194304"


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
        raise ValueError(f"a size {_SIZE_EXAMPLES}")
    size = math.floor(Fraction(number) * _SIZE_UNITS[unit])
    if size >= 2**64:
        raise ValueError(f"a size below 16EiB, {_SIZE_EXAMPLES}")
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


_PORT_EXPECTED = "a port number 1-65535"


def parse_port(text: str) -> int:
    try:
        port = parse_int(text)
    except ValueError:
        raise ValueError(_PORT_EXPECTED) from None
    if not 1 <= port <= 65535:
        raise ValueError(_PORT_EXPECTED)
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


_LISTEN_EXPECTED = 'a listen address such as ":8080", "0.0.0.0:8080" or "[::]:8080" (port 1-65535)'


def parse_listen_address(text: str) -> ListenAddress:
    """Parse a Go listen address (``net.Listen`` syntax). Port 0 is refused."""
    if text.startswith("["):
        host, bracket, port_text = text[1:].partition("]:")
        if not bracket or not host or "]" in host:
            raise ValueError(_LISTEN_EXPECTED)
    else:
        host, colon, port_text = text.rpartition(":")
        # "::1:8080" is ambiguous; Go demands brackets around an IPv6 host too.
        if not colon or ":" in host or "[" in host or "]" in host:
            raise ValueError(_LISTEN_EXPECTED)
    if any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(_LISTEN_EXPECTED)
    try:
        port = parse_port(port_text)
    except ValueError:
        raise ValueError(_LISTEN_EXPECTED) from None
    return ListenAddress(host or None, port)


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


# ---------------------------------------------------------------------------------------
# Pydantic types built on the parsers. Each accepts the Go text, or an already-parsed
# Python value when Settings is built in code.


@dataclass(frozen=True, slots=True)
class _Syntax:
    """What an option's value looks like, for help text (``-addr address``)."""

    name: str


def _text_or(value: object, kind: type | tuple[type, ...], parse: Callable[[str], Any]) -> Any:
    if isinstance(value, str):
        return parse(value)
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise ValueError("a string")


def _duration(*, minimum: float, inclusive: bool, expected: str) -> PlainValidator:
    def validate(value: object) -> float:
        try:
            seconds = float(_text_or(value, (int, float), parse_duration))
        except ValueError:
            raise ValueError(expected) from None
        if (
            not math.isfinite(seconds)
            or seconds < minimum
            or (seconds == minimum and not inclusive)
        ):
            raise ValueError(expected)
        return seconds

    return PlainValidator(validate)


def _size(*, minimum: int, maximum: int | None, expected: str) -> PlainValidator:
    def validate(value: object) -> int:
        try:
            size = int(_text_or(value, int, parse_size))
        except ValueError:
            raise ValueError(expected) from None
        if size < minimum or (maximum is not None and size > maximum):
            raise ValueError(expected)
        return size

    return PlainValidator(validate)


def _count(*, minimum: int) -> PlainValidator:
    expected = f"a whole number {minimum} or more"

    def validate(value: object) -> int:
        try:
            count = int(_text_or(value, int, parse_int))
        except ValueError:
            raise ValueError(expected) from None
        if count < minimum:
            raise ValueError(expected)
        return count

    return PlainValidator(validate)


def _validate_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return parse_bool(value)
    raise ValueError("a boolean")


def _validate_port(value: object) -> int:
    # A port given in code is range-checked like one given as text.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        return parse_port(value)
    raise ValueError(_PORT_EXPECTED)


def _validate_listen_address(value: object) -> ListenAddress:
    if isinstance(value, ListenAddress):
        return value
    if isinstance(value, str):
        return parse_listen_address(value)
    raise ValueError(_LISTEN_EXPECTED)


def _validate_scheme(value: object) -> Literal["http", "https"]:
    text = value.strip().lower() if isinstance(value, str) else None
    if text == "http":
        return "http"
    if text == "https":
        return "https"
    raise ValueError("http or https")


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


def _validate_log_level(value: object) -> Literal["DEBUG", "INFO", "WARNING", "ERROR"]:
    if isinstance(value, str):
        return parse_log_level(value)
    raise ValueError("a log level")


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


def _validate_networks(value: object) -> tuple[IPv4Network | IPv6Network, ...]:
    if isinstance(value, tuple):
        return value
    if isinstance(value, str):
        return parse_networks(value)
    raise ValueError("CIDR networks separated by commas")


def _validate_log_format(value: object) -> Literal["text", "json"]:
    text = value.strip().lower() if isinstance(value, str) else None
    if text == "text":
        return "text"
    if text == "json":
        return "json"
    raise ValueError("text or json")


GoBool = Annotated[bool, PlainValidator(_validate_bool), _Syntax("bool")]
Networks = Annotated[
    tuple[IPv4Network | IPv6Network, ...],
    PlainValidator(_validate_networks),
    PlainSerializer(lambda v: ",".join(map(str, v)), return_type=str),
    _Syntax("networks"),
]
LogFormat = Annotated[
    Literal["text", "json"], PlainValidator(_validate_log_format), _Syntax("format")
]
Port = Annotated[int, PlainValidator(_validate_port), _Syntax("port")]
ListenAddr = Annotated[
    ListenAddress,
    PlainValidator(_validate_listen_address),
    # Dumped in Go syntax, the form it is read in.
    PlainSerializer(str, return_type=str),
    _Syntax("address"),
]
# A timeout of 0 would fire at once, so it can only be a mistake.
Timeout = Annotated[
    float,
    _duration(
        minimum=0,
        inclusive=False,
        expected=f"a duration greater than 0, {_DURATION_EXAMPLES}",
    ),
    _Syntax("duration"),
]
Delay = Annotated[
    float,
    _duration(minimum=0, inclusive=True, expected="a duration of 0 or more, such as 0, 5s or 1m"),
    _Syntax("duration"),
]
BufferSize = Annotated[
    int,
    _size(
        minimum=64 * 1024, maximum=2**30, expected=f"a size from 64KiB to 1GiB, {_SIZE_EXAMPLES}"
    ),
    _Syntax("size"),
]
CacheSize = Annotated[
    int,
    _size(minimum=2**20, maximum=None, expected=f"a size of 1MiB or more, {_SIZE_EXAMPLES}"),
    _Syntax("size"),
]
Count = Annotated[int, _count(minimum=0), _Syntax("int")]
PositiveCount = Annotated[int, _count(minimum=1), _Syntax("int")]
Scheme = Annotated[Literal["http", "https"], PlainValidator(_validate_scheme), _Syntax("scheme")]
HostName = Annotated[str, PlainValidator(_validate_host), _Syntax("host")]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR"],
    PlainValidator(_validate_log_level),
    _Syntax("level"),
]
HttpUrl = Annotated[
    str,
    _url_validator(allow_path=False, expected="empty, or an http:// or https:// URL"),
    _Syntax("url"),
]
BaseUrl = Annotated[
    str,
    _url_validator(
        allow_path=True,
        expected='empty, an http:// or https:// URL, or a path such as "/tv"',
    ),
    _Syntax("url"),
]


# ---------------------------------------------------------------------------------------
# The settings


def _option(default: Any, *, env: str, flag: str, help: str) -> Any:
    return Field(default=default, description=help, json_schema_extra={"env": env, "flag": flag})


class Settings(BaseSettings):
    """Every option of hlsproxy, validated; flags are handled by :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="ignore",
        validate_default=True,
        # Values are Go syntax, never JSON (":8080" would otherwise be decoded).
        enable_decoding=False,
    )

    listen_addr: ListenAddr = _option(
        ":8080",
        env="ACEXY_LISTEN_ADDR",
        flag="-addr",
        help='Address to listen on for players; ":8080" is every interface.',
    )
    scheme: Scheme = _option(
        "http",
        env="ACEXY_SCHEME",
        flag="-scheme",
        help="Scheme of the AceStream engine's HTTP API: http or https.",
    )
    host: HostName = _option(
        "localhost",
        env="ACEXY_HOST",
        flag="-acestream-host",
        help="Host name or IP address of the AceStream engine.",
    )
    port: Port = _option(
        6878, env="ACEXY_PORT", flag="-acestream-port", help="HTTP port of the AceStream engine."
    )
    m3u8: GoBool = _option(
        False,
        env="ACEXY_M3U8",
        flag="-m3u8",
        help="Answer /ace/getstream with an HLS playlist instead of an MPEG-TS stream.",
    )
    m3u8_stream_timeout: Timeout = _option(
        "60s",
        env="ACEXY_M3U8_STREAM_TIMEOUT",
        flag="-m3u8-stream-timeout",
        help="An HLS stream is stopped once no player has asked for its playlist or segments "
        "for this long.",
    )
    empty_timeout: Timeout = _option(
        "1m",
        env="ACEXY_EMPTY_TIMEOUT",
        flag="-empty-timeout",
        help="A stream whose engine sends no data for this long is stalled: it is reopened, "
        "or ended once the retries are used up.",
    )
    buffer_size: BufferSize = _option(
        "4MiB",
        env="ACEXY_BUFFER_SIZE",
        flag="-buffer-size",
        help="Per-stream ring buffer; a client further behind the live edge than this is cut "
        "off (64KiB to 1GiB).",
    )
    no_response_timeout: Timeout = _option(
        "10s",
        env="ACEXY_NO_RESPONSE_TIMEOUT",
        flag="-no-response-timeout",
        help="How long to wait for the AceStream engine to answer a request.",
    )
    log_level: LogLevel = _option(
        "INFO",
        env="ACEXY_LOG_LEVEL",
        flag="-log-level",
        help="Log level: DEBUG, INFO, WARN (or WARNING) or ERROR; any case.",
    )
    linger: Delay = _option(
        "5s",
        env="ACEXY_LINGER",
        flag="-linger",
        help="A stream's engine session outlives its last MPEG-TS client by this long, so a "
        "probe followed by play, or zapping back, reuses it; 0 stops it at once.",
    )
    max_streams: Count = _option(
        0,
        env="ACEXY_MAX_STREAMS",
        flag="-max-streams",
        help="Most streams played at once (0 = no limit); beyond it, new streams get 503 "
        "with Retry-After.",
    )
    upstream_retries: Count = _option(
        3,
        env="ACEXY_UPSTREAM_RETRIES",
        flag="-upstream-retries",
        help="How many times a live stream whose engine connection ends or fails is "
        "reopened before its clients get the end of the stream.",
    )
    allow_remote_content: GoBool = _option(
        False,
        env="ACEXY_ALLOW_REMOTE_CONTENT",
        flag="-allow-remote-content",
        help="Accept url=, magnet= and direct_url= content; off by default because it makes "
        "the engine fetch whatever a client names.",
    )
    public_url: BaseUrl = _option(
        "",
        env="ACEXY_PUBLIC_URL",
        flag="-public-url",
        help="Base URL for the URIs in rewritten HLS playlists, for a reverse proxy that "
        "serves hlsproxy under a path; empty means root-relative URIs.",
    )
    hls_cache_size: CacheSize = _option(
        "256MiB",
        env="ACEXY_HLS_CACHE_SIZE",
        flag="-hls-cache-size",
        help="Memory for cached HLS segments, shared by every stream (1MiB or more).",
    )
    hls_prefetch: Count = _option(
        2,
        env="ACEXY_HLS_PREFETCH",
        flag="-hls-prefetch",
        help="How many of the newest HLS segments are fetched before any player asks.",
    )
    orch_url: HttpUrl = _option(
        "",
        env="ACEXY_ORCH_URL",
        flag="-orch-url",
        help="URL of an orchestrator that picks an engine for each stream; empty means "
        "always use the engine above.",
    )
    orch_apikey: SecretStr = _option(
        SecretStr(""),
        env="ACEXY_ORCH_APIKEY",
        flag="-orch-apikey",
        help="API key for the orchestrator (kept secret).",
    )
    container_id: str = _option(
        "",
        env="ACEXY_CONTAINER_ID",
        flag="-container-id",
        help="This proxy's container ID, reported to the orchestrator with stream events.",
    )
    max_streams_per_engine: PositiveCount = _option(
        1,
        env="ACEXY_MAX_STREAMS_PER_ENGINE",
        flag="-max-streams-per-engine",
        help="Most streams the orchestrator may place on one engine (1 or more).",
    )

    orch_provision_timeout: Timeout = _option(
        "30s",
        env="ACEXY_ORCH_PROVISION_TIMEOUT",
        flag="-orch-provision-timeout",
        help="How long a new stream may wait for the orchestrator to bring up an engine when "
        "every engine is full; past it the client gets 503 with Retry-After.",
    )
    access_token: SecretStr = _option(
        SecretStr(""),
        env="ACEXY_ACCESS_TOKEN",
        flag="-access-token",
        help="When set, every request must carry it: ?token=... in the URL (kept in rewritten "
        "playlists) or an Authorization: Bearer header. Never logged.",
    )
    allow_networks: Networks = _option(
        "",
        env="ACEXY_ALLOW_NETWORKS",
        flag="-allow-networks",
        help="When set, only clients from these networks are served (CIDR, comma-separated); "
        "others get 403.",
    )
    access_log: GoBool = _option(
        False,
        env="ACEXY_ACCESS_LOG",
        flag="-access-log",
        help="Log one line per request: client, method, path (without the query), status, "
        "bytes and time.",
    )
    log_format: LogFormat = _option(
        "text",
        env="ACEXY_LOG_FORMAT",
        flag="-log-format",
        help="Log lines as text, or as one JSON object per line for log collectors.",
    )
    uvloop: GoBool = _option(
        True,
        env="ACEXY_UVLOOP",
        flag="-uvloop",
        help="Run on uvloop, a faster event loop, where it is installed; false runs on "
        "asyncio's own loop.",
    )

    @property
    def engine_url(self) -> str:
        """The fixed engine's base URL, e.g. ``http://localhost:6878``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


# ---------------------------------------------------------------------------------------
# Options, as help text and docs show them


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    """The Settings field."""
    env: str
    flag: str
    default: str
    """The default as a user would type it; ``""`` for an empty one."""
    description: str
    syntax: str
    """What the value looks like: address, duration, size, bool, int, port, ..."""

    @property
    def is_switch(self) -> bool:
        """A boolean flag, which may be given bare (``-m3u8``)."""
        return self.syntax == "bool"


def _shown_default(default: object) -> str:
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, SecretStr):
        return '""' if not default.get_secret_value() else "(set)"
    text = str(default)
    return text if text else '""'


def _syntax_of(field: FieldInfo) -> str:
    for item in field.metadata:
        if isinstance(item, _Syntax):
            return item.name
    return "string"


def _metadata(field: FieldInfo, key: Literal["env", "flag"]) -> str:
    extra = cast(dict[str, Any], field.json_schema_extra)
    return str(extra[key])


def options() -> list[Option]:
    """Every option, in declaration order."""
    return [
        Option(
            name=name,
            env=_metadata(field, "env"),
            flag=_metadata(field, "flag"),
            default=_shown_default(field.default),
            description=field.description or "",
            syntax=_syntax_of(field),
        )
        for name, field in Settings.model_fields.items()
    ]


# ---------------------------------------------------------------------------------------
# Loading


class ConfigError(Exception):
    """A bad option value; ``str()`` is one line that names the source, value and expectation."""

    def __init__(self, source: str, value: str, expected: str) -> None:
        self.source = source
        self.value = value
        self.expected = expected
        super().__init__(str(self))

    def __str__(self) -> str:
        quoted = json.dumps(self.value, ensure_ascii=False)
        return f"invalid value {quoted} for {self.source}: expected {self.expected}"


_SECRET_FIELDS = frozenset(
    name for name, field in Settings.model_fields.items() if field.annotation is SecretStr
)


def _config_error(
    error: ValidationError, raw: Mapping[str, object], sources: Mapping[str, str]
) -> ConfigError:
    first = error.errors(include_url=False)[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    ctx = first.get("ctx") or {}
    expected = str(ctx["error"]) if first["type"] == "value_error" else first["msg"]
    value = raw.get(field, first.get("input"))
    shown = "**********" if field in _SECRET_FIELDS else str(value)
    return ConfigError(sources.get(field, field), shown, expected)


def load_settings(
    overrides: Mapping[str, str] = {},
    env: Mapping[str, str] | None = None,
    *,
    flag_names: Mapping[str, str] | None = None,
) -> Settings:
    """Validate the options: a flag's raw value (keyed by field name) wins over the variable.

    ``env`` defaults to ``os.environ``. ``flag_names`` says how each flag in ``overrides`` was
    spelt (``--addr``), so an error names it as the user typed it; by default ``-addr``.
    Raises :class:`ConfigError` for the first bad value.
    """
    environment = os.environ if env is None else env
    fields = Settings.model_fields
    unknown = set(overrides) - set(fields)
    if unknown:
        raise KeyError(f"not a setting: {', '.join(sorted(unknown))}")
    # Any: each value is raw text or a field default; Settings' validators type them.
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, field in fields.items():
        variable = _metadata(field, "env")
        if name in overrides:
            raw[name] = overrides[name]
            sources[name] = (flag_names or {}).get(name, _metadata(field, "flag"))
        elif variable in environment:
            raw[name] = environment[variable]
            sources[name] = variable
        else:
            # Every field is given, so pydantic-settings' own read of os.environ never counts.
            raw[name] = field.default
            sources[name] = variable
    try:
        return Settings(**raw)
    except ValidationError as error:
        raise _config_error(error, raw, sources) from None


# ---------------------------------------------------------------------------------------
# Demo mode


DEMO_BITRATE_DEFAULT = "2M"
_DEMO_BITRATE_MIN = 1000


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How the built-in simulated engine plays: ``bitrate`` in bits per second."""

    bitrate: int
    engines: int = 0
    """With 1 or more, a simulated orchestrator runs a pool of that many engines."""

    def __post_init__(self) -> None:
        if self.bitrate < _DEMO_BITRATE_MIN:
            raise ValueError(f"demo bitrate must be at least {_DEMO_BITRATE_MIN} bits/s")

    @classmethod
    def parse(cls, bitrate: str, *, source: str = "-demo-bitrate") -> DemoOptions:
        """Read a bitrate in size syntax (``2M``, ``1.5M``, ``800k``); errors name ``source``."""
        expected = "a bitrate in bits/s of 1k or more, such as 800k, 2M or 2000000"
        try:
            return cls(parse_size(bitrate))
        except ValueError:
            raise ConfigError(source, bitrate, expected) from None
