"""The image and the compose files: their text checked against the code (the port, the health
check, every ACEXY_* default they set), and the image built and run as users run it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from hlsproxy.config import Settings, load_settings, options
from hlsproxy.docs import BEGIN, END, options_table
from hlsproxy.engine.dialects import CHECKED_RELEASE
from hlsproxy.runner import probe
from hlsproxy.web.app import create_app
from tests.helpers import CID, RunningSim, content_id

ROOT = Path(__file__).resolve().parents[2]
ENV_NAMES = {option.env: option.name for option in options()}


def dockerfile() -> str:
    # Join continuation lines so each instruction is one line.
    return (ROOT / "Dockerfile").read_text().replace("\\\n", " ")


def instructions(name: str) -> list[str]:
    return [
        line.split(None, 1)[1]
        for line in dockerfile().splitlines()
        if line.strip().upper().startswith(name + " ")
    ]


def test_image_listens_where_the_default_address_says() -> None:
    assert instructions("EXPOSE") == [str(Settings().listen_addr.port)]
    (env,) = instructions("ENV")
    pairs = dict(re.findall(r"(\w+)=(\S+)", env))
    assert load_settings(env={"ACEXY_LISTEN_ADDR": pairs["ACEXY_LISTEN_ADDR"]}).listen_addr == (
        Settings().listen_addr
    )


def test_image_env_defaults_are_the_codes_defaults() -> None:
    (env,) = instructions("ENV")
    pairs = {k: v for k, v in re.findall(r"(\w+)=(\S+)", env) if k.startswith("ACEXY_")}
    assert len(pairs) >= 10
    defaults = Settings()
    for variable, value in pairs.items():
        assert variable in ENV_NAMES, f"{variable} is not an option"
        field = ENV_NAMES[variable]
        assert getattr(load_settings(env={variable: value}), field) == getattr(defaults, field)


def test_image_runs_unprivileged_with_a_health_check_on_the_liveness_probe() -> None:
    (user,) = instructions("USER")
    # Numeric, so that a runtime can tell it is not root without reading /etc/passwd.
    uid, _, gid = user.strip().partition(":")
    assert uid.isdigit() and int(uid) > 0 and (gid == "" or gid.isdigit())
    (check,) = instructions("HEALTHCHECK")
    assert '"hlsproxy", "-healthcheck"' in check
    # The base is an argument (the tests build on a stand-in), python:3.12-slim by default.
    assert instructions("FROM") == ["${BASE}"]
    base = re.search(r"^ARG BASE=(\S+)$", dockerfile(), re.M)
    assert base is not None and base.group(1) == "python:3.12-slim"
    assert instructions("ENTRYPOINT") == ['["hlsproxy"]']


async def test_the_health_check_command_answers_for_a_running_proxy() -> None:
    server = TestServer(create_app(Settings()), host="127.0.0.1")
    await server.start_server()
    try:
        settings = load_settings({"listen_addr": f"127.0.0.1:{server.port}"}, env={})
        assert await asyncio.to_thread(probe, settings) == 0
    finally:
        await server.close()
    assert await asyncio.to_thread(probe, settings, 1.0) == 1


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_points_the_proxy_at_the_engine_service() -> None:
    services = compose()["services"]
    proxy = services["hlsproxy"]
    environment = {k: str(v) for k, v in proxy["environment"].items()}
    engine_name = environment["ACEXY_HOST"]
    assert engine_name in services and engine_name != "hlsproxy"
    assert re.fullmatch(r"\$\{\w+:-[^}]+\}", services[engine_name]["image"])
    port = Settings().listen_addr.port
    assert f"${{HLSPROXY_PORT:-{port}}}:{port}" in proxy["ports"]
    # The proxy starts once the engine answers its status call, not merely once it runs.
    assert proxy["depends_on"] == {engine_name: {"condition": "service_healthy"}}
    check = services[engine_name]["healthcheck"]["test"]
    assert check[0] == "CMD" and "/server/api?api_version=3&method=get_status" in check[-1]
    # Peers reach the engine on its P2P port over TCP and UDP alike.
    assert {p.rsplit("/", 1)[1] for p in services[engine_name]["ports"]} == {"tcp", "udp"}
    assert len({p.split(":")[-1].split("/")[0] for p in services[engine_name]["ports"]}) == 1
    for variable in environment:
        assert variable in ENV_NAMES, f"{variable} is not an option"
    settings = load_settings(env=environment)
    assert settings.port == 6878
    assert settings.listen_addr == Settings().listen_addr


def test_readme_starts_with_the_two_commands_and_lists_every_option() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "pip install . && hlsproxy --demo" in first_block
    # What that first command needs, said before anything else.
    needs = readme.split("```")[2].split("\n\n")[1]
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f"Python ≥ {python.removeprefix('>=')}" in needs
    assert "venv" in needs and "pipx install ." in needs
    assert "externally-managed-environment" in needs
    assert "./scripts/test" in first_block
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()
    begin, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    assert readme[begin:end].strip() == options_table(), (
        "run: python -m hlsproxy.docs --update README.md"
    )


def test_deploy_compose_runs_two_instances_behind_the_shipped_nginx_config() -> None:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = loaded["services"]
    conf = (ROOT / "deploy" / "nginx-lb.conf").read_text()
    upstreams = dict(re.findall(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf))
    instances = re.findall(r"server\s+([\w-]+):8080", upstreams["hlsproxy"])
    assert len(instances) == 2 and all(name in services for name in instances)
    # The status page and the other pages without a content: the first instance, the
    # second only while the first is down.
    assert re.findall(r"server\s+(\S+?)(?:\s+(backup))?;", upstreams["hlsproxy_any"]) == [
        (f"{instances[0]}:8080", ""),
        (f"{instances[1]}:8080", "backup"),
    ]
    nginx = services["nginx"]
    assert "./nginx-lb.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    assert set(nginx["depends_on"]) == set(instances)
    resolved = []
    for name in instances:
        environment = {k: str(v) for k, v in services[name]["environment"].items()}
        for variable in environment:
            assert variable in ENV_NAMES, f"{variable} is not an option"
        environment["ACEXY_ORCH_APIKEY"] = "secret"
        resolved.append(load_settings(env=environment))
        assert services[name]["networks"] == services["orchestrator"]["networks"]
    assert resolved[0] == resolved[1]
    assert resolved[0].orch_url == "http://orchestrator:8000"
    assert resolved[0].listen_addr.port == 8080


# --- the image, built and run ----------------------------------------------------------------
#
# Built on a stand-in base where no registry's python image can be pulled: Debian's Python
# from debootstrap (scripts/docker-test-base, which ./scripts/test runs), or whatever image
# HLSPROXY_TEST_BASE names. Run with --network host, so that the proxy in the container
# reaches the simulated engine on 127.0.0.1 and the test reaches the proxy there.

BASE = os.environ.get("HLSPROXY_TEST_BASE", "hlsproxy-test-base:bookworm")


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def docker_or_skip() -> None:
    """Skip only where Docker cannot run at all; anything else is a failure to look at."""
    if shutil.which("docker") is None:
        pytest.skip("Docker cannot run here: no docker command (./scripts/test installs docker.io)")
    info = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        pytest.skip(f"Docker cannot run here: {reason}")


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    docker_or_skip()
    if docker("image", "inspect", BASE).returncode != 0:
        pytest.fail(f"no base image {BASE}: ./scripts/test builds it (scripts/docker-test-base)")
    tag = f"hlsproxy-test:{uuid.uuid4().hex[:12]}"
    built = docker("build", "-q", "--build-arg", f"BASE={BASE}", "-t", tag, str(ROOT), timeout=600)
    assert built.returncode == 0, built.stderr
    yield tag
    docker("rmi", "-f", tag)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def inspect(container: str, template: str) -> str:
    answer = await asyncio.to_thread(docker, "inspect", "--format", template, container)
    assert answer.returncode == 0, answer.stderr
    return answer.stdout.strip()


def when(stamp: str) -> datetime:
    """A time Docker reports (RFC 3339, nanoseconds)."""
    return datetime.fromisoformat(stamp)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    """Poll another process's state, within a bound a hung container would break."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - a container's state, polled
            await asyncio.sleep(0.2)


