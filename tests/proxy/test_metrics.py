"""/metrics as Prometheus scrapes it, after real traffic."""

from __future__ import annotations

from tests.helpers import CID, ProxyFactory, RunningSim, eventually, scrape

PACKET = 188


async def test_metrics_follow_ts_and_hls_traffic(proxy: ProxyFactory, sim: RunningSim) -> None:
    client = await proxy(linger="0s", hls_prefetch="0")
    async with client.get("/ace/getstream", params={"id": CID}) as resp:
        await resp.content.readexactly(500 * PACKET)
        _, live = await scrape(client)
    assert live[("hlsproxy_streams", (("mode", "ts"),))] == 1
    assert live[("hlsproxy_clients", (("mode", "ts"),))] == 1
    assert live[("hlsproxy_client_bytes_total", (("mode", "ts"),))] >= 500 * PACKET
    await eventually(lambda: sim.counters["stop"] == 1)

    playlist = await (await client.get("/ace/manifest.m3u8", params={"id": "ab" * 20})).text()
    segment = [line for line in playlist.splitlines() if line.startswith("/ace/hls/")][-1]
    for _ in range(3):
        assert (await client.get(segment)).status == 200
    await client.get("/ace/getstream", params={"id": "dead" + "0" * 36})  # the engine refuses

    text, after = await scrape(client)
    assert after[("hlsproxy_streams", (("mode", "ts"),))] == 0
    assert after[("hlsproxy_streams_ended_total", (("mode", "ts"), ("reason", "idle")))] == 1
    assert after[("hlsproxy_streams_started_total", (("mode", "hls"),))] == 1
    assert after[("hlsproxy_upstream_fetches_total", (("kind", "segment"),))] == 1
    assert after[("hlsproxy_upstream_fetches_total", (("kind", "playlist"),))] == 1
    assert after[("hlsproxy_cache_requests_total", (("outcome", "hit"),))] == 2
    assert after[("hlsproxy_cache_requests_total", (("outcome", "miss"),))] == 1
    assert after[("hlsproxy_client_bytes_total", (("mode", "hls"),))] > 3 * 100_000
    assert after[("hlsproxy_engine_errors_total", (("code", "content_load_failed"),))] == 1
    assert after[("hlsproxy_request_seconds_count", (("route", "segment"),))] == 3
    # bounded labels: no content, client or URL ever becomes a label
    assert CID not in text and "ab" * 20 not in text and "127.0.0.1" not in text
