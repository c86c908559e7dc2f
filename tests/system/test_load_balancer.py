"""Several hlsproxy instances behind nginx, sharing one orchestrator's engine pool.

nginx runs deploy/nginx-lb.conf as shipped, with only its upstream addresses and its listen
address replaced, so what is tested is what users copy. Players reach every content through
nginx, as MPEG-TS and as HLS; the test then looks at what each side saw: which instance
nginx sent each request to (its access log), what each instance holds (`/ace/status`), what
each engine of the pool was asked (`requests`, `sessions`) and what the orchestrator was told
(its stream events and `/engines`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest

from hlsproxy.sim import SimEngine, start_engine
from hlsproxy.sim.orchestrator import SimOrchestrator
from tests.helpers import content_id, eventually

ROOT = Path(__file__).resolve().parents[2]
LB_CONF = ROOT / "deploy" / "nginx-lb.conf"
API_KEY = "load-balancer-test-key"
INSTANCES = ("proxy-a", "proxy-b")
CONTENTS_PER_INSTANCE = 3
CANDIDATES = 24
HLS_VIEWERS = 3
TS_CLIENTS = 2
TS_BYTES = 400 * 188
MANIFEST = "/ace/manifest.m3u8"
SEGMENT_FETCH = re.compile(r"GET /ace/c/([0-9a-f]+)/(\d+)\.ts")
# Tab-separated, so an empty content key still leaves its column.
LOG_FORMAT = "$content_key\\t$upstream_addr\\t$status\\t$request_method\\t$uri"


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def render_lb_conf(text: str, instances: Sequence[str], listen: str) -> str:
    """The shipped config with each upstream's servers set to `instances` and its one listen
    directive set to `listen`; a shipped file of another shape fails here, not in nginx."""

    def addresses(block: re.Match[str]) -> str:
        names = iter(instances)

        def next_address(server: re.Match[str]) -> str:
            address = next(names, None)
            assert address is not None, f"{block.group(1)!r} lists more servers than instances"
            return f"{server.group(1)}{address}"

        body = re.sub(r"^([ \t]*server[ \t]+)[^\s;]+", next_address, block.group(2), flags=re.M)
        assert next(names, None) is None, f"{block.group(1)!r} lists fewer servers than instances"
        return block.group(1) + body + block.group(3)

    rendered, upstreams = re.subn(r"(upstream\s+\w+\s*\{)([^}]*)(\})", addresses, text)
    assert upstreams, "deploy/nginx-lb.conf has no upstream block"
    rendered, listens = re.subn(
        r"^([ \t]*listen[ \t]+)[^;]+;", rf"\g<1>{listen};", rendered, flags=re.M
    )
    assert listens == 1, f"deploy/nginx-lb.conf should have one listen directive, has {listens}"
    return rendered


def nginx_main_conf(prefix: Path, include: Path) -> str:
    """A whole nginx.conf around the rendered file: every path nginx writes is under `prefix`,
    so nothing of the system's nginx is touched."""
    temp = "\n".join(
        f"    {name}_temp_path {prefix / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{
    worker_connections 1024;
}}
http {{
    log_format lb "{LOG_FORMAT}";
    access_log {prefix / "access.log"} lb;
{temp}
    include {include};
}}
"""


@dataclass(frozen=True)
class Hit:
    """One line of nginx's access log."""

    key: str
    upstream: str
    status: str
    method: str
    path: str


def read_access_log(path: Path) -> list[Hit]:
    if not path.exists():
        return []
    return [Hit(*line.split("\t")) for line in path.read_text().splitlines() if line]


def open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path.name}: missing)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path.name} ---\n" + "\n".join(text)


@dataclass
class Instance:
    name: str
    port: int
    process: asyncio.subprocess.Process
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@dataclass
class Cluster:
    orch: SimOrchestrator
    fallback: SimEngine
    instances: list[Instance]
    url: str
    prefix: Path

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def instance_at(self, address: str) -> Instance:
        return next(i for i in self.instances if i.address == address)


