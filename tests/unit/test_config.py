from __future__ import annotations

import os
from typing import Any, cast

import pytest
from pydantic import SecretStr, ValidationError

from hlsproxy.config import (
    ConfigError,
    DemoOptions,
    ListenAddress,
    Settings,
    load_settings,
    options,
    parse_bool,
    parse_duration,
    parse_listen_address,
    parse_log_level,
    parse_size,
    unknown_variables,
)

MiB = 2**20


@pytest.fixture(autouse=True)
def no_acexy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings() itself reads os.environ; the real one must not leak into these tests.
    for name in list(os.environ):
        if name.upper().startswith("ACEXY_"):
            monkeypatch.delenv(name)


# --- Go durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("+0", 0.0),
        ("-0", 0.0),
        ("0s", 0.0),
        ("300ms", 0.3),
        ("1.5s", 1.5),
        ("1m", 60.0),
        ("60s", 60.0),
        ("1h30m", 5400.0),
        ("1h0m0s", 3600.0),
        ("2h45m30.5s", 9930.5),
        ("1s500ms", 1.5),
        ("100ns", 1e-7),
        ("10us", 1e-5),
        ("10\u00b5s", 1e-5),
        ("10\u03bcs", 1e-5),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("-1.5s", -1.5),
        ("+2m", 120.0),
        ("1.0000000009s", 1.0),
        ("2562047h", 2562047 * 3600.0),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else None,
)
def test_duration_parses_go_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "1",
        "10",
        "-",
        "+",
        "s",
        ".s",
        "1x",
        "1 s",
        " 1s",
        "1s ",
        "1.5.5s",
        "1e3s",
        "1mss",
        "1hm",
        "--1s",
        "1,5s",
        "1S",
        "1H",
        "2562048h",
    ],
    ids=repr,
)
def test_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


# --- sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4194304", 4194304),
        ("0", 0),
        ("4MB", 4_000_000),
        ("4M", 4_000_000),
        ("4mb", 4_000_000),
        ("4MiB", 4 * MiB),
        ("4mib", 4 * MiB),
        ("4Mi", 4 * MiB),
        ("4.2MiB", 4404019),
        ("4 MiB", 4 * MiB),
        ("4k", 4000),
        ("4K", 4000),
        ("4kB", 4000),
        ("4KiB", 4096),
        ("4Ki", 4096),
        ("1b", 1),
        ("12B", 12),
        ("1,000", 1000),
        ("1,000 kB", 1_000_000),
        (".5k", 500),
        ("1.5GB", 1_500_000_000),
        ("1GiB", 2**30),
        ("1TB", 10**12),
        ("1PiB", 2**50),
        ("15EiB", 15 * 2**60),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else None,
)
def test_size_parses_humanize_syntax(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    ["", "abc", "MB", "-4MB", "4XB", "4 M B", "1.2.3MB", "4MiBs", "1e3", ".", "4 MiB x", "16EiB"],
    ids=repr,
)
def test_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


# --- booleans -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *((t, True) for t in ("1", "t", "T", "TRUE", "true", "True")),
        *((f, False) for f in ("0", "f", "F", "FALSE", "false", "False")),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else None,
)
def test_bool_accepts_exactly_go_spellings(text: str, value: bool) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize(
    "text", ["", "yes", "no", "on", "off", "tRUE", "TRue", " true", "true ", "2", "y"], ids=repr
)
def test_bool_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="boolean"):
        parse_bool(text)


