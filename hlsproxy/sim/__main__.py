"""`python -m hlsproxy.sim`: run the simulated AceStream engine on its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from . import start_engine

log = logging.getLogger("hlsproxy.sim")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hlsproxy.sim", description="A simulated AceStream engine."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6878)
    parser.add_argument(
        "--bitrate", type=int, default=None, help="pad streams with null packets to N bit/s"
    )
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="run the live clock this many times faster"
    )
    parser.add_argument(
        "--burst",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="each MPEG-TS read first sends this much media at once, as a real engine sends "
        "its cache, then real time",
    )
    parser.add_argument(
        "--prebuffer",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="every channel prebuffers this many seconds when first opened (a cold channel)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> None:
    host, port = args.host, args.port
    engine, runner, bound = await start_engine(
        host, port, bitrate=args.bitrate, time_scale=args.time_scale
    )
    engine.faults.burst_seconds = args.burst
    engine.faults.prebuffer = args.prebuffer
    shown = f"[{host}]" if ":" in host else host
    log.info("simulated AceStream engine on http://%s:%d", shown, bound)
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    main()
