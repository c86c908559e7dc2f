"""An HLS stream's playlists across engine sessions, with plain data: which copy players get,
how a new session continues the old one, where a variant moves, and what ends the stream."""

from __future__ import annotations

import pytest

from hlsproxy.hls.continuity import MIN_SEGMENT_TTL, Continuity, upkeep
from hlsproxy.hls.info import PlaylistInfo, playlist_info
from hlsproxy.hls.scan import scan_playlist
from hlsproxy.hls.served import Served
from hlsproxy.hls.splice import mark_discontinuity
from hlsproxy.hls.tokens import token_for

BASE = "http://engine.invalid/"
TARGET = 2


def media(first: int, count: int, *, prefix: str = "a", discontinuity_sequence: int = 0) -> str:
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{TARGET}",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    for n in range(first, first + count):
        lines += ["#EXTINF:2.0,", f"{prefix}{n}.ts"]
    return "\n".join(lines) + "\n"


def multivariant(*variants: str) -> str:
    lines = ["#EXTM3U"]
    for n, variant in enumerate(variants):
        lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={(n + 1) * 1000}", variant]
    return "\n".join(lines) + "\n"


def info(text: str) -> PlaylistInfo:
    return playlist_info(scan_playlist(text, BASE))


def served(text: str, at: float = 0.0) -> Served:
    read = info(text)
    variants = tuple(BASE + line for line in text.splitlines() if line.endswith(".m3u8"))
    return Served(text, read, at, 0, variants if read.multivariant else ())


def sequences(playlist: Served) -> list[int]:
    return [segment.sequence for segment in info(playlist.text).segments]


def breaks(playlist: Served) -> list[int]:
    """The media sequence numbers of the segments an EXT-X-DISCONTINUITY precedes."""
    return [s.sequence for s in info(playlist.text).segments if s.discontinuity]


def live(url: str, text: str, at: float = 0.0) -> Continuity:
    """A stream whose first session serves `text` at `url`."""
    continuity = Continuity()
    continuity.started(url, served(text, at), None)
    return continuity


# --- which copy players get ------------------------------------------------------------------


def test_a_fresh_copy_is_served_and_a_stale_one_only_while_recovering() -> None:
    continuity = live("main", media(0, 3), at=100.0)
    ttl = served(media(0, 3)).ttl  # half a target duration
    assert continuity.to_serve("main", 100.0 + ttl / 2, recovering=False) is not None
    assert continuity.to_serve("main", 100.0 + ttl, recovering=False) is None
    assert continuity.to_serve("main", 500.0, recovering=True) is continuity.main
    assert continuity.to_serve("other", 100.0, recovering=True) is None


@pytest.mark.parametrize(("after", "bridges"), [(0.0, True), (2 * TARGET, True), (5.0, False)])
def test_the_last_copy_bridges_a_blip_of_two_target_durations(after: float, bridges: bool) -> None:
    last = served(media(0, 3), at=10.0)
    assert Continuity.bridges(last, 10.0 + after) is bridges


# --- the first session ---------------------------------------------------------------------


def test_a_first_playlist_with_no_slate_before_it_is_served_as_it_is() -> None:
    continuity = Continuity()
    first = served(media(7, 3))
    assert continuity.started("main", first, None) is first
    assert continuity.main_url == "main"
    assert continuity.main is first
    assert continuity.splice("main") is None
    assert continuity.generation == 0


def test_a_first_playlist_after_the_slate_continues_its_numbers_across_one_break() -> None:
    continuity = Continuity()
    slate = media(0, 2, prefix="slate")  # sequences 0 and 1
    first = continuity.started("main", served(media(40, 3)), slate)
    assert sequences(first) == [2, 3, 4]
    assert breaks(first) == [2]
    assert first.offset == 2 - 40
    # The session's later playlists are renumbered alike, the break kept while listed.
    splice = continuity.splice("main")
    assert splice is not None
    later = mark_discontinuity(media(41, 3), splice)
    assert [s.sequence for s in info(later).segments] == [3, 4, 5]
    assert [s.sequence for s in info(later).segments if s.discontinuity] == []


def test_a_refresh_with_nothing_to_continue_is_kept_as_it_came() -> None:
    continuity = live("main", media(0, 3))
    again = served(media(1, 3), at=2.0)
    assert continuity.loaded("main", again, None) is again
    assert continuity.last("main") is again


# --- a new session -------------------------------------------------------------------------


def test_a_new_session_follows_the_old_one_and_its_numbers_never_go_back() -> None:
    continuity = live("old", media(100, 6))
    last = continuity.main
    first = continuity.spliced("new", served(media(0, 3, prefix="b"), at=50.0), last)
    assert sequences(first) == [106, 107, 108]
    assert breaks(first) == [106]
    continuity.install("new", first)
    assert continuity.main_url == "new"
    assert continuity.main is first
    assert continuity.last("old") is None
    assert continuity.generation == 1
    # Its next playlist, renumbered by the splice as it is rewritten, is kept as it comes.
    splice = continuity.splice("new")
    assert splice is not None
    text = mark_discontinuity(media(1, 3, prefix="b"), splice)
    later = continuity.loaded("new", served(text, at=52.0), splice)
    assert sequences(later) == [107, 108, 109]
    assert breaks(later) == [] and info(later.text).discontinuity_sequence == 1


