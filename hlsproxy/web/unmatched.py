"""Requests that no handler takes: an unknown path or method, an Expect header.

aiohttp answers these before any middleware runs, and turns an Expect header that is not
UTF-8 into a 500 (its 417 echoes the value, which then cannot be encoded). So every route is
given `expect`, and a last route catches whatever the others do not match, so that these
answers are ours: a 404, 405 or 417 with a short JSON body like every other error.

A request whose target is not a path (`CONNECT host:port`, `OPTIONS *`) matches no route,
not even the last one, so aiohttp asks its own expect handler; `answer_expectations` puts
ours in front of the application for those.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from .middleware import error_body


async def expect(request: web.BaseRequest) -> web.Response | None:
    """No route takes a request body, so a client that waits for 100 Continue simply gets
    the final answer; any other expectation is refused without repeating it. The refusal
    is returned, not raised: aiohttp runs this before the middlewares, so a raised one
    would go out as aiohttp's plain text instead of our JSON."""
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        return error_body(417, "expectation_failed", "only Expect: 100-continue is understood")
    return None


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def answer_expectations(handler: Handler) -> Handler:
    """`handler`, with a request whose target is no path refused by `expect` first."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        # What the router matches: empty for CONNECT, whatever its target says.
        if hdrs.EXPECT in request.headers and not request.rel_url.raw_path.startswith("/"):
            refusal = await expect(request)
            if refusal is not None:
                return refusal
        return await handler(request)

    return handle


def setup(app: web.Application) -> None:
    """Call after every other route is added: this one matches any path and method."""

    async def unmatched(request: web.Request) -> web.StreamResponse:
        allowed: set[str] = set()
        for resource in request.app.router.resources():
            if resource is not catch_all:
                allowed |= (await resource.resolve(request))[1]
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()

    # Any character: a decoded path may hold a line feed, which "." would not match.
    catch_all = app.router.add_route(
        "*", r"/{tail:[\s\S]*}", unmatched, expect_handler=expect
    ).resource
