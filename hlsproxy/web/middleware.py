"""Errors become a status and a short JSON body; what browser players fetch carries CORS headers.

Once a response's headers are out, a failure cannot become an error response: the
connection is aborted instead (the player retries), never a second answer inside a body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import EngineError, ProxyError, Unavailable
from ..logs import printable
from .keys import METRICS

log = logging.getLogger(__name__)
access = logging.getLogger("hlsproxy.access")

# The response whose headers went out, if any: set when it is prepared.
_STARTED = web.RequestKey("started", web.StreamResponse)

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
        started: web.StreamResponse | None = request.get(_STARTED)
        if started is not None:
            log.info("%s %s: ended mid-answer: %s", request.method, request.path, exc.message)
            if request.transport is not None:
                request.transport.abort()
            return started
        response = error_body(exc.status, exc.code, exc.message)
        if isinstance(exc, Unavailable):
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if isinstance(exc, EngineError):
            request.app[METRICS].engine_errors.labels(exc.code).inc()
            log.warning("%s %s: %s", request.method, printable(request.path), exc.message)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_body(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        for name in ("Allow", "Retry-After", "Content-Range"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response


async def mark_started(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: from here on, a failure aborts the connection (see `errors`)."""
    request[_STARTED] = response


def cors(
    paths: Iterable[str],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An on_response_prepare hook (it reaches streamed answers and errors too) that lets
    any web page read the answers of the routes at `paths` (canonical), and no others:
    a page a LAN user happens to open must not read the status page or the metrics."""
    wanted = frozenset(paths)

    async def add_cors(request: web.Request, response: web.StreamResponse) -> None:
        resource = request.match_info.route.resource
        if resource is None or resource.canonical not in wanted:
            return
        for name, value in CORS_HEADERS.items():
            response.headers.setdefault(name, value)

    return add_cors


@web.middleware
async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One line per request. The path is logged without its query: it may hold a token."""
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except asyncio.CancelledError:
        status = 499  # the client went away first (nginx's convention)
        raise
    finally:
        access.info(
            '%s "%s %s" %d %.3fs',
            request.remote,
            printable(request.method),
            printable(request.path),
            status,
            time.monotonic() - started,
        )
