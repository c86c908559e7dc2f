"""The status page and the player page, read back the way a browser would parse them."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from importlib.resources import files

import pytest

from hlsproxy.runner import DEMO_CHANNELS, DEMO_COLD_ID, DEMO_IDS
from hlsproxy.throughput import Sample
from hlsproxy.web.assets import PREFIX
from hlsproxy.web.status_page import (
    EngineRow,
    ListedChannel,
    StatusSnapshot,
    StreamRow,
    format_age,
    format_bitrate,
    format_duration,
    format_percent,
    render_player_page,
    render_status_page,
    render_throughput_graph,
)
from tests.helpers import (
    Node,
    ProxyFactory,
    RunningSim,
    parse,
    parse_fragment,
    stream_rows,
    summary,
    words,
)

CID = "0123456789abcdef0123456789abcdef01234567"
EVIL = '<script>alert("x")</script>'
EVIL_ATTR = "\"'><img src=x onerror=alert(1)>"

# --- a small DOM ---------------------------------------------------------------------------------


def svg_of(page: str) -> ET.Element:
    """The inline SVG, parsed as the XML it must also be."""
    match = re.search(r"<svg\b.*?</svg>", page, re.DOTALL)
    assert match, "no <svg> in the page"
    return ET.fromstring(match.group(0))


def asset(node: Node, attribute: str) -> str:
    """The text of the proxy's own asset that ``node`` names, as the page's browser gets it."""
    url = node.attr(attribute)
    assert url.startswith(PREFIX), url
    name = url[len(PREFIX) :].partition("?")[0]
    return (files("hlsproxy.web") / "static" / name).read_text()


def stylesheet(doc: Node) -> str:
    (link,) = doc.iter("link")
    assert link.attr("rel") == "stylesheet"
    return asset(link, "href")


# --- data ----------------------------------------------------------------------------------------


def stream(**overrides: object) -> StreamRow:
    fields: dict[str, object] = {
        "key": CID,
        "key_type": "content_id",
        "source": "HLS session",
        "state": "live",
        "engine": "engine-1",
        "players": (("HLS", 3),),
        "uptime": 3725.0,
        "bitrate_in": 4_200_000.0,
        "bitrate_out": 12_600_000.0,
        "cache_hit_ratio": 0.87,
        "last_data_age": 0.4,
        "player_url": f"/player?id={CID}",
        "stream_urls": (f"/ace/manifest.m3u8?id={CID}",),
    }
    fields.update(overrides)
    return StreamRow(**fields)  # type: ignore[arg-type]


def engine(**overrides: object) -> EngineRow:
    fields: dict[str, object] = {
        "label": "engine-1",
        "health": "healthy",
        "streams": 1,
        "capacity": 4,
    }
    fields.update(overrides)
    return EngineRow(**fields)  # type: ignore[arg-type]


def history(n: int, *, step: float = 5.0) -> tuple[Sample, ...]:
    return tuple(
        Sample(at=1000 + i * step, bits_in=1e6 * (1 + i % 4), bits_out=2e6 * (1 + i % 3))
        for i in range(n)
    )


def snapshot(**overrides: object) -> StatusSnapshot:
    fields: dict[str, object] = {
        "version": "1.2.3",
        "uptime": 90061.0,
        "refresh_seconds": 5,
        "streams": (stream(),),
        "engines": (engine(),),
        "history": history(12),
    }
    fields.update(overrides)
    return StatusSnapshot(**fields)  # type: ignore[arg-type]


def listed_channels(doc: Node) -> list[dict[str, object]]:
    """The channels listed as not playing: key, badge, note and links (text to href)."""
    (section,) = [s for s in doc.iter("section") if s.iter("h2")[0].text == "Channels"]
    cards = [n for n in section.iter("div") if "listed" in n.classes()]
    if not cards:
        return []
    (card,) = cards
    result: list[dict[str, object]] = []
    for item in card.iter("li"):
        (key,) = [n for n in item.iter("code") if "key" in n.classes()]
        (badge,) = [n for n in item.iter("span") if "badge" in n.classes()]
        notes = [words(n.text) for n in item.iter("span") if "cold" in n.classes()]
        result.append(
            {
                "key": words(key.text),
                "badge": words(badge.text),
                "note": notes[0] if notes else None,
                "links": {words(a.text): a.attr("href") for a in item.iter("a")},
                "text": words(item.text),
            }
        )
    return result


def links_of(content_id: str) -> dict[str, str]:
    """The links a listed channel offers, text to href."""
    return {
        "Play": f"/player?id={content_id}",
        f"/ace/getstream?id={content_id}": f"/ace/getstream?id={content_id}",
        f"/ace/manifest.m3u8?id={content_id}": f"/ace/manifest.m3u8?id={content_id}",
    }


def listed(content_id: str, prebuffer: float = 0.0) -> ListedChannel:
    return ListedChannel(
        key=content_id,
        player_url=f"/player?id={content_id}",
        stream_urls=(
            ("MPEG-TS", f"/ace/getstream?id={content_id}"),
            ("HLS", f"/ace/manifest.m3u8?id={content_id}"),
        ),
        prebuffer=prebuffer,
    )


# --- human units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "text"),
    [
        (0, "0 bit/s"),
        (999, "999 bit/s"),
        (999.6, "1.0 kbit/s"),
        (1_000, "1.0 kbit/s"),
        (850_000, "850 kbit/s"),
        (99_940, "99.9 kbit/s"),
        (99_960, "100 kbit/s"),
        (999_960, "1.0 Mbit/s"),
        (4_200_000, "4.2 Mbit/s"),
        (12_640_000, "12.6 Mbit/s"),
        (1_500_000_000, "1.5 Gbit/s"),
        (-5, "0 bit/s"),
        (math.nan, "—"),
        (math.inf, "—"),
    ],
    ids=str,
)
def test_bitrates_read_as_network_speeds(bits: float, text: str) -> None:
    assert format_bitrate(bits) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45.9, "45s"),
        (60, "1m 00s"),
        (307, "5m 07s"),
        (3725, "1h 02m"),
        (86399, "23h 59m"),
        (90061, "1d 01h"),
        (-3, "0s"),
        (math.nan, "—"),
    ],
    ids=str,
)
def test_durations_show_their_two_largest_units(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("ratio", "text"),
    [(None, "—"), (0.0, "0 %"), (0.87, "87 %"), (0.996, "100 %"), (1.0, "100 %"), (1.5, "100 %")],
    ids=str,
)
def test_ratios_show_as_percentages(ratio: float | None, text: str) -> None:
    assert format_percent(ratio) == text


@pytest.mark.parametrize(
    ("age", "text"),
    [(None, "—"), (0.0, "0.0s ago"), (0.44, "0.4s ago"), (59.9, "59.9s ago"), (125, "2m 05s ago")],
    ids=str,
)
def test_ages_say_how_long_ago(age: float | None, text: str) -> None:
    assert format_age(age) == text


# --- the status page -----------------------------------------------------------------------------


def test_a_stream_shows_every_field_in_human_units() -> None:
    page = render_status_page(snapshot())
    doc = parse(page)

    (row,) = stream_rows(doc)
    cells = {name: words(cell.text) for name, cell in row.items()}
    assert cells == {
        "Channel": f"{CID} content_id",
        "Players": "3 HLS HLS session",
        "State": "live",
        "Engine": "engine-1",
        "Uptime": "1h 02m",
        "In": "4.2 Mbit/s",
        "Out": "12.6 Mbit/s",
        "Cache hits": "87 %",
        "Last data": "0.4s ago",
        "Links": f"Play /ace/manifest.m3u8?id={CID}",
    }
    links = {words(a.text): a.attr("href") for a in row["Links"].iter("a")}
    assert links == {
        "Play": f"/player?id={CID}",
        f"/ace/manifest.m3u8?id={CID}": f"/ace/manifest.m3u8?id={CID}",
    }
    assert row["Channel"].iter("a")[0].attr("href") == f"/player?id={CID}"


def test_the_header_sums_up_the_streams() -> None:
    rows = (
        stream(players=(("HLS", 2),), bitrate_in=1_000_000.0, bitrate_out=2_000_000.0),
        stream(key="b" * 40, players=(("MPEG-TS", 0),), bitrate_in=500_000.0, bitrate_out=0.0),
        stream(
            key="c" * 40,
            players=(("HLS", 3), ("MPEG-TS", 2)),
            bitrate_in=2_500_000.0,
            bitrate_out=12_500_000.0,
        ),
    )
    doc = parse(render_status_page(snapshot(streams=rows)))

    assert summary(doc) == {
        "Version": "1.2.3",
        "Uptime": "1d 01h",
        "Channels": "3",
        "Players": "7",
        "In": "4.0 Mbit/s",
        "Out": "14.5 Mbit/s",
    }
    assert words(doc.iter("title")[0].text) == "hlsproxy · 3 channels"


def test_many_streams_each_get_a_row_in_the_given_order() -> None:
    rows = tuple(
        stream(
            key=f"{i:040x}",
            players=(("MPEG-TS" if i % 2 else "HLS", i),),
            source="MPEG-TS session" if i % 2 else "HLS session",
            uptime=i * 61.0,
        )
        for i in range(60)
    )
    doc = parse(render_status_page(snapshot(streams=rows)))

    parsed = stream_rows(doc)
    assert [words(r["Channel"].iter("a")[0].text) for r in parsed] == [r.key for r in rows]
    assert [words(r["Players"].text) for r in parsed] == [
        f"{i} MPEG-TS MPEG-TS session" if i % 2 else f"{i} HLS HLS session" for i in range(60)
    ]
    assert words(parsed[59]["Uptime"].text) == "59m 59s"
    assert summary(doc)["Players"] == str(sum(range(60)))


def test_no_streams_says_so_and_how_to_start_one() -> None:
    page = render_status_page(snapshot(streams=(), history=()))
    doc = parse(page)

    assert stream_rows(doc) == []
    text = words(doc.text)
    assert "No channels playing" in text
    for url in ("/ace/getstream?id=", "/ace/manifest.m3u8?id=", "/player?id="):
        assert url in text
    assert summary(doc)["Channels"] == "0"
    assert summary(doc)["In"] == "0 bit/s"
    assert words(doc.iter("title")[0].text) == "hlsproxy · 0 channels"


def test_channels_nobody_plays_are_listed_with_their_links_and_the_cold_one_says_so() -> None:
    doc = parse(
        render_status_page(snapshot(streams=(), listed=(listed(CID), listed("c" * 40, 15))))
    )

    assert stream_rows(doc) == []
    assert listed_channels(doc) == [
        {
            "key": CID,
            "badge": "not playing",
            "note": None,
            "links": links_of(CID),
            "text": f"{CID} not playing Play MPEG-TS /ace/getstream?id={CID} "
            f"HLS /ace/manifest.m3u8?id={CID}",
        },
        {
            "key": "c" * 40,
            "badge": "not playing",
            "note": "cold: the engine prebuffers it about 15 s first",
            "links": links_of("c" * 40),
            "text": f"{'c' * 40} not playing cold: the engine prebuffers it about 15 s first "
            f"Play MPEG-TS /ace/getstream?id={'c' * 40} HLS /ace/manifest.m3u8?id={'c' * 40}",
        },
    ]
    text = words(doc.text)
    assert "No channels playing." in text
    # The list replaces the general hint: its links are the way to start.
    assert "<content id>" not in text
    assert summary(doc)["Channels"] == "0"


def test_listed_channels_follow_the_channels_that_play() -> None:
    doc = parse(render_status_page(snapshot(listed=(listed("c" * 40),))))

    (row,) = stream_rows(doc)
    assert words(row["Channel"].iter("a")[0].text) == CID
    assert [channel["key"] for channel in listed_channels(doc)] == ["c" * 40]
    assert "No channels playing" not in words(doc.text)
    assert summary(doc)["Channels"] == "1"


def test_a_listed_channel_is_text_never_markup() -> None:
    evil = ListedChannel(
        key=EVIL,
        player_url="javascript:alert(1)",
        stream_urls=((EVIL_ATTR, f"/ace/getstream?id={EVIL_ATTR}"),),
    )
    page = render_status_page(snapshot(listed=(evil,)))
    doc = parse(page)

    assert doc.iter("script") == [] and doc.iter("img") == []
    (channel,) = listed_channels(doc)
    assert channel["key"] == words(EVIL)
    assert channel["links"] == {f"/ace/getstream?id={EVIL_ATTR}": f"/ace/getstream?id={EVIL_ATTR}"}
    assert "Play" in str(channel["text"])


def test_none_values_show_as_a_dash_and_old_data_is_flagged() -> None:
    rows = (
        stream(source="MPEG-TS session", cache_hit_ratio=None, last_data_age=None),
        stream(key="d" * 40, last_data_age=42.0),
    )
    parsed = stream_rows(parse(render_status_page(snapshot(streams=rows))))

    assert words(parsed[0]["Cache hits"].text) == "—"
    assert words(parsed[0]["Last data"].text) == "—"
    assert not parsed[0]["Last data"].iter("span")
    (flag,) = parsed[1]["Last data"].iter("span")
    assert "stale" in flag.classes()
    assert words(flag.text) == "42.0s ago"


@pytest.mark.parametrize("state", ["starting", "live", "closing", "<b>odd</b>"])
def test_a_state_is_a_badge_with_a_class_from_a_closed_set(state: str) -> None:
    (row,) = stream_rows(parse(render_status_page(snapshot(streams=(stream(state=state),)))))
    (badge,) = row["State"].iter("span")
    assert words(badge.text) == state
    expected = state if state in ("starting", "live", "closing") else "other"
    assert badge.classes() == {"badge", f"state-{expected}"}


def test_strings_from_data_are_text_never_markup() -> None:
    bad = stream(
        key=EVIL,
        key_type=EVIL_ATTR,
        source=EVIL,
        players=((EVIL_ATTR, 1),),
        state=EVIL_ATTR,
        engine=EVIL,
        engine_status=EVIL,
        player_url=f"/player?id={EVIL_ATTR}",
        stream_urls=(f"/ace/getstream?id={EVIL}",),
    )
    snap = snapshot(
        version=EVIL,
        streams=(bad,),
        engines=(engine(label=EVIL_ATTR, health=EVIL),),
    )
    page = render_status_page(snap)
    doc = parse(page)

    assert doc.iter("script") == []
    assert doc.iter("img") == []
    assert "<script>" not in page
    assert "<img" not in page
    (row,) = stream_rows(doc)
    # Each value comes back whole, as text or as an attribute value.
    assert words(row["Channel"].iter("a")[0].text) == words(EVIL)
    assert EVIL_ATTR.strip() in row["Channel"].text
    assert words(row["Engine"].text) == words(f"{EVIL} {EVIL} · 0 peers · 0 bit/s down")
    assert words(row["Players"].text) == words(f"1 {EVIL_ATTR} {EVIL}")
    assert row["Channel"].iter("a")[0].attr("href") == f"/player?id={EVIL_ATTR}"
    stream_link = row["Links"].iter("a")[1]
    assert stream_link.attr("href") == f"/ace/getstream?id={EVIL}"
    assert summary(doc)["Version"] == words(EVIL)
    engine_cells = [words(td.text) for td in doc.iter("tbody")[1].iter("td")]
    assert engine_cells[:2] == [words(EVIL_ATTR), words(EVIL)]


@pytest.mark.parametrize("url", ["javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,x"])
def test_a_link_with_a_script_scheme_is_shown_but_not_linked(url: str) -> None:
    (row,) = stream_rows(
        parse(render_status_page(snapshot(streams=(stream(player_url=url, stream_urls=(url,)),))))
    )
    assert [a.attr("href") for a in row["Channel"].iter("a") + row["Links"].iter("a")] == []
    assert url.strip() in row["Links"].text


def test_engines_show_health_and_load() -> None:
    engines = (
        engine(label="main", streams=1, capacity=4),
        engine(label="full", health="unhealthy", streams=4, capacity=4),
        engine(label="open", health="unknown", streams=7, capacity=None),
        engine(label="none", health="healthy", streams=0, capacity=0),
    )
    doc = parse(render_status_page(snapshot(engines=engines)))

    (section,) = [s for s in doc.iter("section") if s.iter("h2")[0].text == "Engines"]
    rows = section.iter("tbody")[0].iter("tr")
    cells = [[words(td.text) for td in row.iter("td")] for row in rows]
    assert cells == [
        ["main", "healthy", "1 / 4"],
        ["full", "unhealthy", "4 / 4"],
        ["open", "unknown", "7 streams, no limit"],
        ["none", "healthy", "0 / 0"],
    ]
    bars = [n for n in section.iter("span") if "load" in n.classes()]
    assert [b.children[0].attr("style") for b in bars] == ["width:25%", "width:100%", "width:100%"]
    assert ["full" in b.classes() for b in bars] == [False, True, True]
    badges = [row.iter("td")[1].iter("span")[0].classes() for row in rows]
    assert badges == [
        {"badge", "health-healthy"},
        {"badge", "health-unhealthy"},
        {"badge", "health-unknown"},
        {"badge", "health-healthy"},
    ]


def test_no_engines_is_said_plainly() -> None:
    doc = parse(render_status_page(snapshot(engines=())))
    (section,) = [s for s in doc.iter("section") if s.iter("h2")[0].text == "Engines"]
    assert section.iter("table") == []
    assert "No engines" in section.text


@pytest.mark.parametrize("seconds", [1, 5, 30])
def test_the_page_refreshes_itself(seconds: int) -> None:
    doc = parse(render_status_page(snapshot(refresh_seconds=seconds)))
    refresh = [m for m in doc.iter("meta") if m.attrs.get("http-equiv") == "refresh"]
    assert [m.attr("content") for m in refresh] == [str(seconds)]


def test_a_refresh_of_zero_turns_reloading_off() -> None:
    doc = parse(render_status_page(snapshot(refresh_seconds=0)))
    assert [m for m in doc.iter("meta") if m.attrs.get("http-equiv") == "refresh"] == []


def test_the_page_fits_phones_and_follows_the_colour_scheme() -> None:
    page = render_status_page(snapshot())
    doc = parse(page)
    metas = {m.attrs.get("name"): m.attrs.get("content") for m in doc.iter("meta")}
    assert metas["viewport"] == "width=device-width, initial-scale=1"
    style = stylesheet(doc)
    assert "@media (prefers-color-scheme: dark)" in style
    assert re.search(r"@media \(max-width: \d+px\)", style)


@pytest.mark.parametrize(
    "snap",
    [snapshot(), snapshot(streams=(), engines=(), history=())],
    ids=["busy", "empty"],
)
def test_the_page_loads_nothing_from_anywhere(snap: StatusSnapshot) -> None:
    page = render_status_page(snap)
    doc = parse(page)

    assert "http://" not in page
    assert "https://" not in page
    assert doc.iter("script") == []
    assert doc.iter("img") == []
    assert doc.iter("iframe") == []
    assert [n.tag for n in doc.iter() if "src" in n.attrs] == []
    # Its one stylesheet is the proxy's own, and that loads nothing either.
    style = stylesheet(doc)
    assert "url(" not in style
    assert "@import" not in style
    assert "@font-face" not in style
    # The only links go to the proxy's own pages.
    assert all(a.attr("href").startswith("/") for a in doc.iter("a"))


# --- the graph -----------------------------------------------------------------------------------


def numbers(element: ET.Element) -> list[float]:
    values: list[float] = []
    for name in ("x", "y", "x1", "y1", "x2", "y2", "cx", "cy"):
        if name in element.attrib:
            values.append(float(element.attrib[name]))
    for pair in element.attrib.get("points", "").split():
        values.extend(float(v) for v in pair.split(","))
    return values


def assert_inside_view(svg: ET.Element) -> None:
    _, _, width, height = (float(v) for v in svg.attrib["viewBox"].split())
    for element in svg.iter():
        for value in numbers(element):
            assert math.isfinite(value), ET.tostring(element)
        xs_ys = numbers(element)
        if element.tag in ("polyline", "circle", "line"):
            assert all(0 <= v <= max(width, height) for v in xs_ys), ET.tostring(element)


def svg_texts(svg: ET.Element) -> list[str]:
    return [words("".join(t.itertext())) for t in svg.iter("text")]


def legend(page: str) -> list[str]:
    (figure,) = parse_fragment(page).iter("figure")
    (caption,) = figure.iter("figcaption")
    assert figure.children[0] is caption
    return [words(item.text) for item in caption.children]


def test_the_graph_draws_both_series_over_the_history() -> None:
    samples = history(12)
    svg = svg_of(render_status_page(snapshot(history=samples)))

    assert_inside_view(svg)
    lines = {p.attrib["class"]: p.attrib["points"].split() for p in svg.iter("polyline")}
    assert set(lines) == {"in", "out"}
    assert all(len(points) == 12 for points in lines.values())
    # Time runs left to right, and the higher rate sits higher on the page.
    xs = [float(p.split(",")[0]) for p in lines["in"]]
    assert xs == sorted(xs) and xs[0] < xs[-1]
    ys_in = [float(p.split(",")[1]) for p in lines["in"]]
    assert ys_in[3] < ys_in[0]  # 4 Mbit/s above 1 Mbit/s
    # Peaks in the legend; the scale tops out at a round figure above the peak.
    assert legend(render_status_page(snapshot(history=samples))) == [
        "In, from engines · peak 4.0 Mbit/s",
        "Out, to clients · peak 6.0 Mbit/s",
    ]
    texts = svg_texts(svg)
    assert {"0", "5.0 Mbit/s", "10.0 Mbit/s"} <= set(texts)
    assert {"55s ago", "now"} <= set(texts)
    assert svg.find("title") is not None


def test_the_graph_with_no_samples_draws_an_empty_frame() -> None:
    page = render_status_page(snapshot(history=()))
    svg = svg_of(page)
    assert_inside_view(svg)
    assert legend(page) == ["In, from engines · peak 0 bit/s", "Out, to clients · peak 0 bit/s"]
    assert list(svg.iter("polyline")) == []
    assert list(svg.iter("circle")) == []
    assert "No samples yet" in svg_texts(svg)


def test_the_graph_with_one_sample_marks_a_point() -> None:
    svg = svg_of(render_throughput_graph([Sample(at=5.0, bits_in=3e6, bits_out=1e6)]))
    assert_inside_view(svg)
    assert list(svg.iter("polyline")) == []
    circles = {c.attrib["class"]: c for c in svg.iter("circle")}
    assert set(circles) == {"in", "out"}
    assert float(circles["in"].attrib["cy"]) < float(circles["out"].attrib["cy"])
    assert legend(render_throughput_graph([Sample(at=5.0, bits_in=3e6, bits_out=1e6)])) == [
        "In, from engines · peak 3.0 Mbit/s",
        "Out, to clients · peak 1.0 Mbit/s",
    ]


def test_the_graph_of_an_idle_proxy_lies_on_the_zero_line() -> None:
    samples = [Sample(at=float(t), bits_in=0.0, bits_out=0.0) for t in range(5)]
    svg = svg_of(render_throughput_graph(samples))
    assert_inside_view(svg)
    zero = next(
        float(line.attrib["y1"]) for line in svg.iter("line") if line.attrib["class"] == "axis"
    )
    for polyline in svg.iter("polyline"):
        assert {float(p.split(",")[1]) for p in polyline.attrib["points"].split()} == {zero}


def test_the_graph_shrugs_off_impossible_samples() -> None:
    samples = [
        Sample(at=0.0, bits_in=math.nan, bits_out=-5.0),
        Sample(at=1.0, bits_in=math.inf, bits_out=1e6),
        Sample(at=1.0, bits_in=2e6, bits_out=1e6),
    ]
    svg = svg_of(render_throughput_graph(samples))
    assert_inside_view(svg)
    assert "nan" not in ET.tostring(svg, encoding="unicode").lower()


# --- the player page -----------------------------------------------------------------------------

HLS_URL = f"/ace/manifest.m3u8?id={CID}"
TS_URL = f"/ace/getstream?id={CID}"


def test_the_player_plays_hls_in_a_muted_inline_video() -> None:
    page = render_player_page(title=CID, hls_url=HLS_URL, ts_url=TS_URL)
    doc = parse(page)

    (video,) = doc.iter("video")
    for flag in ("controls", "autoplay", "muted", "playsinline"):
        assert flag in video.attrs
    assert video.attr("data-hls") == HLS_URL
    (script,) = doc.iter("script")
    js = asset(script, "src")
    assert 'canPlayType("application/vnd.apple.mpegurl")' in js
    assert "video.dataset.hls" in js
    assert words(doc.iter("h1")[0].text) == CID


def test_the_player_offers_the_mpeg_ts_url_for_vlc_and_mpv() -> None:
    doc = parse(render_player_page(title=CID, hls_url=HLS_URL, ts_url=TS_URL))

    (notice,) = [n for n in doc.iter("div") if n.attrs.get("id") == "notice"]
    assert "hidden" in notice.attrs
    assert "VLC or mpv" in words(notice.text)
    # The script writes why playback failed here, as text.
    assert [n.attrs.get("id") for n in notice.iter("p")].count("reason") == 1
    assert [a.attr("href") for a in notice.iter("a")] == [TS_URL]
    hrefs = {a.attr("href") for a in doc.iter("a")}
    assert {HLS_URL, TS_URL, "/"} <= hrefs


def test_the_player_publishes_its_state_on_video_events() -> None:
    (script,) = parse(render_player_page(title="x", hls_url=HLS_URL, ts_url=TS_URL)).iter("script")
    js = asset(script, "src")
    assert re.search(r"window\.playerState = \{playing: \w+, currentTime: [\w.]+, error: \w+\}", js)
    for event in ("playing", "pause", "waiting", "ended", "timeupdate", "error"):
        assert f'"{event}"' in js


def test_the_player_page_escapes_its_data_and_loads_nothing() -> None:
    page = render_player_page(title=EVIL, hls_url=f"/m.m3u8?id={EVIL_ATTR}", ts_url=f"/t?{EVIL}")
    doc = parse(page)

    assert len(doc.iter("script")) == 1
    assert doc.iter("img") == []
    assert words(doc.iter("h1")[0].text) == words(EVIL)
    assert doc.iter("video")[0].attr("data-hls") == f"/m.m3u8?id={EVIL_ATTR}"
    assert f"/t?{EVIL}" in {a.attr("href") for a in doc.iter("a")}
    assert "http://" not in page
    assert "https://" not in page
    # The only things it loads are the proxy's own script and stylesheet.
    assert [(n.tag, n.attr("src").startswith(PREFIX)) for n in doc.iter() if "src" in n.attrs] == [
        ("script", True)
    ]
    assert "url(" not in stylesheet(doc)


def test_the_player_never_hands_a_script_url_to_the_video() -> None:
    doc = parse(render_player_page(title="x", hls_url="javascript:alert(1)", ts_url=TS_URL))
    assert doc.iter("video")[0].attr("data-hls") == ""


def test_a_channel_shows_its_players_by_kind_and_what_its_engine_says() -> None:
    row = stream(
        source="HLS session; MPEG-TS from its segments",
        players=(("HLS", 2), ("MPEG-TS", 1)),
        stream_urls=(f"/ace/manifest.m3u8?id={CID}", f"/ace/getstream?id={CID}"),
        engine_status="dl",
        peers=1,
        download=2_800_000.0,
    )
    (cells,) = stream_rows(parse(render_status_page(snapshot(streams=(row,)))))
    assert words(cells["Players"].text) == "2 HLS 1 MPEG-TS HLS session; MPEG-TS from its segments"
    assert words(cells["Engine"].text) == "engine-1 dl · 1 peer · 2.8 Mbit/s down"
    assert [a.attr("href") for a in cells["Links"].iter("a")][1:] == list(row.stream_urls)


def test_while_the_engine_prebuffers_its_wait_is_shown_once() -> None:
    row = stream(
        state="prebuffering",
        waiting="waited 12 s, 5 peers, 340 KB/s",
        engine_status="prebuf",
        peers=5,
    )
    (cells,) = stream_rows(parse(render_status_page(snapshot(streams=(row,)))))
    assert words(cells["Engine"].text) == "engine-1"
    assert words(cells["State"].text) == "prebuffering waited 12 s, 5 peers, 340 KB/s"


# --- the demo's channels, through the app --------------------------------------------------------


async def test_the_demo_channels_are_listed_before_anyone_plays_them(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy(demo_channels=DEMO_CHANNELS)

    doc = parse(await (await client.get("/")).text())
    channels = listed_channels(doc)
    assert [c["key"] for c in channels] == [*DEMO_IDS, DEMO_COLD_ID]
    assert [c["links"] for c in channels] == [links_of(c.content_id) for c in DEMO_CHANNELS]
    assert {c["badge"] for c in channels} == {"not playing"}
    notes = {c["key"]: c["note"] for c in channels if c["note"]}
    assert notes == {DEMO_COLD_ID: "cold: the engine prebuffers it about 15 s first"}
    assert stream_rows(doc) == []
    # Listing a channel starts nothing.
    assert sim.counters["start"] == 0
    assert await (await client.get("/ace/status")).json() == {"streams": 0}

    # The links are the ones that play: the first channel's MPEG-TS URL, as a player opens it.
    first = channels[0]["links"]
    assert isinstance(first, dict)
    player = await client.get(first["Play"])
    assert player.status == 200 and "text/html" in player.headers["Content-Type"]
    async with client.get(first[f"/ace/getstream?id={DEMO_IDS[0]}"]) as ts:
        assert ts.status == 200
        assert (await ts.content.readexactly(188 * 50))[::188] == b"\x47" * 50
        doc = parse(await (await client.get("/")).text())
        (row,) = stream_rows(doc)
        assert words(row["Channel"].iter("a")[0].text) == DEMO_IDS[0]
        assert words(row["Players"].text).startswith("1 MPEG-TS")
        assert [c["key"] for c in listed_channels(doc)] == [*DEMO_IDS[1:], DEMO_COLD_ID]
        assert summary(doc)["Channels"] == "1"
    assert sim.counters["start"] == 1


async def test_without_the_demo_the_page_lists_only_what_plays(
    proxy: ProxyFactory, sim: RunningSim
) -> None:
    client = await proxy()

    doc = parse(await (await client.get("/")).text())
    assert listed_channels(doc) == []
    assert stream_rows(doc) == []
    text = words(doc.text)
    assert "No channels playing" in text
    assert "/ace/getstream?id=<content id>" in text
    assert not any(content_id in text for content_id in (*DEMO_IDS, DEMO_COLD_ID))
