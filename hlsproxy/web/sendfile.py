"""sendfile(2) of a stored body straight onto a client's socket, as far as it goes at once.

The event loop's own `sendfile` is no help: uvloop has none, and aiohttp's fallback reads
the file and writes it like any other body. Here the call is made on the socket while the
transport holds nothing unsent, so the bytes land after everything written before them;
what the socket does not take at once is left to the caller's ordinary write. Nothing
waits, so nothing is left half done when the caller moves on.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os

from ..hls.body import Body

log = logging.getLogger(__name__)

# Errors that say sendfile cannot be used on this system or socket at all.
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSOCK}


class _Switch:
    enabled = True


def send_now(transport: asyncio.Transport | None, body: Body, start: int, end: int) -> int:
    """Send `body[start:end]` without copying it, as far as the socket takes it now.

    Returns how many bytes went out (0 when sendfile could not be used); the caller writes
    the rest, from `start` plus that, in the ordinary way.
    """
    source = body.fileno()
    if source is None or not _Switch.enabled or not _ready(transport):
        return 0
    assert transport is not None  # _ready() said so
    target = transport.get_extra_info("socket").fileno()
    sent = 0
    while start + sent < end:
        try:
            count = os.sendfile(target, source, start + sent, end - start - sent)
        except BlockingIOError:
            break
        except OSError as exc:
            if exc.errno in _UNSUPPORTED and sent == 0:
                log.info("sendfile(2) is not available here (%s); segments are copied", exc)
                _Switch.enabled = False
            # Anything else (a peer gone) the transport meets on its next write.
            break
        if count == 0:
            break
        sent += count
    return sent


def _ready(transport: asyncio.Transport | None) -> bool:
    if transport is None or transport.is_closing():
        return False
    # TLS needs its bytes encrypted by the transport; a queue means earlier bytes still wait.
    if transport.get_extra_info("sslcontext") is not None:
        return False
    if transport.get_write_buffer_size() != 0:
        return False
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.fileno() >= 0
