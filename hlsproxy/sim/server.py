"""What every simulated server shares: its aiohttp app, what it saw, and how it fails.

A simulator subclasses `SimServer`: it adds its routes in `_add_routes`, looks at each request
in `_observe` before the route's handler runs, and answers a request no route knows in
`_answer_unexpected`. Tests read `counters` and `unexpected`, and wait on either with
`wait_for` and `wait_until`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from .changes import Changes

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SimServer:
    """A simulated server: serve `app` with aiohttp, or with `serve_app`."""

    def __init__(self) -> None:
        self.counters: collections.Counter[str] = collections.Counter()
        self.unexpected: list[str] = []
        """Requests no route knows: a test fails on them."""
        self._changes = Changes()

        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._observe(request, handler)

        self.app = web.Application(middlewares=[observe])
        self._add_routes(self.app)
        self.app.router.add_route("*", "/{tail:.*}", self._unexpected)

    async def wait_for(self, counter: str, n: int = 1, timeout: float = 5.0) -> None:
        """Until `counters[counter] >= n`; TimeoutError after `timeout` seconds."""
        await self.wait_until(lambda: self.counters[counter] >= n, timeout)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Until `predicate()` holds; checked after every request and every state change."""
        await self._changes.wait_until(predicate, timeout)

    def _add_routes(self, app: web.Application) -> None:
        """The simulator's routes; every other request is unexpected."""

    async def _observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Each request passes here before its handler: to record it or to fail it."""
        self._wake()
        return await handler(request)

    async def _unexpected(self, request: web.Request) -> web.StreamResponse:
        self.unexpected.append(f"{request.method} {request.path_qs}")
        log.warning("unexpected request %s %s", request.method, request.path_qs)
        return self._answer_unexpected()

    def _answer_unexpected(self) -> web.StreamResponse:
        raise web.HTTPNotFound()

    def _count(self, key: str) -> None:
        self.counters[key] += 1
        self._wake()

    def _wake(self) -> None:
        self._changes.notify()


async def serve_app(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0: any free port); the runner (the caller awaits its
    `cleanup()`) and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound: int = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    return runner, bound


async def cut(runner: web.AppRunner) -> None:
    """Close the listener, then abort every open connection: a process that went away.
    The listener goes first, so that nothing new arrives while connections are cut."""
    for site in list(runner.sites):
        await site.stop()
    server = runner.server
    if server is not None:
        for handler in server.connections:
            if handler.transport is not None:
                handler.transport.abort()


def drop(request: web.BaseRequest, resp: web.StreamResponse | None = None) -> web.StreamResponse:
    """Close the connection with no (further) answer. aiohttp finds the transport closed
    when it finishes the response, and lets it go quietly."""
    if request.transport is not None:
        request.transport.abort()
    return resp if resp is not None else web.Response()


def gone(request: web.BaseRequest) -> bool:
    """Whether the client's connection is closed or closing."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def flushed(request: web.BaseRequest) -> None:
    """Until what was written has left the transport, so that a cut comes after exactly
    the bytes the fault names (the kernel still delivers its own buffer after a close)."""
    transport = request.transport
    for _ in range(200):
        if transport is None or transport.is_closing() or not transport.get_write_buffer_size():
            return
        await asyncio.sleep(0.01)
