"""The command line: acexy's flags, then logging, then the runner.

This is the only module that reads argv or sets up logging. Flags follow Go's ``flag``
package, as acexy's do: ``-addr`` or ``--addr``, ``-addr=:9`` or ``-addr :9``, and a bool
flag alone (``-m3u8``) or with a value (``-m3u8=false``). A flag wins over its
``ACEXY_*`` variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from hlsproxy import installed_version
from hlsproxy.config import (
    DEMO_BITRATE_DEFAULT,
    ConfigError,
    DemoOptions,
    Settings,
    load_settings,
    options,
    unknown_variables,
)
from hlsproxy.gosyntax import parse_bool, parse_int
from hlsproxy.logs import TEXT_FORMAT, formatter

PROG = "hlsproxy"
LOG_FORMAT = TEXT_FORMAT
USAGE = f"usage: {PROG} [flags]   ('{PROG} -help' lists them)"

# Kept in the code rather than read from LICENSE, so an installed wheel can print it.
LICENSE_TEXT = """\
MIT License

Copyright (c) 2026 hlsproxy authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


class UsageError(Exception):
    """The command line itself is wrong: an unknown flag, a missing value, a stray word."""


@dataclass(frozen=True, slots=True)
class Show:
    """Print ``text`` and exit 0 (``-help``, ``-license``, ``-version``)."""

    text: str


@dataclass(frozen=True, slots=True)
class Start:
    """Run the proxy."""

    settings: Settings
    demo: DemoOptions | None


@dataclass(frozen=True, slots=True)
class Probe:
    """Check the liveness of the proxy these settings describe (container health checks)."""

    settings: Settings


@dataclass(frozen=True, slots=True)
class _Given:
    value: str
    spelling: str


