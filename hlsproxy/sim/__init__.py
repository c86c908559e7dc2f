"""A simulated AceStream engine with real media, for tests, the demo mode and benchmarks."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .engine import Faults, SimEngine, SimSession
from .media import MediaLoop
from .server import serve_app

__all__ = ["Faults", "MediaLoop", "SimEngine", "SimSession", "start_engine"]


async def start_engine(
    host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> tuple[SimEngine, web.AppRunner, int]:
    """Serve a SimEngine(**kwargs) on host:port (0: any free port).

    Returns the engine, its runner (the caller awaits `runner.cleanup()`) and the bound port.
    """
    engine = SimEngine(**kwargs)
    runner, bound = await serve_app(engine.app, host, port)
    return engine, runner, bound
