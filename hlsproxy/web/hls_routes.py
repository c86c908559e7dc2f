"""HLS over aiohttp: the routes of playlists and the resources they name, which write the
answers `web/hls_answer.py` decides (the fast path writes the same answers as bytes)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from . import hls_urls, sendfile
from .hls_answer import HLS_ANSWERS, MANIFEST, Answer, HlsAnswers
from .keys import STALLS
from .unmatched import expect

# What browser players fetch: the only answers other web pages may read (CORS).
PLAYER_PATHS = (
    MANIFEST,
    hls_urls.PATH,
    "/ace/getstream",
    "/ace/getstream/",
)


def setup(app: web.Application) -> None:
    app.router.add_get(MANIFEST, manifest, expect_handler=expect)
    app.router.add_get(hls_urls.PATH, hls_resource, name=hls_urls.ROUTE, expect_handler=expect)
    for path in PLAYER_PATHS:
        app.router.add_route("OPTIONS", path, preflight, expect_handler=expect)
    app.on_startup.append(_answers)


async def _answers(app: web.Application) -> None:
    app[HLS_ANSWERS] = HlsAnswers(app)


@dataclass(frozen=True, slots=True)
class _Ask:
    """An aiohttp request as `hls_answer.Ask`."""

    method: str
    path: str
    query: str
    range: str | None
    authorization: str | None
    user_agent: str | None
    remote: str | None

    @classmethod
    def of(cls, request: web.Request) -> _Ask:
        headers = request.headers
        return cls(
            request.method,
            request.path,
            request.query_string,
            headers.get("Range"),
            headers.get("Authorization"),
            headers.get("User-Agent"),
            request.remote,
        )


async def manifest(request: web.Request) -> web.StreamResponse:
    # The access middleware has checked the request already.
    answer = request.app[HLS_ANSWERS].manifest(_Ask.of(request))
    return await write(request, answer if isinstance(answer, Answer) else await answer())


async def hls_resource(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    answers = request.app[HLS_ANSWERS]
    answer = answers.resource(_Ask.of(request), info["kind"], info["value"], info["token"])
    return await write(request, answer if isinstance(answer, Answer) else await answer())


async def preflight(request: web.Request) -> web.Response:
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
            "Access-Control-Allow-Headers": "Range",
            "Access-Control-Max-Age": "86400",
        },
    )


async def write(request: web.Request, answer: Answer) -> web.StreamResponse:
    """`answer`, through aiohttp. Its length goes out as a plain header: the content
    length setter parses and formats each value."""
    response = web.StreamResponse(status=answer.status, headers=answer.block.pairs)
    length = answer.length
    if length is not None:
        response.headers["Content-Length"] = str(length)
    # A StreamResponse writes its headers as it is prepared, so the body may follow straight
    # onto the socket; what the socket does not take at once goes the ordinary way.
    await response.prepare(request)
    if answer.head:
        await response.write_eof()  # a HEAD's answer has a length and no body
        return response
    if answer.text is not None:
        await response.write(answer.text)
    elif answer.body is not None:
        start, end = answer.start, answer.end
        start += sendfile.send_now(request.transport, answer.body, start, end)
        if start < end:
            _watch(request)
            await response.write(answer.body.view[start:end])
    elif answer.flight is not None:
        # A coalesced miss: bytes go out as the engine sends them, not once it has finished.
        async for chunk in answer.flight.chunks():
            _watch(request)
            await response.write(chunk)
    await response.write_eof()
    return response


def _watch(request: web.Request) -> None:
    """A client that stops reading is cut after the send timeout (web/stalls.py)."""
    if request.transport is not None:
        request.app[STALLS].watch(request.transport)
