"""Typed application state (principle 6): what the handlers find on the app."""

from __future__ import annotations

from aiohttp import web

from ..config import Settings
from ..engine.pool import EnginePool
from ..hls.cache import SegmentCache
from ..hls.channel import HlsStream
from ..streams import Registry
from ..ts.stream import TsStream
from .metrics import Metrics

AnyStream = TsStream | HlsStream

SETTINGS = web.AppKey("settings", Settings)
STREAMS = web.AppKey("streams", Registry[AnyStream])
SEGMENTS = web.AppKey("segments", SegmentCache)
METRICS = web.AppKey("metrics", Metrics)
POOL = web.AppKey("pool", EnginePool)
