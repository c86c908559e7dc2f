"""Where streams get their engine: one fixed engine, or a pool an orchestrator runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from ..content import ContentKey
from .client import Engine, EngineSession

OrchestratorEndReason = Literal[
    "client_disconnected", "stream_timeout", "empty_timeout", "engine_error", "shutdown"
]
"""Why a session ended, in the words of the orchestrator's `stream_ended` event; the proxy's
own reasons (`state.EndReason`) are translated into these."""


@dataclass(frozen=True, slots=True)
class PoolEngine:
    """One engine as the status page shows it."""

    label: str
    address: str
    health: str
    sessions: int
    capacity: int | None


def label_of(engine: Engine, engines: list[PoolEngine]) -> str:
    """An engine by the name its pool gives it, for pages and logs that must not show its
    address."""
    for known in engines:
        if known.address in (str(engine), f"{engine.host}:{engine.port}"):
            return known.label
    return "engine"


class EnginePool(Protocol):
    async def acquire(self, key: ContentKey) -> Engine:
        """The engine for a content's new session; raises Unavailable when none has room."""
        ...

    def release(self, engine: Engine, key: ContentKey) -> None:
        """The content's session on `engine` is over."""
        ...

    def session_started(self, session: EngineSession) -> None:
        """Report a new session; never delays the caller."""
        ...

    def session_ended(self, session: EngineSession, reason: OrchestratorEndReason) -> None:
        """Report a session's end, exactly once per started session; never delays the caller."""
        ...

    def engine_failed(self, engine: Engine) -> None:
        """The engine stopped answering: avoid it until the pool learns otherwise."""
        ...

    def engines(self) -> list[PoolEngine]: ...


class FixedEngine:
    """The one engine of ACEXY_HOST and ACEXY_PORT."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = 0
        self._failed = False

    def __repr__(self) -> str:
        return f"<FixedEngine {self.engine}>"

    async def acquire(self, key: ContentKey) -> Engine:
        return self.engine

    def release(self, engine: Engine, key: ContentKey) -> None:
        pass

    def session_started(self, session: EngineSession) -> None:
        self._sessions += 1
        self._failed = False

    def session_ended(self, session: EngineSession, reason: OrchestratorEndReason) -> None:
        self._sessions -= 1

    def engine_failed(self, engine: Engine) -> None:
        self._failed = True

    def engines(self) -> list[PoolEngine]:
        health = "unhealthy" if self._failed else "healthy" if self._sessions else "unknown"
        return [PoolEngine("engine", str(self.engine), health, self._sessions, None)]