async def start_instance(
    name: str, orch: SimOrchestrator, fallback_port: int, log: Path
) -> Instance:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACEXY_")}
    with open_log(log) as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hlsproxy",
            "-addr",
            f"127.0.0.1:{port}",
            "-orch-url",
            orch.url,
            "-orch-apikey",
            API_KEY,
            "-acestream-host",
            "127.0.0.1",
            "-acestream-port",
            str(fallback_port),
            "-container-id",
            name,
            # Room for every content on the pool's two engines, however the two instances
            # spread them: provisioning is test_orchestrator.py's subject, not this one's.
            "-max-streams-per-engine",
            "4",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
    return Instance(name, port, process, log)


async def wait_until_up(
    http: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process, log: Path
) -> None:
    async with asyncio.timeout(20):
        while True:
            if process.returncode is not None:
                pytest.fail(f"{url} exited with {process.returncode}\n{tail(log)}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)  # another process is starting: nothing to await


async def end_process(process: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


@pytest.fixture(params=["v2.1", "v1"])
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    nginx = find_nginx()
    if nginx is None:
        pytest.skip("nginx is not installed: ./scripts/test installs Debian's nginx")
    orch = SimOrchestrator(api_key=API_KEY, engines=2, stat_interval=0.5, dialect=request.param)
    await orch.serve()
    fallback, fallback_runner, fallback_port = await start_engine("127.0.0.1", 0)
    instances: list[Instance] = []
    nginx_process: asyncio.subprocess.Process | None = None
    logs: list[Path] = []
    try:
        for name in INSTANCES:
            log = tmp_path / f"{name}.log"
            logs.append(log)
            instances.append(await start_instance(name, orch, fallback_port, log))
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        port = free_port()
        rendered = prefix / "hlsproxy-lb.conf"
        rendered.write_text(
            render_lb_conf(LB_CONF.read_text(), [i.address for i in instances], f"127.0.0.1:{port}")
        )
        (prefix / "nginx.conf").write_text(nginx_main_conf(prefix, rendered))
        error_log = prefix / "error.log"
        logs.append(error_log)
        with open_log(prefix / "nginx.out") as out:
            nginx_process = await asyncio.create_subprocess_exec(
                nginx,
                "-p",
                str(prefix),
                "-c",
                str(prefix / "nginx.conf"),
                "-e",
                str(error_log),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        logs.append(prefix / "nginx.out")
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for instance in instances:
                await wait_until_up(http, instance.url, instance.process, instance.log)
            await wait_until_up(http, url, nginx_process, error_log)
        yield Cluster(orch, fallback, instances, url, prefix)
    finally:
        if nginx_process is not None:
            await end_process(nginx_process)
        for instance in instances:
            await end_process(instance.process)
        await orch.stop()
        await fallback_runner.cleanup()
        # Shown by pytest only when the test failed.
        for log in logs:
            print(tail(log))


@dataclass
class Played:
    """What the players of one content received through nginx."""

    segments: dict[str, list[bytes]] = field(default_factory=lambda: collections.defaultdict(list))
    ts: list[bytes] = field(default_factory=list)


async def watch_hls(http: aiohttp.ClientSession, url: str, cid: str, played: Played) -> None:
    """One HLS viewer: the playlist, then every segment it names."""
    async with http.get(f"{url}{MANIFEST}", params={"id": cid}) as resp:
        assert resp.status == 200, await resp.text()
        playlist = await resp.text()
    uris = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    assert uris, playlist
    for uri in uris:
        assert uri.startswith(f"/ace/hls/id/{cid}/"), uri
        async with http.get(url + uri) as resp:
            assert resp.status == 200, await resp.text()
            played.segments[uri].append(await resp.read())


async def join_ts(
    http: aiohttp.ClientSession,
    url: str,
    cid: str,
    played: Played,
    held: list[aiohttp.ClientResponse],
) -> None:
    """One MPEG-TS client: it reads the start of the stream and stays connected."""
    resp = await http.get(f"{url}/ace/getstream", params={"id": cid})
    held.append(resp)
    assert resp.status == 200, await resp.text()
    played.ts.append(await resp.content.readexactly(TS_BYTES))


async def play(
    http: aiohttp.ClientSession, url: str, cid: str, held: list[aiohttp.ClientResponse]
) -> Played:
    played = Played()
    # The first viewer starts the content as HLS; MPEG-TS clients then ride its segments.
    await watch_hls(http, url, cid, played)
    await asyncio.gather(
        *(watch_hls(http, url, cid, played) for _ in range(HLS_VIEWERS - 1)),
        *(join_ts(http, url, cid, played, held) for _ in range(TS_CLIENTS)),
    )
    return played


async def route_contents(http: aiohttp.ClientSession, cluster: Cluster) -> dict[str, Instance]:
    """Contents that nginx spreads over both instances, found by HEAD requests, which start
    nothing: the first CONTENTS_PER_INSTANCE candidates that land on each instance."""
    candidates = [content_id(n) for n in range(1, CANDIDATES + 1)]
    for cid in candidates:
        async with http.head(f"{cluster.url}{MANIFEST}", params={"id": cid}) as resp:
            assert resp.status == 200

    def probes() -> list[Hit]:
        return [hit for hit in read_access_log(cluster.access_log) if hit.method == "HEAD"]

    # nginx logs a request after answering it.
    await eventually(lambda: len(probes()) == CANDIDATES)
    routed = {hit.key: cluster.instance_at(hit.upstream) for hit in probes()}
    assert set(routed) == set(candidates)
    chosen: dict[str, Instance] = {}
    for instance in cluster.instances:
        mine = [cid for cid in candidates if routed[cid] is instance][:CONTENTS_PER_INSTANCE]
        assert len(mine) == CONTENTS_PER_INSTANCE, (
            f"nginx sent {len(mine)} of {CANDIDATES} contents to {instance.name}"
        )
        chosen.update(dict.fromkeys(mine, instance))
    return chosen


def open_streams(orch: SimOrchestrator) -> collections.Counter[tuple[str, str]]:
    """(proxy container id, engine container id) of every stream the orchestrator was told
    started and not yet told ended."""
    engine_at = {(e.host, e.port): e.container_id for e in orch.engines}

    def proxy_id(event: dict[str, Any]) -> str:
        # v1 takes the proxy's id as `container_id`; v2.1 reads that as the engine's
        return str(
            event["labels"]["proxy_container_id"]
            if orch.dialect == "v2.1"
            else event["container_id"]
        )

    return collections.Counter(
        (proxy_id(event), engine_at[(event["engine"]["host"], event["engine"]["port"])])
        for event in orch.unended_starts()
    )


def held_sessions(
    orch: SimOrchestrator, owner: Mapping[str, Instance]
) -> collections.Counter[tuple[str, str]]:
    """(proxy container id, engine container id) of every engine session playing now."""
    return collections.Counter(
        (owner[session.content_id].name, engine.container_id)
        for engine in orch.engines
        for session in engine.sim.active()
    )


async def test_instances_behind_nginx_share_the_pool_one_session_per_content(
    cluster: Cluster,
) -> None:
    orch = cluster.orch
    held: list[aiohttp.ClientResponse] = []
    async with asyncio.timeout(50), aiohttp.ClientSession() as http:
        owner = await route_contents(http, cluster)
        cids = sorted(owner)
        try:
            results = await asyncio.gather(*(play(http, cluster.url, c, held) for c in cids))
            played = dict(zip(cids, results, strict=True))

            # Each content lives on the one instance nginx hashed it to, the other has none.
            for cid, instance in owner.items():
                for other in cluster.instances:
                    async with http.get(f"{other.url}/ace/status", params={"id": cid}) as resp:
                        if other is instance:
                            assert resp.status == 200, (cid, other.name)
                            # Both formats play; the status names the MPEG-TS side.
                            status = await resp.json()
                            assert (status["mode"], status["clients"]) == ("ts", TS_CLIENTS)
                        else:
                            assert resp.status == 404, (cid, other.name)
            counts = {}
            for instance in cluster.instances:
                async with http.get(f"{instance.url}/ace/status") as resp:
                    counts[instance.name] = (await resp.json())["streams"]
            assert counts == dict.fromkeys(INSTANCES, CONTENTS_PER_INSTANCE)

            # One engine session per content across the whole pool, and none on the fallback.
            sessions = [s for engine in orch.engines for s in engine.sim.sessions]
            assert sorted(s.content_id for s in sessions) == cids
            assert all(s.live and s.fmt == "hls" for s in sessions)
            assert cluster.fallback.requests == []
            infohash = {s.content_id: s.infohash for s in sessions}

            # One upstream fetch per segment across both instances, and every player got the
            # engine's bytes.
            fetched: collections.Counter[tuple[str, int]] = collections.Counter()
            for engine in orch.engines:
                for request in engine.sim.requests:
                    match = SEGMENT_FETCH.fullmatch(request)
                    if match:
                        fetched[(match[1], int(match[2]))] += 1
            assert {k: n for k, n in fetched.items() if n > 1} == {}
            media = orch.engines[0].sim.media
            for cid in cids:
                numbers = sorted(n for h, n in fetched if h == infohash[cid])
                originals = {media.segment(n) for n in numbers}
                segments = played[cid].segments
                assert len(numbers) >= len(segments)
                for uri, bodies in segments.items():
                    assert len(set(bodies)) == 1, f"viewers of {uri} got different bytes"
                    assert bodies[0] in originals, f"{uri} is not a segment the engine sent"
                assert len(played[cid].ts) == TS_CLIENTS
                for data in played[cid].ts:
                    assert data[::188] == b"\x47" * (TS_BYTES // 188)

            # The orchestrator's books match what the instances hold on each engine, once
            # their events (sent in the background) have landed.
            with contextlib.suppress(TimeoutError):
                await eventually(lambda: open_streams(orch) == held_sessions(orch, owner), 5)
            assert open_streams(orch) == held_sessions(orch, owner)
            per_instance = collections.Counter[str]()
            for (name, _), n in open_streams(orch).items():
                per_instance[name] += n
            assert per_instance == counts
            async with http.get(f"{orch.url}{orch.prefix}/engines") as resp:
                listed = {e["container_id"]: e for e in await resp.json()}
            for engine in orch.engines:
                playing = {f"{s.content_id}|{s.playback_session_id}" for s in engine.sim.active()}
                if orch.dialect == "v2.1":  # it counts streams, and lists none
                    assert listed[engine.container_id]["stream_count"] == len(playing)
                else:
                    assert set(listed[engine.container_id]["streams"]) == playing
        finally:
            for resp in held:
                resp.close()

        # Every request of a content, in either format, reached that content's instance.
        def all_logged() -> bool:
            hits = read_access_log(cluster.access_log)
            return sum(h.path == "/ace/getstream" for h in hits) == len(cids) * TS_CLIENTS

        await eventually(all_logged)
        hits = read_access_log(cluster.access_log)
        for cid, instance in owner.items():
            mine = [h for h in hits if h.key == cid]
            assert {h.upstream for h in mine} == {instance.address}, cid
            kinds = collections.Counter(f"{h.method} {h.path}" for h in mine)
            segment_hits = sum(h.path.startswith(f"/ace/hls/id/{cid}/") for h in mine)
            assert kinds[f"HEAD {MANIFEST}"] == 1
            assert kinds[f"GET {MANIFEST}"] == HLS_VIEWERS
            assert kinds["GET /ace/getstream"] == TS_CLIENTS
            assert segment_hits == sum(map(len, played[cid].segments.values()))
            assert len(mine) == 1 + HLS_VIEWERS + TS_CLIENTS + segment_hits

        # Shut down: every session the instances started is stopped and reported ended once.
        for instance in cluster.instances:
            instance.process.send_signal(signal.SIGTERM)
        for instance in cluster.instances:
            assert await asyncio.wait_for(instance.process.wait(), 10) == 0, instance.name
        assert all(engine.sim.active() == [] for engine in orch.engines)
        with contextlib.suppress(TimeoutError):
            await eventually(lambda: len(orch.events_ended) >= len(orch.events_started), 5)
        ended = collections.Counter(orch.ended_ids())
        started = collections.Counter(orch.started_ids())
        assert ended == started
        assert len(started) == len(cids)