async def until_alive(http: aiohttp.ClientSession, base: str, what: str) -> None:
    async def alive() -> bool:
        try:
            async with http.get(f"{base}/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await until(alive, what)


class ComposeProject:
    """docker-compose on the shipped file and a file of stand-ins (the images no registry here
    serves), as a project of its own, in `env` besides this process's environment."""

    def __init__(self, shipped: Path, stand_ins: dict[str, Any], tmp: Path, **env: str) -> None:
        if shutil.which("docker-compose") is None:
            pytest.fail("no docker-compose: ./scripts/test installs Debian's")
        self.name = f"hlsproxytest{uuid.uuid4().hex[:10]}"
        (tmp / "stand-ins.yml").write_text(json.dumps({"services": stand_ins}))
        self._files = ["-f", str(shipped), "-f", str(tmp / "stand-ins.yml")]
        self._env = {**os.environ, **env}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker-compose", "-p", self.name, *self._files, *args],
            capture_output=True,
            text=True,
            env=self._env,
            timeout=300,
            check=False,
        )

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"

    async def up(self) -> None:
        up = await asyncio.to_thread(self, "up", "-d", "--no-build")
        assert up.returncode == 0, up.stderr

    async def down(self) -> None:
        down = await asyncio.to_thread(self, "down", "-v", "--timeout", "20")
        assert down.returncode == 0, down.stderr


