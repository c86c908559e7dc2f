"""Which container this proxy runs in, for the stream events it reports to the orchestrator."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

_CONTAINER_ID = re.compile(r"/(?:docker/containers|docker|libpod-|crio-)/?([0-9a-f]{64})")


def own_container_id(configured: str, mountinfo: Path = Path("/proc/self/mountinfo")) -> str:
    """ACEXY_CONTAINER_ID, or the id Docker gave this container, or "" outside one."""
    if configured:
        return configured
    with contextlib.suppress(OSError):
        match = _CONTAINER_ID.search(mountinfo.read_text())
        if match:
            return match.group(1)
    return ""
