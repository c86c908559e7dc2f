"""Typed application state (docs/ARCHITECTURE.md, principle 6): what the handlers find on
the app."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from ..config import DemoChannel, Settings
from ..engine.client import EngineClient
from ..engine.pool import EnginePool
from ..hls.cache import SegmentCache
from ..registry import Registry
from ..sessions import Sessions
from .metrics import Metrics
from .stalls import Stalls

SETTINGS = web.AppKey("settings", Settings)
HTTP = web.AppKey("http", aiohttp.ClientSession)
CLIENT = web.AppKey("client", EngineClient)
STREAMS = web.AppKey("streams", Registry)
SESSIONS = web.AppKey("sessions", Sessions)
SEGMENTS = web.AppKey("segments", SegmentCache)
METRICS = web.AppKey("metrics", Metrics)
POOL = web.AppKey("pool", EnginePool)
STALLS = web.AppKey("stalls", Stalls)
# The demo's channels, for the status page to list before anyone plays them; empty otherwise.
DEMO_CHANNELS = web.AppKey("demo_channels", tuple[DemoChannel, ...])