# --- listen addresses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        (":8080", None, 8080),
        ("0.0.0.0:8080", "0.0.0.0", 8080),
        ("127.0.0.1:9", "127.0.0.1", 9),
        ("[::]:8080", "::", 8080),
        ("[::1]:65535", "::1", 65535),
        ("localhost:8080", "localhost", 8080),
        ("proxy.example.com:1", "proxy.example.com", 1),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else None,
)
def test_listen_address_parses_and_prints_back(text: str, host: str | None, port: int) -> None:
    address = parse_listen_address(text)
    assert address == ListenAddress(host, port)
    assert str(address) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "8080",
        "localhost",
        ":0",
        "127.0.0.1:0",
        ":65536",
        ":-1",
        ":http",
        ":80 ",
        "::1:8080",
        "[::1]8080",
        "[::1]",
        "[]:80",
        "a b:80",
        "host/path:80",
    ],
    ids=repr,
)
def test_listen_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="listen address"):
        parse_listen_address(text)


def test_listen_address_is_frozen() -> None:
    address = ListenAddress(None, 8080)
    with pytest.raises(AttributeError):
        address.port = 9  # type: ignore[misc]


# --- log levels ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("DEBUG", "DEBUG"),
        ("debug", "DEBUG"),
        ("Info", "INFO"),
        ("WARN", "WARNING"),
        ("warn", "WARNING"),
        ("WARNING", "WARNING"),
        ("error", "ERROR"),
    ],
)
def test_log_level_normalised_to_python_name(text: str, level: str) -> None:
    assert parse_log_level(text) == level


@pytest.mark.parametrize("text", ["", "TRACE", "CRITICAL", "10", "INFO+2"], ids=repr)
def test_log_level_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="log level"):
        parse_log_level(text)


# --- Settings: defaults -------------------------------------------------------------------

DEFAULTS = {
    "listen_addr": ListenAddress(None, 8080),
    "scheme": "http",
    "host": "localhost",
    "port": 6878,
    "m3u8": False,
    "m3u8_stream_timeout": 60.0,
    "empty_timeout": 60.0,
    "buffer_size": 64 * MiB,
    "buffer_time": 60.0,
    "no_response_timeout": 10.0,
    "prebuffer_timeout": 120.0,
    "log_level": "INFO",
    "linger": 5.0,
    "max_streams": 0,
    "upstream_retries": 3,
    "allow_remote_content": False,
    "public_url": "",
    "hls_cache_size": 256 * MiB,
    "hls_prefetch": 2,
    "hls_source": "engine",
    "hls_segment_target": 6.0,
    "hls_window": 6,
    "orch_url": "",
    "container_id": "",
    "max_streams_per_engine": 1,
    "orch_provision_timeout": 30.0,
    "allow_networks": (),
    "access_log": False,
    "log_format": "text",
    "uvloop": True,
}


@pytest.mark.parametrize(("field", "value"), DEFAULTS.items(), ids=list(DEFAULTS))
def test_default(field: str, value: object) -> None:
    assert getattr(load_settings(env={}), field) == value


def test_every_field_has_a_tested_default() -> None:
    assert set(Settings.model_fields) == {*DEFAULTS, "orch_apikey", "access_token"}
    assert load_settings(env={}).orch_apikey.get_secret_value() == ""
    assert load_settings(env={}).access_token.get_secret_value() == ""


def test_engine_url() -> None:
    assert load_settings(env={}).engine_url == "http://localhost:6878"
    settings = load_settings(env={"ACEXY_SCHEME": "HTTPS", "ACEXY_HOST": "ace", "ACEXY_PORT": "1"})
    assert settings.engine_url == "https://ace:1"


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_engine_url_brackets_ipv6(host: str) -> None:
    settings = load_settings(env={"ACEXY_HOST": host})
    assert settings.host == "::1"
    assert settings.engine_url == "http://[::1]:6878"


# --- Settings: good values from the environment -------------------------------------------

