"""Who may use the proxy: an optional shared token and an optional list of client networks.

Both are checked before any handler runs, so a refused request costs no engine session.
"""

from __future__ import annotations

import hmac
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..config import Settings
from ..errors import Forbidden, Unauthorized

TOKEN_PARAM = "token"
# Probes must work whatever the policy: a container's health check has no token.
OPEN_PATHS = frozenset({"/healthz"})


def access_control(settings: Settings) -> Middleware | None:
    token = settings.access_token.get_secret_value()
    networks = settings.allow_networks
    if not token and not networks:
        return None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or request.method == "OPTIONS":
            return await handler(request)
        if networks and not allowed(request.remote, networks):
            raise Forbidden("this proxy does not serve your network")
        if token:
            check_token(token, request.headers.get("Authorization"), request.query.get(TOKEN_PARAM))
        return await handler(request)

    return check


def check_token(token: str, authorization: str | None, query_token: str | None) -> None:
    """Raise Unauthorized unless the request presented `token` (a Bearer header, else the
    query's `token`), on whichever path it came."""
    if not token_matches(token_in(authorization, query_token), token):
        raise Unauthorized(
            "this proxy needs its token: add ?token=... to the URL "
            "or send an Authorization: Bearer header"
        )


def token_in(authorization: str | None, query_token: str | None) -> str:
    """The token a client presented: a Bearer header, else the query's `token`."""
    header = authorization or ""
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return query_token or ""


def token_matches(presented: str, token: str) -> bool:
    return hmac.compare_digest(presented.encode(), token.encode())


def allowed(remote: str | None, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        address = ip_address(remote or "")
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
