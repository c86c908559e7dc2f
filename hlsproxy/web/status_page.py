"""The status page and the player page, rendered from plain data to HTML.

Pure: no I/O and no clock; the caller gathers a `StatusSnapshot` and serves the string.
Both pages stand alone, with inline CSS, inline SVG and a few lines of inline script, and
load nothing from anywhere: a home server may have no internet, and a page that fetches
third-party assets would tell a CDN who watches what.

Every string taken from data is escaped where it lands; content keys and labels come from
whoever typed a URL into a player.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import urlsplit

from ..throughput import Sample

# --- data in -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamRow:
    key: str
    """The content id or infohash, or a short hash for url= content."""
    key_type: str
    """content_id, infohash, url, ..."""
    mode: str
    """"ts" or "hls"."""
    state: str
    """starting, live or closing."""
    engine: str
    """A label such as "engine 127.0.0.1:6878"."""
    clients: int
    """TS clients, or HLS viewers seen recently."""
    uptime: float
    """Seconds."""
    bitrate_in: float
    """Bits per second from the engine."""
    bitrate_out: float
    """Bits per second to clients."""
    cache_hit_ratio: float | None
    """HLS only: the share of segment requests served from the cache, 0 to 1."""
    last_data_age: float | None
    """Seconds since the last upstream data."""
    player_url: str
    """The player page for this stream, such as "/player?id=<key>"."""
    stream_url: str
    """The URL a player would open (/ace/getstream?id=... or the manifest)."""


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


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _href(url: str) -> str | None:
    """The URL escaped for an href, or None for a scheme that would run script (javascript:)."""
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    if scheme not in ("", "http", "https"):
        return None
    return _e(url)


def _class_attr(cls: str) -> str:
    return f' class="{cls}"' if cls else ""


def _link(url: str, text: str, *, cls: str = "") -> str:
    href = _href(url)
    if href is None:
        return _e(text)
    return f'<a{_class_attr(cls)} href="{href}">{_e(text)}</a>'


def _token(value: str, known: Iterable[str]) -> str:
    """A value as a CSS class suffix, from a closed set so that data never writes markup."""
    return value if value in known else "other"


# --- the page ------------------------------------------------------------------------------------

_CSS = """
:root {
  color-scheme: light dark;
  --bg: #f7f7f8; --fg: #1b1c1f; --muted: #60646c; --card: #ffffff; --line: #dcdde1;
  --in: #1f6fd1; --out: #c2410c; --ok: #15803d; --warn: #b45309; --bad: #b91c1c;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #121316; --fg: #e6e7ea; --muted: #9a9ea6; --card: #1c1d21; --line: #33353b;
    --in: #5ea1f5; --out: #fb8a4c; --ok: #4ade80; --warn: #fbbf24; --bad: #f87171;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; padding: 1rem; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
main, header { max-width: 78rem; margin: 0 auto; }
h1 { font-size: 1.4rem; margin: 0 0 .5rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
a { color: var(--in); }
code {
  font: .9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: anywhere;
}
.muted { color: var(--muted); font-size: .85em; }
.summary { display: flex; flex-wrap: wrap; gap: .5rem; margin: 0; padding: 0; }
.summary div {
  background: var(--card); border: 1px solid var(--line); border-radius: .5rem;
  padding: .4rem .75rem; min-width: 7rem;
}
.summary dt { color: var(--muted); font-size: .8rem; }
.summary dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: .5rem; }
.scroll { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; }
th, td {
  text-align: left; padding: .45rem .6rem; border-bottom: 1px solid var(--line);
  vertical-align: top;
}
th { color: var(--muted); font-weight: 500; font-size: .85rem; white-space: nowrap; }
tr:last-child td { border-bottom: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.key { min-width: 12rem; }
td.links { min-width: 15rem; }
.key a { overflow-wrap: anywhere; }
.badge {
  display: inline-block; padding: 0 .45rem; border-radius: 1rem; font-size: .8rem;
  border: 1px solid;
}
.state-live, .health-healthy { color: var(--ok); }
.state-starting, .health-unknown, .state-other, .health-other { color: var(--warn); }
.state-closing, .health-unhealthy { color: var(--bad); }
.stale { color: var(--bad); font-weight: 600; }
.load {
  display: block; height: .3rem; background: var(--line); border-radius: .2rem; margin-top: .2rem;
  max-width: 10rem;
}
.load span { display: block; height: 100%; background: var(--in); border-radius: .2rem; }
.load.full span { background: var(--bad); }
.empty { padding: 1rem; }
.empty p { margin: .3rem 0; }
.graph { padding: .75rem; margin: 0; }
.legend { display: flex; flex-wrap: wrap; gap: .25rem 1.5rem; margin-bottom: .5rem; }
.swatch {
  display: inline-block; width: 1.2rem; height: .2rem; border-radius: .1rem;
  vertical-align: middle; margin-right: .4rem;
}
.swatch.in { background: var(--in); }
.swatch.out { background: var(--out); }
.graph svg { display: block; width: 100%; max-width: 48rem; height: auto; }
/* SVG text is sized in the drawing's own units, which shrink with the drawing: the steps
   below keep labels near 12 px on screen from a desktop down to a small phone. */
.graph text {
  fill: var(--muted); font-family: system-ui, sans-serif; font-size: 8.5px;
  paint-order: stroke; stroke: var(--card); stroke-width: 3px; stroke-linejoin: round;
}
.graph .axis { stroke: var(--muted); stroke-width: 1; vector-effect: non-scaling-stroke; }
.graph .grid {
  stroke: var(--line); stroke-width: 1; stroke-dasharray: 4 4; vector-effect: non-scaling-stroke;
}
.graph polyline {
  fill: none; stroke-width: 2; stroke-linejoin: round; vector-effect: non-scaling-stroke;
}
.graph .in { stroke: var(--in); }
.graph .out { stroke: var(--out); }
.graph circle.in { fill: var(--in); stroke: none; }
.graph circle.out { fill: var(--out); stroke: none; }
@media (max-width: 720px) {
  body { padding: .6rem; }
  .graph text { font-size: 11px; }
  table.rows thead { display: none; }
  table.rows tr { display: block; border-bottom: 1px solid var(--line); padding: .3rem 0; }
  table.rows tr:last-child { border-bottom: 0; }
  table.rows td {
    display: block; position: relative; min-width: 0; border: 0;
    padding: .2rem .6rem .2rem 7.5rem; text-align: left; white-space: normal;
  }
  table.rows td::before {
    content: attr(data-label); position: absolute; left: .6rem; top: .2rem;
    color: var(--muted);
  }
}
@media (max-width: 540px) { .graph text { font-size: 15px; } }
@media (max-width: 400px) { .graph text { font-size: 17px; } }
"""


def render_status_page(snapshot: StatusSnapshot) -> str:
    """The whole status page as one HTML5 document."""
    streams = snapshot.streams
    clients = sum(row.clients for row in streams)
    # The header adds up the table below it, so the two always agree.
    bits_in = sum(row.bitrate_in for row in streams)
    bits_out = sum(row.bitrate_out for row in streams)
    refresh = (
        f'<meta http-equiv="refresh" content="{snapshot.refresh_seconds}">\n'
        if snapshot.refresh_seconds > 0
        else ""
    )
    plural = "stream" if len(streams) == 1 else "streams"
    summary = "".join(
        f"<div><dt>{_e(name)}</dt><dd>{_e(value)}</dd></div>"
        for name, value in (
            ("Version", snapshot.version),
            ("Uptime", format_duration(snapshot.uptime)),
            ("Streams", str(len(streams))),
            ("Clients", str(clients)),
            ("In", format_bitrate(bits_in)),
            ("Out", format_bitrate(bits_out)),
        )
    )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n'
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        f"{refresh}"
        f"<title>hlsproxy · {len(streams)} {plural}</title>\n"
        f"<style>{_CSS}</style>\n"
        "</head>\n<body>\n"
        f'<header>\n<h1>hlsproxy</h1>\n<dl class="summary">{summary}</dl>\n</header>\n'
        "<main>\n"
        '<section>\n<h2 id="streams">Streams</h2>\n'
        f"{_streams_table(streams)}\n</section>\n"
        '<section>\n<h2 id="throughput">Throughput</h2>\n'
        f"{render_throughput_graph(snapshot.history)}\n"
        "</section>\n"
        '<section>\n<h2 id="engines">Engines</h2>\n'
        f"{_engines_table(snapshot.engines)}\n</section>\n"
        "</main>\n</body>\n</html>\n"
    )


_STREAM_COLUMNS = (
    ("Stream", "key"),
    ("Mode", ""),
    ("State", ""),
    ("Engine", ""),
    ("Clients", "num"),
    ("Uptime", "num"),
    ("In", "num"),
    ("Out", "num"),
    ("Cache hits", "num"),
    ("Last data", "num"),
    ("Links", "links"),
)


def _streams_table(rows: Sequence[StreamRow]) -> str:
    if not rows:
        return (
            '<div class="card empty">\n'
            "<p><strong>No streams playing</strong></p>\n"
            '<p class="muted">Open <code>/ace/getstream?id=&lt;content id&gt;</code> (MPEG-TS) or '
            "<code>/ace/manifest.m3u8?id=&lt;content id&gt;</code> (HLS) in a player such as "
            "VLC or mpv, or <code>/player?id=&lt;content id&gt;</code> in this browser. "
            "<code>infohash=</code> works in place of <code>id=</code>.</p>\n"
            "</div>"
        )
    head = "".join(f"<th>{_e(name)}</th>" for name, _ in _STREAM_COLUMNS)
    body = "\n".join(_stream_row(row) for row in rows)
    return (
        '<div class="card scroll"><table class="rows">\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>"
    )


def _stream_row(row: StreamRow) -> str:
    age = format_age(row.last_data_age)
    if row.last_data_age is not None and row.last_data_age > STALE_AFTER:
        age = f'<span class="stale">{_e(age)}</span>'
    else:
        age = _e(age)
    state = _token(row.state, ("starting", "live", "closing"))
    cells = (
        f'{_link(row.player_url, row.key)}<br><span class="muted">{_e(row.key_type)}</span>',
        _e(row.mode.upper()),
        f'<span class="badge state-{state}">{_e(row.state)}</span>',
        _e(row.engine),
        _e(row.clients),
        _e(format_duration(row.uptime)),
        _e(format_bitrate(row.bitrate_in)),
        _e(format_bitrate(row.bitrate_out)),
        _e(format_percent(row.cache_hit_ratio)),
        age,
        f"{_link(row.player_url, 'Play')}<br>"
        f"<code>{_link(row.stream_url, row.stream_url, cls='url')}</code>",
    )
    tds = "".join(
        f'<td data-label="{_e(name)}"{_class_attr(cls)}>{cell}</td>'
        for (name, cls), cell in zip(_STREAM_COLUMNS, cells, strict=True)
    )
    return f"<tr>{tds}</tr>"


def _engines_table(rows: Sequence[EngineRow]) -> str:
    if not rows:
        return '<div class="card empty"><p>No engines known yet.</p></div>'
    body = "\n".join(_engine_row(row) for row in rows)
    return (
        '<div class="card scroll"><table class="rows">\n'
        "<thead><tr><th>Engine</th><th>Health</th><th>Load</th></tr></thead>\n"
        f"<tbody>\n{body}\n</tbody>\n</table></div>"
    )


def _engine_row(row: EngineRow) -> str:
    health = _token(row.health, ("healthy", "unhealthy", "unknown"))
    if row.capacity is None:
        load = f"{_e(row.streams)} {'stream' if row.streams == 1 else 'streams'}, no limit"
    else:
        # An engine that takes no streams at all is as full as it gets.
        share = min(max(row.streams / row.capacity, 0.0), 1.0) if row.capacity > 0 else 1.0
        full = " full" if row.streams >= row.capacity else ""
        load = (
            f"{_e(row.streams)} / {_e(row.capacity)}"
            f'<span class="load{full}"><span style="width:{share * 100:.0f}%"></span></span>'
        )
    return (
        f'<tr><td data-label="Engine">{_e(row.label)}</td>'
        f'<td data-label="Health"><span class="badge health-{health}">{_e(row.health)}</span></td>'
        f'<td data-label="Load">{load}</td></tr>'
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


def render_throughput_graph(history: Sequence[Sample]) -> str:
    """A figure: a legend with each direction's peak, then an SVG line graph of bits per
    second in and out, whose markup is well-formed XML on its own.

    The legend is HTML rather than SVG text so that it reflows on a narrow screen. Time runs
    along x from the oldest sample to the newest, so a gap in sampling shows as a longer
    straight segment rather than being squeezed out.
    """
    peak_in = max((_finite(s.bits_in) for s in history), default=0.0)
    peak_out = max((_finite(s.bits_out) for s in history), default=0.0)
    peak = max(peak_in, peak_out)
    # An idle history still needs a scale; its lines then lie on the zero axis.
    top = _nice_ceiling(peak) if peak > 0 else 1_000_000.0
    plot_w, plot_h = _RIGHT - _LEFT, _BOTTOM - _TOP

    def y(bits: float) -> float:
        return _BOTTOM - _finite(bits) / top * plot_h

    first = history[0].at if history else 0.0
    span = (history[-1].at - first) if history else 0.0

    def x(at: float) -> float:
        if span <= 0:
            return float(_RIGHT)
        return _LEFT + (at - first) / span * plot_w

    legend = "".join(
        f'<span><span class="swatch {cls}"></span>{_e(name)} · peak '
        f"<strong>{_e(format_bitrate(series_peak))}</strong></span>"
        for cls, name, series_peak in (
            ("in", "In, from engines", peak_in),
            ("out", "Out, to clients", peak_out),
        )
    )
    parts = [
        f'<svg viewBox="0 0 {_W} {_H}" role="img" aria-labelledby="graph-title">',
        '<title id="graph-title">Throughput in and out, bits per second</title>',
    ]
    for frac in (0.0, 0.5, 1.0):
        gy = _BOTTOM - frac * plot_h
        cls = "axis" if frac == 0 else "grid"
        parts.append(
            f'<line class="{cls}" x1="{_LEFT}" y1="{gy:.1f}" x2="{_RIGHT}" y2="{gy:.1f}" />'
        )
    parts.append(f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_BOTTOM}" />')
    if not history:
        parts.append(
            f'<text x="{_LEFT + plot_w / 2:.1f}" y="{_TOP + plot_h / 2:.1f}" '
            'text-anchor="middle">No samples yet</text>'
        )
    for cls, values in (
        ("in", [s.bits_in for s in history]),
        ("out", [s.bits_out for s in history]),
    ):
        if len(history) >= 2:
            points = " ".join(
                f"{x(s.at):.1f},{y(v):.1f}" for s, v in zip(history, values, strict=True)
            )
            parts.append(f'<polyline class="{cls}" points="{points}" />')
        if history:
            # The newest point is marked, which also draws a lone sample that has no line.
            parts.append(
                f'<circle class="{cls}" cx="{x(history[-1].at):.1f}" '
                f'cy="{y(values[-1]):.1f}" r="3" />'
            )
    # Labels last, so that they are painted over the lines.
    for frac in (0.0, 0.5, 1.0):
        label = format_bitrate(top * frac) if frac else "0"
        parts.append(
            f'<text x="{_LEFT + 4}" y="{_BOTTOM - frac * plot_h - 4:.1f}">{_e(label)}</text>'
        )
    oldest = f"{format_duration(span)} ago" if history else ""
    parts.append(
        f'<text x="{_LEFT}" y="{_H - 6}">{_e(oldest)}</text>'
        f'<text x="{_RIGHT}" y="{_H - 6}" text-anchor="end">now</text>'
    )
    parts.append("</svg>")
    return (
        f'<figure class="card graph">\n<figcaption class="legend">{legend}</figcaption>\n'
        f"{''.join(parts)}\n</figure>"
    )


# --- the player page -----------------------------------------------------------------------------

_PLAYER_CSS = """
:root { color-scheme: light dark; --bg: #f7f7f8; --fg: #1b1c1f; --muted: #60646c; --line: #dcdde1;
  --accent: #1f6fd1; --bad: #b91c1c; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #121316; --fg: #e6e7ea; --muted: #9a9ea6; --line: #33353b; --accent: #5ea1f5;
    --bad: #f87171; }
}
* { box-sizing: border-box; }
/* The script hides the video when the browser cannot play HLS; `display: block` below would
   otherwise win over the attribute. */
[hidden] { display: none !important; }
body { margin: 0; padding: 1rem; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 60rem; margin: 0 auto; }
h1 { font-size: 1.2rem; margin: 0 0 .75rem; overflow-wrap: anywhere; }
a { color: var(--accent); }
video { display: block; width: 100%; max-height: 75vh; background: #000; border-radius: .4rem; }
code {
  font: .9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: anywhere;
}
.notice {
  border: 1px solid var(--bad); border-radius: .4rem; padding: .75rem 1rem; margin: .75rem 0;
}
.notice strong { color: var(--bad); }
.reason { color: var(--muted); font-size: .85em; }
.urls { color: var(--muted); }
.urls dd { margin: 0 0 .5rem; }
"""

# Reads its URLs from data attributes, so no value from data is ever spliced into script.
_PLAYER_JS = """
(function () {
  "use strict";
  var video = document.getElementById("video");
  var notice = document.getElementById("notice");
  var reason = document.getElementById("reason");
  var playing = false;
  var error = null;
  var codes = {1: "MEDIA_ERR_ABORTED", 2: "MEDIA_ERR_NETWORK", 3: "MEDIA_ERR_DECODE",
               4: "MEDIA_ERR_SRC_NOT_SUPPORTED"};
  function publish() {
    window.playerState = {playing: playing, currentTime: video.currentTime, error: error};
  }
  function fail(message) {
    error = message;
    playing = false;
    reason.textContent = message;
    notice.hidden = false;
    publish();
  }
  function stopped() { playing = false; publish(); }
  video.addEventListener("playing", function () { playing = true; publish(); });
  ["pause", "waiting", "ended", "emptied"].forEach(function (name) {
    video.addEventListener(name, stopped);
  });
  ["timeupdate", "loadedmetadata", "seeked"].forEach(function (name) {
    video.addEventListener(name, publish);
  });
  video.addEventListener("error", function () {
    var e = video.error;
    fail(e ? (codes[e.code] || "MEDIA_ERR_" + e.code) + (e.message ? ": " + e.message : "")
           : "unknown error");
  });
  publish();
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = video.dataset.hls;
  } else {
    video.hidden = true;
    fail("HLS is not supported natively by this browser");
  }
})();
"""


def render_player_page(*, title: str, hls_url: str, ts_url: str) -> str:
    """A page that plays `hls_url` where the browser plays HLS itself, and otherwise says
    to open `ts_url` in VLC or mpv.

    Sets `window.playerState = {playing, currentTime, error}` on video events, for tests and
    for anyone curious in the console.
    """
    # A URL with a script scheme is left out rather than handed to the video element.
    hls = _href(hls_url) or ""
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n'
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        f"<title>{_e(title)} · hlsproxy</title>\n"
        f"<style>{_PLAYER_CSS}</style>\n"
        "</head>\n<body>\n<main>\n"
        f'<p><a href="/">← Status</a></p>\n<h1>{_e(title)}</h1>\n'
        f'<video id="video" controls autoplay muted playsinline data-hls="{hls}"></video>\n'
        '<div id="notice" class="notice" hidden>\n'
        "<p><strong>This browser cannot play this stream here.</strong></p>\n"
        '<p id="reason" class="reason"></p>\n'
        "<p>Open the MPEG-TS stream in VLC or mpv instead:</p>\n"
        f"<p><code>{_link(ts_url, ts_url)}</code></p>\n"
        "</div>\n"
        '<noscript><p class="notice">This page needs JavaScript to play the stream. '
        f"Open <code>{_link(ts_url, ts_url)}</code> in VLC or mpv instead.</p></noscript>\n"
        '<dl class="urls">\n'
        f"<dt>HLS</dt><dd><code>{_link(hls_url, hls_url)}</code></dd>\n"
        f"<dt>MPEG-TS (VLC, mpv)</dt><dd><code>{_link(ts_url, ts_url)}</code></dd>\n"
        "</dl>\n"
        "</main>\n"
        f"<script>{_PLAYER_JS}</script>\n"
        "</body>\n</html>\n"
    )