GOOD = [
    ("ACEXY_LISTEN_ADDR", "[::]:9000", "listen_addr", ListenAddress("::", 9000)),
    ("ACEXY_SCHEME", "https", "scheme", "https"),
    ("ACEXY_HOST", "acestream", "host", "acestream"),
    ("ACEXY_UVLOOP", "false", "uvloop", False),
    ("ACEXY_PORT", "6879", "port", 6879),
    ("ACEXY_M3U8", "T", "m3u8", True),
    ("ACEXY_M3U8_STREAM_TIMEOUT", "1m30s", "m3u8_stream_timeout", 90.0),
    ("ACEXY_EMPTY_TIMEOUT", "300ms", "empty_timeout", 0.3),
    ("ACEXY_BUFFER_SIZE", "4MB", "buffer_size", 4_000_000),
    ("ACEXY_BUFFER_SIZE", "64KiB", "buffer_size", 65536),
    ("ACEXY_NO_RESPONSE_TIMEOUT", "2.5s", "no_response_timeout", 2.5),
    ("ACEXY_PREBUFFER_TIMEOUT", "5m", "prebuffer_timeout", 300.0),
    ("ACEXY_LOG_LEVEL", "warn", "log_level", "WARNING"),
    ("ACEXY_LINGER", "0", "linger", 0.0),
    ("ACEXY_MAX_STREAMS", "20", "max_streams", 20),
    ("ACEXY_UPSTREAM_RETRIES", "0", "upstream_retries", 0),
    ("ACEXY_ALLOW_REMOTE_CONTENT", "1", "allow_remote_content", True),
    ("ACEXY_PUBLIC_URL", "https://tv.example.org/ace/", "public_url", "https://tv.example.org/ace"),
    ("ACEXY_PUBLIC_URL", "/tv", "public_url", "/tv"),
    ("ACEXY_HLS_CACHE_SIZE", "1GiB", "hls_cache_size", 2**30),
    ("ACEXY_HLS_PREFETCH", "0", "hls_prefetch", 0),
    ("ACEXY_HLS_SOURCE", " Proxy ", "hls_source", "proxy"),
    ("ACEXY_HLS_SEGMENT_TARGET", "2s", "hls_segment_target", 2.0),
    ("ACEXY_HLS_SEGMENT_TARGET", "1m", "hls_segment_target", 60.0),
    ("ACEXY_HLS_WINDOW", "30", "hls_window", 30),
    ("ACEXY_ORCH_URL", "http://orchestrator:8000", "orch_url", "http://orchestrator:8000"),
    ("ACEXY_CONTAINER_ID", "abc123", "container_id", "abc123"),
    ("ACEXY_MAX_STREAMS_PER_ENGINE", "4", "max_streams_per_engine", 4),
]


@pytest.mark.parametrize(
    ("env", "text", "field", "value"), GOOD, ids=[f"{e}={t}" for e, t, _, _ in GOOD]
)
def test_value_from_env(env: str, text: str, field: str, value: object) -> None:
    assert getattr(load_settings(env={env: text}), field) == value


# --- Settings: bad values -----------------------------------------------------------------

