"""What the simulated orchestrator keeps: its pool's engines and the streams reported to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from .engine import SimEngine

Health = Literal["healthy", "unhealthy", "unknown"]
STAT_FIELDS = ("status", "peers", "speed_down", "speed_up", "downloaded", "uploaded")
"""What the orchestrator copies from an engine's stat answer into its stream."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime | None) -> str | None:
    """As pydantic writes an aware UTC datetime: with a `Z`."""
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(eq=False)
class SimPoolEngine:
    """One engine container of the pool, as tests see it."""

    container_id: str
    container_name: str
    host: str
    port: int
    """Where the engine's HTTP API answers (the container's published port)."""
    sim: SimEngine
    runner: web.AppRunner = field(repr=False)
    container_http_port: int
    container_https_port: int
    forwarded: bool = False
    health_status: Health = "unknown"
    started_at: datetime = field(default_factory=utcnow)
    alive: bool = True
    """False once killed or stopped: its server is gone."""
    listed: bool = True
    """False while a provisioned engine is still starting (v2.1 lists it as `unknown`)."""
    draining: bool = False
    """Takes no new stream (v2.1 reports it)."""
    labels: dict[str, str] = field(default_factory=dict)
    last_seen: datetime | None = None
    last_health_check: datetime | None = None
    last_stream_usage: datetime | None = None
    version: dict[str, Any] | None = None
    """The engine's `version` block from its last good status answer."""
    past: list[SimEngine] = field(default_factory=list)
    """The engines this container ran before its restarts, oldest first."""


@dataclass(eq=False)
class StreamRecord:
    id: str
    key_type: str
    key: str
    container_id: str
    container_name: str | None
    playback_session_id: str
    stat_url: str
    command_url: str
    is_live: bool
    started_at: datetime
    ended_at: datetime | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.ended_at is None

    @property
    def status(self) -> str:
        return "started" if self.open else "ended"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key_type": self.key_type,
            "key": self.key,
            "container_id": self.container_id,
            "container_name": self.container_name,
            "playback_session_id": self.playback_session_id,
            "stat_url": self.stat_url,
            "command_url": self.command_url,
            "is_live": self.is_live,
            "started_at": rfc3339(self.started_at),
            "ended_at": rfc3339(self.ended_at),
            "status": self.status,
            **{name: self.stats.get(name) for name in STAT_FIELDS if name != "status"},
        }
