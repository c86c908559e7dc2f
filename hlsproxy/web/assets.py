"""The pages' stylesheets and script, served from the package's ``static`` folder.

Each URL a page names carries a digest of the file (``/static/status.css?v=…``), so a browser
may keep it for a year without asking again: a changed file has a new URL. A request without
the current digest gets the file too, but must revalidate it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from urllib.parse import urlencode

from aiohttp import web

from .unmatched import expect

PREFIX = "/static/"
_TYPES = {".css": "text/css", ".js": "text/javascript"}
_KEEP = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    digest: str

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'


@cache
def _assets() -> dict[str, Asset]:
    found = {}
    for entry in files(__package__).joinpath("static").iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if suffix in _TYPES:
            body = entry.read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:16]
            found[entry.name] = Asset(body, _TYPES[suffix], digest)
    return found


def asset_url(name: str, token: str = "") -> str:
    """Where a page finds the asset ``name``; ``token`` is carried for a proxy that needs one."""
    query = {"v": _assets()[name].digest}
    if token:
        query["token"] = token
    return f"{PREFIX}{name}?{urlencode(query)}"


async def serve(request: web.Request) -> web.Response:
    asset = _assets().get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound()
    current = request.query.get("v") == asset.digest
    headers = {"Cache-Control": _KEEP if current else _REVALIDATE, "ETag": asset.etag}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers
    )


def setup(app: web.Application) -> None:
    app.router.add_get(PREFIX + "{name}", serve, expect_handler=expect)
