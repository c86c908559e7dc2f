"""One probing client of the MPEG-TS stream: the time to its first byte, and a check that
what it received is whole TS packets, as a player joining the stream needs."""

from __future__ import annotations

import socket
import time

from harness import HOST, BenchError
from ts_load import http_request, stream_path

PACKET = 188
SYNC = 0x47


class BodyReader:
    """The body of an HTTP/1.1 response, plain or chunked."""

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked
        self.body = bytearray()
        self._raw = bytearray()
        self._left = 0  # bytes of the current chunk still to come, then its CRLF
        self.ended = False

    def feed(self, data: bytes | bytearray) -> None:
        if not self.chunked:
            self.body += data
            return
        raw = self._raw
        raw += data
        while raw and not self.ended:
            if self._left > 0:
                take = min(self._left, len(raw))
                self.body += raw[:take]
                del raw[:take]
                self._left -= take
                if self._left == 0:
                    self._left = -2  # the CRLF after the chunk
                continue
            if self._left < 0:
                if len(raw) < 2:
                    return
                del raw[:2]
                self._left = 0
                continue
            line_end = raw.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(raw[:line_end]).split(b";")[0], 16)
            del raw[: line_end + 2]
            if size == 0:
                self.ended = True
            self._left = size


def first_byte_time(
    port: int, content: str, verify: int = PACKET * 64, timeout: float = 15.0
) -> float:
    """Seconds from connect to the first byte of TS; checks that the stream is TS.

    The first `verify` bytes must be whole 188-byte packets starting with the sync byte, as a
    player joining the stream would need.
    """
    deadline = time.monotonic() + timeout
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(http_request(port, stream_path(content)))
        head = bytearray()
        while (end := head.find(b"\r\n\r\n")) < 0:
            data = sock.recv(65536)
            if not data:
                raise BenchError("the proxy closed a client before its headers")
            head += data
        status_line, *header_lines = bytes(head[:end]).decode("latin-1").split("\r\n")
        if status_line.split(" ")[1:2] != ["200"]:
            raise BenchError(f"a probing client got {status_line!r}")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        reader = BodyReader("chunked" in headers.get("transfer-encoding", "").lower())
        reader.feed(head[end + 4 :])
        ttfb: float | None = None
        while True:
            if ttfb is None and reader.body:
                ttfb = time.perf_counter() - started
            if len(reader.body) >= verify or reader.ended:
                break
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            data = sock.recv(65536)
            if not data:
                break
            reader.feed(data)
    body = reader.body
    if ttfb is None or len(body) < verify:
        raise BenchError(f"a probing client got only {len(body)} bytes of TS")
    bad = [k for k in range(0, verify, PACKET) if body[k] != SYNC]
    if bad:
        raise BenchError(f"a probing client got data that is not TS (no sync byte at {bad[0]})")
    return ttfb