BAD = [
    ("listen_addr", ":0", "a listen address"),
    ("listen_addr", "8080", "a listen address"),
    ("scheme", "ftp", "http or https"),
    ("host", "", "a host name"),
    ("host", "http://ace", "a host name"),
    ("port", "abc", "a port number 1-65535"),
    ("port", "0", "a port number 1-65535"),
    ("port", "65536", "a port number 1-65535"),
    ("port", "", "a port number 1-65535"),
    ("port", "6878.0", "a port number 1-65535"),
    ("m3u8", "yes", "a boolean"),
    ("m3u8", "", "a boolean"),
    ("m3u8_stream_timeout", "60", "a duration greater than 0"),
    ("m3u8_stream_timeout", "0", "a duration greater than 0"),
    ("empty_timeout", "-1m", "a duration greater than 0"),
    ("empty_timeout", "1 minute", "a duration greater than 0"),
    ("buffer_size", "4XB", "a size from 64KiB to 1GiB"),
    ("buffer_size", "1KiB", "a size from 64KiB to 1GiB"),
    ("buffer_size", "2GiB", "a size from 64KiB to 1GiB"),
    ("no_response_timeout", "0s", "a duration greater than 0"),
    ("prebuffer_timeout", "0s", "a duration greater than 0"),
    ("log_level", "verbose", "a log level"),
    ("linger", "-5s", "a duration of 0 or more"),
    ("linger", "5", "a duration of 0 or more"),
    ("max_streams", "-1", "a whole number 0 or more"),
    ("max_streams", "lots", "a whole number 0 or more"),
    ("upstream_retries", "1.5", "a whole number 0 or more"),
    ("allow_remote_content", "on", "a boolean"),
    ("public_url", "tv.example.org", "empty, an http:// or https:// URL, or a path"),
    ("public_url", "ftp://tv.example.org", "empty, an http:// or https:// URL, or a path"),
    ("public_url", "/tv?x=1", "empty, an http:// or https:// URL, or a path"),
    ("hls_cache_size", "1000k", "a size of 1MiB or more"),
    ("hls_prefetch", "-2", "a whole number 0 or more"),
    ("hls_source", "both", "engine or proxy"),
    ("hls_segment_target", "500ms", "a duration from 1s to 60s"),
    ("hls_segment_target", "61s", "a duration from 1s to 60s"),
    ("hls_window", "5", "a whole number 6 or more"),
    ("orch_url", "orchestrator:8000", "empty, or an http:// or https:// URL"),
    ("orch_url", "/orch", "empty, or an http:// or https:// URL"),
    ("max_streams_per_engine", "0", "a whole number 1 or more"),
]


@pytest.mark.parametrize(("field", "text", "expected"), BAD, ids=[f"{f}={t!r}" for f, t, _ in BAD])
def test_bad_env_value_names_the_variable(field: str, text: str, expected: str) -> None:
    env = f"ACEXY_{field.upper()}"
    with pytest.raises(ConfigError) as caught:
        load_settings(env={env: text})
    error = caught.value
    assert (error.source, error.value) == (env, text)
    assert error.expected.startswith(expected)
    assert str(error) == f'invalid value "{text}" for {env}: expected {error.expected}'


FLAGS = {option.name: option.flag for option in options()}


@pytest.mark.parametrize(("field", "text", "expected"), BAD, ids=[f"{f}={t!r}" for f, t, _ in BAD])
def test_bad_flag_value_names_the_flag(field: str, text: str, expected: str) -> None:
    # A good value in the environment must not hide the bad flag.
    with pytest.raises(ConfigError) as caught:
        load_settings({field: text}, env={})
    assert (caught.value.source, caught.value.value) == (FLAGS[field], text)
    assert caught.value.expected.startswith(expected)


def test_error_line_format() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"ACEXY_PORT": "abc"})
    assert str(caught.value) == (
        'invalid value "abc" for ACEXY_PORT: expected a port number 1-65535'
    )


def test_error_line_stays_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"ACEXY_PORT": '12"\n34'})
    assert str(caught.value) == (
        r'invalid value "12\"\n34" for ACEXY_PORT: expected a port number 1-65535'
    )


def test_error_names_the_flag_as_typed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"port": "x"}, env={}, flag_names={"port": "--acestream-port"})
    assert str(caught.value) == (
        'invalid value "x" for --acestream-port: expected a port number 1-65535'
    )


def test_unknown_override_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        load_settings({"no_such_field": "1"}, env={})


# --- precedence ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "env", "port"),
    [
        ({}, {}, 6878),
        ({}, {"ACEXY_PORT": "1111"}, 1111),
        ({"port": "2222"}, {}, 2222),
        ({"port": "2222"}, {"ACEXY_PORT": "1111"}, 2222),
        # The flag wins, so a broken variable under it does not matter.
        ({"port": "2222"}, {"ACEXY_PORT": "abc"}, 2222),
    ],
    ids=["default", "env", "flag", "flag-over-env", "flag-over-bad-env"],
)
def test_flag_wins_over_env(overrides: dict[str, str], env: dict[str, str], port: int) -> None:
    assert load_settings(overrides, env=env).port == port


