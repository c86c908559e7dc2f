"""A complete segment body, kept where the kernel can send it without copying it again.

A cached segment is sent to every viewer: at a few Mbit/s and a thousand viewers that is
hundreds of MB/s, and copying each one from Python's memory into the socket costs more than
everything else the proxy does. Held in a memory file (memfd), the body goes out with
sendfile(2), which hands the file's pages to the socket instead of copying them. The same
pages, mapped read-only, serve whoever needs the bytes themselves (a Range, a reader that
joined a fetch late, MPEG-TS clients of an HLS stream), so the body exists once.

Where there is no memfd (not Linux, or no file descriptor left), the body is plain bytes
and `fileno()` is None. A body in a memfd takes two descriptors (the file and its map).
"""

from __future__ import annotations

import logging
import mmap
import os
import weakref
from collections.abc import Sequence

log = logging.getLogger(__name__)

_MEMFD = hasattr(os, "memfd_create")


class Body:
    __slots__ = ("__weakref__", "_fd", "view")

    view: memoryview
    """The bytes, read-only; valid for as long as this object lives."""

    def __init__(self, pieces: Sequence[bytes | memoryview]) -> None:
        self._fd: int | None = None
        size = sum(len(piece) for piece in pieces)
        view = _in_memory_file(pieces, size) if _MEMFD and size else None
        if view is None:
            self.view = memoryview(b"".join(pieces)).toreadonly()
            return
        self._fd, self.view = view
        # Closed only when nothing can use it any more: a response that found this body
        # before it left the cache may still be about to send it.
        weakref.finalize(self, os.close, self._fd)

    def fileno(self) -> int | None:
        """The memory file to sendfile(2) from, or None where there is none."""
        return self._fd

    def __bytes__(self) -> bytes:
        return self.view.tobytes()

    def __len__(self) -> int:
        return self.view.nbytes

    def __repr__(self) -> str:
        where = "bytes" if self._fd is None else "memfd"
        return f"<Body {len(self)} B in {where}>"


def _in_memory_file(
    pieces: Sequence[bytes | memoryview], size: int
) -> tuple[int, memoryview] | None:
    """A memory file holding the pieces, and a read-only map of it; None when the system
    will not give one (out of file descriptors, say): plain bytes serve as well."""
    try:
        fd = os.memfd_create("hlsproxy-segment", os.MFD_CLOEXEC)
    except OSError as exc:
        log.debug("no memory file for a segment (%s); keeping plain bytes", exc)
        return None
    try:
        for piece in pieces:
            _write_all(fd, piece)
        # The map keeps its own reference to the file, so it outlives `fd` if need be.
        pages = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    except OSError as exc:
        os.close(fd)
        log.debug("no memory file for a segment (%s); keeping plain bytes", exc)
        return None
    return fd, memoryview(pages)


def _write_all(fd: int, piece: bytes | memoryview) -> None:
    view = memoryview(piece)
    while view:
        view = view[os.write(fd, view) :]
