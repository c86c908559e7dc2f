"""Log lines as a log collector reads them: ACEXY_LOG_FORMAT=json carries the facts as fields."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from hlsproxy.cli import configure_logging
from hlsproxy.logs import printable
from tests.helpers import CID, ProxyFactory, RunningSim, eventually


class Lines:
    """What the JSON handler wrote, one parsed object per line."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._stream.getvalue().splitlines()]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.all() if line.get("event") == event]


@pytest.fixture
def json_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lines]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("INFO", "json")
    yield Lines(stream)
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_a_streams_life_is_counted_from_fields(
    proxy: ProxyFactory, sim: RunningSim, json_log: Lines
) -> None:
    client = await proxy(linger="0s")
    async with client.get(f"/ace/getstream?id={CID}&pid=player-1") as resp:
        assert resp.status == 200
        received = len(await resp.content.readexactly(188 * 1000))
    await eventually(lambda: bool(json_log.events("stream_ended")))
    await eventually(lambda: bool(json_log.events("session_stopped")))

    (started,) = json_log.events("stream_started")
    assert (started["stream"], started["mode"], started["level"]) == (CID, "ts", "INFO")
    (session,) = json_log.events("session_started")
    assert (session["stream"], session["mode"], session["engine"]) == (CID, "ts", "engine")
    (stopped,) = json_log.events("session_stopped")
    assert stopped["reason"] == "idle" and stopped["engine"] == "engine"
    assert isinstance(stopped["duration_s"], float) and stopped["duration_s"] >= 0
    (ended,) = json_log.events("stream_ended")
    assert (ended["stream"], ended["mode"], ended["reason"]) == (CID, "ts", "idle")
    assert ended["bytes_in"] >= received and ended["bytes_out"] >= received
    assert ended["duration_s"] >= 0
    assert all(str(sim.port) not in line.get("engine", "") for line in json_log.all())
    # Every player of a playlist sends the engine's pid= back: no news at INFO.
    assert not [line for line in json_log.all() if line["logger"] == "hlsproxy.content"]


async def test_an_engine_failure_a_client_sees_is_logged_with_its_code(
    proxy: ProxyFactory, sim: RunningSim, json_log: Lines
) -> None:
    sim.faults.error = "failed to load content"
    client = await proxy()
    async with client.get(f"/ace/getstream?id={CID}") as resp:
        assert resp.status == 502
        body = await resp.json()
    (failed,) = json_log.events("request_failed")
    assert failed["code"] == body["error"]
    assert failed["level"] == "WARNING"


def test_a_line_without_fields_has_only_the_basics(json_log: Lines) -> None:
    logging.getLogger("hlsproxy.test").warning("plain %s", printable("a\nb"))
    (line,) = json_log.all()
    assert set(line) == {"time", "level", "logger", "message"}
    assert line["message"] == "plain a\\nb"


async def test_an_unreachable_engine_is_logged_with_its_address_and_cause(
    proxy: ProxyFactory, json_log: Lines
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = await proxy(port=str(port), upstream_retries="0")
    async with client.get(f"/ace/getstream?id={CID}") as resp:
        assert resp.status == 502
        assert str(port) not in await resp.text()
    (line,) = json_log.events("engine_unreachable")
    assert line["engine_address"] == f"http://127.0.0.1:{port}"
    assert line["reason"] == "connection refused: nothing listens there"
    assert (line["stream"], line["mode"], line["engine"]) == (CID, "ts", "engine")
    assert line["code"] == "engine_unreachable" and line["level"] == "WARNING"