class _Record(argparse.Action):
    """Keep a flag's raw text and how it was spelt; Settings does the parsing."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        value = self.const if values is None else values
        setattr(namespace, self.dest, _Given(str(value), option_string or self.option_strings[0]))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@dataclass(frozen=True, slots=True)
class _CliFlag:
    """A flag that is not a setting: it has no variable and only shapes this run."""

    flag: str
    dest: str
    syntax: str
    description: str
    default: str = ""


_DEMO = _CliFlag(
    "-demo",
    "cli_demo",
    "bool",
    "Run against the built-in simulated AceStream engine, on 127.0.0.1 unless -addr or"
    " ACEXY_LISTEN_ADDR says where.",
)
_DEMO_BITRATE = _CliFlag(
    "-demo-bitrate",
    "cli_demo_bitrate",
    "size",
    "Bitrate of the simulated stream in bits/s, with -demo (2M, 800k, 2000000).",
    DEMO_BITRATE_DEFAULT,
)
_HEALTHCHECK = _CliFlag(
    "-healthcheck",
    "cli_healthcheck",
    "bool",
    "Ask the proxy running with these settings whether it is alive; exit 0 if so, else 1"
    " and say why on stderr.",
)
_DEMO_ENGINES = _CliFlag(
    "-demo-engines",
    "cli_demo_engines",
    "int",
    "With -demo: run a simulated orchestrator with this many engines, to show a pool.",
    "0",
)
_CLI_FLAGS = (_DEMO, _DEMO_BITRATE, _DEMO_ENGINES, _HEALTHCHECK)


def _add(parser: argparse.ArgumentParser, flag: str, dest: str, switch: bool) -> None:
    names = [flag, f"-{flag}"]
    if switch:
        parser.add_argument(
            *names, dest=dest, action=_Record, nargs="?", const="true", default=argparse.SUPPRESS
        )
    else:
        parser.add_argument(*names, dest=dest, action=_Record, default=argparse.SUPPRESS)


def _parser() -> _Parser:
    # Go's flag package has no abbreviations, and argparse's help would not list env vars.
    parser = _Parser(prog=PROG, add_help=False, allow_abbrev=False)
    parser.add_argument("-h", "--h", "-help", "--help", dest="cli_help", action="store_true")
    parser.add_argument("-license", "--license", dest="cli_license", action="store_true")
    parser.add_argument("-version", "--version", dest="cli_version", action="store_true")
    for option in options():
        for flag in (option.flag, *option.flag_aliases):
            _add(parser, flag, option.name, option.is_switch)
    for extra in _CLI_FLAGS:
        _add(parser, extra.flag, extra.dest, extra.syntax == "bool")
    return parser


def _entry(flag: str, syntax: str, description: str, footer: str) -> str:
    head = f"  {flag}" if syntax == "bool" else f"  {flag} {syntax}"
    body = textwrap.fill(description, width=92, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return f"{head}\n{body}\n" + (f"        {footer}\n" if footer else "")


def help_text() -> str:
    """Every flag with its variable and default (the built-in one, never the environment's)."""
    parts = [
        f"Usage: {PROG} [flags]\n\n"
        "A proxy for AceStream engines: MPEG-TS fan-out and HLS, compatible with acexy.\n\n"
        "A flag may start with - or --, and takes its value as -flag=value or -flag value.\n"
        "A bool flag alone means true (-m3u8); -m3u8=false turns it off.\n"
        "A flag wins over its environment variable.\n\n"
        "Values: a duration is Go's, such as 300ms, 1.5s, 1m or 1h30m; a size is 4MiB\n"
        "(4 x 2^20 bytes), 4.2MiB, 4MB or 4M (4,000,000), 512k or a number of bytes; a bool is\n"
        "true, false, 1, 0, t or f; an address is :8080 (every interface), 127.0.0.1:8080 or\n"
        "[::]:8080.\n\n"
        "Options:\n"
    ]
    for option in options():
        footer = f"env {option.env}, default {option.default}"
        flags = ", ".join((option.flag, *option.flag_aliases))
        description = option.description
        if option.env_aliases:
            description += f" Also read from {' or '.join(option.env_aliases)}."
        parts.append(_entry(flags, option.syntax, description, footer))
    parts.append("\nOther flags:\n")
    for extra in _CLI_FLAGS:
        footer = f"default {extra.default}" if extra.default else ""
        parts.append(_entry(extra.flag, extra.syntax, extra.description, footer))
    parts.append(_entry("-license", "bool", "Print the license and exit.", ""))
    parts.append(_entry("-version", "bool", "Print the version and exit.", ""))
    parts.append(_entry("-help, -h", "bool", "Print this help and exit.", ""))
    return "".join(parts)


def _demo_options(namespace: argparse.Namespace) -> DemoOptions | None:
    demo: _Given | None = getattr(namespace, _DEMO.dest, None)
    bitrate: _Given | None = getattr(namespace, _DEMO_BITRATE.dest, None)
    engines: _Given | None = getattr(namespace, _DEMO_ENGINES.dest, None)
    enabled = False
    if demo is not None:
        try:
            enabled = parse_bool(demo.value)
        except ValueError as error:
            raise ConfigError(demo.spelling, demo.value, str(error)) from None
    if not enabled:
        for extra in (bitrate, engines):
            if extra is not None:
                raise UsageError(f"{extra.spelling} only applies with {_DEMO.flag}")
        return None
    options = (
        DemoOptions.parse(DEMO_BITRATE_DEFAULT)
        if bitrate is None
        else DemoOptions.parse(bitrate.value, source=bitrate.spelling)
    )
    if engines is None:
        return options
    try:
        count = parse_int(engines.value)
    except ValueError:
        count = -1
    if not 0 <= count <= 20:
        raise ConfigError(engines.spelling, engines.value, "a number of engines from 0 to 20")
    return dataclasses.replace(options, engines=count)


def _takes_value() -> dict[str, bool]:
    """Every flag's name without dashes, and whether its value may be the next argument."""
    names = {
        flag[1:]: not option.is_switch
        for option in options()
        for flag in (option.flag, *option.flag_aliases)
    }
    for extra in _CLI_FLAGS:
        names[extra.flag[1:]] = extra.syntax != "bool"
    names.update({"h": False, "help": False, "license": False, "version": False})
    return names


def _check_flag_names(argv: Sequence[str]) -> None:
    # argparse (3.11) still expands a single-dash prefix ("-acestream-h" to "-acestream-host")
    # despite allow_abbrev=False; Go's flag package, and so acexy, takes only whole names.
    takes_value = _takes_value()
    args = iter(argv)
    for arg in args:
        if arg == "--":
            return
        if not arg.startswith("-") or arg == "-":
            continue
        name, equals, _ = arg[2 if arg.startswith("--") else 1 :].partition("=")
        if not name or name.startswith("-"):
            raise UsageError(f"bad flag syntax: {arg}")
        if name not in takes_value:
            raise UsageError(f"flag provided but not defined: {arg.partition('=')[0]}")
        if takes_value[name] and not equals:
            next(args, None)


def interpret(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Show | Start | Probe:
    """Turn a command line into what to do; ``env`` defaults to ``os.environ``.

    Raises :class:`UsageError` for a malformed command line and :class:`ConfigError` for a
    bad value.
    """
    _check_flag_names(argv)
    namespace, extra = _parser().parse_known_args(list(argv))
    stray = [word for word in extra if word != "--"]
    if stray:
        raise UsageError(f"unexpected argument: {stray[0]}")
    if namespace.cli_help:
        return Show(help_text())
    if namespace.cli_license:
        return Show(LICENSE_TEXT)
    if namespace.cli_version:
        return Show(f"{PROG} {installed_version()}\n")
    given: dict[str, _Given] = {
        option.name: getattr(namespace, option.name)
        for option in options()
        if hasattr(namespace, option.name)
    }
    settings = load_settings(
        {name: g.value for name, g in given.items()},
        env,
        flag_names={name: g.spelling for name, g in given.items()},
    )
    healthcheck: _Given | None = getattr(namespace, _HEALTHCHECK.dest, None)
    if healthcheck is not None and parse_bool(healthcheck.value):
        return Probe(settings)
    demo = _demo_options(namespace)
    if demo is not None and "listen_addr" not in given:
        settings = _on_loopback_unless_told(settings, os.environ if env is None else env)
    return Start(settings, demo)


def _on_loopback_unless_told(settings: Settings, env: Mapping[str, str]) -> Settings:
    """The demo is for trying out on this machine: it listens on the loopback interface
    unless -addr or its variable says where."""
    (listen,) = (option for option in options() if option.name == "listen_addr")
    if listen.env in env:
        return settings
    loopback = load_settings({"listen_addr": f"127.0.0.1:{settings.listen_addr.port}"}, env={})
    return settings.model_copy(update={"listen_addr": loopback.listen_addr})


_HANDLER_NAME = "hlsproxy.stderr"


def configure_logging(level: str, kind: str = "text") -> None:
    """Log to stderr at ``level``; calling it again replaces the handler, not adds one."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter(kind))
    root.addHandler(handler)
    root.setLevel(level)


def warn_unknown_variables(env: Mapping[str, str] | None = None) -> None:
    """One warning at start naming every ``ACEXY_*`` variable that is no option of ours: a
    setup written for another proxy must not run quietly on settings nobody chose."""
    unknown = unknown_variables(env)
    if unknown:
        logging.getLogger("hlsproxy").warning(
            "ignoring %s: not an option of %s (%s -help lists them)",
            ", ".join(unknown),
            PROG,
            PROG,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """The ``hlsproxy`` command; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    try:
        command = interpret(args)
    except UsageError as error:
        sys.stderr.write(f"{USAGE}\n{PROG}: {error}\n")
        return 2
    except ConfigError as error:
        sys.stderr.write(f"{PROG}: {error}\n")
        return 2
    if isinstance(command, Show):
        sys.stdout.write(command.text)
        return 0
    # Imported only when needed, so -help, -license and config errors need no server code.
    from hlsproxy.runner import probe, run  # noqa: PLC0415

    if isinstance(command, Probe):
        return probe(command.settings)
    configure_logging(command.settings.log_level, command.settings.log_format)
    warn_unknown_variables()

    try:
        return run(command.settings, demo=command.demo)
    except KeyboardInterrupt:
        return 130
