"""An option's names: its variable, its flag, the other names acexy-orchestrator gives it,
and the ``ACEXY_*`` variables that name no option at all.

An option's variable is ``ACEXY_`` and its field name in capitals, which pydantic-settings
reads; its flag is the field name with dashes (``-m3u8-stream-timeout``), except the few
that acexy spells otherwise.

acexy-orchestrator, the acexy fork that talks to the acestream-orchestrator (its
``proxy.go`` and ``docker-compose.yml``), spells a few options its own way; where the
option means what ours means, its name is an alias: ``ACEXY_ADDR`` (listen address),
``ACEXY_TIMEOUT`` and ``-timeout`` (the M3U8 stream timeout), ``ACEXY_BUFFER`` and
``-buffer``, ``ACEXY_STREAM_GRACE_PERIOD`` (in its compose file, though its code does not
read it: the session's grace after the last client, our linger), ``-emptyTimeout``,
``-noResponseTimeout`` and ``-maxStreamsPerEngine``. Our own name wins when both are set.
Any other ``ACEXY_*`` variable is no option of ours: :func:`unknown_names` names them, so
that a setup written for another proxy does not run quietly on defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, SecretStr
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo

from .option_types import Syntax

ENV_PREFIX = "ACEXY_"


def declare(
    default: Any,
    *,
    help: str,
    flag: str | None = None,
    env_aliases: tuple[str, ...] = (),
    flag_aliases: tuple[str, ...] = (),
) -> Any:
    """A settings field with its help text and the names it is given besides its own."""
    extra: JsonDict = {
        "flag": flag,
        "env_aliases": list(env_aliases),
        "flag_aliases": list(flag_aliases),
    }
    return Field(default=default, description=help, json_schema_extra=extra)


@dataclass(frozen=True, slots=True)
class Option:
    """An option as help text and docs show it."""

    name: str
    """The Settings field."""
    env: str
    flag: str
    default: str
    """The default as a user would type it; ``""`` for an empty one."""
    description: str
    syntax: str
    """What the value looks like: address, duration, size, bool, int, port, ..."""
    env_aliases: tuple[str, ...] = ()
    """Other variables read for it (acexy-orchestrator's names), when `env` is not set."""
    flag_aliases: tuple[str, ...] = ()
    """Other spellings of its flag (acexy-orchestrator's)."""

    @property
    def is_switch(self) -> bool:
        """A boolean flag, which may be given bare (``-m3u8``)."""
        return self.syntax == "bool"


def variable(name: str) -> str:
    """The variable of the field ``name``."""
    return f"{ENV_PREFIX}{name.upper()}"


def flag(name: str, field: FieldInfo) -> str:
    """The flag of the field ``name``, as acexy spells it."""
    extra = field.json_schema_extra
    spelt = extra.get("flag") if isinstance(extra, dict) else None
    return str(spelt) if spelt else f"-{name.replace('_', '-')}"


def described(fields: Mapping[str, FieldInfo]) -> list[Option]:
    """The options of a settings model's fields, in their order."""
    return [
        Option(
            name=name,
            env=variable(name),
            flag=flag(name, field),
            default=_shown_default(field.default),
            description=field.description or "",
            syntax=_syntax_of(field),
            env_aliases=_aliases(field, "env_aliases"),
            flag_aliases=_aliases(field, "flag_aliases"),
        )
        for name, field in fields.items()
    ]


def alias_sources(options: Iterable[Option], environment: Mapping[str, str]) -> dict[str, str]:
    """Per field: the alias variable its value comes from, when its own is not set."""
    sources: dict[str, str] = {}
    for option in options:
        if option.env not in environment:
            used = next((a for a in option.env_aliases if a in environment), None)
            if used is not None:
                sources[option.name] = used
    return sources


def unknown_names(options: Iterable[Option], environment: Mapping[str, str]) -> list[str]:
    """The ``ACEXY_*`` variables set that are no option's name or alias, sorted."""
    known = {name for option in options for name in (option.env, *option.env_aliases)}
    return sorted(
        name
        for name in environment
        if name.startswith(ENV_PREFIX) and name == name.upper() and name not in known
    )


def _shown_default(default: object) -> str:
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, SecretStr):
        return '""' if not default.get_secret_value() else "(set)"
    text = str(default)
    return text if text else '""'


def _syntax_of(field: FieldInfo) -> str:
    for item in field.metadata:
        if isinstance(item, Syntax):
            return item.name
    return "string"


def _aliases(field: FieldInfo, kind: str) -> tuple[str, ...]:
    extra = field.json_schema_extra
    names = extra.get(kind) if isinstance(extra, dict) else None
    return tuple(str(name) for name in names) if isinstance(names, list) else ()
