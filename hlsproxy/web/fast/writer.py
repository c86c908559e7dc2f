"""The fast path's writer: an answer (`web/hls_answer.Answer`) as bytes onto the transport,
framed for the request's HTTP version, without a copy of a cached body where sendfile(2)
can send it.

A body the socket does not take at once waits in the transport's buffer, watched by
`Stalls` (web/stalls.py), which cuts a client that stops reading.
"""

from __future__ import annotations

import asyncio
import logging
import time
from email.utils import formatdate
from http import HTTPStatus

from ...hls.body import Body
from .. import sendfile
from ..hls_answer import Answer
from ..stalls import Stalls
from .flow import Flow
from .head import Head

log = logging.getLogger(__name__)

_STATUS_LINES: dict[int, bytes] = {}


class Aborted(Exception):
    """The connection was aborted mid-body; nothing more is written to it."""


class Dates:
    """The Date header line, made once a second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = 0
        self._line = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._line = b"Date: " + formatdate(second, usegmt=True).encode() + b"\r\n"
        return self._line


def _unsized(answer: Answer) -> bool:
    """A segment still arriving whose length the engine did not give."""
    return answer.flight is not None and answer.length is None


def _ends_at_close(head: Head, answer: Answer) -> bool:
    """HTTP/1.0 has no chunked framing: an unsized body ends with the connection."""
    return head.http10 and _unsized(answer)


def _chunked(head: Head, answer: Answer) -> bool:
    return not head.http10 and _unsized(answer)


def closes(head: Head, answer: Answer) -> bool:
    """Whether the connection ends after `answer`: the request said so, or the answer's
    body ends with the connection."""
    return not head.keep_alive or _ends_at_close(head, answer)


def _head(head: Head, answer: Answer, date: bytes) -> bytes:
    status = _STATUS_LINES.get(answer.status)
    if status is None:
        phrase = HTTPStatus(answer.status).phrase
        status = _STATUS_LINES[answer.status] = b"%d %s\r\n" % (answer.status, phrase.encode())
    parts = [b"HTTP/1.0 " if head.http10 else b"HTTP/1.1 ", status, answer.block.raw]
    length = answer.length
    if length is not None:
        parts.append(b"Content-Length: %d\r\n" % length)
    elif _chunked(head, answer):
        parts.append(b"Transfer-Encoding: chunked\r\n")
    close = _ends_at_close(head, answer)
    keep_alive = head.keep_alive and not close
    if head.http10 and keep_alive:
        parts.append(b"Connection: keep-alive\r\n")
    elif not keep_alive and (close or not head.http10):
        parts.append(b"Connection: close\r\n")
    parts += [date, b"\r\n"]
    return b"".join(parts)


def send(
    transport: asyncio.Transport, head: Head, answer: Answer, stalls: Stalls, date: bytes
) -> None:
    """An answer whose body (if any) is all here."""
    data = _head(head, answer, date)
    body = answer.body
    if answer.head or body is None:
        text = answer.text
        transport.write(data + text if text and not answer.head else data)
        return
    transport.write(data)
    send_body(transport, body, answer.start, answer.end)
    if transport.get_write_buffer_size():
        stalls.watch(transport)  # the rest waits on the client


async def stream(
    transport: asyncio.Transport,
    head: Head,
    answer: Answer,
    *,
    flow: Flow,
    stalls: Stalls,
    date: bytes,
) -> None:
    """A segment still arriving: its bytes as they land, then the rest from the cache."""
    flight = answer.flight
    assert flight is not None
    chunked = _chunked(head, answer)
    transport.write(_head(head, answer, date))
    try:
        sent = 0
        async for piece in flight.arriving():
            if chunked:
                transport.writelines((b"%x\r\n" % len(piece), piece, b"\r\n"))
            else:
                transport.write(piece)
            sent += len(piece)
            if flow.paused:
                stalls.watch(transport)
                await flow.writable()
        # What had not been written when the body landed goes out as a cached body does.
        landed = flight.landed
        assert landed is not None
        end = len(landed.body)
        if sent < end and chunked:
            transport.write(b"%x\r\n" % (end - sent))
        send_body(transport, landed.body, sent, end)
        if chunked:
            transport.write(b"\r\n0\r\n\r\n" if sent < end else b"0\r\n\r\n")
        if transport.get_write_buffer_size():
            stalls.watch(transport)
    except asyncio.CancelledError:
        transport.abort()  # a body cut short must not look whole (HTTP/1.0 ends at close)
        raise
    except Exception as exc:
        # The head is out: a second answer cannot follow. The player sees the connection
        # end early and retries.
        log.info("segment ended mid-answer: %s", getattr(exc, "message", repr(exc)))
        transport.abort()
        raise Aborted from exc


def send_body(transport: asyncio.Transport, body: Body, start: int, end: int) -> None:
    """`body[start:end]`, by sendfile as far as the socket takes it at once, then written."""
    start += sendfile.send_now(transport, body, start, end)
    if start < end:
        transport.write(body.view[start:end])
