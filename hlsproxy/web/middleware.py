"""Errors become a status and a short JSON body; every answer carries CORS headers."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import EngineError, ProxyError, Unavailable

log = logging.getLogger(__name__)

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges, Age, Date",
}


def error_body(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyError as exc:
        response = error_body(exc.status, exc.code, exc.message)
        if isinstance(exc, Unavailable):
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if isinstance(exc, EngineError):
            log.warning("%s %s: %s", request.method, request.path, exc.message)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_body(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        for name in ("Allow", "Retry-After", "Content-Range"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response


async def add_cors(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: reaches streamed answers and aiohttp's own errors too."""
    for name, value in CORS_HEADERS.items():
        response.headers.setdefault(name, value)
