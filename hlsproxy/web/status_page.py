"""The status page and the player page, rendered from plain data to HTML.

The caller gathers a `StatusSnapshot` and serves the string; this module reads no clock and
does no I/O beyond its own package's templates. Both pages load only the proxy's own
stylesheet and script (see :mod:`.assets`) and nothing from anywhere else: a home server may
have no internet, and a page that fetches third-party assets would tell a CDN who watches what.

The templates escape every value that lands in them; content keys and labels come from
whoever typed a URL into a player.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined

from ..throughput import Sample
from .assets import asset_url

# --- data in -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One channel, however many formats it is played in."""

    key: str
    """The content id or infohash, or a short hash for url= content."""
    key_type: str
    """content_id, infohash, url, ..."""
    source: str
    """Where its players' media comes from: "MPEG-TS session", "HLS session; MPEG-TS from
    its segments", ..."""
    state: str
    """starting, prebuffering, live, recovering or closing."""
    engine: str
    """A label such as "engine 127.0.0.1:6878"."""
    players: tuple[tuple[str, int], ...]
    """Players by kind, such as (("HLS", 2), ("MPEG-TS", 1)): MPEG-TS clients connected,
    HLS players seen recently."""
    uptime: float
    """Seconds."""
    bitrate_in: float
    """Bits per second read from the engine (playlists and segments included)."""
    bitrate_out: float
    """Bits per second to clients."""
    cache_hit_ratio: float | None
    """HLS only: the share of segment requests served from the cache, 0 to 1."""
    last_data_age: float | None
    """Seconds since the last upstream data."""
    player_url: str
    """The player page for this stream, such as "/player?id=<key>"."""
    stream_urls: tuple[str, ...]
    """The URLs a player would open (/ace/manifest.m3u8?id=..., /ace/getstream?id=...)."""
    waiting: str | None = None
    """While the engine's first media is awaited: for how long, and what the engine says."""
    engine_status: str | None = None
    """What the engine's stat says of the session ("dl", "prebuf", ...), once it said."""
    peers: int = 0
    download: float = 0.0
    """The engine's download speed for the session, in bits per second."""

    @property
    def clients(self) -> int:
        return sum(n for _, n in self.players)


@dataclass(frozen=True, slots=True)
class ListedChannel:
    """A channel listed before anyone plays it (the demo's), with the links that start it."""

    key: str
    player_url: str
    stream_urls: tuple[tuple[str, str], ...]
    """The URLs a player would open, by kind: (("MPEG-TS", "/ace/getstream?id=..."), ...)."""
    prebuffer: float = 0.0
    """Seconds its engine prebuffers it when it is first opened, when that is known; else 0."""


@dataclass(frozen=True, slots=True)
class EngineRow:
    label: str
    """The engine's name; never its address, which is no business of the page's readers."""
    health: str
    """healthy, unhealthy or unknown."""
    streams: int
    capacity: int | None
    """How many streams the engine takes; None when it has no known limit."""


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    version: str
    uptime: float
    """Seconds since the proxy started."""
    refresh_seconds: int
    """How often the page reloads itself; 0 or less turns reloading off."""
    streams: tuple[StreamRow, ...]
    engines: tuple[EngineRow, ...]
    history: tuple[Sample, ...]
    """The proxy's throughput, oldest first."""
    listed: tuple[ListedChannel, ...] = ()
    """Channels offered to play that nobody plays now: each is in `streams` or here."""


# --- human units ---------------------------------------------------------------------------------

NONE = "—"
# Upstream data older than this is flagged on the page: a live stream sends data every second.
STALE_AFTER = 10.0
_BIT_UNITS = ("bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s")


def format_bitrate(bits_per_second: float) -> str:
    """Decimal units, as network speeds are quoted: "4.2 Mbit/s", "850 kbit/s", "0 bit/s"."""
    if not math.isfinite(bits_per_second):
        return NONE
    value = max(bits_per_second, 0.0)
    unit = 0
    while True:
        digits = 0 if unit == 0 or round(value, 1) >= 100 else 1
        # Moving up only once the rounded figure reaches 1000 turns 999.96 kbit/s into
        # "1.0 Mbit/s" rather than "1000 kbit/s".
        if round(value, digits) < 1000 or unit == len(_BIT_UNITS) - 1:
            return f"{value:.{digits}f} {_BIT_UNITS[unit]}"
        value /= 1000
        unit += 1


