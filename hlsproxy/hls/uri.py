"""A URI as a playlist carries it: what it points to, the absolute URL it names, its bytes.

URIs that are not http(s) after resolution (`skd://`, `data:`, ...) are left as they are: the
player handles them itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urljoin, urlsplit

UriKind = Literal["segment", "playlist", "key", "init", "part", "other"]

HTTP_SCHEMES = ("http", "https")


@dataclass(frozen=True, slots=True)
class ByteRange:
    length: int
    offset: int
    """Resolved: an omitted `@o` is worked out by the rules in `hlsproxy.hls.tags`."""

    def __str__(self) -> str:
        return f"{self.length}@{self.offset}"


@dataclass(frozen=True, slots=True)
class Uri:
    kind: UriKind
    url: str
    """Absolute http(s), resolved against the playlist's base URL; the query kept exactly."""
    byterange: ByteRange | None = None


def resolve(reference: str, base_url: str) -> str | None:
    """The absolute http(s) URL a reference names, or None when it names something else
    (`skd://`, `data:`, ...: urljoin keeps those as they are).

    `urljoin` alone would drop an empty query ("a.ts?") and mishandle a query-only
    reference, so the query and fragment are cut off first and put back as written.
    """
    before_fragment, hash_mark, fragment = reference.partition("#")
    path, question_mark, query = before_fragment.partition("?")
    base = base_url.partition("#")[0]
    if path:
        joined = urljoin(base, path)
    elif question_mark:
        joined = base.partition("?")[0]
    else:
        joined = base
    url = joined + question_mark + query + hash_mark + fragment
    return url if urlsplit(url).scheme.lower() in HTTP_SCHEMES else None
