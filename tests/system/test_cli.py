from __future__ import annotations

import contextlib
import http.server
import io
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hlsproxy.cli import (
    LICENSE_TEXT,
    LOG_FORMAT,
    Show,
    Start,
    UsageError,
    configure_logging,
    help_text,
    interpret,
    main,
)
from hlsproxy.config import ConfigError, DemoOptions, ListenAddress, options
from hlsproxy.runner import probe

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_acexy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() reads os.environ; the real one must not leak into these tests.
    for name in list(os.environ):
        if name.upper().startswith("ACEXY_"):
            monkeypatch.delenv(name)


def hlsproxy(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hlsproxy`` with no ACEXY_* variable but those given."""
    environment = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "hlsproxy", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- as a program -------------------------------------------------------------------------


def test_help_lists_every_option_with_its_variable_and_default() -> None:
    result = hlsproxy("-help")
    assert result.returncode == 0
    assert result.stderr == ""
    for option in options():
        assert re.search(rf"^  {re.escape(option.flag)}\b", result.stdout, re.MULTILINE)
        assert f"env {option.env}, default {option.default}\n" in result.stdout
    for flag in ("-demo", "-demo-bitrate", "-license", "-version", "-help"):
        assert f"\n  {flag}" in result.stdout


def test_help_ignores_a_broken_environment_and_hides_the_api_key() -> None:
    result = hlsproxy("--help", ACEXY_PORT="abc", ACEXY_ORCH_APIKEY="s3cr3t-key")
    assert result.returncode == 0
    assert "ACEXY_ORCH_APIKEY" in result.stdout
    assert "s3cr3t-key" not in result.stdout + result.stderr


def test_license_prints_the_license_file() -> None:
    result = hlsproxy("-license")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (ROOT / "LICENSE").read_text()
    assert "MIT License" in result.stdout
    assert "hlsproxy authors" in result.stdout


@pytest.mark.parametrize("flag", ["-version", "--version"])
def test_version_prints_the_installed_version(flag: str) -> None:
    result = hlsproxy(flag, ACEXY_PORT="abc")  # whatever else is wrong
    assert (result.returncode, result.stderr) == (0, "")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert result.stdout == f"hlsproxy {project['version']}\n"


def test_healthcheck_says_nothing_listens_where_it_looked() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = hlsproxy("-healthcheck", f"-addr=127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr == (
        f"hlsproxy: unhealthy: http://127.0.0.1:{port}/healthz: "
        "connection refused: no proxy listens there (check ACEXY_LISTEN_ADDR)\n"
    )


def test_healthcheck_says_the_proxy_did_not_answer_in_time() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        settings = interpret([f"-addr=127.0.0.1:{port}"], env={})
        assert isinstance(settings, Start)
        with contextlib.redirect_stderr(io.StringIO()) as err:
            assert probe(settings.settings, timeout=0.5) == 1
    assert err.getvalue() == (
        f"hlsproxy: unhealthy: http://127.0.0.1:{port}/healthz: no answer within 0.5s\n"
    )


def test_healthcheck_names_a_status_other_than_200() -> None:
    class Answer503(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer503) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            command = interpret([f"-addr=127.0.0.1:{server.server_port}"], env={})
            assert isinstance(command, Start)
            with contextlib.redirect_stderr(io.StringIO()) as err:
                assert probe(command.settings) == 1
        finally:
            server.shutdown()
    assert err.getvalue().endswith("/healthz: it answered HTTP 503\n")


def test_unknown_flag_prints_usage_and_exits_2() -> None:
    result = hlsproxy("-no-such-flag=1")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: hlsproxy" in result.stderr
    assert "hlsproxy: flag provided but not defined: -no-such-flag\n" in result.stderr


def test_bad_port_variable_is_one_line_naming_it() -> None:
    result = hlsproxy(ACEXY_PORT="abc")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        'hlsproxy: invalid value "abc" for ACEXY_PORT: expected a port number 1-65535\n'
    )


def test_bad_flag_is_one_line_naming_it_as_typed() -> None:
    result = hlsproxy("--empty-timeout", "soon", ACEXY_EMPTY_TIMEOUT="1m")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith('hlsproxy: invalid value "soon" for --empty-timeout: expected ')


# --- in process ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["-addr", ":9"],
        ["--addr", ":9"],
        ["-addr=:9"],
        ["--addr=:9"],
        ["-addr", ":1", "-addr", ":9"],
    ],
    ids=" ".join,
)
def test_flag_spellings(argv: list[str]) -> None:
    command = interpret(argv, env={"ACEXY_LISTEN_ADDR": ":7"})
    assert isinstance(command, Start)
    assert command.settings.listen_addr == ListenAddress(None, 9)


@pytest.mark.parametrize(
    ("argv", "env", "m3u8"),
    [
        ([], {}, False),
        ([], {"ACEXY_M3U8": "true"}, True),
        (["-m3u8"], {}, True),
        (["--m3u8"], {"ACEXY_M3U8": "false"}, True),
        (["-m3u8=false"], {"ACEXY_M3U8": "true"}, False),
        (["--m3u8=T"], {}, True),
        (["-m3u8=0"], {}, False),
        (["-m3u8", "-addr=:9"], {}, True),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bool_flags(argv: list[str], env: dict[str, str], m3u8: bool) -> None:
    command = interpret(argv, env=env)
    assert isinstance(command, Start)
    assert command.settings.m3u8 is m3u8


def test_flags_win_over_env_and_env_fills_the_rest() -> None:
    command = interpret(
        ["-acestream-port", "2222", "--buffer-size=8MiB", "-linger", "0"],
        env={"ACEXY_PORT": "1111", "ACEXY_HOST": "acestream", "ACEXY_LINGER": "30s"},
    )
    assert isinstance(command, Start)
    settings = command.settings
    assert (settings.port, settings.host, settings.buffer_size, settings.linger) == (
        2222,
        "acestream",
        8 * 2**20,
        0.0,
    )
    assert command.demo is None


def test_negative_number_reaches_validation() -> None:
    with pytest.raises(ConfigError) as caught:
        interpret(["-upstream-retries", "-1"], env={})
    assert (caught.value.source, caught.value.value) == ("-upstream-retries", "-1")


def test_bad_flag_value_is_named_as_typed() -> None:
    with pytest.raises(ConfigError) as caught:
        interpret(["--acestream-port=http"], env={})
    assert str(caught.value) == (
        'invalid value "http" for --acestream-port: expected a port number 1-65535'
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-nope"], "flag provided but not defined: -nope"),
        (["--nope=3"], "flag provided but not defined: --nope"),
        # Go's flag package has no abbreviations.
        (["-acestream-h", "x"], "flag provided but not defined: -acestream-h"),
        (["--acestream-h=x"], "flag provided but not defined: --acestream-h"),
        (["-hx"], "flag provided but not defined: -hx"),
        (["---addr=:9"], "bad flag syntax: ---addr=:9"),
        (["-=x"], "bad flag syntax: -=x"),
        (["-addr", ":9", "--", "-m3u8"], "unexpected argument: -m3u8"),
        (["serve"], "unexpected argument: serve"),
        (["-addr"], "expected one argument"),
        (["-demo-bitrate", "3M"], "-demo-bitrate only applies with -demo"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        interpret(argv, env={})


@pytest.mark.parametrize(
    ("argv", "demo"),
    [
        (["-demo"], DemoOptions(2_000_000)),
        (["--demo", "--demo-bitrate=800k"], DemoOptions(800_000)),
        (["-demo", "-demo-bitrate", "1.5M"], DemoOptions(1_500_000)),
        (["-demo=false"], None),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_demo_flags(argv: list[str], demo: DemoOptions | None) -> None:
    command = interpret(argv, env={})
    assert isinstance(command, Start)
    assert command.demo == demo


def test_bad_demo_bitrate() -> None:
    with pytest.raises(ConfigError) as caught:
        interpret(["-demo", "--demo-bitrate=fast"], env={})
    assert (caught.value.source, caught.value.value) == ("--demo-bitrate", "fast")


@pytest.mark.parametrize("flag", ["-h", "-help", "--help"])
def test_help_flags(flag: str) -> None:
    assert interpret([flag, "-acestream-port=bad"], env={}) == Show(help_text())


@pytest.mark.parametrize("flag", ["-license", "--license"])
def test_license_flags(flag: str) -> None:
    assert interpret([flag], env={}) == Show(LICENSE_TEXT)


def test_embedded_license_is_the_license_file() -> None:
    assert (ROOT / "LICENSE").read_text() == LICENSE_TEXT


def test_main_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-h"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (help_text(), "")


def test_main_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-acestream-port", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        'hlsproxy: invalid value "0" for -acestream-port: expected a port number 1-65535\n'
    )


def test_main_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bogus"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: hlsproxy")
    assert err.endswith("hlsproxy: flag provided but not defined: --bogus\n")


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_logging_goes_to_stderr_at_the_level_in_the_format(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG")
    configure_logging("WARNING")  # replaces, so each line appears once
    log = logging.getLogger("hlsproxy.test")
    log.info("hidden")
    log.warning("shown %d", 1)
    assert LOG_FORMAT == "%(asctime)s %(levelname)s %(name)s: %(message)s"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING hlsproxy\.test: shown 1", lines[0]
    )


def test_main_hands_settings_to_the_runner_and_returns_its_status(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    # The listen port is taken, so the runner fails fast and says so; its status is ours.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main([f"-addr=127.0.0.1:{port}", "-acestream-host=127.0.0.1", "-log-level=warn"])
    assert status == 1
    err = capsys.readouterr().err
    assert f"ERROR hlsproxy: cannot listen on 127.0.0.1:{port}" in err


@pytest.mark.parametrize(
    ("argv", "env", "listen"),
    [
        (["-demo"], {}, ListenAddress("127.0.0.1", 8080)),
        (["-demo", "-addr=:9000"], {}, ListenAddress(None, 9000)),
        (["-demo"], {"ACEXY_LISTEN_ADDR": ":8080"}, ListenAddress(None, 8080)),
        ([], {}, ListenAddress(None, 8080)),
    ],
    ids=["demo-alone", "demo-with-addr", "demo-with-variable", "no-demo"],
)
def test_the_demo_listens_on_loopback_unless_told(
    argv: list[str], env: dict[str, str], listen: ListenAddress
) -> None:
    command = interpret(argv, env=env)
    assert isinstance(command, Start)
    assert command.settings.listen_addr == listen


def test_demo_engines_runs_a_pool_and_needs_demo() -> None:
    command = interpret(["-demo", "-demo-engines", "3"], env={})
    assert isinstance(command, Start) and command.demo is not None
    assert command.demo.engines == 3
    with pytest.raises(UsageError):
        interpret(["-demo-engines", "3"], env={})
    with pytest.raises(ConfigError, match="-demo-engines"):
        interpret(["-demo", "-demo-engines", "99"], env={})


# --- acexy-orchestrator's names ----------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "field", "value", "expected"),
    [
        ("-timeout", "m3u8_stream_timeout", "90s", 90.0),
        ("-emptyTimeout", "empty_timeout", "2m", 120.0),
        ("-noResponseTimeout", "no_response_timeout", "3s", 3.0),
        ("-buffer", "buffer_size", "1MiB", 2**20),
        ("-maxStreamsPerEngine", "max_streams_per_engine", "2", 2),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("-") else "",
)
def test_acexy_orchestrator_flags_set_our_options(
    flag: str, field: str, value: str, expected: object
) -> None:
    for argv in ([f"{flag}={value}"], [flag, value], [f"-{flag}={value}"]):
        command = interpret(argv, env={})
        assert isinstance(command, Start)
        assert getattr(command.settings, field) == expected


def test_a_bad_value_names_the_alias_flag_as_typed() -> None:
    with pytest.raises(ConfigError, match="-emptyTimeout"):
        interpret(["-emptyTimeout=soon"], env={})


def test_help_shows_the_other_names() -> None:
    text = help_text()
    assert "  -m3u8-stream-timeout, -timeout duration\n" in text
    flat = " ".join(text.split())
    assert "every interface. Also read from ACEXY_ADDR. env ACEXY_LISTEN_ADDR," in flat
    assert "Also read from ACEXY_STREAM_GRACE_PERIOD. env ACEXY_LINGER," in flat


def test_unknown_acexy_variables_are_warned_of_once_at_start(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "ACEXY_ADDR": "127.0.0.1:0",  # an alias: known
        "ACEXY_NO_SUCH_THING": "1",
        "ACEXY_DEBUG_LEVEL": "x",
        "ACEXY_HOST": "127.0.0.1",
        "acexy_lower": "Go reads exact names",
    }
    with socket.socket() as taken, pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # the listen port is taken, so the runner stops right after starting
        assert main([f"-addr=127.0.0.1:{port}", "-log-level=warn"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if "ignoring" in line]
    assert [line.split(" ", 2)[-1] for line in lines] == [
        "WARNING hlsproxy: ignoring ACEXY_DEBUG_LEVEL, ACEXY_NO_SUCH_THING: not an option of "
        "hlsproxy (hlsproxy -help lists them)"
    ]
