"""The resources an HLS stream's playlists named, with plain data."""

from __future__ import annotations

import pytest

from hlsproxy.errors import NotFound
from hlsproxy.hls.names import Names
from hlsproxy.hls.uri import Uri


def test_only_a_named_resource_can_be_looked_up() -> None:
    names = Names()
    segment = Uri("segment", "http://engine.invalid/a.ts")
    token = names.name(segment, 10.0)
    assert names.lookup(token, 11.0) == segment
    assert names.get(token) == segment
    with pytest.raises(NotFound):
        names.lookup("0" * 20 + ".ts", 11.0)
    assert names.get("0" * 20 + ".ts") is None


def test_names_not_given_lately_are_forgotten_but_a_polled_variant_stays() -> None:
    names = Names()
    segment = names.name(Uri("segment", "http://engine.invalid/a.ts"), 10.0)
    variant = names.name(Uri("playlist", "http://engine.invalid/v1.m3u8"), 10.0)
    names.lookup(variant, 50.0)  # a player polls the variant it picked
    names.lookup(segment, 50.0)  # segments are kept by being named again, not by requests
    names.forget_before(40.0)
    assert names.get(segment) is None
    assert names.get(variant) is not None
    assert len(names) == 1
