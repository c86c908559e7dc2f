"""The rewriter against hostile playlists: whatever tags and URIs an upstream writes, the
served playlist names no upstream address, and the access token goes only where the proxy is.

Playlists are rewritten with the proxy's own locator (the HLS route's url_for with the token),
exactly as a live stream names its resources.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote, unquote

from hypothesis import given, settings
from hypothesis import strategies as st

from hlsproxy.config import load_settings
from hlsproxy.content import ContentKey
from hlsproxy.hls.playlist import looks_like_playlist, rewrite_playlist
from hlsproxy.hls.stream import Locator
from hlsproxy.hls.uri import Uri
from hlsproxy.web import hls_urls
from hlsproxy.web.app import create_app
from tests.helpers import CID

TOKEN = "s3cr3t-Tok"
KEY = ContentKey("content_id", CID)
ENGINES = ("10.9.8.7", "acestream-engine")
PORT = 6878
_PROXY_URI = re.compile(rf"/ace/hls/id/{CID}/[0-9a-f]{{12}}\?token={TOKEN}")


def _locate() -> Locator:
    app = create_app(load_settings({"access_token": TOKEN}, env={}))
    return hls_urls.locator(app)


LOCATE = _locate()


def name(uri: Uri) -> str:
    return LOCATE(KEY, hashlib.sha1(uri.url.encode()).hexdigest()[:12])


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)
_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ,=:./@%?&-éü", max_size=20)


@st.composite
def engine_address(draw: st.DrawFn, host: str) -> str:
    """The engine's address as an upstream might spell it."""
    spelt = draw(st.sampled_from([host, host.upper(), f"{host}:{PORT}"]))
    form = draw(st.sampled_from(["bare", "url", "encoded", "encoded-url"]))
    url = f"http://{spelt}/ace/c/{draw(_WORD)}"
    return {
        "bare": spelt,
        "url": url,
        "encoded": quote(spelt, safe=""),
        "encoded-url": quote(url, safe=""),
    }[form]


@st.composite
def reference(draw: st.DrawFn, host: str) -> str:
    """A URI an upstream might write: to the engine, relative, elsewhere, not http at all,
    or baiting a token by looking like a proxy path."""
    path = f"{draw(_WORD)}.{draw(st.sampled_from(['ts', 'm3u8', 'key', 'jpg', 'json']))}"
    return draw(
        st.sampled_from(
            [
                f"http://{host}:{PORT}/ace/c/{path}",
                f"HTTP://{host.upper()}:{PORT}/ace/c/{path}",
                path,
                f"/ace/c/{path}",
                f"https://cdn.example/{path}",
                f"skd://drm.example/ace/hls/{path}",
                f"skd://{host}/{path}",
                f"data:text/plain,{host}",
                f"/ace/hls/id/{CID}/{path}?token=bait",
            ]
        )
    )


@st.composite
def hostile_line(draw: st.DrawFn, host: str) -> list[str]:
    tag = draw(
        st.sampled_from(
            [
                "#EXT-X-COM-EXAMPLE",
                "#EXT-X-VENDOR-THUMBS",
                "#EXT-X-KEY",
                "#EXT-X-MAP",
                "#EXT-X-MEDIA",
                "#EXT-X-SESSION-DATA",
                "#EXT-X-DATERANGE",
                "#EXT-X-PRELOAD-HINT",
            ]
        )
    )
    kind = draw(
        st.sampled_from(["uri-attribute", "data-attribute", "free", "comment", "segment", "title"])
    )
    if kind == "uri-attribute":
        attribute = draw(st.sampled_from(["URI", "SERVER-URI", "X-THUMB-URI", "X-ASSET-URI"]))
        return [f'{tag}:ID="{draw(_WORD)}",{attribute}="{draw(reference(host))}"']
    if kind == "data-attribute":
        value = draw(engine_address(host))
        quoted = draw(st.booleans())
        data = f'X-DATA="{value}"' if quoted else f"X-DATA={value}"
        return [f'{tag}:ID="{draw(_WORD)}",{data},LABEL="{draw(_WORD)}"']
    if kind == "free":
        return [f"{tag}:{draw(_TEXT)}{draw(engine_address(host))}{draw(_TEXT)}"]
    if kind == "comment":
        return [f"# {draw(_TEXT)} {draw(engine_address(host))}"]
    if kind == "title":
        return [f"#EXTINF:4.0,{draw(engine_address(host))}", draw(reference(host))]
    return [f"#EXTINF:4.0,{draw(_WORD)}", draw(reference(host))]


@st.composite
def hostile_playlist(draw: st.DrawFn) -> tuple[str, str]:
    host = draw(st.sampled_from(ENGINES))
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4", "#EXT-X-MEDIA-SEQUENCE:7"]
    for _ in range(draw(st.integers(1, 12))):
        lines += draw(hostile_line(host))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return host, end.join(lines) + end


@settings(max_examples=300, deadline=None)
@given(case=hostile_playlist())
def test_no_upstream_address_and_no_token_outside_proxy_uris(case: tuple[str, str]) -> None:
    host, text = case
    base = f"http://{host}:{PORT}/ace/m/{CID}/live.m3u8"
    out = rewrite_playlist(text, base, name)
    for spelling in (out.lower(), unquote(out).lower()):
        assert host not in spelling
    # The token only ever follows a proxy path that the locator wrote.
    assert out.count(TOKEN) == len(_PROXY_URI.findall(out))
    assert looks_like_playlist(out.encode())
