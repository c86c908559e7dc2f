from __future__ import annotations

import pytest

from hlsproxy.content import ContentKey, parse_stream_request
from hlsproxy.errors import BadRequest

CID = "0a4848271c91ce2d8965ce416267c25047dc8141"
IH = "94c2fd8fb9bc8f2fc71a2cbe9d4b866f227a0209"


@pytest.mark.parametrize(
    ("query", "key"),
    [
        pytest.param([("id", CID)], ContentKey("content_id", CID), id="id"),
        pytest.param([("content_id", CID)], ContentKey("content_id", CID), id="content_id"),
        pytest.param([("id", CID.upper())], ContentKey("content_id", CID), id="upper-case"),
        pytest.param(
            [("id", CID), ("content_id", CID)], ContentKey("content_id", CID), id="alias-same"
        ),
        pytest.param([("infohash", IH)], ContentKey("infohash", IH), id="infohash"),
        pytest.param(
            [("id", f"acestream://{CID}")], ContentKey("content_id", CID), id="acestream-link"
        ),
        pytest.param(
            [("content_id", f"AceStream://{CID.upper()}/")],
            ContentKey("content_id", CID),
            id="acestream-link-capitals-slash",
        ),
    ],
)
def test_content_keys(query: list[tuple[str, str]], key: ContentKey) -> None:
    assert parse_stream_request(query).key == key


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        pytest.param([], "missing content", id="no-key"),
        pytest.param([("transcode_audio", "1")], "missing content", id="only-params"),
        pytest.param([("id", CID), ("infohash", IH)], "not content_id and infohash", id="both"),
        pytest.param([("id", CID), ("content_id", IH)], "given twice", id="alias-differs"),
        pytest.param([("id", "abc")], "40 hexadecimal", id="short"),
        pytest.param([("id", "z" * 40)], "40 hexadecimal", id="not-hex"),
        pytest.param([("infohash", "")], "40 hexadecimal", id="empty-infohash"),
        pytest.param([("id", "acestream://abc")], "40 hexadecimal", id="acestream-short"),
        pytest.param(
            [("id", f"acestream://{CID}/x")], "40 hexadecimal", id="acestream-trailing-path"
        ),
        pytest.param([("id", f"http://{CID}")], "40 hexadecimal", id="other-scheme"),
        pytest.param(
            [("infohash", f"acestream://{IH}")], "40 hexadecimal", id="acestream-infohash"
        ),
        pytest.param([("url", "http://192.168.1.1/x")], "turned off", id="url"),
        pytest.param([("magnet", "magnet:?xt=urn:btih:x")], "turned off", id="magnet"),
        pytest.param([("direct_url", "http://10.0.0.1/")], "turned off", id="direct-url"),
    ],
)
def test_bad_requests(query: list[tuple[str, str]], reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        parse_stream_request(query)


def test_remote_content_when_allowed() -> None:
    request = parse_stream_request([("url", "http://example.test/a.torrent")], allow_remote=True)
    assert request.key == ContentKey("url", "http://example.test/a.torrent")
    assert request.key.engine_param == ("url", "http://example.test/a.torrent")


def test_params_pass_through_in_order_and_ours_are_dropped() -> None:
    request = parse_stream_request(
        [
            ("transcode_audio", "1"),
            ("id", CID),
            ("pid", "client-chosen"),
            ("sid", "old-alias"),
            ("format", "redirect"),
            ("preferred_audio_language", "eng"),
            ("transcode_audio", "2"),
        ]
    )
    assert request.params == (
        ("transcode_audio", "1"),
        ("preferred_audio_language", "eng"),
        ("transcode_audio", "2"),
    )
    assert request.key.engine_param == ("id", CID)