def test_sessions_in_a_row_count_their_breaks() -> None:
    continuity = live("s0", media(0, 3))
    for n in range(1, 4):
        url = f"s{n}"
        first = continuity.spliced(url, served(media(0, 3, prefix=url)), continuity.main)
        continuity.install(url, first)
    current = continuity.main
    assert current is not None
    assert sequences(current) == [9, 10, 11]
    assert info(current.text).discontinuity_sequence + 1 == 3  # the third break is listed
    assert continuity.generation == 3


def test_a_new_session_with_nothing_served_before_is_not_spliced() -> None:
    continuity = Continuity()
    first = served(media(5, 3))
    assert continuity.spliced("new", first, None) is first
    assert continuity.splice("new") is None


# --- variants ------------------------------------------------------------------------------


def variant_stream() -> Continuity:
    """A multivariant stream whose players polled both variants."""
    continuity = live("main", multivariant("v1.m3u8", "v2.m3u8"))
    continuity.loaded(BASE + "v1.m3u8", served(media(50, 3, prefix="low")), None)
    continuity.loaded(BASE + "v2.m3u8", served(media(50, 3, prefix="high")), None)
    return continuity


def test_a_multivariant_playlist_is_not_spliced_its_variants_are() -> None:
    continuity = variant_stream()
    first = served(multivariant("w1.m3u8", "w2.m3u8"))
    assert continuity.spliced("main2", first, continuity.main) is first
    continuity.install("main2", first)
    assert continuity.polled(BASE + "v1.m3u8") == BASE + "w1.m3u8"
    assert continuity.polled(BASE + "v2.m3u8") == BASE + "w2.m3u8"
    assert continuity.last(BASE + "v1.m3u8") is None
    # Each new variant's first playlist continues the old one in its place.
    low = continuity.loaded(BASE + "w1.m3u8", served(media(0, 3, prefix="new-low")), None)
    assert sequences(low) == [53, 54, 55]
    assert breaks(low) == [53]
    # The splice renumbers the ones after it; nothing is continued twice.
    splice = continuity.splice(BASE + "w1.m3u8")
    assert splice is not None
    text = mark_discontinuity(media(1, 3, prefix="new-low"), splice)
    again = continuity.loaded(BASE + "w1.m3u8", served(text), splice)
    assert sequences(again) == [54, 55, 56]


def test_a_variant_moves_to_the_newest_session_however_many_came_between() -> None:
    continuity = variant_stream()
    for n in (2, 3):
        first = served(multivariant(f"s{n}v1.m3u8", f"s{n}v2.m3u8"))
        continuity.install(f"main{n}", continuity.spliced(f"main{n}", first, continuity.main))
    assert continuity.polled(BASE + "v1.m3u8") == BASE + "s3v1.m3u8"
    assert continuity.polled(BASE + "s2v2.m3u8") == BASE + "s3v2.m3u8"
    assert continuity.polled(BASE + "s3v2.m3u8") == BASE + "s3v2.m3u8"


def test_variants_do_not_move_when_the_new_session_has_another_count() -> None:
    continuity = variant_stream()
    continuity.install("main2", served(multivariant("only.m3u8")))
    assert continuity.polled(BASE + "v1.m3u8") == BASE + "v1.m3u8"
    assert continuity.last(BASE + "v1.m3u8") is not None


# --- a lost session, and the end -----------------------------------------------------------


def test_after_a_loss_a_variant_poll_gets_the_new_sessions_media_playlist() -> None:
    continuity = live("old", media(0, 3))
    old = continuity.main
    assert old is not None
    new = continuity.spliced("new", served(media(0, 3, prefix="b")), old)
    continuity.install("new", new)
    assert continuity.after_loss("old", old) is new
    assert continuity.after_loss("new", old) is new


def test_after_a_loss_with_no_new_session_the_last_copy_stands() -> None:
    continuity = variant_stream()
    last = continuity.last(BASE + "v1.m3u8")
    assert last is not None
    assert continuity.after_loss(BASE + "v1.m3u8", served(media(0, 1))) is last
    given = served(media(0, 1))
    assert continuity.after_loss(BASE + "gone.m3u8", given) is given


def test_once_the_content_is_gone_every_poll_gets_the_last_playlist_ended() -> None:
    continuity = live("main", media(0, 3))
    last = continuity.main
    assert last is not None
    continuity.finish(last)
    final = continuity.final
    assert final is not None
    assert final.text == last.text + "#EXT-X-ENDLIST\n"
    assert info(final.text).ended
    assert continuity.after_loss("main", last) is final


# --- what a playlist decides for its segments ----------------------------------------------


def test_segments_stay_fetchable_for_the_playlist_and_slack_and_the_newest_are_fetched_ahead() -> (
    None
):
    playlist = served(media(0, 20), at=1000.0)  # 40 s of segments
    kept = upkeep(playlist, prefetch=2)
    assert kept is not None
    assert kept.segment_ttl == 40.0 + 3 * TARGET
    assert kept.forget_before == 1000.0 - 2 * kept.segment_ttl
    assert kept.prefetch == tuple(token_for("segment", f"{BASE}a{n}.ts", None) for n in (18, 19))


def test_a_short_playlist_keeps_its_segments_the_least_time_and_may_fetch_nothing_ahead() -> None:
    kept = upkeep(served(media(0, 2), at=0.0), prefetch=0)
    assert kept is not None
    assert kept.segment_ttl == MIN_SEGMENT_TTL
    assert kept.prefetch == ()


def test_a_multivariant_playlist_names_no_segment_to_keep() -> None:
    assert upkeep(served(multivariant("v1.m3u8")), prefetch=3) is None