def test_env_mapping_replaces_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACEXY_PORT", "1234")
    monkeypatch.setenv("ACEXY_EMPTY_TIMEOUT", "nonsense")
    settings = load_settings(env={})
    assert (settings.port, settings.empty_timeout) == (6878, 60.0)


def test_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACEXY_PORT", "1234")
    monkeypatch.setenv("ACEXY_LISTEN_ADDR", "127.0.0.1:9")
    settings = load_settings()
    assert (settings.port, settings.listen_addr) == (1234, ListenAddress("127.0.0.1", 9))


@pytest.mark.parametrize("spelling", ["acexy_port", "Acexy_Port", "ACEXY_port"])
def test_variables_are_read_by_their_exact_name(
    spelling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in Go: a variable spelt in another case is someone else's.
    assert load_settings(env={spelling: "1234"}).port == 6878
    monkeypatch.setenv(spelling, "1234")
    assert load_settings().port == 6878
    assert Settings().port == 6878


def test_settings_reads_acexy_variables_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACEXY_LISTEN_ADDR", ":9")
    monkeypatch.setenv("ACEXY_BUFFER_SIZE", "8MiB")
    monkeypatch.setenv("ACEXY_M3U8", "TRUE")
    settings = Settings()
    assert (settings.listen_addr, settings.buffer_size, settings.m3u8) == (
        ListenAddress(None, 9),
        8 * MiB,
        True,
    )


def test_settings_in_code_takes_python_values() -> None:
    settings = Settings(empty_timeout=2, buffer_size=MiB, listen_addr=ListenAddress("::1", 9))
    assert (settings.empty_timeout, settings.buffer_size, str(settings.listen_addr)) == (
        2.0,
        MiB,
        "[::1]:9",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", 0),
        ("port", 70000),
        ("port", True),
        ("empty_timeout", 0),
        ("empty_timeout", float("inf")),
        ("linger", -1.0),
        ("buffer_size", 1024),
        ("max_streams", -1),
        ("m3u8", 1),
    ],
    ids=lambda v: v if isinstance(v, str) else repr(v),
)
def test_settings_in_code_are_checked_too(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**cast(dict[str, Any], {field: value}))
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


def test_settings_are_frozen() -> None:
    settings = load_settings(env={})
    with pytest.raises(ValidationError):
        settings.port = 1


# --- the secret ---------------------------------------------------------------------------


def test_api_key_never_shown() -> None:
    secret = "hunter2-very-secret"
    settings = load_settings({"orch_apikey": secret}, env={})
    assert isinstance(settings.orch_apikey, SecretStr)
    assert settings.orch_apikey.get_secret_value() == secret
    for shown in (repr(settings), str(settings), settings.model_dump_json(), str(options())):
        assert secret not in shown


def test_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACEXY_ORCH_APIKEY", "from-env-key")
    assert load_settings().orch_apikey.get_secret_value() == "from-env-key"
    assert "from-env-key" not in repr(Settings())


# --- options() ----------------------------------------------------------------------------

