"""HLS cut by the proxy from the channel's one MPEG-TS session (hls-source proxy)."""

from __future__ import annotations

import asyncio
import re

from .conftest import CID, ProxyFactory, RunningSim, decode_warnings

MANIFEST = f"/ace/manifest.m3u8?id={CID}"
CUT = {"hls_source": "proxy", "hls_segment_target": "2s"}


def uri_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def test_smoke(proxy: ProxyFactory, sim: RunningSim) -> None:
    client = await proxy(**CUT)
    text = await (await client.get(MANIFEST)).text()
    print(text)
    seg = await client.get(uri_lines(text)[0])
    print(seg.status, seg.headers)
    data = await seg.read()
    assert decode_warnings(data) == ""
    assert [s.fmt for s in sim.engine.sessions] == ["ts"]