def simulated_engine(image: str) -> dict[str, Any]:
    """A compose service: the simulated engine, from the image under test, on port 6878."""
    return {
        "image": image,
        "entrypoint": ["python3", "-m", "hlsproxy.sim", "--host", "0.0.0.0", "--port", "6878"],
    }


async def test_the_image_plays_a_stream_turns_healthy_and_stops_cleanly(
    image: str, sim: RunningSim
) -> None:
    port = free_port()
    name = f"hlsproxy-test-{uuid.uuid4().hex[:12]}"
    started = await asyncio.to_thread(
        docker,
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        # The image's own HEALTHCHECK command, run every second instead of every 30.
        "--health-interval",
        "1s",
        "-e",
        "ACEXY_HOST=127.0.0.1",
        "-e",
        f"ACEXY_PORT={sim.port}",
        "-e",
        f"ACEXY_LISTEN_ADDR=127.0.0.1:{port}",
        "-e",
        "ACEXY_LOG_FORMAT=json",
        "-e",
        "ACEXY_LINGER=0s",
        image,
    )
    assert started.returncode == 0, started.stderr
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            await until_alive(http, base, "the proxy in the container answers")
            async with http.get(f"{base}/ace/getstream", params={"id": CID}) as resp:
                assert resp.status == 200
                assert resp.content_type == "video/mp2t"
                data = await resp.content.readexactly(188 * 2000)
            assert data[::188] == b"\x47" * 2000
        assert (await asyncio.to_thread(docker, "exec", name, "id", "-u")).stdout == "10001\n"
        assert await inspect(name, "{{.Config.User}}") == "10001:10001"

        async def healthy() -> bool:
            return await inspect(name, "{{.State.Health.Status}}") == "healthy"

        await until(healthy, "the health check passes")

        stopped = await asyncio.to_thread(docker, "stop", "-t", "20", name, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        # 0, not 137: it ended on SIGTERM by itself, well before docker's SIGKILL.
        assert await inspect(name, "{{.State.ExitCode}}") == "0"
        assert sim.stop_calls() == sim.counters["start"] == 1

        logs = await asyncio.to_thread(docker, "logs", name)
        lines = [json.loads(line) for line in logs.stderr.splitlines()]
        events = {line.get("event"): line for line in lines}
        assert events["session_started"]["stream"] == CID
        assert events["session_started"]["engine"] == "engine"
        assert events["stream_ended"]["bytes_out"] >= len(data)
        assert not [line for line in lines if line["level"] in ("ERROR", "CRITICAL")]
    finally:
        await asyncio.to_thread(docker, "rm", "-f", name)


async def test_the_image_says_why_it_is_unhealthy(image: str) -> None:
    port = free_port()  # nothing listens here: the proxy in the container listens elsewhere
    answer = await asyncio.to_thread(
        docker,
        "run",
        "--rm",
        "--network",
        "host",
        "-e",
        f"ACEXY_LISTEN_ADDR=127.0.0.1:{port}",
        image,
        "-healthcheck",
    )
    assert answer.returncode == 1
    assert answer.stderr == (
        f"hlsproxy: unhealthy: http://127.0.0.1:{port}/healthz: "
        "connection refused: no proxy listens there (check ACEXY_LISTEN_ADDR)\n"
    )


async def test_compose_starts_the_proxy_once_the_engine_is_healthy(
    image: str, tmp_path: Path
) -> None:
    """docker-compose.yml as shipped, with the simulated engine (from the same image) as the
    engine service, and free host ports: the proxy waits for the engine's health check, and
    players reach a stream through the published port."""
    ports = {"HLSPROXY_PORT": str(free_port()), "ACESTREAM_P2P_PORT": str(free_port())}
    compose = ComposeProject(
        ROOT / "docker-compose.yml",
        {"acestream": simulated_engine(image)},
        tmp_path,
        HLSPROXY_IMAGE=image,
        **ports,
    )
    try:
        await compose.up()
        engine, proxy = compose.container("acestream"), compose.container("hlsproxy")
        assert await inspect(engine, "{{.State.Health.Status}}") == "healthy"
        checks = json.loads(await inspect(engine, "{{json .State.Health.Log}}"))
        healthy_at = min(when(check["End"]) for check in checks if check["ExitCode"] == 0)
        started_at = when(await inspect(proxy, "{{.State.StartedAt}}"))
        assert started_at > healthy_at, "the proxy started before the engine was healthy"
        published = await asyncio.to_thread(docker, "port", engine)
        p2p = ports["ACESTREAM_P2P_PORT"]
        assert f"8621/tcp -> 0.0.0.0:{p2p}" in published.stdout
        assert f"8621/udp -> 0.0.0.0:{p2p}" in published.stdout

        url = f"http://127.0.0.1:{ports['HLSPROXY_PORT']}/ace/getstream?id={CID}"
        async with aiohttp.ClientSession() as http:

            async def plays() -> bool:
                try:
                    async with http.get(url) as resp:
                        data = await resp.content.readexactly(188 * 500)
                        return resp.status == 200 and data[::188] == b"\x47" * 500
                except (aiohttp.ClientError, asyncio.IncompleteReadError):
                    return False

            await until(plays, "a stream plays through the published port")
    finally:
        await compose.down()


NGINX_DOCKERFILE = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends nginx \\
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default
CMD ["nginx", "-g", "daemon off;"]
"""


async def test_deploy_compose_serves_each_content_from_one_instance_and_pins_the_page(
    image: str, tmp_path: Path
) -> None:
    """deploy/docker-compose.yml as shipped, with stand-ins for the images no registry here
    serves: Debian's nginx, and for the orchestrator the simulated engine, which the
    instances fall back to (ACEXY_HOST) since no orchestrator answers."""
    nginx_image = "hlsproxy-test-nginx:bookworm"
    built = await asyncio.to_thread(
        subprocess.run,
        ["docker", "build", "-q", "-t", nginx_image, "-"],
        input=NGINX_DOCKERFILE.format(base=BASE),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    fallback = {"ACEXY_HOST": "orchestrator", "ACEXY_PORT": "6878"}
    ports = {name: free_port() for name in ("HLSPROXY_PORT", "HLSPROXY_1_PORT", "HLSPROXY_2_PORT")}
    compose = ComposeProject(
        ROOT / "deploy" / "docker-compose.yml",
        {
            "orchestrator": simulated_engine(image),
            "hlsproxy-1": {"environment": fallback},
            "hlsproxy-2": {"environment": fallback},
            "nginx": {"image": nginx_image},
        },
        tmp_path,
        HLSPROXY_IMAGE=image,
        ORCH_APIKEY="secret",
        **{name: str(port) for name, port in ports.items()},
    )
    lb = f"http://127.0.0.1:{ports['HLSPROXY_PORT']}"
    direct = [f"http://127.0.0.1:{ports[f'HLSPROXY_{n}_PORT']}" for n in (1, 2)]
    contents = [content_id(n) for n in range(1, 7)]
    try:
        await compose.up()
        async with aiohttp.ClientSession() as http:
            for base in direct:
                await until_alive(http, base, "each instance answers")
            await until_alive(http, lb, "nginx answers for the instances")
            players = []
            for cid in contents:
                resp = await http.get(f"{lb}/ace/getstream", params={"id": cid})
                assert resp.status == 200
                assert (await resp.content.readexactly(188 * 100))[::188] == b"\x47" * 100
                players.append(resp)
            served: list[set[str]] = []
            for base in direct:
                playing = set()
                for cid in contents:
                    async with http.get(f"{base}/ace/status", params={"id": cid}) as resp:
                        if resp.status == 200:
                            playing.add(cid)
                served.append(playing)
            # Each content on one instance; these ids hash to both.
            assert served[0] | served[1] == set(contents)
            assert not served[0] & served[1] and served[0] and served[1]

            async def page_lists(instance: int) -> bool:
                async with http.get(f"{lb}/") as resp:
                    text = await resp.text()
                shown = {cid for cid in contents if cid in text}
                return shown == served[instance]

            for _ in range(3):  # the same instance at every refresh
                assert await page_lists(0)
            stopped = await asyncio.to_thread(
                docker, "stop", "-t", "20", compose.container("hlsproxy-1"), timeout=60
            )
            assert stopped.returncode == 0, stopped.stderr

            async def second_stands_in() -> bool:
                return await page_lists(1)

            await until(second_stands_in, "the second instance's page through nginx")
            for resp in players:
                resp.close()
    finally:
        await compose.down()


def test_orchestrator_compose_sets_the_pool_variables() -> None:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.orchestrator.yml").read_text())
    services = loaded["services"]
    environment = {k: str(v) for k, v in services["hlsproxy"]["environment"].items()}
    for variable in environment:
        assert variable in ENV_NAMES, f"{variable} is not an option"
    orchestrator_host = environment["ACEXY_ORCH_URL"].split("//")[1].split(":")[0]
    assert orchestrator_host in services
    resolved = {k: v.replace("${ORCH_APIKEY}", "secret") for k, v in environment.items()}
    settings = load_settings(env=resolved)
    assert settings.orch_url == "http://orchestrator:8000"
    assert settings.max_streams_per_engine == 1


def test_orchestrator_compose_runs_the_release_the_code_was_checked_against() -> None:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.orchestrator.yml").read_text())
    services = loaded["services"]
    orchestrator = services["orchestrator"]
    image = re.fullmatch(r"\$\{\w+:-([^}]+)\}", orchestrator["image"])
    assert image is not None
    assert image[1] == f"ghcr.io/krinkuto11/acestream-orchestrator:{CHECKED_RELEASE}"
    environment = {k: str(v) for k, v in orchestrator["environment"].items()}
    # what that release reads: the engine image as ENGINE_VARIANT, never TARGET_IMAGE
    assert "ENGINE_VARIANT" in environment and "TARGET_IMAGE" not in environment
    # engines join the network the proxy is on, so the addresses listed are reachable
    network = environment["DOCKER_NETWORK"]
    assert network in services["hlsproxy"]["networks"]
    assert network in orchestrator["networks"]
    assert loaded["networks"][network]["name"] == network
    readme = (ROOT / "README.md").read_text()
    pool_section = readme[readme.index("## An engine pool") :].split("\n## ")[0]
    assert "Supported orchestrator versions" in pool_section
    assert CHECKED_RELEASE in pool_section