TABLE = [
    ("listen_addr", "ACEXY_LISTEN_ADDR", "-addr", ":8080"),
    ("scheme", "ACEXY_SCHEME", "-scheme", "http"),
    ("host", "ACEXY_HOST", "-acestream-host", "localhost"),
    ("port", "ACEXY_PORT", "-acestream-port", "6878"),
    ("m3u8", "ACEXY_M3U8", "-m3u8", "false"),
    ("m3u8_stream_timeout", "ACEXY_M3U8_STREAM_TIMEOUT", "-m3u8-stream-timeout", "60s"),
    ("empty_timeout", "ACEXY_EMPTY_TIMEOUT", "-empty-timeout", "1m"),
    ("buffer_size", "ACEXY_BUFFER_SIZE", "-buffer-size", "64MiB"),
    ("buffer_time", "ACEXY_BUFFER_TIME", "-buffer-time", "1m"),
    ("no_response_timeout", "ACEXY_NO_RESPONSE_TIMEOUT", "-no-response-timeout", "10s"),
    ("prebuffer_timeout", "ACEXY_PREBUFFER_TIMEOUT", "-prebuffer-timeout", "2m"),
    ("log_level", "ACEXY_LOG_LEVEL", "-log-level", "INFO"),
    ("linger", "ACEXY_LINGER", "-linger", "5s"),
    ("max_streams", "ACEXY_MAX_STREAMS", "-max-streams", "0"),
    ("upstream_retries", "ACEXY_UPSTREAM_RETRIES", "-upstream-retries", "3"),
    ("allow_remote_content", "ACEXY_ALLOW_REMOTE_CONTENT", "-allow-remote-content", "false"),
    ("public_url", "ACEXY_PUBLIC_URL", "-public-url", '""'),
    ("hls_cache_size", "ACEXY_HLS_CACHE_SIZE", "-hls-cache-size", "256MiB"),
    ("hls_prefetch", "ACEXY_HLS_PREFETCH", "-hls-prefetch", "2"),
    ("hls_source", "ACEXY_HLS_SOURCE", "-hls-source", "engine"),
    ("hls_segment_target", "ACEXY_HLS_SEGMENT_TARGET", "-hls-segment-target", "6s"),
    ("hls_window", "ACEXY_HLS_WINDOW", "-hls-window", "6"),
    ("orch_url", "ACEXY_ORCH_URL", "-orch-url", '""'),
    ("orch_apikey", "ACEXY_ORCH_APIKEY", "-orch-apikey", '""'),
    ("container_id", "ACEXY_CONTAINER_ID", "-container-id", '""'),
    (
        "max_streams_per_engine",
        "ACEXY_MAX_STREAMS_PER_ENGINE",
        "-max-streams-per-engine",
        "1",
    ),
    (
        "orch_provision_timeout",
        "ACEXY_ORCH_PROVISION_TIMEOUT",
        "-orch-provision-timeout",
        "30s",
    ),
    ("access_token", "ACEXY_ACCESS_TOKEN", "-access-token", '""'),
    ("allow_networks", "ACEXY_ALLOW_NETWORKS", "-allow-networks", '""'),
    ("access_log", "ACEXY_ACCESS_LOG", "-access-log", "false"),
    ("log_format", "ACEXY_LOG_FORMAT", "-log-format", "text"),
    ("uvloop", "ACEXY_UVLOOP", "-uvloop", "true"),
]


def test_options_match_the_acexy_table() -> None:
    assert [(o.name, o.env, o.flag, o.default) for o in options()] == TABLE


def test_declared_variables_are_the_ones_settings_reads() -> None:
    # Settings() finds variables by prefix + field name; the declared names must agree.
    assert all(o.env == f"ACEXY_{o.name.upper()}" for o in options())


@pytest.mark.parametrize("option", options(), ids=lambda o: o.flag)
def test_option_is_described_in_one_line(option: object) -> None:
    description = option.description  # type: ignore[attr-defined]
    assert description
    assert "\n" not in description


@pytest.mark.parametrize("option", options(), ids=lambda o: o.flag)
def test_shown_default_is_the_real_default(option: object) -> None:
    # What help shows must parse, as a flag, to exactly the built-in default.
    name, shown = option.name, option.default  # type: ignore[attr-defined]
    text = "" if shown == '""' else shown
    assert getattr(load_settings({name: text}, env={}), name) == getattr(
        load_settings(env={}), name
    )


def test_switches_are_the_bool_options() -> None:
    assert {o.flag for o in options() if o.is_switch} == {
        "-m3u8",
        "-allow-remote-content",
        "-access-log",
        "-uvloop",
    }


