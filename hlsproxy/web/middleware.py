"""Errors become a status and a short JSON body; what browser players fetch carries CORS headers.

Once a response's headers are out, a failure cannot become an error response: the
connection is aborted instead (the player retries), never a second answer inside a body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

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
    return web.Response(
        body=error_json(code, message),
        status=status,
        content_type="application/json",
        charset="utf-8",
    )


def error_json(code: str, message: str) -> bytes:
    """The body of every error answer, on both HTTP paths."""
    return json.dumps({"error": code, "message": message}).encode()


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """What a client is told about a failure, however the answer is written."""

    status: int
    code: str
    message: str
    headers: dict[str, str]


def describe(exc: ProxyError | web.HTTPException) -> ErrorAnswer:
    """The answer for a failure (an HTTPException below 400 is not one: it is re-raised)."""
    if isinstance(exc, ProxyError):
        headers = {}
        if isinstance(exc, Unavailable):
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return ErrorAnswer(exc.status, exc.code, exc.message, headers)
    if exc.status < 400:
        raise exc
    code = exc.reason.lower().replace(" ", "_")
    kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
    return ErrorAnswer(exc.status, code, exc.reason, kept)


def report(app: web.Application, method: str, path: str, exc: Exception) -> None:
    """Engine failures that reach a client are logged and counted."""
    if isinstance(exc, EngineError):
        app[METRICS].engine_errors.labels(exc.code).inc()
        log.warning(
            "%s %s: %s",
            method,
            printable(path),
            exc.message,
            extra={"event": "request_failed", "code": exc.code},
        )


_KEPT_HEADERS = ("Allow", "Retry-After", "Content-Range")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (ProxyError, web.HTTPException) as exc:
        started: web.StreamResponse | None = request.get(_STARTED)
        if isinstance(exc, ProxyError) and started is not None:
            log.info("%s %s: ended mid-answer: %s", request.method, request.path, exc.message)
            if request.transport is not None:
                request.transport.abort()
            return started
        answer = describe(exc)
        report(request.app, request.method, request.path, exc)
        response = error_body(answer.status, answer.code, answer.message)
        response.headers.update(answer.headers)
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
        status = CLIENT_GONE
        raise
    finally:
        log_access(request.remote, request.method, request.path, status, started)


# What the access log says of a request whose client went away first (nginx's convention).
CLIENT_GONE = 499


def log_access(remote: str | None, method: str, path: str, status: int, started: float) -> None:
    """The access log's line for a request, whichever path answered it; `started` is when
    it was read, by `time.monotonic()`."""
    access.info(
        '%s "%s %s" %d %.3fs',
        remote,
        printable(method),
        printable(path),
        status,
        time.monotonic() - started,
    )
