"""One client connection on the fast path, until it asks for something only aiohttp answers.

Every connection starts here. Requests the fast path reads (`head`) get the answers
`web/hls_answer.py` decides written straight to the transport (`writer`), in order, one
at a time.
The first request it does not answer, and everything after it, goes to aiohttp: the
connection is handed to an aiohttp protocol with the unread bytes, and stays there. A
request that fails before its head is written gets the error answer aiohttp's middleware
gives; a failure after the head aborts the connection, as there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol, cast

from aiohttp import web

from ...errors import ProxyError, ShuttingDown, Unavailable
from ...logs import printable
from ..hls_answer import Answer, HlsAnswers, Later, error_answer
from ..middleware import CLIENT_GONE, ErrorAnswer, log_access
from ..stalls import Stalls
from . import writer
from .flow import Flow
from .head import Head, may_be_head, read_head

log = logging.getLogger(__name__)

_END = b"\r\n\r\n"
INTERNAL_ERROR = ErrorAnswer(500, "internal_error", "the proxy failed; its log says why", {})


class Hub(Protocol):
    """What the connections of one listening site share."""

    answers: HlsAnswers
    stalls: Stalls
    dates: writer.Dates
    access_log: bool  # each request answered here is logged, as aiohttp's path logs it

    def admits(self, remote: str | None) -> bool: ...

    def aiohttp_protocol(self) -> asyncio.Protocol: ...

    def joined(self, connection: FastConnection) -> None: ...

    def left(self, connection: FastConnection) -> None: ...

    def track(self, task: asyncio.Task[None]) -> None: ...


class FastConnection(asyncio.Protocol):
    def __init__(self, hub: Hub, clock: Callable[[], float]) -> None:
        self._hub = hub
        self._clock = clock
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None
        self._buffer = bytearray()
        self._task: asyncio.Task[None] | None = None
        self._flow = Flow()
        self._finishing = False
        self._waiting = False  # an answer is awaited and nothing of it is written yet
        # When the last request was read or answered, or a slow reader last drained.
        self.last_request = clock()

    @property
    def idle(self) -> bool:
        """No request under way and nothing left to send (a partial head may be buffered)."""
        transport = self._transport
        return self._task is None and (transport is None or transport.get_write_buffer_size() == 0)

    def finish(self) -> None:
        """Close once the answer under way (if any) is written. A request still waiting for
        its answer is told at once that the proxy is shutting down, as aiohttp's path says."""
        self._finishing = True
        if self._task is None:
            if self._transport is not None:
                self._transport.close()
        elif self._waiting:
            self._task.cancel()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._hub.joined(self)
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if peer else None
        if not self._hub.admits(self._remote):
            self._hand_over()  # aiohttp refuses the client, with the reason

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._hub.left(self)
        if self._task is not None:
            self._task.cancel()
        self._flow.lost()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._task is None and not self._flow.paused:
            self._serve()

    def eof_received(self) -> bool:
        # A client that half-closes gets the answers it asked for, then the close.
        self._finishing = True
        if self._task is None:
            self._serve()
        return True

    def pause_writing(self) -> None:
        self._flow.pause()

    def resume_writing(self) -> None:
        self._flow.resume()
        self.last_request = self._clock()  # a slow reader is not idle until it has read
        transport = self._transport
        if self._task is None and transport is not None and not transport.is_closing():
            transport.resume_reading()
            self._serve()

    # Requests

    def _serve(self) -> None:
        """Answer the buffered requests until one has to wait or is not ours. Nothing is
        answered once the connection is closing: an answer that said so was the last."""
        while (transport := self._transport) is not None and not transport.is_closing():
            end = self._buffer.find(_END)
            if end < 0:
                if not may_be_head(self._buffer):
                    self._hand_over()
                elif self._finishing:
                    transport.close()
                return
            started = time.monotonic() if self._hub.access_log else 0.0
            head = read_head(bytes(self._buffer[:end]), self._remote)
            answer = self._answer(head) if head is not None else None
            if head is None or answer is None:
                self._hand_over()
                return
            del self._buffer[: end + len(_END)]
            self.last_request = self._clock()
            if isinstance(answer, Answer):
                writer.send(transport, head, answer, self._hub.stalls, self._hub.dates.now())
                if self._hub.access_log:
                    log_access(self._remote, head.method, head.path, answer.status, started)
                if not head.keep_alive:
                    transport.close()
                    return
                if self._flow.paused:
                    transport.pause_reading()  # resume_writing() picks up from here
                    return
                continue
            transport.pause_reading()
            task = asyncio.get_running_loop().create_task(self._answer_later(answer, head, started))
            self._task = task
            self._hub.track(task)
            return

    def _answer(self, head: Head) -> Answer | Later | None:
        answers = self._hub.answers
        try:
            return answers.answer(head)
        except (ProxyError, web.HTTPException) as exc:
            return answers.failure(head, exc)
        except Exception:
            # Nothing has been done for this request yet: aiohttp may as well answer it.
            log.exception("the fast path failed on %s %s", head.method, printable(head.path))
            return None

    async def _answer_later(self, later: Later, head: Head, started: float) -> None:
        keep_alive = head.keep_alive
        status = 500
        try:
            self._waiting = True
            try:
                answer = await later()
            except asyncio.CancelledError:
                current = asyncio.current_task()
                assert current is not None
                if self._transport is None or (current.cancelling() and not self._finishing):
                    raise
                if current.cancelling():
                    current.uncancel()  # finish() called off the wait: the proxy is stopping
                    error: ProxyError = ShuttingDown()
                else:  # what the answer waited on was cancelled: its stream is closing
                    error = Unavailable("the stream stopped while this request waited")
                answer = self._hub.answers.failure(head, error)
            except (ProxyError, web.HTTPException) as exc:
                answer = self._hub.answers.failure(head, exc)
            except Exception:
                log.exception("the fast path failed on %s %s", head.method, printable(head.path))
                answer = error_answer(INTERNAL_ERROR, head=head.method == "HEAD")
            finally:
                self._waiting = False
            transport = self._transport
            if transport is None:
                status = CLIENT_GONE
                return
            status = answer.status
            date = self._hub.dates.now()
            if answer.flight is None:
                writer.send(transport, head, answer, self._hub.stalls, date)
            else:
                await writer.stream(
                    transport, head, answer, flow=self._flow, stalls=self._hub.stalls, date=date
                )
            keep_alive = not writer.closes(head, answer)
        except writer.Aborted:
            return
        except asyncio.CancelledError:
            # Ended without its answer: the client must not wait on a connection that will
            # never answer it.
            status = CLIENT_GONE
            if self._transport is not None:
                self._transport.abort()
            raise
        except Exception:
            # A bug of ours, after the answer began: the client must not take what it got
            # for a whole answer.
            log.exception("the fast path failed on %s %s", head.method, printable(head.path))
            if self._transport is not None:
                self._transport.abort()
            return
        finally:
            if self._hub.access_log:
                log_access(self._remote, head.method, head.path, status, started)
            if self._task is asyncio.current_task():
                self._task = None
            self.last_request = self._clock()  # idle from here, as aiohttp counts it
        transport = self._transport
        if transport is None:
            return
        if not keep_alive:
            transport.close()
            return
        if not self._flow.paused:
            transport.resume_reading()
            self._serve()

    def _hand_over(self) -> None:
        """From here on aiohttp serves this connection, starting with the unread bytes."""
        transport = self._transport
        if transport is None:
            return
        self._transport = None
        self._hub.left(self)
        protocol = self._hub.aiohttp_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._flow.paused:
            protocol.pause_writing()
        transport.resume_reading()
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            protocol.data_received(data)
        if self._finishing:
            protocol.eof_received()
