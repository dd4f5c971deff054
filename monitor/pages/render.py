"""The pages' HTML: the status page, the event page and the 404 page. Pure functions of the data
they are given (no I/O, no clock: `now` is passed in), so that they run in a worker thread and
are tested with plain inputs.

Every string that comes from data (entity names, targets, annotations, error texts) goes
through `html.escape`; links taken from annotations are made clickable only when they are
http(s). No inline script and no `style=` attribute anywhere: the Content-Security-Policy
allows scripts and styles from 'self' only.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit

from monitor.detect.model import EventRecord
from monitor.detect.times import iso
from monitor.pages import chart, story
from monitor.pages.chart import Sample
from monitor.pages.model import Annotations, Point

esc = html.escape

REFRESH_SECONDS = 15
DAY = 86400.0
# Grafana dashboards of grafana/dashboards/ (their uid) linked from the event page.
DASHBOARDS = (("dprk-overview", "Overview"), ("dprk-target", "Target drill-down"))


# Draws a timeline: (svg id, samples, t0, t1, title) -> SVG (chart.strip_svg, or a cache of it).
Strip = Callable[[str, Sequence[Sample], float, float, str], str]


@dataclass(frozen=True, slots=True)
class Timelines:
    """An entity's history for the status page: None when there is no history store at all,
    an empty list when it holds nothing yet for that range; `error` when reading failed;
    `last` the newest point (its block beliefs are shown)."""

    day: Sequence[Sample] | None = None
    week: Sequence[Sample] | None = None
    error: str | None = None
    last: Point | None = None


def window(now: float, span: float) -> tuple[float, float]:
    """A timeline's range: `span` up to now, its end rounded up to a pixel's worth of time
    (within a pixel of now), so that refreshes in that pixel draw the same picture."""
    q = max(1.0, float(int(span // chart.STRIP_PLOT)))
    t1 = math.ceil(now / q) * q
    return t1 - span, t1


@dataclass(frozen=True, slots=True)
class StatusData:
    status: Mapping[str, object]
    latest: Sequence[EventRecord] = ()
    timelines: Mapping[str, Timelines] = field(default_factory=dict)
    events_error: str | None = None


def _page(title: str, body: str, *, refresh: bool = False, page: str = "") -> str:
    noscript = (
        f'<noscript><meta http-equiv="refresh" content="{REFRESH_SECONDS * 2}"></noscript>'
        if refresh
        else ""
    )
    data = f' data-refresh="{REFRESH_SECONDS}"' if refresh else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{esc(title)}</title>"
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/pages.css">'
        '<script src="/static/pages.js" defer></script>'
        f'{noscript}</head><body{data} data-page="{esc(page)}">'
        '<header class="top"><a class="home" href="/">dprk-outage-monitor</a>'
        '<nav><a href="/api/v1/status">status JSON</a> <a href="/api/v1/outages">outages JSON</a>'
        ' <a href="/metrics">metrics</a></nav></header>'
        f'<main id="main">{body}</main></body></html>'
    )


def _when(t: float | None, now: float) -> str:
    """A UTC time with how long ago, in a <time> element."""
    if t is None:
        return "—"
    ago = story.duration_words(max(0.0, now - t))
    return f'{_time(t)} <span class="ago">({esc(ago)} ago)</span>'


def _human(t: float) -> str:
    return iso(t).replace("T", " ").replace("Z", " UTC")


def _time(t: float | None) -> str:
    if t is None:
        return "—"
    return f'<time datetime="{esc(iso(t))}">{esc(_human(t))}</time>'


def _badge(state: str) -> str:
    return f'<span class="badge s-{esc(state)}">{esc(state)}</span>'


def _num(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


def _meter(label: str, value: float | None) -> str:
    if value is None:
        return f'<span class="muted">{esc(label)}: unknown</span>'
    pct = f"{value:.0%}"
    return (
        f'<span class="meter-row"><span class="mlabel">{esc(label)}</span>'
        f'<meter min="0" max="1" low="0.5" high="0.9" optimum="1" value="{value:.4f}" '
        f'aria-label="{esc(label)} {pct}">{pct}</meter> <span class="pct">{pct}</span></span>'
    )


def _parse(s: object) -> float | None:
    from monitor.detect.evidence import time_or_none

    return time_or_none(s)


# --- status page ------------------------------------------------------------------------------


def _kinds_table(ent: Mapping[str, object]) -> str:
    targets = ent.get("targets")
    if not isinstance(targets, dict) or not targets:
        return '<p class="muted">No targets.</p>'
    rows = []
    for kind, counts in targets.items():
        c = counts if isinstance(counts, dict) else {}
        up, down, never = (int(c.get(k, 0) or 0) for k in ("up", "down", "never_answered"))
        total = up + down + never
        rows.append(
            f'<tr><th scope="row">{esc(str(kind))}</th><td>{up}/{total}</td>'
            f'<td class="{"bad" if down else ""}">{down}</td><td>{never}</td></tr>'
        )
    return (
        '<table class="kinds"><caption>Targets per kind</caption><thead><tr><th scope="col">kind'
        '</th><th scope="col">up/total</th><th scope="col">down</th>'
        '<th scope="col">never answered</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )


def _blocks(ent: Mapping[str, object], last: Point | None) -> str:
    signals = ent.get("signals")
    sig = signals if isinstance(signals, dict) else {}
    counts = sig.get("blocks")
    parts = []
    if isinstance(counts, dict) and counts:
        summary = ", ".join(f"{esc(str(k))} {int(v)}" for k, v in counts.items() if v)
        parts.append(f"<p>Blocks: {summary or 'none'}</p>")
    beliefs: dict[str, float | None] = {}
    if last is not None:
        beliefs.update({b: _num(v) for b, v in sorted(last.blocks.items())})
    not_up = sig.get("blocks_not_up")
    if isinstance(not_up, dict):
        for b, info in not_up.items():
            beliefs[str(b)] = _num(info.get("belief")) if isinstance(info, dict) else None
    if beliefs:
        parts.append(
            '<div class="meters" aria-label="block belief"><span class="mhead">Block belief</span>'
            + "".join(_meter(b, v) for b, v in beliefs.items())
            + "</div>"
        )
    return "".join(parts)


def _bgp(ent: Mapping[str, object]) -> str:
    signals = ent.get("signals")
    vis = signals.get("bgp_visibility") if isinstance(signals, dict) else None
    if not isinstance(vis, dict) or not vis:
        return '<p class="muted">BGP visibility: not followed.</p>'
    return (
        '<div class="meters" aria-label="BGP visibility"><span class="mhead">BGP visibility'
        "</span>" + "".join(_meter(str(p), _num(v)) for p, v in vis.items()) + "</div>"
    )


def _timeline(name: str, idx: int, tl: Timelines | None, now: float, strip: Strip) -> str:
    if tl is None or (tl.day is None and tl.week is None and tl.error is None):
        return '<p class="note">No history yet: the timeline appears once the history is kept.</p>'
    if tl.error is not None:
        return f'<p class="note">History unavailable: {esc(tl.error)}</p>'
    out = []
    for label, pts, span, key in (
        ("last 24 h", tl.day, DAY, "day"),
        ("last 7 days", tl.week, 7 * DAY, "week"),
    ):
        if not pts:
            out.append(f'<p class="note">{esc(label)}: no history yet.</p>')
            continue
        t0, t1 = window(now, span)
        svg = strip(f"tl-{idx}-{key}", pts, t0, t1, f"{name}, {label}")
        out.append(
            f'<figure class="timeline"><figcaption>{esc(label)} (UTC)</figcaption>{svg}</figure>'
        )
    return "".join(out)


def status_html(data: StatusData, now: float, strip: Strip = chart.strip_svg) -> str:
    st = data.status
    healthy = bool(st.get("vantage_healthy"))
    vantage = (
        '<span class="badge s-up">vantage healthy</span>'
        if healthy
        else '<span class="badge s-down">vantage OFFLINE: our own uplink fails, states unknown'
        "</span>"
    )
    extra = []
    bgp = st.get("bgp")
    if isinstance(bgp, dict):
        extra.append(
            f'<span class="badge s-{"up" if bgp.get("connected") else "unknown"}">BGP feed '
            f"{'connected' if bgp.get('connected') else 'disconnected'}</span>"
        )
    log = st.get("event_log")
    if isinstance(log, dict) and not log.get("healthy", True):
        extra.append(
            f'<span class="badge s-down">event log failing: {esc(str(log.get("error")))}</span>'
        )
    head = (
        '<section class="summary" aria-label="vantage"><h1>Status</h1>'
        f'<p class="badges">{vantage} {" ".join(extra)}</p>'
        f'<p class="muted">Updated {_time(now)}; refreshes every {REFRESH_SECONDS} s.</p></section>'
    )
    cards = []
    ents = st.get("entities")
    for i, ent in enumerate(ents if isinstance(ents, list) else []):
        if not isinstance(ent, dict):
            continue
        name = str(ent.get("name"))
        state = str(ent.get("state"))
        signals = ent.get("signals") if isinstance(ent.get("signals"), dict) else {}
        assert isinstance(signals, dict)
        ev = signals.get("event")
        open_ev = ""
        if isinstance(ev, dict) and ev.get("id"):
            open_ev = (
                '<p class="open-event">Open event: '
                f'<a href="/outages/{quote(str(ev["id"]), safe="")}">'
                f"{esc(str(ev.get('kind')))} since {_time(_parse(ev.get('start')))}</a></p>"
            )
        tl = data.timelines.get(name)
        last = tl.last if tl is not None else None
        cards.append(
            f'<section class="entity s-{esc(state)}" aria-labelledby="ent-{i}">'
            f'<h2 id="ent-{i}"><span class="name">{esc(name)}</span> {_badge(state)}</h2>'
            f'<p class="since">since {_when(_parse(ent.get("since")), now)}</p>{open_ev}'
            f'<div class="grid"><div>{_kinds_table(ent)}</div>'
            f"<div>{_blocks(ent, last)}{_bgp(ent)}</div></div>"
            f'<div class="timelines">{_timeline(name, i, tl, now, strip)}</div></section>'
        )
    return _page(
        "dprk-outage-monitor: status",
        head + "".join(cards) + _latest(data.latest, data.events_error, now),
        refresh=True,
        page="status",
    )


def _latest(events: Sequence[EventRecord], error: str | None, now: float) -> str:
    if error is not None:
        body = f'<p class="note">Event log unavailable: {esc(error)}</p>'
    elif not events:
        body = '<p class="muted">No outage recorded.</p>'
    else:
        rows = []
        for ev in events:
            end = _time(ev.end) if ev.end is not None else '<span class="badge s-down">open</span>'
            rows.append(
                f'<tr><td><a href="/outages/{quote(ev.id, safe="")}">{_time(ev.start)}</a></td>'
                f"<td>{end}</td><td>{esc(ev.entity)}</td><td>{esc(ev.kind.value)}</td>"
                f"<td>{esc(story.duration_words(ev.duration(now)))}</td></tr>"
            )
        body = (
            '<div class="scroll"><table class="events"><thead><tr><th scope="col">start</th>'
            '<th scope="col">end</th><th scope="col">entity</th><th scope="col">kind</th>'
            '<th scope="col">duration</th></tr></thead><tbody>'
            + "".join(rows)
            + "</tbody></table></div>"
        )
    return (
        '<section class="latest" aria-labelledby="latest-h">'
        f'<h2 id="latest-h">Latest outages</h2>{body}</section>'
    )


# --- event page -------------------------------------------------------------------------------


def chart_range(ev: EventRecord, now: float) -> tuple[float, float]:
    """The time range of the event chart: the event with a margin on both sides (a quarter of
    its length, at least 5 minutes), never past now."""
    end = ev.end if ev.end is not None else now
    pad = max(300.0, (end - ev.start) / 4)
    return ev.start - pad, min(now, end + pad)


def grafana_links(base: str, entity: str, t0: float, t1: float) -> list[tuple[str, str]]:
    root = base.rstrip("/")
    q = urlencode({"from": int(t0 * 1000), "to": int(t1 * 1000), "var-entity": entity})
    return [(f"{root}/d/{uid}?{q}", title) for uid, title in DASHBOARDS]


def _annotations(a: Annotations | None) -> str:
    if a is None or a.empty:
        return ""
    items = []
    if a.cause:
        items.append(f"<p><strong>Cause:</strong> {esc(a.cause)}</p>")
    if a.maintenance:
        items.append('<p><span class="badge s-degraded">planned maintenance</span></p>')
    if a.notes:
        items.append(
            '<ul class="notes">'
            + "".join(
                f"<li>{_time(n.at)}: {esc(n.text)}</li>" if n.at else f"<li>{esc(n.text)}</li>"
                for n in a.notes
            )
            + "</ul>"
        )
    if a.links:
        lis = []
        for link in a.links:
            scheme = urlsplit(link).scheme.lower() if link else ""
            if scheme in ("http", "https"):
                lis.append(
                    f'<li><a href="{esc(link)}" rel="noopener noreferrer">{esc(link)}</a></li>'
                )
            else:
                lis.append(f"<li>{esc(link)}</li>")
        items.append('<ul class="links">' + "".join(lis) + "</ul>")
    return (
        '<section class="annotations" aria-labelledby="ann-h"><h2 id="ann-h">Annotations</h2>'
        + "".join(items)
        + "</section>"
    )


def _path_table(ev: EventRecord) -> str:
    p = ev.evidence.path
    if p is None or not p.hops:
        return ""
    rows = []
    for h in p.hops:
        rtt = "" if h.rtt_ms is None else f"{h.rtt_ms:.1f} ms"
        rows.append(
            f"<tr><td>{'' if h.ttl is None else h.ttl}</td><td>{esc(h.address or '*')}</td>"
            f"<td>{esc(story.hop_owner(h))}</td><td>{esc(rtt)}</td>"
            f"<td>{esc((h.answer or '') + (' ' + h.note if h.note else ''))}</td></tr>"
        )
    return (
        '<div class="scroll"><table class="path"><caption>Path toward '
        f'{esc(p.target)} ({_time(p.started)})</caption><thead><tr><th scope="col">TTL</th>'
        '<th scope="col">address</th><th scope="col">owner</th><th scope="col">RTT</th>'
        '<th scope="col">answer</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>"
    )


def event_html(
    ev: EventRecord,
    points: Sequence[Sample] | None,
    now: float,
    *,
    annotations: Annotations | None = None,
    grafana_url: str | None = None,
    history_error: str | None = None,
) -> str:
    t0, t1 = chart_range(ev, now)
    eid = quote(ev.id, safe="")
    state = "open" if ev.end is None else ("recovering" if ev.recovering else "closed")
    dur = story.duration_words(ev.duration(now))
    head = (
        f'<section class="event-head"><h1>{esc(ev.kind.value)} outage of '
        f'<span class="name">{esc(ev.entity)}</span></h1>'
        f'<p class="badges">{_badge("down" if ev.end is None else "up")} '
        f'<span class="muted">{esc(state)}</span></p>'
        '<dl class="facts">'
        f"<dt>start</dt><dd>{_time(ev.start)}</dd>"
        f"<dt>end</dt><dd>{_time(ev.end) if ev.end is not None else 'still open'}</dd>"
        f"<dt>duration</dt><dd>{esc(dur)}</dd>"
        f"<dt>id</dt><dd><code>{esc(ev.id)}</code></dd></dl></section>"
    )
    lines = story.tell(ev, now)
    items = "".join(
        f'<li class="t-{esc(ln.topic)}">'
        + (f"{_time(ln.t)} " if ln.t is not None else "")
        + f"{esc(ln.text)}</li>"
        for ln in lines
    )
    story_html = (
        '<section class="story" aria-labelledby="story-h"><h2 id="story-h">What happened</h2>'
        f'<ol class="story-list">{items}</ol>{_path_table(ev)}</section>'
    )
    markers = [chart.Marker(ev.start, "start", chart.SPAN_COLOUR)]
    for kind, t in story.first_failed_times(ev)[:3]:
        markers.append(chart.Marker(t, f"{kind} failed", chart.KIND_COLOURS.get(kind, "#37474f")))
    if ev.end is not None:
        markers.append(chart.Marker(ev.end, "end", chart.STATE_COLOURS["up"]))
    blind = [(iv.start, iv.end) for iv in ev.evidence.vantage_blind]
    if points:
        # Not before the history begins (a daemon started just before the event): an empty
        # stretch would squeeze the event into a corner.
        t0 = max(t0, min(p.t for p in points))
        svg = chart.event_svg(
            "event-chart",
            points,
            t0,
            t1,
            title=f"{ev.entity}: {ev.kind.value} from {_human(ev.start)}",
            span=(ev.start, ev.end),
            blind=blind,
            markers=markers,
        )
        fig = (
            f'<figure class="event-chart">{svg}<figcaption>Signals from {_time(t0)} to '
            f"{_time(t1)}.</figcaption></figure>"
            '<p class="export"><button type="button" data-export="svg" data-target="event-chart" '
            f'data-name="outage-{esc(ev.id)}">Download SVG</button> '
            '<button type="button" data-export="png" data-target="event-chart" '
            f'data-name="outage-{esc(ev.id)}">Download PNG</button></p>'
        )
    elif history_error is not None:
        fig = f'<p class="note">History unavailable: {esc(history_error)}</p>'
    else:
        fig = (
            '<p class="note">No history yet for this time range: the chart appears when the '
            "history holds points around the event.</p>"
        )
    since, until = iso(t0), iso(t1)
    links = [
        (f"/api/v1/outages/{eid}", "JSON"),
        (
            "/api/v1/outages?"
            + urlencode(
                {
                    "entity": ev.entity,
                    "since": iso(ev.start),
                    "until": iso(ev.start),
                    "format": "csv",
                }
            ),
            "CSV",
        ),
        (
            "/api/v1/history?" + urlencode({"entity": ev.entity, "since": since, "until": until}),
            "history JSON",
        ),
    ]
    if grafana_url:
        links += [(u, f"Grafana: {t}") for u, t in grafana_links(grafana_url, ev.entity, t0, t1)]
    links_html = (
        '<section class="exports" aria-labelledby="links-h"><h2 id="links-h">Data</h2><ul>'
        + "".join(f'<li><a href="{esc(u)}">{esc(t)}</a></li>' for u, t in links)
        + "</ul></section>"
    )
    chart_sec = (
        '<section class="chart-sec" aria-labelledby="chart-h"><h2 id="chart-h">Timeline</h2>'
        f"{fig}</section>"
    )
    return _page(
        f"{ev.kind.value} outage of {ev.entity} ({_human(ev.start)})",
        head + _annotations(annotations) + chart_sec + story_html + links_html,
        refresh=ev.end is None,
        page="event",
    )


def not_found_html(event_id: str) -> str:
    return _page(
        "no such event",
        "<section><h1>No such event</h1>"
        f"<p>There is no outage event with id <code>{esc(event_id)}</code>.</p>"
        '<p><a href="/">Back to the status page</a></p></section>',
        page="404",
    )


def error_html(message: str) -> str:
    return _page(
        "event log unavailable",
        f"<section><h1>Event log unavailable</h1><p>{esc(message)}</p></section>",
        page="error",
    )
