"""The process's life: serve until SIGINT or SIGTERM, then end every stream and exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from .config import DemoChannel, DemoOptions, Settings
from .web.app import create_app
from .web.fast.site import FastSite, ProxyRunner

log = logging.getLogger("hlsproxy")

# Channels of the demo engine: any 40-hex id plays there; these are just easy to copy.
DEMO_IDS = (
    "0a4848271c91ce2d8965ce416267c25047dc8141",
    "94c2fd8fb9bc8f2fc71a2cbe9d4b866f227a0209",
    "2d4e0c1e6a5f4c3b8a79d6e5f4c3b2a190817263",
)
# A demo channel that is cold: the engine prebuffers it this long when it is first opened,
# as a real engine does a channel nobody near it watches, so the waiting state shows.
DEMO_COLD_ID = "c01dc01dc01dc01dc01dc01dc01dc01dc01dc01d"
DEMO_COLD_SECONDS = 15.0
# What the status page lists while nobody plays them, and the demo engine's cold channels.
DEMO_CHANNELS = (
    *(DemoChannel(content_id) for content_id in DEMO_IDS),
    DemoChannel(DEMO_COLD_ID, prebuffer=DEMO_COLD_SECONDS),
)
# Live streams are ended on shutdown, so handlers finish fast; this only bounds stragglers.
SHUTDOWN_TIMEOUT = 3.0


def run(settings: Settings, demo: DemoOptions | None = None) -> int:
    raise_open_files_limit()
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings.uvloop)) as runner:
            runner.run(_serve(settings, demo))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        log.error("cannot listen on %s: %s", settings.listen_addr, exc.strerror or exc)
        return 1
    return 0


def raise_open_files_limit() -> None:
    """Every player holds a connection, and every cached segment a file: the soft limit on
    open files (often 1024) goes up to the hard one, as Go programs such as acexy do."""
    try:
        import resource  # noqa: PLC0415 - Unix only
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError) as exc:
            log.info("open files stay limited to %d: %s", soft, exc)
            return
        log.debug("open files limit raised from %d to %d", soft, wanted)


def loop_factory(uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it imports (bench/README.md shows what it saves); None means
    asyncio's default loop."""
    if not uvloop:
        return None
    try:
        import uvloop as module  # noqa: PLC0415 - optional: absent on some platforms
    except ImportError:
        log.info("uvloop is not installed: running on asyncio's own event loop")
        return None
    return module.new_event_loop


async def _serve(settings: Settings, demo: DemoOptions | None) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if demo is not None:
            from .sim import start_engine  # noqa: PLC0415 - only the demo loads the simulator

            engine_options: dict[str, Any] = {
                "bitrate": demo.bitrate,
                "cold_channels": {c.content_id: c.prebuffer for c in DEMO_CHANNELS if c.prebuffer},
            }
            _, sim_runner, sim_port = await start_engine(**engine_options)
            stack.push_async_callback(sim_runner.cleanup)
            update: dict[str, object] = {"scheme": "http", "host": "127.0.0.1", "port": sim_port}
            log.info("demo: simulated AceStream engine on 127.0.0.1:%d", sim_port)
            if demo.engines:
                from .sim.orchestrator import SimOrchestrator  # noqa: PLC0415 - demo only

                orchestrator = SimOrchestrator(engines=demo.engines, engine_options=engine_options)
                await orchestrator.serve()
                stack.push_async_callback(orchestrator.stop)
                update["orch_url"] = orchestrator.url
                log.info("demo: simulated orchestrator with %d engines", demo.engines)
            settings = settings.model_copy(update=update)
        runner = ProxyRunner(
            create_app(settings, demo_channels=DEMO_CHANNELS if demo is not None else ()),
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            access_log=None,
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        address = settings.listen_addr
        site = FastSite(runner, address.host, address.port, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await site.start()
        shown = address.host if address.host not in (None, "", "0.0.0.0", "::") else "127.0.0.1"
        base = f"http://{shown}:{address.port}"
        if settings.orch_url:
            log.info(
                "listening on %s, engines from the orchestrator at %s (fallback %s)",
                address,
                settings.orch_url,
                settings.engine_url,
            )
        else:
            log.info("listening on %s, engine %s", address, settings.engine_url)
        log.info("event loop: %s", type(asyncio.get_running_loop()).__module__.split(".")[0])
        if demo is not None:
            print(f"hlsproxy demo on {base} - open one of these in VLC, mpv or ffplay:", flush=True)
            for content_id in DEMO_IDS:
                print(f"  {base}/ace/getstream?id={content_id}", flush=True)
            print("as HLS:", flush=True)
            for content_id in DEMO_IDS:
                print(f"  {base}/ace/manifest.m3u8?id={content_id}", flush=True)
            print("or in a browser:", flush=True)
            for content_id in DEMO_IDS:
                print(f"  {base}/player?id={content_id}", flush=True)
            print(
                f"a cold channel: the engine prebuffers it {DEMO_COLD_SECONDS:g} s first "
                "(watch the status page while it does):",
                flush=True,
            )
            print(f"  {base}/ace/getstream?id={DEMO_COLD_ID}", flush=True)
            print(f"  {base}/ace/manifest.m3u8?id={DEMO_COLD_ID}", flush=True)
            print(f"status page: {base}/", flush=True)
        await _until_signalled()
        log.info("shutting down")


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def probe(settings: Settings, timeout: float = 4.0) -> int:
    """0 if the proxy listening where `settings` say answers its liveness endpoint, else 1,
    with the reason on stderr (`docker inspect` shows it in the health check's log)."""
    host = settings.listen_addr.host
    if host in (None, "", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{settings.listen_addr.port}/healthz"
    # Straight to the proxy: an HTTP_PROXY in the environment must not answer for it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as answer:
            if answer.status == 200:
                return 0
            problem = f"it answered HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        problem = f"it answered HTTP {exc.code}"
    except (OSError, urllib.error.URLError) as exc:
        problem = _unreachable(exc, timeout)
    sys.stderr.write(f"hlsproxy: unhealthy: {url}: {problem}\n")
    return 1


def _unreachable(exc: OSError, timeout: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused: no proxy listens there (check ACEXY_LISTEN_ADDR)"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)