# --- demo options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bitrate"), [("2M", 2_000_000), ("800k", 800_000), ("1.5M", 1_500_000), ("3000", 3000)]
)
def test_demo_bitrate(text: str, bitrate: int) -> None:
    assert DemoOptions.parse(text) == DemoOptions(bitrate)


@pytest.mark.parametrize("text", ["0", "999", "fast", "-2M", ""], ids=repr)
def test_demo_bitrate_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DemoOptions.parse(text, source="--demo-bitrate")
    assert (caught.value.source, caught.value.value) == ("--demo-bitrate", text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("192.168.1.0/24", ("192.168.1.0/24",)),
        ("192.168.1.0/24, 10.0.0.0/8", ("192.168.1.0/24", "10.0.0.0/8")),
        ("127.0.0.1 ::1", ("127.0.0.1/32", "::1/128")),
    ],
    ids=["empty", "one", "comma", "bare-addresses"],
)
def test_allow_networks(text: str, expected: tuple[str, ...]) -> None:
    networks = load_settings({"allow_networks": text}, env={}).allow_networks
    assert tuple(map(str, networks)) == expected


@pytest.mark.parametrize("text", ["192.168.1.0/33", "lan", "10.0.0.0/8;"], ids=str)
def test_bad_allow_networks_name_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="ACEXY_ALLOW_NETWORKS") as info:
        load_settings(env={"ACEXY_ALLOW_NETWORKS": text})
    assert "CIDR" in str(info.value)


def test_access_token_never_shows() -> None:
    settings = load_settings(env={"ACEXY_ACCESS_TOKEN": "s3cret-token"})
    assert settings.access_token.get_secret_value() == "s3cret-token"
    assert "s3cret-token" not in repr(settings) and "s3cret-token" not in str(settings)


# --- acexy-orchestrator's names ----------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("ACEXY_ADDR", ":9090", "listen_addr", parse_listen_address(":9090")),
        ("ACEXY_TIMEOUT", "45s", "m3u8_stream_timeout", 45.0),
        ("ACEXY_BUFFER", "4.2MiB", "buffer_size", int(4.2 * MiB)),
        ("ACEXY_STREAM_GRACE_PERIOD", "5s", "linger", 5.0),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("ACEXY_") else "",
)
def test_acexy_orchestrator_variables_set_our_options(
    variable: str, value: str, field: str, expected: object
) -> None:
    assert getattr(load_settings(env={variable: value}), field) == expected
    # our own name wins when both are set
    ours = next(o.env for o in options() if o.name == field)
    both = load_settings(env={variable: value, ours: Settings.model_fields[field].default})
    assert getattr(both, field) == getattr(Settings(), field)


def test_a_bad_alias_value_names_the_alias() -> None:
    with pytest.raises(ConfigError, match="ACEXY_TIMEOUT"):
        load_settings(env={"ACEXY_TIMEOUT": "a while"})


def test_unknown_variables_are_the_acexy_ones_no_option_knows() -> None:
    env = {
        "ACEXY_ADDR": ":1",
        "ACEXY_LINGER": "1s",
        "ACEXY_SOMETHING": "1",
        "acexy_lower": "1",
        "HOME": "/",
    }
    assert unknown_variables(env) == ["ACEXY_SOMETHING"]
    # acexy-orchestrator's compose file, as shipped, leaves nothing unknown
    fork = (
        "ACEXY_ADDR ACEXY_SCHEME ACEXY_HOST ACEXY_PORT ACEXY_TIMEOUT ACEXY_M3U8 "
        "ACEXY_EMPTY_TIMEOUT ACEXY_BUFFER ACEXY_NO_RESPONSE_TIMEOUT ACEXY_ORCH_URL "
        "ACEXY_ORCH_APIKEY ACEXY_STREAM_GRACE_PERIOD ACEXY_MAX_STREAMS_PER_ENGINE"
    )
    assert unknown_variables(dict.fromkeys(fork.split(), "x")) == []
