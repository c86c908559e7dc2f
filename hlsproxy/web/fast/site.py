"""A listening site whose connections start on the fast path (`protocol`).

It stands where aiohttp's TCPSite would, on a host and port or on a socket it is given, and
it owns what its connections leave behind: it closes those left idle for the keep-alive
time, and on stop it lets each finish the answer under way before closing it. Connections
handed to aiohttp are aiohttp's to keep alive and to shut down, for the same keep-alive
time: the site takes it from its runner (`ProxyRunner`), which gives it to aiohttp.

On both paths the keep-alive time is also the head timeout: a connection is closed once
it has sent no whole request head for that long since it opened or its last answer ended
(aiohttp counts a partial head as idle, and so does the sweep here).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from aiohttp import web

from ..access import allowed
from ..hls_answer import HLS_ANSWERS
from ..keys import SETTINGS, STALLS
from ..unmatched import answer_expectations
from .protocol import FastConnection
from .writer import Dates

# How long a connection may wait for its next request, on both paths. aiohttp's default
# (3,630 s in web_protocol.RequestHandler of aiohttp 3.14; older releases had 75 s) would
# keep every connection that left the fast path (a 404, /healthz, the status page) for an
# hour. 75 s outlasts the target duration of any live playlist a player polls on its
# connection.
KEEPALIVE_TIMEOUT = 75.0


class ProxyRunner(web.AppRunner):
    """aiohttp's runner with the keep-alive time the fast path keeps too."""

    def __init__(
        self, app: web.Application, *, keepalive_timeout: float = KEEPALIVE_TIMEOUT, **options: Any
    ) -> None:
        super().__init__(app, keepalive_timeout=keepalive_timeout, **options)
        self.keepalive_timeout = keepalive_timeout

    async def setup(self) -> None:
        await super().setup()
        assert self.server is not None
        self.server.request_handler = answer_expectations(self.server.request_handler)


class FastSite(web.BaseSite):
    def __init__(
        self,
        runner: ProxyRunner,
        host: str | None = None,
        port: int = 0,
        *,
        sock: socket.socket | None = None,
        shutdown_timeout: float = 5.0,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._sock = sock
        self._shutdown_timeout = shutdown_timeout
        self._keepalive_timeout = runner.keepalive_timeout
        self.answers = runner.app[HLS_ANSWERS]
        self.stalls = runner.app[STALLS]
        self.dates = Dates()
        settings = runner.app[SETTINGS]
        self.access_log = settings.access_log
        self._networks = settings.allow_networks
        self._connections: set[FastConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host or '0.0.0.0'}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port, once started."""
        return self._port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        assert self._runner.server is not None  # BaseSite insists on runner.setup() first

        def factory() -> asyncio.Protocol:
            return FastConnection(self, loop.time)

        self._sweeper = loop.create_task(self._sweep(), name="fast path keep-alive")
        if self._sock is not None:
            listening = await loop.create_server(factory, sock=self._sock, backlog=self._backlog)
        else:
            listening = await loop.create_server(
                factory, self._host, self._port, backlog=self._backlog
            )
        self._server = listening
        if listening.sockets:
            self._port = int(listening.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await super().stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for connection in list(self._connections):
            connection.finish()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._shutdown_timeout)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for connection in list(self._connections):
            connection.finish()

    # protocol.Hub

    def admits(self, remote: str | None) -> bool:
        """Whether a client at `remote` may be answered here (the allowed networks); one
        that may not is handed to aiohttp, whose access control tells it why."""
        return not self._networks or allowed(remote, self._networks)

    def aiohttp_protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        return server()

    def joined(self, connection: FastConnection) -> None:
        self._connections.add(connection)

    def left(self, connection: FastConnection) -> None:
        self._connections.discard(connection)

    def track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self._keepalive_timeout
        while True:
            await asyncio.sleep(min(5.0, timeout / 2))
            now = loop.time()
            for connection in list(self._connections):
                if connection.idle and now - connection.last_request > timeout:
                    connection.finish()
