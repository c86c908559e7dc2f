"""The process as users run it: `hlsproxy --demo`, then SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp
import pytest

from hlsproxy.runner import DEMO_IDS
from tests.helpers import CID, free_port, start_demo


async def test_sigterm_ends_clients_and_engine_sessions_within_seconds() -> None:
    port = free_port()
    process = await start_demo(port)
    try:
        assert process.stdout is not None and process.stderr is not None
        banner = await asyncio.wait_for(process.stdout.readline(), 20)
        assert f"http://127.0.0.1:{port}" in banner.decode()
        urls = [(await process.stdout.readline()).decode().strip() for _ in range(11)]
        players = urls[urls.index("or in a browser:") + 1 :]
        assert players == [f"http://127.0.0.1:{port}/player?id={cid}" for cid in DEMO_IDS]
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/ace/getstream?id={CID}"
            async with http.get(url) as resp:
                assert resp.status == 200
                assert (await resp.content.readexactly(188))[0] == 0x47
                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                async with asyncio.timeout(5):
                    await resp.content.read()  # EOF, not a hang
        assert await asyncio.wait_for(process.wait(), 5) == 0
        assert time.monotonic() - started < 5
        log = (await process.stderr.read()).decode()
        assert "stopped" in log  # the simulated engine saw the session stopped
        assert "Traceback" not in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    ("variable", "loop"), [(None, "uvloop"), ("false", "asyncio")], ids=["default", "off"]
)
async def test_runs_on_uvloop_unless_turned_off(variable: str | None, loop: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ACEXY_UVLOOP"}
    if variable is not None:
        env["ACEXY_UVLOOP"] = variable
    port = free_port()
    process = await start_demo(port, env)
    try:
        assert process.stdout is not None and process.stderr is not None
        await asyncio.wait_for(process.stdout.readline(), 20)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as resp,
        ):
            assert resp.status == 200  # serving, so its signal handlers are in place
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 5) == 0
        log = (await process.stderr.read()).decode()
        assert f"event loop: {loop}" in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
