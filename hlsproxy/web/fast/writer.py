"""The fast path's writer: an answer's bytes onto the transport, in order, without a copy
of a cached body where sendfile(2) can send it.

A body the socket does not take at once waits in the transport's buffer, watched by
`Stalls` (web/stalls.py), which cuts a client that stops reading.
"""

from __future__ import annotations

import asyncio
import logging

from ...hls.body import Body
from .. import sendfile
from ..stalls import Stalls
from .answers import Reply, Streamed
from .flow import Flow

log = logging.getLogger(__name__)


class Aborted(Exception):
    """The connection was aborted mid-body; nothing more is written to it."""


def send(transport: asyncio.Transport, reply: Reply, stalls: Stalls) -> None:
    body = reply.body
    if body is None:
        transport.write(reply.head + reply.text if reply.text else reply.head)
        return
    transport.write(reply.head)
    send_body(transport, body, reply.start, reply.end)
    if transport.get_write_buffer_size():
        stalls.watch(transport)  # the rest waits on the client


async def stream(
    transport: asyncio.Transport, answer: Streamed, flow: Flow, stalls: Stalls
) -> None:
    """A segment still arriving: its bytes as they land, then the rest from the cache."""
    transport.write(answer.head)
    flight = answer.flight
    try:
        sent = 0
        async for piece in flight.arriving():
            if answer.chunked:
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
        if sent < end and answer.chunked:
            transport.write(b"%x\r\n" % (end - sent))
        send_body(transport, landed.body, sent, end)
        if answer.chunked:
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
