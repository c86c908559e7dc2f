"""The live playlist of segments the proxy cut: what RFC 8216 asks of a sliding window."""

from __future__ import annotations

import re

import pytest

from hlsproxy.hls.playlist import rewrite
from hlsproxy.hls.window import Window

T0 = 1_796_000_000.0  # 2026-11-30 00:53:20 UTC


def tag(text: str, name: str) -> list[str]:
    return re.findall(rf"^#{name}:(.*)$", text, flags=re.MULTILINE)


def fill(window: Window, durations: list[float], breaks: frozenset[int] = frozenset()) -> None:
    at = T0
    for n, duration in enumerate(durations):
        window.add(duration, at, n in breaks, f"/s/{n}.ts")
        at += duration


def test_the_window_slides_and_the_media_sequence_follows() -> None:
    window = Window(6, 2.0)
    fill(window, [2.0] * 10)
    text = window.render()
    assert text.startswith("#EXTM3U\n#EXT-X-VERSION:3\n")
    assert tag(text, "EXT-X-MEDIA-SEQUENCE") == ["4"]
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        f"/s/{n}.ts" for n in range(4, 10)
    ]
    assert tag(text, "EXTINF") == ["2.000,"] * 6
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text
    assert "#EXT-X-ENDLIST" not in text
    assert window.render(ended=True).endswith("#EXT-X-ENDLIST\n")


def test_every_segment_has_its_program_date_time() -> None:
    window = Window(6, 2.0)
    fill(window, [2.0, 1.5, 2.5])
    assert tag(window.render(), "EXT-X-PROGRAM-DATE-TIME") == [
        "2026-11-30T00:53:20.000Z",
        "2026-11-30T00:53:22.000Z",
        "2026-11-30T00:53:23.500Z",
    ]


@pytest.mark.parametrize(
    ("target", "durations", "declared"),
    [
        (2.0, [2.0, 2.4, 1.6], 2),
        (6.0, [5.6, 6.49, 6.0], 6),
        (1.5, [1.5, 2.0], 2),
        (2.0, [2.0, 4.6], 5),
    ],
    ids=["2s", "6s-rounded-down", "fraction-rounded-up", "a-longer-gop-raises-it"],
)
def test_the_target_duration_covers_every_segment_rounded(
    target: float, durations: list[float], declared: int
) -> None:
    window = Window(6, target)
    fill(window, durations)
    (value,) = tag(window.render(), "EXT-X-TARGETDURATION")
    assert int(value) == declared
    for extinf in tag(window.render(), "EXTINF"):
        assert round(float(extinf.rstrip(","))) <= int(value)


def test_the_target_duration_never_goes_down() -> None:
    window = Window(6, 2.0)
    fill(window, [2.0, 4.0] + [2.0] * 10)
    assert tag(window.render(), "EXT-X-TARGETDURATION") == ["4"]


def marked(text: str) -> list[str]:
    """The URIs of the segments marked as discontinuities."""
    lines = text.splitlines()
    # The mark, the date, the duration, then the segment.
    return [lines[i + 3] for i, line in enumerate(lines) if line == "#EXT-X-DISCONTINUITY"]


def test_discontinuities_are_marked_and_counted_as_they_leave() -> None:
    window = Window(6, 2.0)
    fill(window, [2.0] * 9, breaks=frozenset({0, 2, 3, 5}))
    text = window.render()
    # The first segment of a stream follows nothing: it is not marked, nor counted.
    assert marked(text) == ["/s/3.ts", "/s/5.ts"]
    assert tag(text, "EXT-X-DISCONTINUITY-SEQUENCE") == ["1"]
    fill(window, [2.0] * 3)
    assert marked(window.render()) == []
    assert tag(window.render(), "EXT-X-DISCONTINUITY-SEQUENCE") == ["3"]


def test_the_playlist_reads_as_a_media_playlist() -> None:
    window = Window(6, 2.0)
    fill(window, [2.0] * 7, breaks=frozenset({4}))
    info = rewrite(window.render(), "http://proxy/", lambda uri: uri.url).info
    assert not info.multivariant
    assert [s.sequence for s in info.segments] == list(range(1, 7))


def test_segments_stay_fetchable_past_the_window() -> None:
    window = Window(6, 2.0)
    assert window.retention() >= 6 * 2 + 2 * 2