def format_duration(seconds: float) -> str:
    """The two largest units: "45s", "5m 07s", "1h 02m", "3d 04h"."""
    if not math.isfinite(seconds):
        return NONE
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_percent(ratio: float | None) -> str:
    """A ratio from 0 to 1 as "87 %", or "—" when there is nothing to measure."""
    if ratio is None or not math.isfinite(ratio):
        return NONE
    return f"{round(min(max(ratio, 0.0), 1.0) * 100)} %"


def format_age(seconds: float | None) -> str:
    """How long ago: "0.4s ago" under a minute, "2m 05s ago" beyond."""
    if seconds is None or not math.isfinite(seconds):
        return NONE
    if seconds < 60:
        return f"{max(seconds, 0.0):.1f}s ago"
    return f"{format_duration(seconds)} ago"


def _safe_url(url: str) -> bool:
    """False for a URL whose scheme would run script (javascript:)."""
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return False
    return scheme in ("", "http", "https")


def _known(value: str, known: Sequence[str]) -> str:
    """A value as a CSS class suffix, from a closed set so that data never writes markup."""
    return value if value in known else "other"


def _load_share(row: EngineRow) -> float:
    if row.capacity is None or row.capacity <= 0:
        # An engine that takes no streams at all is as full as it gets.
        return 1.0
    return min(max(row.streams / row.capacity, 0.0), 1.0)


def _is_stale(age: float | None) -> bool:
    return age is not None and age > STALE_AFTER


