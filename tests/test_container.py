"""Docker cannot run here, so the image's and compose file's promises are checked as text
against the code: the port, the health check, and every ACEXY_* default they set."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestServer

from hlsproxy.config import Settings, load_settings, options
from hlsproxy.docs import BEGIN, END, options_table
from hlsproxy.runner import probe
from hlsproxy.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
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
    assert user.strip() not in ("root", "0")
    (check,) = instructions("HEALTHCHECK")
    assert '"hlsproxy", "-healthcheck"' in check
    (base,) = instructions("FROM")
    assert base.startswith("python:") and base.endswith("-slim")
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
    assert f"{port}:{port}" in proxy["ports"]
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
