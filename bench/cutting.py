"""What cutting HLS out of a channel's MPEG-TS stream costs, per channel, in CPU.

With ACEXY_HLS_SOURCE=proxy every chunk the upstream reader publishes to the channel's ring
is also fed to the channel's `Cutter` (segmenter, segment bodies, cache, playlist window),
in the reader's own step. This measures that step in one process, on the simulator's real
media padded with null packets to `--bitrate`, in the 64 KiB chunks the reader publishes:

- reference: what the reader does with each chunk today (the `Splicer` and the ring's
  `publish`), the MPEG-TS fan-out without cutting;
- cutting: the same, plus the `Cutter`.

Each is timed in CPU seconds (`time.process_time`) over `--seconds` of media, `--repeat`
times; the medians are printed as % of one core for one channel playing in real time, and
the difference is the cutting's cost. No I/O and no clients: what a viewer costs on top is
what `hls_viewers.py` measures for any HLS.

    .venv/bin/python bench/cutting.py --bitrate 5M --seconds 120 --repeat 5
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

from harness import parse_rate
from report import machine

from hlsproxy.content import ContentKey
from hlsproxy.cut_stream import CutOptions, Cutter
from hlsproxy.hls.cache import SegmentCache
from hlsproxy.sim.media import MediaLoop, pad
from hlsproxy.ts.broadcast import Ring
from hlsproxy.ts.packets import PACKET_SIZE
from hlsproxy.ts.splice import Splicer
from hlsproxy.ts.stream import CHUNK_BYTES

KEY = ContentKey("content_id", "0a4848271c91ce2d8965ce416267c25047dc8141")


def channel(bitrate: int, seconds: float) -> tuple[list[bytes], float]:
    """The channel's first `seconds` (whole segments) at `bitrate`, in the reader's chunks."""
    media = MediaLoop.load()
    parts, duration, n = [], 0.0, 0
    while duration < seconds:
        length = media.duration(n)
        parts.append(pad(media.segment(n), int(length * bitrate / 8)))
        duration += length
        n += 1
    data = b"".join(parts)
    step = CHUNK_BYTES // PACKET_SIZE * PACKET_SIZE
    return [data[i : i + step] for i in range(0, len(data), step)], duration


def fan_out(chunks: list[bytes], cut: Callable[[bytes], object] | None) -> float:
    """CPU seconds for the reader's step over every chunk, with the cutter or without."""
    splicer = Splicer()
    ring = Ring(4 * 1024 * 1024)
    started = time.process_time()
    for chunk in chunks:
        out, joins = splicer.feed(chunk)
        ring.publish(out, joins)
        if cut is not None:
            cut(out)
    return time.process_time() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bitrate", type=parse_rate, default=parse_rate("5M"))
    parser.add_argument("--seconds", type=float, default=120.0, help="media per run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--target", type=float, default=6.0, help="segment target, seconds")
    args = parser.parse_args(argv)

    chunks, duration = channel(args.bitrate, args.seconds)
    options = CutOptions(target=args.target, window=6, stream_timeout=60.0, locate=_locate)
    reference: list[float] = []
    cutting: list[float] = []
    segments = 0
    for _ in range(args.repeat):
        reference.append(fan_out(chunks, None))
        cache = SegmentCache(max_bytes=256 * 1024 * 1024)
        cutter = Cutter(KEY, cache, options)
        cutting.append(fan_out(chunks, functools.partial(cutter.feed, breaks=0)))
        segments = cutter.window.next_sequence
        cutter.forget()

    def share(cpu: list[float]) -> float:
        return 100 * statistics.median(cpu) / duration

    lengths = [e.duration for e in cutter.window.entries]
    print(f"machine: {machine()}")
    print(
        f"{duration:.0f} s of a {args.bitrate / 1e6:g} Mbit/s channel in "
        f"{len(chunks)} chunks, {args.repeat} runs, medians; {segments} segments of "
        f"{min(lengths):.2f} to {max(lengths):.2f} s (target {args.target:g} s)\n"
    )
    print("| reader's step per chunk | CPU, % of one core per channel |")
    print("|---|---:|")
    print(f"| reference: splice + ring (MPEG-TS fan-out) | {share(reference):.3f} % |")
    print(f"| with cutting (+ segmenter, bodies, cache, window) | {share(cutting):.3f} % |")
    print(f"| **cutting alone** | **{share(cutting) - share(reference):.3f} %** |")


def _locate(key: ContentKey, name: str) -> str:
    return f"/ace/hls/id/{key.value}/{name}"


if __name__ == "__main__":
    main()
