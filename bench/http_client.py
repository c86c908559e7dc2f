"""A small HTTP/1.1 client for many simulated players in one process: one keep-alive
connection per client, and one read buffer shared by every connection of the process
(`asyncio.BufferedProtocol`: each read is parsed before the next one starts). It counts
body bytes instead of keeping them unless asked, so that the load costs little.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from harness import HOST

REQUEST_TIMEOUT = 20.0
READ_BUFFER = 256 * 1024
MAX_HEAD = 64 * 1024
MAX_LINE = 4096


class HttpError(Exception):
    pass


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    size: int
    t_first: float
    t_done: float


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)


class _Reader(asyncio.BufferedProtocol):
    def __init__(self, buffer: memoryview) -> None:
        self.buffer = buffer
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[Response] | None = None
        self._start(False)

    def _start(self, keep_body: bool) -> None:
        self.keep = keep_body
        self.state = _HEAD
        self.head = bytearray()
        self.line = bytearray()
        self.body = bytearray()
        self.status = 0
        self.remaining = 0
        self.size = 0
        self.t_first = 0.0
        self.close_after = False

    def expect(self, waiter: asyncio.Future[Response], keep_body: bool) -> None:
        self._start(keep_body)
        self.waiter = waiter

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self.waiter is None or self.waiter.done():
            self._abort(HttpError("bytes with no request outstanding"))
            return
        try:
            self._feed(self.buffer[:nbytes])
        except (HttpError, ValueError) as exc:
            self._abort(HttpError(f"bad response: {exc}"))

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.state == _UNTIL_CLOSE:
            self._finish()
        else:
            waiter.set_exception(ConnectionError("the server closed the connection"))

    def _abort(self, exc: Exception) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _finish(self) -> None:
        assert self.waiter is not None
        self.state = _DONE
        body = bytes(self.body) if self.keep else b""
        self.waiter.set_result(
            Response(self.status, body, self.size, self.t_first, time.monotonic())
        )
        if self.close_after and self.transport is not None:
            self.closed = True
            self.transport.close()

    def _take(self, data: memoryview) -> memoryview:
        n = min(len(data), self.remaining)
        if self.keep:
            self.body += data[:n]
        self.size += n
        self.remaining -= n
        return data[n:]

    def _line(self, data: memoryview) -> tuple[bytes | None, memoryview]:
        # Chunk-size and trailer lines are short: look for the end of one near the start.
        end = bytes(data[:MAX_LINE]).find(b"\n")
        if end < 0:
            if len(data) >= MAX_LINE:
                raise HttpError("line too long")
            self.line += data
            if len(self.line) > MAX_LINE:
                raise HttpError("line too long")
            return None, data[len(data) :]
        line = bytes(self.line) + bytes(data[:end])
        self.line = bytearray()
        return line.rstrip(b"\r"), data[end + 1 :]

    def _feed(self, data: memoryview) -> None:
        if self.state == _HEAD:
            if not self.t_first:
                self.t_first = time.monotonic()
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > MAX_HEAD:
                    raise HttpError("header too long")
                return
            rest = memoryview(bytes(self.head[end + 4 :]))
            self._parse_head(bytes(self.head[:end]))
            data = rest
        while self.state != _DONE:
            if self.state == _LENGTH:
                data = self._take(data)
                if self.remaining == 0:
                    self._finish()
                    break
            elif self.state == _UNTIL_CLOSE:
                self.remaining = len(data)
                data = self._take(data)
            elif self.state == _CHUNK_DATA:
                data = self._take(data)
                if self.remaining == 0:
                    self.state = _CHUNK_END
                    continue
            else:  # a line: a chunk's size, the CRLF after its data, or one of the trailer
                line, data = self._line(data)
                if line is None:
                    break
                self._on_line(line)
                continue
            if not data:
                break
        if self.state == _DONE and len(data):
            raise HttpError("bytes after the response")

    def _on_line(self, line: bytes) -> None:
        if self.state == _CHUNK_SIZE:
            self.remaining = int(line.split(b";")[0].strip(), 16)
            self.state = _CHUNK_DATA if self.remaining else _TRAILER
        elif self.state == _CHUNK_END:
            if line:
                raise HttpError("chunk not followed by CRLF")
            self.state = _CHUNK_SIZE
        elif not line:  # the empty line that ends the trailer
            self._finish()

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        self.status = int(parts[1])
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                self.close_after = "close" in value.lower()
        if chunked:
            self.state = _CHUNK_SIZE
        elif length is not None:
            self.state = _LENGTH
            self.remaining = length
            if length == 0:
                self._finish()
        else:
            self.state = _UNTIL_CLOSE
            self.close_after = True


class Client:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, port: int, buffer: memoryview) -> None:
        self.port = port
        self._buffer = buffer
        self._reader: _Reader | None = None

    async def get(self, path: str, *, keep_body: bool = False) -> Response:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(REQUEST_TIMEOUT):
            reader = self._reader
            if reader is None or reader.closed:
                _, reader = await loop.create_connection(
                    lambda: _Reader(self._buffer), HOST, self.port
                )
                self._reader = reader
            assert reader.transport is not None
            waiter: asyncio.Future[Response] = loop.create_future()
            reader.expect(waiter, keep_body)
            reader.transport.write(
                f"GET {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
                "User-Agent: hls-viewers-bench\r\nAccept: */*\r\n\r\n".encode()
            )
            try:
                return await waiter
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and reader.transport is not None:
            reader.closed = True
            reader.transport.abort()
