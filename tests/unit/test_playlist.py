"""Tests for hlsproxy.hls.playlist: golden rewrites, each URI construct, metadata, splicing,
and a property test over generated playlists.

Golden files live in fixtures/playlists/: for each input `<name>.m3u8` (its base URL is in
CASES below) there is `<name>.rewritten.m3u8`, the output of `rewrite_playlist` with
`golden_name`, and `<name>.uris.txt`, one line per URI that `playlist_uris` reports
(kind, resolved URL, byte range as length@offset). After a deliberate change, regenerate them
with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_playlist.py -k golden

and read the diff before keeping it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlsplit

import m3u8  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlsproxy.hls.info import MediaSegment
from hlsproxy.hls.playlist import (
    looks_like_playlist,
    playlist_uris,
    read_playlist,
    rewrite_playlist,
)
from hlsproxy.hls.splice import Splice, end_playlist, mark_discontinuity
from hlsproxy.hls.uri import ByteRange, Uri, UriKind

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "playlists"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
INFOHASH = "0a4848271c91ce2d8965ce416267c25047dc8141"

# Each fixture and the URL it was (finally, after redirects) fetched from.
CASES = {
    "acestream_live": f"http://127.0.0.1:6878/ace/m/{INFOHASH}/f528764d624db129b32c21fbca0cb8d6.m3u8",
    "multivariant": "https://cdn.example.com/live/event/master.m3u8?token=abc",
    "fmp4": "https://media.example.com/vod/film/hls/1080p.m3u8",
    "aes128": "https://secure.example.com/live/stream/chunklist_b1200000.m3u8",
    "byterange": "http://origin.example.com/radio/stream.m3u8",
    "llhls": "https://ll.example.com/live/cam1/lowLatencyHLS.php?_HLS_msn=271&_HLS_part=1",
    # Asked of https://origin.example.com/ch5.m3u8, redirected to the edge.
    "crlf_bom": "https://edge-7.cdn.example.net/hls/ch5/index.m3u8?token=T",
}
MEDIA_CASES = sorted(set(CASES) - {"multivariant"})


def golden_name(uri: Uri) -> str:
    """Readable in a diff: the kind, a digest of the URL, the range in bytes, the extension."""
    digest = hashlib.sha1(uri.url.encode()).hexdigest()[:10]
    span = ""
    if uri.byterange is not None:
        span = f".{uri.byterange.offset}-{uri.byterange.offset + uri.byterange.length - 1}"
    return f"/p/{uri.kind}/{digest}{span}{PurePosixPath(urlsplit(uri.url).path).suffix}"


def describe(uris: list[Uri]) -> str:
    return "".join(
        f"{uri.kind:<8} {uri.url}{'' if uri.byterange is None else f' [{uri.byterange}]'}\n"
        for uri in uris
    )


def read_text(path: Path) -> str:
    # Bytes, not text mode: text mode would turn CRLF into LF.
    return path.read_bytes().decode()


def check_golden(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_bytes(actual.encode())
    assert path.exists(), f"{path.name} is missing: run with UPDATE_GOLDEN=1"
    assert actual == read_text(path)


class Recorder:
    """A namer that remembers what it was asked."""

    def __init__(self) -> None:
        self.seen: list[Uri] = []

    def __call__(self, uri: Uri) -> str:
        self.seen.append(uri)
        return f"/n/{len(self.seen)}"


def rewrite(text: str, base: str = "http://h.example/a/b.m3u8") -> tuple[str, list[Uri]]:
    recorder = Recorder()
    return rewrite_playlist(text, base, recorder), recorder.seen


# --- golden files ---------------------------------------------------------------------------


def test_every_fixture_has_a_case() -> None:
    inputs = {
        p.name.removesuffix(".m3u8")
        for p in FIXTURES.glob("*.m3u8")
        if not p.name.endswith(".rewritten.m3u8")
    }
    assert inputs == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_rewrite(name: str) -> None:
    text = read_text(FIXTURES / f"{name}.m3u8")
    check_golden(
        FIXTURES / f"{name}.rewritten.m3u8", rewrite_playlist(text, CASES[name], golden_name)
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_uris(name: str) -> None:
    text = read_text(FIXTURES / f"{name}.m3u8")
    check_golden(FIXTURES / f"{name}.uris.txt", describe(playlist_uris(text, CASES[name])))


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_output_keeps_its_shape_and_names_no_upstream(name: str) -> None:
    text = read_text(FIXTURES / f"{name}.m3u8")
    out, seen = rewrite(text, CASES[name])
    assert seen == playlist_uris(text, CASES[name])
    assert "http://" not in out
    assert "https://" not in out
    assert out.count("\n") == text.count("\n")
    assert out.count("\r\n") == text.count("\r\n")
    changed = [
        (a, b)
        for a, b in zip(text.removeprefix("\ufeff").split("\n"), out.split("\n"), strict=True)
        if a != b
    ]
    # Each changed line lost exactly the URIs that were named, nothing more.
    assert sum(b.count("/n/") for _, b in changed) == len(seen)


# --- recognising ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"#EXTM3U\n#EXT-X-VERSION:3\n",
        b"#EXTM3U",
        b"\xef\xbb\xbf#EXTM3U\r\n#EXTINF:1,\r\na.ts\r\n",
        b"  #EXTM3U   \r\n",
        b"\n\n#EXTM3U\n",
    ],
    ids=["lf", "only-header", "bom-crlf", "spaces", "leading-blank-lines"],
)
def test_looks_like_playlist(body: bytes) -> None:
    assert looks_like_playlist(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x47\x40\x00\x10" + b"\xff" * 184,
        b"<!DOCTYPE html><html><body>#EXTM3U</body></html>",
        b'{"response": null, "error": "failed to load content"}',
        b"#EXTINF:6.0,\na.ts\n#EXTM3U\n",
        b"#EXTM3U8\n",
        b"# EXTM3U\n",
    ],
    ids=["empty", "ts-packet", "html", "engine-json", "header-not-first", "longer-tag", "comment"],
)
def test_does_not_look_like_playlist(body: bytes) -> None:
    assert not looks_like_playlist(body)


# --- each construct -------------------------------------------------------------------------

BASE = "https://h.example/live/ch/index.m3u8"


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ('#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",URI="a.m3u8"', "playlist"),
        ('#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI="i.m3u8"', "playlist"),
        ('#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=1,URI="img.m3u8"', "playlist"),
        ('#EXT-X-RENDITION-REPORT:URI="../2M/i.m3u8",LAST-MSN=3', "playlist"),
        ('#EXT-X-KEY:METHOD=AES-128,URI="k.bin"', "key"),
        ('#EXT-X-SESSION-KEY:METHOD=AES-128,URI="k.bin"', "key"),
        ('#EXT-X-MAP:URI="init.mp4"', "init"),
        ('#EXT-X-PART:DURATION=0.5,URI="p.mp4"', "part"),
        ('#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p.mp4"', "part"),
        ('#EXT-X-PRELOAD-HINT:TYPE=MAP,URI="init.mp4"', "init"),
        ('#EXT-X-SESSION-DATA:DATA-ID="d",URI="d.json"', "other"),
        ('#EXT-X-CONTENT-STEERING:SERVER-URI="s.json",PATHWAY-ID="A"', "other"),
        (
            '#EXT-X-DATERANGE:ID="i",START-DATE="2024-01-01T00:00:00Z",X-ASSET-URI="ad.m3u8"',
            "playlist",
        ),
        (
            '#EXT-X-DATERANGE:ID="i",START-DATE="2024-01-01T00:00:00Z",X-ASSET-LIST="l.json"',
            "other",
        ),
    ],
    ids=lambda v: v.split(":")[0].lstrip("#") if v.startswith("#") else v,
)
def test_attribute_uri_kind(line: str, kind: UriKind) -> None:
    out, seen = rewrite(f"#EXTM3U\n{line}\n", BASE)
    assert [u.kind for u in seen] == [kind]
    assert seen[0].url.startswith("https://h.example/live/")
    rewritten = re.sub(r'(URI|X-ASSET-LIST)="[^"]*"', r'\1="/n/1"', line)
    assert out == f"#EXTM3U\n{rewritten}\n"


def test_uri_lines_after_extinf_and_stream_inf() -> None:
    media = "#EXTM3U\n#EXTINF:6.0,\nseg.ts\n"
    multivariant = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow/index\n"
    assert [u.kind for u in playlist_uris(media, BASE)] == ["segment"]
    assert [u.kind for u in playlist_uris(multivariant, BASE)] == ["playlist"]


def test_uri_need_not_follow_extinf_directly() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:6\n"
        "#EXTINF:6.0,\n#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z\n"
        "#EXT-X-BYTERANGE:10@5\n#EXT-X-DISCONTINUITY\n# a comment\n\n   \n#EXT-X-UNKNOWN:A=1\n"
        "seg.ts\n"
    )
    out, seen = rewrite(text, BASE)
    assert seen == [Uri("segment", "https://h.example/live/ch/seg.ts", ByteRange(10, 5))]
    assert out == text.replace("seg.ts", "/n/1")
    (segment,) = read_playlist(text, BASE).segments
    assert segment == MediaSegment(
        "https://h.example/live/ch/seg.ts", 6.0, 0, ByteRange(10, 5), discontinuity=True
    )


def test_stream_inf_uri_after_comment_and_blank_line() -> None:
    text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n# note\n\nv/1\n"
    assert playlist_uris(text, BASE) == [Uri("playlist", "https://h.example/live/ch/v/1")]


def test_uri_line_with_no_tag_before_it_is_still_rewritten() -> None:
    media, seen = rewrite("#EXTM3U\n#EXT-X-TARGETDURATION:6\nstray.ts\n", BASE)
    assert media == "#EXTM3U\n#EXT-X-TARGETDURATION:6\n/n/1\n"
    assert [u.kind for u in seen] == ["segment"]
    multivariant = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na\nstray\n"
    assert [u.kind for u in playlist_uris(multivariant, BASE)] == ["playlist", "playlist"]
    # Not a segment: it has no duration.
    assert read_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:6\nstray.ts\n", BASE).segments == ()


@pytest.mark.parametrize(
    "line",
    [
        "#EXT-X-KEY:METHOD=NONE",
        '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://abc",KEYFORMAT="com.apple.streamingkeydelivery"',
        '#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI="data:text/plain;base64,AAAA",KEYFORMAT="urn:uuid:x"',
        '#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI="skd://abc"',
        '#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="en",INSTREAM-ID="CC1"',
        '#EXT-X-SESSION-DATA:DATA-ID="t",VALUE="http://not-a-uri.example/, a value"',
        "#EXT-X-MEDIA-SEQUENCE:7",
        "#EXT-X-PART-INF:PART-TARGET=1.0",
        '#EXT-X-MAP:URI="ftp://files.example/init.mp4"',
    ],
    ids=[
        "method-none",
        "skd",
        "data",
        "session-key-skd",
        "closed-captions",
        "session-data-value",
        "media-sequence-is-not-media",
        "part-inf-is-not-part",
        "ftp",
    ],
)
def test_left_alone_without_a_namer_call(line: str) -> None:
    text = f"#EXTM3U\n{line}\n"
    out, seen = rewrite(text, BASE)
    assert seen == []
    assert out == text


def test_commas_and_equals_inside_quotes() -> None:
    line = (
        '#EXT-X-MEDIA:TYPE=AUDIO,NAME="Main, with = signs",CHARACTERISTICS="a,b",'
        'URI="audio/a,b.m3u8?x=1,2&y=3",DEFAULT=YES'
    )
    out, seen = rewrite(f"#EXTM3U\n{line}\n", BASE)
    assert seen == [Uri("playlist", "https://h.example/live/ch/audio/a,b.m3u8?x=1,2&y=3")]
    assert out == (
        '#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,NAME="Main, with = signs",CHARACTERISTICS="a,b",'
        'URI="/n/1",DEFAULT=YES\n'
    )


def test_sloppy_attribute_lists() -> None:
    text = (
        '#EXTM3U\n#EXT-X-KEY:METHOD=AES-128, URI = "k.bin" ,IV=0x1\n'
        "#EXT-X-MAP:BARE,URI=init.mp4\n"
        '#EXT-X-SESSION-DATA:DATA-ID="d",URI="unterminated.json\n'
    )
    out, seen = rewrite(text, BASE)
    assert [u.url.rsplit("/", 1)[1] for u in seen] == ["k.bin", "init.mp4", "unterminated.json"]
    assert out == (
        '#EXTM3U\n#EXT-X-KEY:METHOD=AES-128, URI = "/n/1" ,IV=0x1\n'
        "#EXT-X-MAP:BARE,URI=/n/2\n"
        '#EXT-X-SESSION-DATA:DATA-ID="d",URI="/n/3\n'
    )


def test_two_uris_on_one_line() -> None:
    line = '#EXT-X-DATERANGE:ID="a",X-ASSET-LIST="list.json",CLASS="c",X-ASSET-URI="ad.m3u8"'
    out, seen = rewrite(f"#EXTM3U\n{line}\n", BASE)
    assert [(u.kind, u.url.rsplit("/", 1)[1]) for u in seen] == [
        ("other", "list.json"),
        ("playlist", "ad.m3u8"),
    ]
    assert (
        out == '#EXTM3U\n#EXT-X-DATERANGE:ID="a",X-ASSET-LIST="/n/1",CLASS="c",X-ASSET-URI="/n/2"\n'
    )


# --- URL resolution -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "reference", "url"),
    [
        (BASE, "seg/1.ts", "https://h.example/live/ch/seg/1.ts"),
        (BASE, "../other/1.ts", "https://h.example/live/other/1.ts"),
        (BASE, "/root/1.ts", "https://h.example/root/1.ts"),
        (BASE, "//cdn.example/x/1.ts", "https://cdn.example/x/1.ts"),
        (BASE, "http://other.example:8080/1.ts", "http://other.example:8080/1.ts"),
        (f"{BASE}?token=abc", "1.ts", "https://h.example/live/ch/1.ts"),
        (
            BASE,
            "1.ts?sig=a%2Fb%3D%3D&e=1&&x",
            "https://h.example/live/ch/1.ts?sig=a%2Fb%3D%3D&e=1&&x",
        ),
        (BASE, "1.ts?", "https://h.example/live/ch/1.ts?"),
        (BASE, "../a/./b/../1.ts?p=../q", "https://h.example/live/a/1.ts?p=../q"),
        (f"{BASE}?old=1", "?new=2", "https://h.example/live/ch/index.m3u8?new=2"),
        (BASE, "1%20a.ts", "https://h.example/live/ch/1%20a.ts"),
        (
            "http://127.0.0.1:6878/ace/m/h/t.m3u8",
            "/ace/c/h/5.ts",
            "http://127.0.0.1:6878/ace/c/h/5.ts",
        ),
    ],
    ids=[
        "relative",
        "dot-dot",
        "root-relative",
        "network-path",
        "absolute-other-host",
        "base-query-not-inherited",
        "query-exact",
        "empty-query-kept",
        "dot-segments-not-in-query",
        "query-only",
        "percent-encoded-path",
        "engine",
    ],
)
def test_resolution(base: str, reference: str, url: str) -> None:
    assert playlist_uris(f"#EXTM3U\n#EXTINF:1,\n{reference}\n", base) == [Uri("segment", url)]
    assert playlist_uris(f'#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="{reference}"\n', base) == [
        Uri("key", url)
    ]


def test_base_is_the_url_after_redirects() -> None:
    text = "#EXTM3U\n#EXTINF:6,\n1.ts\n"
    asked = read_playlist(text, "http://origin.example/live/ch5.m3u8")
    redirected = read_playlist(text, "https://edge.example/cache/ch5/live.m3u8?t=1")
    assert asked.segments[0].url == "http://origin.example/live/1.ts"
    assert redirected.segments[0].url == "https://edge.example/cache/ch5/1.ts"


@pytest.mark.parametrize("base", ["", "index.m3u8", "/live/index.m3u8", "file:///tmp/x.m3u8"])
def test_base_must_be_absolute_http(base: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        rewrite_playlist("#EXTM3U\n#EXTINF:1,\na.ts\n", base, golden_name)


# --- byte ranges ----------------------------------------------------------------------------


def test_segment_byte_ranges_continue_per_uri() -> None:
    text = (
        "#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:100@0\na.ts\n"
        "#EXTINF:1,\n#EXT-X-BYTERANGE:50\na.ts\n"
        "#EXTINF:1,\n#EXT-X-BYTERANGE:10\nb.ts\n"
        "#EXTINF:1,\n#EXT-X-BYTERANGE:25\na.ts\n"
        "#EXTINF:1,\n#EXT-X-BYTERANGE:5@1000\na.ts\n"
        "#EXTINF:1,\n#EXT-X-BYTERANGE:5\na.ts\n"
        "#EXTINF:1,\na.ts\n"
    )
    ranges = [u.byterange for u in playlist_uris(text, BASE)]
    assert ranges == [
        ByteRange(100, 0),
        ByteRange(50, 100),
        ByteRange(10, 0),
        ByteRange(25, 150),
        ByteRange(5, 1000),
        ByteRange(5, 1005),
        None,
    ]
    assert [s.byterange for s in read_playlist(text, BASE).segments] == ranges


def test_part_byte_ranges_chain_apart_from_segment_ranges() -> None:
    text = (
        "#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:1000@0\nf.mp4\n"
        '#EXT-X-PART:DURATION=0.5,URI="f.mp4",BYTERANGE="400@1000"\n'
        '#EXT-X-PART:DURATION=0.5,URI="f.mp4",BYTERANGE="600"\n'
        "#EXTINF:1,\n#EXT-X-BYTERANGE:1000\nf.mp4\n"
        '#EXT-X-PART:DURATION=0.5,URI="g.mp4",BYTERANGE="300"\n'
    )
    assert [(u.kind, u.byterange) for u in playlist_uris(text, BASE)] == [
        ("segment", ByteRange(1000, 0)),
        ("part", ByteRange(400, 1000)),
        ("part", ByteRange(600, 1400)),
        ("segment", ByteRange(1000, 1000)),
        ("part", ByteRange(300, 0)),
    ]


def test_map_byte_range_without_offset_starts_at_zero() -> None:
    text = (
        '#EXTM3U\n#EXT-X-MAP:URI="i.mp4",BYTERANGE="720"\n#EXTINF:1,\ns.m4s\n'
        '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="i.mp4",BYTERANGE="720"\n'
        '#EXT-X-MAP:URI="j.mp4",BYTERANGE="64@128"\n#EXT-X-MAP:URI="k.mp4"\n'
    )
    assert [u.byterange for u in playlist_uris(text, BASE) if u.kind == "init"] == [
        ByteRange(720, 0),
        ByteRange(720, 0),
        ByteRange(64, 128),
        None,
    ]


@pytest.mark.parametrize(
    ("attributes", "byterange"),
    [
        ("BYTERANGE-START=100,BYTERANGE-LENGTH=50", ByteRange(50, 100)),
        ("BYTERANGE-LENGTH=50", ByteRange(50, 0)),
        ("BYTERANGE-START=100", None),
        ("", None),
    ],
    ids=["start-and-length", "length-only", "start-only-runs-to-end", "none"],
)
def test_preload_hint_byte_range(attributes: str, byterange: ByteRange | None) -> None:
    line = f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p.mp4"{"," if attributes else ""}{attributes}'
    assert playlist_uris(f"#EXTM3U\n{line}\n", BASE) == [
        Uri("part", "https://h.example/live/ch/p.mp4", byterange)
    ]


def test_malformed_byte_range_is_no_range() -> None:
    text = "#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:lots\na.ts\n"
    assert playlist_uris(text, BASE) == [Uri("segment", "https://h.example/live/ch/a.ts")]


# --- line ends and text ---------------------------------------------------------------------


def test_line_ends_kept_as_they_were() -> None:
    text = "#EXTM3U\r\n#EXTINF:1,\na.ts\r\n#EXT-X-FOO  \r\n\r\n#EXTINF:1,\r\nb.ts"
    out, _ = rewrite(text, BASE)
    assert out == "#EXTM3U\r\n#EXTINF:1,\n/n/1\r\n#EXT-X-FOO  \r\n\r\n#EXTINF:1,\r\n/n/2"


def test_bom_dropped_and_spaces_around_uri_kept() -> None:
    out, seen = rewrite("\ufeff#EXTM3U\n#EXTINF:1,\n  a.ts \t\n", BASE)
    assert out == "#EXTM3U\n#EXTINF:1,\n  /n/1 \t\n"
    assert seen[0].url == "https://h.example/live/ch/a.ts"


@pytest.mark.parametrize(
    "bad",
    ['/p/"x"', "", "#/p/x", "/p/x\n#EXT-X-ENDLIST", "/p/\r"],
    ids=["quote", "empty", "hash", "lf", "cr"],
)
def test_unusable_names_refused(bad: str) -> None:
    def namer(_uri: Uri) -> str:
        return bad

    for text in ("#EXTM3U\n#EXTINF:1,\na.ts\n", '#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k"\n'):
        with pytest.raises(ValueError, match="namer"):
            rewrite_playlist(text, BASE, namer)


def test_empty_text() -> None:
    assert rewrite_playlist("", BASE, golden_name) == ""
    assert playlist_uris("", BASE) == []


# --- reading metadata -----------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    target_duration: float
    media_sequence: int
    discontinuity_sequence: int
    count: int
    ended: bool
    playlist_type: str | None
    duration: float
    discontinuities: tuple[int, ...] = ()
    """Indexes of the segments that carry EXT-X-DISCONTINUITY."""


EXPECTED = {
    "acestream_live": Expected(7.0, 1571, 0, 8, False, None, 43.209),
    "aes128": Expected(10.0, 340, 2, 5, False, "EVENT", 49.98334, (4,)),
    "byterange": Expected(10.0, 0, 0, 7, True, "VOD", 64.5),
    "crlf_bom": Expected(6.0, 9001, 0, 4, False, None, 23.5),
    "fmp4": Expected(4.0, 0, 0, 7, True, "VOD", 25.2, (3, 5)),
    "llhls": Expected(4.0, 266, 0, 5, False, None, 17.00034),
}


@pytest.mark.parametrize("name", MEDIA_CASES)
def test_read_media_playlist(name: str) -> None:
    text = read_text(FIXTURES / f"{name}.m3u8")
    info = read_playlist(text, CASES[name])
    expected = EXPECTED[name]
    assert not info.multivariant
    assert info.target_duration == expected.target_duration
    assert info.media_sequence == expected.media_sequence
    assert info.discontinuity_sequence == expected.discontinuity_sequence
    assert len(info.segments) == expected.count
    assert info.ended is expected.ended
    assert info.playlist_type == expected.playlist_type
    assert info.duration == pytest.approx(expected.duration)
    assert [s.sequence for s in info.segments] == list(
        range(expected.media_sequence, expected.media_sequence + expected.count)
    )
    assert (
        tuple(i for i, s in enumerate(info.segments) if s.discontinuity) == expected.discontinuities
    )
    # The segments are the segment URIs the rewrite names, in order, with their ranges.
    assert [(s.url, s.byterange) for s in info.segments] == [
        (u.url, u.byterange) for u in playlist_uris(text, CASES[name]) if u.kind == "segment"
    ]
    # And they agree with what the m3u8 library makes of the same text.
    parsed = m3u8.loads(text.removeprefix("\ufeff"), uri=CASES[name])
    assert [s.duration for s in info.segments] == [s.duration for s in parsed.segments if s.uri]


def test_read_acestream_segments() -> None:
    info = read_playlist(read_text(FIXTURES / "acestream_live.m3u8"), CASES["acestream_live"])
    assert info.segments[0] == MediaSegment(
        f"http://127.0.0.1:6878/ace/c/{INFOHASH}/1571.ts", 5.005, 1571, None, False
    )
    assert info.segments[-1].url.endswith("/1578.ts")


def test_read_multivariant() -> None:
    info = read_playlist(read_text(FIXTURES / "multivariant.m3u8"), CASES["multivariant"])
    assert info.multivariant
    assert info.segments == ()
    assert info.target_duration is None
    assert info.media_sequence == 0
    assert info.duration == 0


def test_read_delta_update_numbers_after_skipped_segments() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:100\n"
        "#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n#EXTINF:4,\na.mp4\n#EXTINF:4,\nb.mp4\n"
    )
    assert [s.sequence for s in read_playlist(text, BASE).segments] == [103, 104]


@pytest.mark.parametrize(
    "text",
    ["#EXTM3U\n#EXTINF:six,\na.ts\n", "#EXTM3U\n#EXT-X-TARGETDURATION:seven\n"],
    ids=["extinf", "target-duration"],
)
def test_unreadable_playlist(text: str) -> None:
    with pytest.raises(ValueError):
        read_playlist(text, BASE)
    # Still rewritable: rewriting never needs the numbers.
    assert rewrite_playlist(text, BASE, golden_name).count("\n") == text.count("\n")


# --- ending ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ended"),
    [
        ("#EXTM3U\n#EXTINF:1,\na.ts\n", "#EXTM3U\n#EXTINF:1,\na.ts\n#EXT-X-ENDLIST\n"),
        (
            "#EXTM3U\r\n#EXTINF:1,\r\na.ts\r\n",
            "#EXTM3U\r\n#EXTINF:1,\r\na.ts\r\n#EXT-X-ENDLIST\r\n",
        ),
        ("#EXTM3U\n#EXTINF:1,\na.ts", "#EXTM3U\n#EXTINF:1,\na.ts\n#EXT-X-ENDLIST\n"),
        ("#EXTM3U\n#EXT-X-ENDLIST\n", "#EXTM3U\n#EXT-X-ENDLIST\n"),
        ("#EXTM3U\n#EXT-X-ENDLIST  \r\n#X\n", "#EXTM3U\n#EXT-X-ENDLIST  \r\n#X\n"),
    ],
    ids=["lf", "crlf", "no-final-newline", "already-ended", "already-ended-not-last"],
)
def test_end_playlist(text: str, ended: str) -> None:
    assert end_playlist(text) == ended
    assert end_playlist(ended) == ended
    assert read_playlist(ended, BASE).ended


def test_end_playlist_on_the_engine_playlist() -> None:
    text = read_text(FIXTURES / "acestream_live.m3u8")
    ended = end_playlist(text)
    assert ended == text + "#EXT-X-ENDLIST\n"
    assert (
        read_playlist(ended, CASES["acestream_live"]).segments
        == read_playlist(text, CASES["acestream_live"]).segments
    )


def test_end_playlist_leaves_multivariant_alone() -> None:
    text = read_text(FIXTURES / "multivariant.m3u8")
    assert end_playlist(text) == text


# --- splicing a new upstream session --------------------------------------------------------


def media(
    sequence: int,
    count: int,
    *,
    discontinuity_sequence: int | None = None,
    breaks: tuple[int, ...] = (),
) -> str:
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-TARGETDURATION:7",
        f"#EXT-X-MEDIA-SEQUENCE:{sequence}",
    ]
    if discontinuity_sequence is not None:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    for n in range(sequence, sequence + count):
        if n in breaks:
            lines.append("#EXT-X-DISCONTINUITY")
        lines += ["#EXTINF:6.000000,", f"http://127.0.0.1:6878/ace/c/{INFOHASH}/{n}.ts"]
    return "\n".join(lines) + "\n"


def numbering(text: str) -> dict[int, int]:
    """Media sequence number -> discontinuity sequence number, counted as hls.js does."""
    info = read_playlist(text, BASE)
    current = info.discontinuity_sequence
    numbers = {}
    for segment in info.segments:
        current += segment.discontinuity
        numbers[segment.sequence] = current
    return numbers


def test_splice_continues_numbering_across_reloads() -> None:
    served = media(100, 5, discontinuity_sequence=3, breaks=(103,))
    before = numbering(served)
    assert before == {100: 3, 101: 3, 102: 3, 103: 4, 104: 4}

    first = media(0, 2)
    splice = Splice.between(served, first)
    assert splice == Splice(media_offset=105, discontinuity_offset=5, first_sequence=105)
    out = mark_discontinuity(first, splice)
    segment = f"http://127.0.0.1:6878/ace/c/{INFOHASH}"
    assert out == (
        "#EXTM3U\n#EXT-X-DISCONTINUITY-SEQUENCE:4\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:7\n"
        "#EXT-X-MEDIA-SEQUENCE:105\n#EXT-X-DISCONTINUITY\n"
        f"#EXTINF:6.000000,\n{segment}/0.ts\n#EXTINF:6.000000,\n{segment}/1.ts\n"
    )
    assert numbering(out) == {105: 5, 106: 5}

    # Later reloads of the new session: the break slides out, the numbers stay.
    seen = dict(numbering(out))
    for start in range(1, 8):
        reloaded = mark_discontinuity(media(start, 4), splice)
        numbers = numbering(reloaded)
        assert min(numbers) == start + 105
        assert all(seen.get(n, c) == c for n, c in numbers.items())
        assert all(c == 5 for c in numbers.values())
        assert ("#EXT-X-DISCONTINUITY\n" in reloaded) is (start == 0)
        seen.update(numbers)

    # A second break, spliced onto what was served last.
    served = mark_discontinuity(media(7, 4), splice)
    third = media(40, 3, discontinuity_sequence=9, breaks=(40,))
    again = Splice.between(served, third)
    out = mark_discontinuity(third, again)
    assert numbering(out) == {116: 6, 117: 6, 118: 6}
    assert out.count("#EXT-X-DISCONTINUITY\n") == 1


def test_splice_onto_an_empty_new_playlist() -> None:
    served = media(10, 3)
    empty = "#EXTM3U\n#EXT-X-TARGETDURATION:7\n#EXT-X-MEDIA-SEQUENCE:0\n"
    splice = Splice.between(served, empty)
    assert read_playlist(mark_discontinuity(empty, splice), BASE).media_sequence == 13
    grown = mark_discontinuity(media(0, 2), splice)
    assert numbering(grown) == {13: 1, 14: 1}
    assert read_playlist(grown, BASE).segments[0].discontinuity


def test_splice_adds_missing_headers_and_keeps_crlf() -> None:
    served = media(5, 2)
    new = "#EXTM3U\r\n#EXT-X-TARGETDURATION:7\r\n#EXTINF:6.0,\r\na.ts\r\n#EXTINF:6.0,\r\nb.ts\r\n"
    out = mark_discontinuity(new, Splice.between(served, new))
    assert out == (
        "#EXTM3U\r\n#EXT-X-MEDIA-SEQUENCE:7\r\n#EXT-X-DISCONTINUITY-SEQUENCE:0\r\n"
        "#EXT-X-TARGETDURATION:7\r\n#EXT-X-DISCONTINUITY\r\n#EXTINF:6.0,\r\na.ts\r\n#EXTINF:6.0,\r\nb.ts\r\n"
    )
    assert numbering(out) == {7: 1, 8: 1}


def test_splice_puts_the_break_before_the_segment_tags() -> None:
    new = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:7\n#EXT-X-MEDIA-SEQUENCE:0\n# encoder restart\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z\n#EXTINF:6.0,\na.ts\n"
    )
    out = mark_discontinuity(new, Splice.between(media(0, 1), new))
    assert "# encoder restart\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:" in out


def test_splice_refuses_multivariant() -> None:
    text = read_text(FIXTURES / "multivariant.m3u8")
    with pytest.raises(ValueError, match="media playlist"):
        mark_discontinuity(text, Splice(0, 0, 0))


# --- property: generated playlists ----------------------------------------------------------

# Every generated URI has this in its path, and nothing else generated can spell it.
MARK = "UPSTREAM"
GEN_BASE = "https://origin.test/live/ch1/index.m3u8?auth=BASEQ"
_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)
_QUERY = st.one_of(
    st.just(""),
    st.just("?"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=&%,._-/", max_size=12).map(
        lambda q: "?" + q
    ),
)
_FREE_TEXT = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ,=\"':./@éü—\t-", max_size=30
).map(str.rstrip)
_NOISE_TAGS = [
    "#EXT-X-VERSION:7",
    "#EXT-X-TARGETDURATION:6",
    "#EXT-X-MEDIA-SEQUENCE:12",
    "#EXT-X-DISCONTINUITY-SEQUENCE:2",
    "#EXT-X-DISCONTINUITY",
    "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.000Z",
    "#EXT-X-INDEPENDENT-SEGMENTS",
    "#EXT-X-KEY:METHOD=NONE",
    '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://key-1",KEYFORMAT="com.apple.streamingkeydelivery"',
    '#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI="data:text/plain;base64,AAAA",KEYFORMAT="x"',
    '#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="a, b",INSTREAM-ID="CC1"',
    '#EXT-X-SESSION-DATA:DATA-ID="t",VALUE="x,y=z"',
    "#EXT-X-PART-INF:PART-TARGET=1.0",
    "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3.0",
    "#EXT-X-GAP",
    "#EXT-X-CUE-OUT:DURATION=30",
    "#EXT-X-CUE-IN",
]
# Tag -> (attribute, kind) for the attributes that carry URIs.
_URI_TAGS: dict[str, list[tuple[str, UriKind]]] = {
    "#EXT-X-MEDIA": [("URI", "playlist")],
    "#EXT-X-I-FRAME-STREAM-INF": [("URI", "playlist")],
    "#EXT-X-RENDITION-REPORT": [("URI", "playlist")],
    "#EXT-X-KEY": [("URI", "key")],
    "#EXT-X-SESSION-KEY": [("URI", "key")],
    "#EXT-X-MAP": [("URI", "init")],
    "#EXT-X-PART": [("URI", "part")],
    "#EXT-X-PRELOAD-HINT": [("URI", "part")],
    "#EXT-X-SESSION-DATA": [("URI", "other")],
    "#EXT-X-CONTENT-STEERING": [("SERVER-URI", "other")],
    "#EXT-X-DATERANGE": [("X-ASSET-URI", "playlist"), ("X-ASSET-LIST", "other")],
    # Tags the rewriter does not know: their URI attributes are named all the same.
    "#EXT-X-VENDOR": [("URI", "other")],
    "#EXT-X-COM-EXAMPLE-AD": [("URI", "other"), ("X-CLICK-URI", "other")],
}
_URI_ATTRIBUTE_NAMES = {"URI", "SERVER-URI", "X-ASSET-URI", "X-ASSET-LIST", "X-CLICK-URI", "TYPE"}


@dataclass(frozen=True)
class Ref:
    """A generated reference and the absolute URL it must resolve to."""

    text: str
    url: str


@st.composite
def references(draw: st.DrawFn) -> Ref:
    path = (
        f"{MARK}/{draw(_WORD)}.{draw(st.sampled_from(['ts', 'm4s', 'm3u8', 'key', 'json', 'x']))}"
    )
    query = draw(_QUERY)
    base = GEN_BASE.partition("?")[0]
    form = draw(st.sampled_from(["relative", "dot-dot", "root", "absolute"]))
    if form == "absolute":
        host = draw(
            st.sampled_from(["http://upstream.test", "https://cdn.test:8443", "http://10.0.0.7"])
        )
        return Ref(f"{host}/{path}{query}", f"{host}/{path}{query}")
    reference = {"relative": path, "dot-dot": f"../{path}", "root": f"/{path}"}[form]
    return Ref(reference + query, urljoin(base, reference) + query)


def property_name(uri: Uri) -> str:
    return f"/p/{uri.kind}/{hashlib.sha1(uri.url.encode()).hexdigest()[:8]}"


@dataclass
class Generated:
    lines: list[str]
    expected: list[str]
    uri_lines: set[int]
    kinds: list[UriKind]


@st.composite
def attribute_line(draw: st.DrawFn) -> tuple[str, str, list[UriKind]]:
    tag = draw(st.sampled_from(sorted(_URI_TAGS)))
    carried = draw(
        st.lists(
            st.sampled_from(_URI_TAGS[tag]), min_size=1, max_size=len(_URI_TAGS[tag]), unique=True
        )
    )
    others = draw(
        st.lists(
            st.tuples(
                st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=10).filter(
                    lambda n: (
                        n.strip("-") == n
                        and n not in _URI_ATTRIBUTE_NAMES
                        and not n.endswith("-URI")
                    )
                ),
                st.one_of(
                    _FREE_TEXT.map(lambda v: '"' + v.replace('"', "") + '"'),
                    st.text(
                        alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=8
                    ),
                ),
            ),
            max_size=4,
            unique_by=lambda pair: pair[0],
        )
    )
    uris = [(attribute, kind, draw(references())) for attribute, kind in carried]
    parts: list[tuple[str, str, Uri | None]] = [(name, value, None) for name, value in others]
    for attribute, kind, ref in uris:
        position = draw(st.integers(0, len(parts)))
        parts.insert(position, (attribute, ref.text, Uri(kind, ref.url)))
    if tag == "#EXT-X-PRELOAD-HINT":
        parts.insert(0, ("TYPE", "PART", None))
    line = (
        tag
        + ":"
        + ",".join(
            f'{name}="{value}"' if uri is not None else f"{name}={value}"
            for name, value, uri in parts
        )
    )
    expected = (
        tag
        + ":"
        + ",".join(
            f'{name}="{property_name(uri)}"' if uri is not None else f"{name}={value}"
            for name, value, uri in parts
        )
    )
    return line, expected, [uri.kind for _, _, uri in parts if uri is not None]


@st.composite
def noise_line(draw: st.DrawFn) -> str:
    """A line that carries no URI and leaves no segment or variant pending."""
    return draw(
        st.one_of(
            st.sampled_from(["", "   ", "\t"]),
            _FREE_TEXT.map(lambda t: "#" + t),
            st.sampled_from(_NOISE_TAGS),
            st.tuples(
                st.sampled_from(["#EXT-X-VENDOR", "#EXT-X-PRIV-A", "#EXT-OATCLS"]), _FREE_TEXT
            ).map(lambda pair: f'{pair[0]}:URL="keep.test/x",{pair[1]}'),
        )
    )


@st.composite
def playlists(draw: st.DrawFn) -> Generated:
    lines = ["#EXTM3U"]
    expected = ["#EXTM3U"]
    uri_lines: set[int] = set()
    kinds: list[UriKind] = []
    units = draw(
        st.lists(
            st.sampled_from(["noise", "segment", "variant", "orphan", "attribute"]), max_size=30
        )
    )
    multivariant = "variant" in units
    for unit in units:
        if unit == "noise":
            line = draw(noise_line())
            lines.append(line)
            expected.append(line)
            continue
        if unit == "attribute":
            line, rewritten, found = draw(attribute_line())
            uri_lines.add(len(lines))
            lines.append(line)
            expected.append(rewritten)
            kinds += found
            continue
        kind: UriKind
        if unit == "segment":
            duration = f"{draw(st.integers(1, 9))}.{draw(st.integers(0, 999999)):06d}"
            intro = [f"#EXTINF:{duration},{draw(_WORD)}"]
            if draw(st.booleans()):
                intro.append(f"#EXT-X-BYTERANGE:{draw(st.integers(1, 10**6))}")
            kind = "segment"
        elif unit == "variant":
            intro = ['#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS="avc1.4d401f,mp4a.40.2"']
            kind = "playlist"
        else:
            intro = []
            kind = "playlist" if multivariant else "segment"
        between = draw(st.lists(noise_line(), max_size=3))
        for line in [*intro, *between]:
            lines.append(line)
            expected.append(line)
        ref = draw(references())
        pad = draw(st.sampled_from(["", " ", "  \t"]))
        uri_lines.add(len(lines))
        lines.append(ref.text + pad)
        expected.append(property_name(Uri(kind, ref.url)) + pad)
        kinds.append(kind)
    return Generated(lines, expected, uri_lines, kinds)


@settings(max_examples=150, deadline=None)
@given(generated=playlists(), data=st.data())
def test_property_every_uri_named_every_other_line_kept(
    generated: Generated, data: st.DataObject
) -> None:
    ends = data.draw(
        st.lists(
            st.sampled_from(["\n", "\r\n"]),
            min_size=len(generated.lines),
            max_size=len(generated.lines),
        )
    )
    if data.draw(st.booleans()):
        ends[-1] = ""
    bom = data.draw(st.sampled_from(["", "\ufeff"]))
    text = bom + "".join(line + end for line, end in zip(generated.lines, ends, strict=True))

    seen: list[Uri] = []

    def namer(uri: Uri) -> str:
        seen.append(uri)
        return property_name(uri)

    out = rewrite_playlist(text, GEN_BASE, namer)

    assert out == "".join(line + end for line, end in zip(generated.expected, ends, strict=True))
    in_lines = text.removeprefix("\ufeff").split("\n")
    out_lines = out.split("\n")
    # (3) as many lines as before, each with its own line end.
    assert len(out_lines) == len(in_lines)
    # (1) every line without a URI, byte for byte.
    for index, (before, after) in enumerate(zip(in_lines, out_lines, strict=True)):
        if index not in generated.uri_lines:
            assert after == before
    # (2) no upstream reference survives; every one went through the namer, resolved.
    assert MARK not in out
    assert [u.kind for u in seen] == generated.kinds
    assert all(u.url.startswith(("http://", "https://")) and MARK in u.url for u in seen)
    assert playlist_uris(text, GEN_BASE) == seen
