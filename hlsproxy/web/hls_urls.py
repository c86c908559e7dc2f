"""Where HLS resources live: one named route, how a content key is spelt in its path, and
the URLs that playlists hand to players (with the access token, the only thing they carry).

The content key comes first in the path so that a load balancer can hash on it.
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from ..content import ContentKey, KeyType
from ..hls.stream import Locator
from .access import TOKEN_PARAM
from .keys import SETTINGS

ROUTE = "hls-resource"
PATH = "/ace/hls/{kind}/{value}/{token}"
# Keys that appear as they are; others (url=, magnet=) only as a digest, named by their kind.
_PLAIN: dict[KeyType, str] = {"content_id": "id", "infohash": "infohash"}
_PLAIN_KINDS = {kind: key_type for key_type, kind in _PLAIN.items()}


def path_parts(key: ContentKey) -> tuple[str, str]:
    """The `kind` and `value` of the resource path of a content."""
    kind = _PLAIN.get(key.kind)
    if kind is not None:
        return kind, key.value
    return key.kind, hashlib.sha1(key.value.encode()).hexdigest()


def plain_key(kind: str, value: str) -> ContentKey | None:
    """The content a resource path names, when the path spells it out (not a digest)."""
    key_type = _PLAIN_KINDS.get(kind)
    return None if key_type is None else ContentKey(key_type, value)


def locator(app: web.Application) -> Locator:
    """Names resources through the route's own `url_for`, under ACEXY_PUBLIC_URL."""
    route = app.router[ROUTE]
    settings = app[SETTINGS]
    token = settings.access_token.get_secret_value()
    query = {TOKEN_PARAM: token} if token else {}

    def locate(key: ContentKey, name: str) -> str:
        kind, value = path_parts(key)
        url = route.url_for(kind=kind, value=value, token=name).with_query(query)
        return settings.public_url + str(url)

    return locate