_PAGES = Environment(
    loader=PackageLoader(__package__ or "hlsproxy.web", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_PAGES.filters.update(
    bitrate=format_bitrate,
    duration=format_duration,
    percent=format_percent,
    age=format_age,
    known=_known,
    load_share=_load_share,
)
_PAGES.tests.update(safe_url=_safe_url, stale=_is_stale)


def _render(page: str, token: str, **context: object) -> str:
    """A whole page, styled by the stylesheet of its own name; ``token`` is carried to the
    assets it names, for a proxy that needs one."""
    stylesheet = page.replace(".html", ".css")
    return _PAGES.get_template(page).render(
        asset=lambda name: asset_url(name, token), stylesheet=stylesheet, **context
    )


# --- the status page -----------------------------------------------------------------------------


def render_status_page(snapshot: StatusSnapshot, *, token: str = "") -> str:
    """The whole status page as one HTML5 document; ``token`` is carried to its stylesheet."""
    streams = snapshot.streams
    summary = (
        ("Version", snapshot.version),
        ("Uptime", format_duration(snapshot.uptime)),
        ("Channels", str(len(streams))),
        ("Players", str(sum(row.clients for row in streams))),
        # The header adds up the table below it, so the two always agree.
        ("In", format_bitrate(sum(row.bitrate_in for row in streams))),
        ("Out", format_bitrate(sum(row.bitrate_out for row in streams))),
    )
    return _render(
        "status.html",
        token,
        snapshot=snapshot,
        summary=summary,
        streams=streams,
        listed=snapshot.listed,
        engines=snapshot.engines,
        states=("starting", "prebuffering", "live", "closing"),
        healths=("healthy", "unhealthy", "unknown"),
        graph=_graph(snapshot.history),
    )


# --- the graph -----------------------------------------------------------------------------------

# The drawing's own units; labels sit inside the plot, above their grid lines, so that they
# need no margin whatever size the page gives them.
_W, _H = 480, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 4, 476, 26, 204


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above `value` (> 0)."""
    step = 10.0 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5):
        if value <= factor * step:
            return factor * step
    return 10 * step


def _finite(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 0.0


def _f(value: float) -> str:
    return f"{value:.1f}"


def _graph(history: Sequence[Sample]) -> dict[str, object]:
    """The drawing of the throughput graph, every coordinate a string in drawing units.

    Time runs along x from the oldest sample to the newest, so a gap in sampling shows as a
    longer straight segment rather than being squeezed out.
    """
    peak_in = max((_finite(s.bits_in) for s in history), default=0.0)
    peak_out = max((_finite(s.bits_out) for s in history), default=0.0)
    peak = max(peak_in, peak_out)
    # An idle history still needs a scale; its lines then lie on the zero axis.
    top = _nice_ceiling(peak) if peak > 0 else 1_000_000.0
    plot_w, plot_h = _RIGHT - _LEFT, _BOTTOM - _TOP
    first = history[0].at if history else 0.0
    span = (history[-1].at - first) if history else 0.0

    def point(at: float, bits: float) -> dict[str, str]:
        x = _RIGHT if span <= 0 else _LEFT + (at - first) / span * plot_w
        return {"x": _f(x), "y": _f(_BOTTOM - _finite(bits) / top * plot_h)}

    lines = [
        {"cls": "axis" if frac == 0 else "grid", "x1": str(_LEFT), "x2": str(_RIGHT)}
        | {"y1": _f(_BOTTOM - frac * plot_h), "y2": _f(_BOTTOM - frac * plot_h)}
        for frac in (0.0, 0.5, 1.0)
    ]
    lines.append(
        {"cls": "axis", "x1": str(_LEFT), "y1": str(_TOP), "x2": str(_LEFT), "y2": str(_BOTTOM)}
    )
    series = []
    for cls, values in (
        ("in", [s.bits_in for s in history]),
        ("out", [s.bits_out for s in history]),
    ):
        points = [point(s.at, v) for s, v in zip(history, values, strict=True)]
        series.append(
            {
                "cls": cls,
                "points": " ".join(f"{p['x']},{p['y']}" for p in points)
                if len(points) >= 2
                else "",
                "newest": points[-1] if points else None,
            }
        )
    labels = [
        {
            "x": str(_LEFT + 4),
            "y": _f(_BOTTOM - frac * plot_h - 4),
            "text": format_bitrate(top * frac) if frac else "0",
            "anchor": "",
        }
        for frac in (0.0, 0.5, 1.0)
    ]
    oldest = f"{format_duration(span)} ago" if history else ""
    labels.append({"x": str(_LEFT), "y": str(_H - 6), "text": oldest, "anchor": ""})
    labels.append({"x": str(_RIGHT), "y": str(_H - 6), "text": "now", "anchor": "end"})
    return {
        "width": _W,
        "height": _H,
        "legend": (
            {"cls": "in", "name": "In, from engines", "peak": format_bitrate(peak_in)},
            {"cls": "out", "name": "Out, to clients", "peak": format_bitrate(peak_out)},
        ),
        "lines": lines,
        "empty": None if history else {"x": _f(_LEFT + plot_w / 2), "y": _f(_TOP + plot_h / 2)},
        "series": series,
        "labels": labels,
    }


def render_throughput_graph(history: Sequence[Sample]) -> str:
    """A figure: a legend with each direction's peak, then an SVG line graph of bits per
    second in and out, whose markup is well-formed XML on its own.

    The legend is HTML rather than SVG text so that it reflows on a narrow screen.
    """
    return _PAGES.get_template("graph.html").render(graph=_graph(history))


# --- the player page -----------------------------------------------------------------------------


def render_player_page(
    *, title: str, hls_url: str, ts_url: str, token: str = "", refused: str = ""
) -> str:
    """A page that plays `hls_url` where the browser plays HLS itself, and otherwise says
    to open `ts_url` in VLC or mpv; ``token`` is carried to its stylesheet and script.
    With ``refused`` (why the address names no stream), it says that instead of playing.

    Its script sets `window.playerState = {playing, currentTime, error}` on video events, for
    tests and for anyone curious in the console.
    """
    return _render(
        "player.html",
        token,
        title=title,
        hls_url=hls_url,
        ts_url=ts_url,
        refused=refused,
    )
