"""Settings: every option, read once at start from flags and ``ACEXY_*`` variables.

The values use acexy's syntaxes (see :mod:`hlsproxy.gosyntax`), so a setup written for
acexy keeps working. A bad value stops the program with a :class:`ConfigError` that names
the variable or flag, the value, and what was expected; it never quietly becomes 0 or the
default, which is what acexy does.

An option's names (its variable, its flag, acexy-orchestrator's aliases) and the warning
about ``ACEXY_*`` variables that are no option are in :mod:`hlsproxy.option_names`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .gosyntax import (
    ListenAddress,
    parse_bool,
    parse_duration,
    parse_listen_address,
    parse_size,
)
from .option_names import (
    ENV_PREFIX,
    Option,
    alias_sources,
    declare,
    described,
    flag,
    unknown_names,
    variable,
)
from .option_types import (
    BaseUrl,
    BufferSize,
    CacheSize,
    Count,
    Delay,
    GoBool,
    HlsSource,
    HostName,
    HttpUrl,
    ListenAddr,
    LogFormat,
    LogLevel,
    Networks,
    Port,
    PositiveCount,
    Scheme,
    SegmentDuration,
    Timeout,
    WindowCount,
    parse_log_level,
)

__all__ = [
    "DEMO_BITRATE_DEFAULT",
    "ENV_PREFIX",
    "ConfigError",
    "DemoOptions",
    "ListenAddress",
    "Option",
    "Settings",
    "load_settings",
    "options",
    "parse_bool",
    "parse_duration",
    "parse_listen_address",
    "parse_log_level",
    "parse_size",
    "unknown_variables",
]

# The variables load_settings was given in place of os.environ, for the duration of one call.
_ENVIRONMENT: ContextVar[Mapping[str, str] | None] = ContextVar("environment", default=None)


class _Environment(EnvSettingsSource):
    """``os.environ``, or the mapping :func:`load_settings` was given instead."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _ENVIRONMENT.get()
        environment = os.environ if given is None else given
        # Go, and so acexy, reads ACEXY_PORT by its exact name, never acexy_port; the keys
        # are lower-cased only because pydantic-settings looks them up that way.
        found = {
            name.lower(): value
            for name, value in environment.items()
            if name.startswith(ENV_PREFIX) and name == name.upper()
        }
        for field, alias in alias_sources(options(), environment).items():
            found[variable(field).lower()] = environment[alias]
        return found


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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Values given in code (the flags) win over the variables; there is no .env file.
        return (init_settings, _Environment(settings_cls))

    listen_addr: ListenAddr = declare(
        ":8080",
        flag="-addr",
        help='Address to listen on for players; ":8080" is every interface.',
        env_aliases=("ACEXY_ADDR",),
    )
    scheme: Scheme = declare(
        "http", help="Scheme of the AceStream engine's HTTP API: http or https."
    )
    host: HostName = declare(
        "localhost", flag="-acestream-host", help="Host name or IP address of the AceStream engine."
    )
    port: Port = declare(6878, flag="-acestream-port", help="HTTP port of the AceStream engine.")
    m3u8: GoBool = declare(
        False, help="Answer /ace/getstream with an HLS playlist instead of an MPEG-TS stream."
    )
    m3u8_stream_timeout: Timeout = declare(
        "60s",
        help="An HLS stream is stopped once no player has asked for its playlist or segments "
        "for this long.",
        env_aliases=("ACEXY_TIMEOUT",),
        flag_aliases=("-timeout",),
    )
    empty_timeout: Timeout = declare(
        "1m",
        help="A stream whose engine sends no data for this long is stalled: it is reopened, "
        "or ended once the retries are used up.",
        flag_aliases=("-emptyTimeout",),
    )
    buffer_size: BufferSize = declare(
        "64MiB",
        help="The most one stream's ring buffer holds for MPEG-TS clients behind the live "
        "edge, whatever `ACEXY_BUFFER_TIME` says (64KiB to 1GiB); the ring holds it only "
        "while a client is that far behind.",
        env_aliases=("ACEXY_BUFFER",),
        flag_aliases=("-buffer",),
    )
    buffer_time: Timeout = declare(
        "1m",
        help="How far behind the live edge an MPEG-TS client may be, in the stream's own "
        "media time (the engine sends its cache faster than real time at first). A client "
        "further behind that still reads is moved forward to a keyframe near the live edge; "
        "one that has read nothing for 10s is cut off.",
    )
    no_response_timeout: Timeout = declare(
        "10s",
        help="How long to wait for the AceStream engine to answer a request (start, stat, "
        "stop), or to say anything at all about a stream it is opening.",
        flag_aliases=("-noResponseTimeout",),
    )
    prebuffer_timeout: Timeout = declare(
        "2m",
        help="How long a new stream's first media is waited for while the engine says it is "
        "prebuffering (gathering peers); players are kept on the line meanwhile.",
    )
    log_level: LogLevel = declare(
        "INFO", help="Log level: DEBUG, INFO, WARN (or WARNING) or ERROR; any case."
    )
    linger: Delay = declare(
        "5s",
        help="A stream's engine session outlives its last MPEG-TS client by this long, so a "
        "probe followed by play, or zapping back, reuses it; 0 stops it at once.",
        env_aliases=("ACEXY_STREAM_GRACE_PERIOD",),
    )
    max_streams: Count = declare(
        0,
        help="Most streams played at once (0 = no limit); beyond it, new streams get 503 "
        "with Retry-After.",
    )
    upstream_retries: Count = declare(
        3,
        help="How many times a live stream whose engine connection ends or fails is "
        "reopened before its clients get the end of the stream.",
    )
    allow_remote_content: GoBool = declare(
        False,
        help="Accept url=, magnet= and direct_url= content; off by default because it makes "
        "the engine fetch whatever a client names.",
    )
    public_url: BaseUrl = declare(
        "",
        help="Base URL for the URIs in rewritten HLS playlists, for a reverse proxy that "
        "serves hlsproxy under a path; empty means root-relative URIs.",
    )
    hls_cache_size: CacheSize = declare(
        "256MiB", help="Memory for cached HLS segments, shared by every stream (1MiB or more)."
    )
    hls_prefetch: Count = declare(
        2, help="How many of the newest HLS segments are fetched before any player asks."
    )
    hls_source: HlsSource = declare(
        "engine",
        help="Where HLS comes from: engine (the engine's own playlists, rewritten) or proxy "
        "(segments the proxy cuts from the channel's one MPEG-TS session; see HLS sources).",
    )
    # 6 s: Apple's "HLS Authoring Specification for Apple Devices" (media segmentation) says
    # target durations SHOULD be 6 seconds.
    hls_segment_target: SegmentDuration = declare(
        "6s",
        help="With hls-source proxy: the duration each segment is cut near, at a keyframe "
        "(1s to 60s).",
    )
    hls_window: WindowCount = declare(
        6,
        help="With hls-source proxy: how many segments the live playlist lists (6 or more); "
        "the window is how far back a player can pause or seek, and it must fit the cache.",
    )
    orch_url: HttpUrl = declare(
        "",
        help="URL of an orchestrator that picks an engine for each stream; empty means "
        "always use the engine above.",
    )
    orch_apikey: SecretStr = declare(
        SecretStr(""), help="API key for the orchestrator (kept secret)."
    )
    container_id: str = declare(
        "", help="This proxy's container ID, reported to the orchestrator with stream events."
    )
    max_streams_per_engine: PositiveCount = declare(
        1,
        help="Most streams the orchestrator may place on one engine (1 or more).",
        flag_aliases=("-maxStreamsPerEngine",),
    )
    orch_provision_timeout: Timeout = declare(
        "30s",
        help="How long a new stream may wait for the orchestrator to bring up an engine when "
        "every engine is full; past it the client gets 503 with Retry-After.",
    )
    access_token: SecretStr = declare(
        SecretStr(""),
        help="When set, every request must carry it: ?token=... in the URL (kept in rewritten "
        "playlists) or an Authorization: Bearer header. Never logged.",
    )
    allow_networks: Networks = declare(
        "",
        help="When set, only clients from these networks are served (CIDR, comma-separated); "
        "others get 403.",
    )
    access_log: GoBool = declare(
        False,
        help="Log one line per request: client, method, path (without the query), status "
        "and time, the same line whichever HTTP path answered it (playlists and segments "
        "stay on the fast path).",
    )
    log_format: LogFormat = declare(
        "text", help="Log lines as text, or as one JSON object per line for log collectors."
    )
    uvloop: GoBool = declare(
        True,
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


def options() -> list[Option]:
    """Every option, in declaration order."""
    return described(Settings.model_fields)


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """The ``ACEXY_*`` variables set that are no option's name or alias, sorted."""
    return unknown_names(options(), os.environ if env is None else env)


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
    error: ValidationError, flags: Mapping[str, str], aliases: Mapping[str, str]
) -> ConfigError:
    first = error.errors(include_url=False)[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    ctx = first.get("ctx") or {}
    expected = str(ctx["error"]) if first["type"] == "value_error" else first["msg"]
    shown = "**********" if field in _SECRET_FIELDS else str(first.get("input"))
    return ConfigError(flags.get(field, aliases.get(field, variable(field))), shown, expected)


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
    fields = Settings.model_fields
    unknown = set(overrides) - set(fields)
    if unknown:
        raise KeyError(f"not a setting: {', '.join(sorted(unknown))}")
    flags = {name: (flag_names or {}).get(name, flag(name, fields[name])) for name in overrides}
    given = _ENVIRONMENT.set(env)
    # Any: raw text; Settings' validators type it.
    values: dict[str, Any] = dict(overrides)
    try:
        return Settings(**values)
    except ValidationError as error:
        aliases = alias_sources(options(), os.environ if env is None else env)
        raise _config_error(error, flags, aliases) from None
    finally:
        _ENVIRONMENT.reset(given)


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


@dataclass(frozen=True, slots=True)
class DemoChannel:
    """A channel of the demo engine, listed on the status page before anyone plays it."""

    content_id: str
    prebuffer: float = 0.0
    """Seconds the demo engine prebuffers it when it is first opened; 0 for a warm channel."""
