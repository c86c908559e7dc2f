"""The options table of the README, generated from the settings model."""

from __future__ import annotations

import sys
from pathlib import Path

from .config import options

BEGIN = "<!-- options:begin (python -m hlsproxy.docs --update README.md) -->"
END = "<!-- options:end -->"


def options_table() -> str:
    rows = [
        "| variable | flag | default | what it does |",
        "|---|---|---|---|",
    ]
    for option in options():
        default = option.default.replace("|", "\\|")
        description = option.description.replace("|", "\\|")
        variables = " or ".join(f"`{name}`" for name in (option.env, *option.env_aliases))
        flags = " or ".join(f"`{flag}`" for flag in (option.flag, *option.flag_aliases))
        if option.env_aliases or option.flag_aliases:
            description += (
                " (The other names are acexy-orchestrator's; ours wins when both are set.)"
            )
        rows.append(f"| {variables} | {flags} | `{default}` | {description} |")
    return "\n".join(rows)


def update(text: str) -> str:
    """`text` with the table between the markers replaced by the current one."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{options_table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--update"] and len(args) == 2:
        path = Path(args[1])
        path.write_text(update(path.read_text()))
        return
    print(BEGIN)
    print(options_table())
    print(END)


if __name__ == "__main__":
    main()
