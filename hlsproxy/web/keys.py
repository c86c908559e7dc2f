"""Typed application state (principle 6): what the handlers find on the app."""

from __future__ import annotations

from aiohttp import web

from ..config import Settings
from ..streams import Registry
from ..ts.stream import TsStream

SETTINGS = web.AppKey("settings", Settings)
TS_STREAMS = web.AppKey("ts_streams", Registry[TsStream])
