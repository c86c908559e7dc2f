"""What real players see through the engine's opening burst.

Starts the simulated engine (in this process) with the burst fault: each MPEG-TS read first
sends `--burst` seconds of media as fast as the proxy takes them, as a real engine sends its
cache once prebuffered, then real time. Starts the proxy as its own process, from this tree
or from `--tree` (another checkout, to compare), with its defaults. Then mpv, GStreamer's
playbin and ffmpeg (`-re`) play one channel from the start, and mpv and playbin join it
`--late` seconds later. Prints, per player: the time to its first picture, the seconds it
played, whether it was stopped by the stream ending under it, its decode errors; and how
many engine sessions the channel took and how many clients the proxy cut.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from harness import HOST, REPO, Child, free_ports, http_get, parse_rate, wait_answering

sys.path.insert(0, str(REPO))

from hlsproxy.sim import start_engine
from tests.system.players import PLAYERS, Playback, Player, available, play

CID = "0a4848271c91ce2d8965ce416267c25047dc8141"


async def run(args: argparse.Namespace) -> None:
    engine, runner, engine_port = await start_engine(HOST, 0, bitrate=args.bitrate)
    engine.faults.burst_seconds = args.burst
    (port,) = free_ports(1)
    tree: Path = args.tree
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "ACEXY_HOST": HOST,
        "ACEXY_PORT": str(engine_port),
        "ACEXY_LISTEN_ADDR": f"{HOST}:{port}",
        **dict(option.split("=", 1) for option in args.env),
    }
    log = Path(tempfile.mkdtemp(prefix="burst-")) / "proxy.log"
    # -P: the proxy comes from PYTHONPATH (the tree measured), not from the working directory.
    proxy = Child("proxy", [sys.executable, "-P", "-m", "hlsproxy"], log, env=env)
    try:
        await asyncio.to_thread(wait_answering, proxy, port, "/healthz")
        url = f"http://{HOST}:{port}/ace/getstream?id={CID}"
        players = [p for p in args.players.split(",") if available(p)]

        async def late(player: Player) -> Playback:
            await asyncio.sleep(args.late)
            return await play(player, url, deadline=args.seconds)

        runs = [play(p, url, deadline=args.seconds + args.late) for p in players]
        runs += [late(p) for p in players if p != "ffmpeg"]
        names = [*players, *(f"{p} (joins at {args.late:g}s)" for p in players if p != "ffmpeg")]
        results = await asyncio.gather(*runs)
        _, metrics = await asyncio.to_thread(http_get, port, "/metrics")
    finally:
        proxy.stop()
        await runner.cleanup()
    print(f"proxy from {tree}; burst {args.burst:g}s at {args.bitrate} bit/s; options {args.env}")
    print(
        f"{'player':<28} {'first picture':>13} {'played':>8} {'skipped':>8} {'ended':>6} "
        f"{'decode errors':>13}"
    )
    for name, seen in zip(names, results, strict=True):
        first = "-" if seen.first_picture is None else f"{seen.first_picture:.1f}s"
        ended = "-" if seen.ended_at is None else f"{seen.ended_at:.0f}s"
        print(
            f"{name:<28} {first:>13} {seen.played:>7.1f}s {seen.skipped:>7.1f}s {ended:>6} "
            f"{len(seen.decode_errors):>13}"
        )
    for name, seen in zip(names, results, strict=True):
        for line in seen.decode_errors[:3]:
            print(f"  {name}: {line}")
    lines = log.read_text().splitlines()
    # A client cut while its connection was full is dropped without a log line: count them
    # all from the metrics.
    (cut,) = (
        round(float(line.split()[-1]))
        for line in metrics.decode().splitlines()
        if line.startswith("hlsproxy_clients_cut_total ")
    )
    moved = sum(" moved forward in " in line for line in lines)
    print(
        f"engine sessions: {len(engine.sessions)}; clients the proxy cut: {cut}, "
        f"moved forward: {moved}"
    )
    print(f"proxy log: {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=float, default=30.0, help="seconds of media sent at once")
    parser.add_argument("--bitrate", type=parse_rate, default=parse_rate("4M"))
    parser.add_argument("--seconds", type=float, default=45.0, help="how long each player plays")
    parser.add_argument("--late", type=float, default=15.0, help="when the late joiners join")
    parser.add_argument("--players", default=",".join(PLAYERS), help="which players play")
    parser.add_argument("--tree", help="the proxy's source tree (default: this one)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="ACEXY_X=value", help="a proxy option"
    )
    args = parser.parse_args()
    args.tree = Path(args.tree).resolve() if args.tree else REPO
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
