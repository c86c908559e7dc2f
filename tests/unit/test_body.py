"""Cached segment bodies in memory files: the bytes, the file for sendfile(2), no leaks."""

from __future__ import annotations

import gc
import os
import resource

import pytest

from hlsproxy.hls.body import Body
from hlsproxy.runner import raise_open_files_limit


def test_a_body_holds_its_pieces_in_a_memory_file_closed_with_it() -> None:
    pieces: list[bytes | memoryview] = [b"G" * 188, memoryview(b"x" * 1000), b"tail"]
    body = Body(pieces)
    expected = b"".join(bytes(piece) for piece in pieces)
    assert bytes(body) == expected and len(body) == len(expected)
    assert body.view.readonly
    fd = body.fileno()
    if not hasattr(os, "memfd_create"):
        pytest.skip("no memfd here: bodies are plain bytes")
    assert fd is not None
    assert os.pread(fd, len(expected), 0) == expected
    view = body.view
    del body
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)
    assert view.tobytes() == expected  # a view still held stays readable


def test_an_empty_body_needs_no_file() -> None:
    body = Body([])
    assert bytes(body) == b"" and body.fileno() is None


def test_the_open_files_limit_goes_up_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard != resource.RLIM_INFINITY and hard > 256:
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        raise_open_files_limit()
        now_soft, now_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert now_hard == hard
        assert now_soft == hard or (hard == resource.RLIM_INFINITY and now_soft >= soft)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
