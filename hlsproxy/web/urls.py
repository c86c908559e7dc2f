"""One spelling per content URL."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ..content import ContentKey


def miss_spelt(key: ContentKey, get: Callable[[str], str | None]) -> str | None:
    """The content id as the client spelt it, when that is not its canonical spelling;
    `get` reads the client's query (the first value of a name)."""
    name, value = key.engine_param
    given = get(name) or get("content_id")
    return None if given is None or given == value else given


def canonical_redirect(request: web.Request, key: ContentKey) -> None:
    """Send a client that spelt a content id in capitals to its lowercase URL, so that
    a load balancer hashing on the id sends all of a content's requests to one instance."""
    given = miss_spelt(key, request.query.get)
    if given is None:
        return
    name, value = key.engine_param
    query = [
        (k, value if v == given and k in (name, "content_id") else v)
        for k, v in request.query.items()
    ]
    raise web.HTTPFound(request.rel_url.with_query(query))
