"""A server on 127.0.0.1 that the proxy must never reach: every request to it is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer


class Canary:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._record)
        self.server = TestServer(self.app, host="127.0.0.1")

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _record(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path_qs}")
        return web.Response(body=b"canary bytes " * 100, content_type="video/mp2t")


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    running = Canary()
    await running.server.start_server()
    yield running
    await running.server.close()
