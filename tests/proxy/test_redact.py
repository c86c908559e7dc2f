"""An engine's error text reaches clients without the engine's address or session ids."""

from __future__ import annotations

import pytest

from hlsproxy.engine.redact import MAX_LENGTH, redact
from tests.helpers import CID, ProxyFactory, RunningSim

TOKEN = "f528764d624db129b32c21fbca0cb8d6"
SESSION = "e0d10c40465de696c0222ffa815edace0635b86a"
PID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("failed to load content", "failed to load content"),
        (
            f"cannot open http://127.0.0.1:35667/ace/r/{CID}/{TOKEN} session={SESSION}",
            "cannot open <url> session=<id>",
        ),
        ("engine at 10.0.0.7:6878 is busy", "engine at <address> is busy"),
        ("engine at [fd00::7]:6878 is busy", "engine at <address> is busy"),
        ("acestream-3:6878 refused", "<address> refused"),
        ("ACESTREAM-3 refused", "<address> refused"),
        ("the acestream-3b engine", "the acestream-3b engine"),
        (f"player {PID} is gone", "player <id> is gone"),
        (f"playback_session_id: {SESSION[:20]}", "playback_session_id: <id>"),
        (f"pid={PID}&x=1", "pid=<id>&x=1"),
        (f"unknown infohash {CID}", "unknown infohash <id>"),
        ("two\nlines\x00", "two lines\x00"),
        ("version 3.2.11 on 1.2.3.4", "version 3.2.11 on <address>"),
    ],
    ids=[
        "plain",
        "url-and-session",
        "ipv4-port",
        "ipv6-port",
        "host-port",
        "host-any-case",
        "longer-name-kept",
        "uuid",
        "named-id",
        "pid-in-query",
        "bare-hash",
        "line-breaks",
        "version-kept",
    ],
)
def test_what_an_engine_says_is_shown_without_addresses_or_ids(said: str, shown: str) -> None:
    assert redact(said, "acestream-3") == shown


def test_a_long_message_is_cut() -> None:
    shown = redact("x" * 5000, "engine")
    assert len(shown) == MAX_LENGTH and shown.endswith("…")


@pytest.mark.parametrize("path", ["/ace/getstream", "/ace/manifest.m3u8"], ids=["mpegts", "hls"])
async def test_an_engine_refusal_reaches_the_client_redacted(
    proxy: ProxyFactory, sim: RunningSim, path: str
) -> None:
    engine = f"127.0.0.1:{sim.port}"
    sim.faults.error = f"cannot open http://{engine}/ace/r/{CID}/{TOKEN} session={SESSION}"
    client = await proxy()
    response = await client.get(path, params={"id": CID})
    assert response.status == 502
    answer = await response.json()
    assert answer == {
        "error": "engine_rejected",
        "message": "the engine says: cannot open <url> session=<id>",
    }
    assert sim.counters["start"] == 0
