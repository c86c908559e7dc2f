"""hlsproxy: a proxy for AceStream engines, compatible with acexy."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def installed_version() -> str:
    """The version of the installed package, or "unknown" when run from a bare checkout."""
    try:
        return version("hlsproxy")
    except PackageNotFoundError:
        return "unknown"
