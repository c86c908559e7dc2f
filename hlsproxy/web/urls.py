"""One spelling per content URL."""

from __future__ import annotations

from aiohttp import web

from ..content import ContentKey


def canonical_redirect(request: web.Request, key: ContentKey) -> None:
    """Send a client that spelt a content id in capitals to its lowercase URL, so that
    a load balancer hashing on the id sends all of a content's requests to one instance."""
    name, value = key.engine_param
    given = request.query.get(name) or request.query.get("content_id")
    if given is None or given == value:
        return
    query = [
        (k, value if v == given and k in (name, "content_id") else v)
        for k, v in request.query.items()
    ]
    raise web.HTTPFound(request.rel_url.with_query(query))
