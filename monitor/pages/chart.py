"""Inline SVG charts drawn from history points (as `Sample`s). Pure functions, no I/O.

Why hand-written SVG: the pages must work air-gapped (no CDN, no charting library) and the
event chart must export as a standalone picture. Every colour is a presentation attribute (no
`style=`: the pages' Content-Security-Policy forbids inline styles), so the exported SVG looks
the same outside the page; the page's stylesheet only re-colours text and background for the
dark theme (CSS wins over presentation attributes). Text uses `currentColor`.

A point covers [t, t + step). A gap longer than a step and a half (the daemon was not running,
or history was not kept) is drawn as a gap, never interpolated over.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from monitor.detect.times import iso
from monitor.pages.model import Point

STATE_COLOURS = {
    "up": "#2e7d32",
    "degraded": "#f9a825",
    "partial": "#ef6c00",
    "down": "#c62828",
    "unknown": "#757575",
}
KIND_COLOURS = {"icmp": "#1565c0", "tcp": "#6a1b9a", "http": "#00838f", "dns": "#ad1457"}
LOSS_COLOUR = "#d84315"
BLOCKS_COLOUR = "#558b2f"
BGP_COLOUR = "#6d4c41"
SPAN_COLOUR = "#c62828"
BLIND_COLOUR = "#9e9e9e"
FONT = 'font-family="system-ui, sans-serif"'
# The plot widths (pixels) of the status page's timeline and of the event chart: a chart is
# given at most about that many points (more could not be told apart).
STRIP_PLOT = 640 - 8 - 8
EVENT_PLOT = 900 - 44 - 12
# Nice tick spacings (seconds) for the time axis.
_TICKS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800)


def _esc(s: str) -> str:
    return html.escape(s, quote=True)


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def time_label(t: float, span: float) -> str:
    d = datetime.fromtimestamp(t, UTC)
    if span > 2 * 86400:
        return d.strftime("%m-%d %H:%M") if d.hour or d.minute else d.strftime("%m-%d")
    return d.strftime("%H:%M:%S") if span < 600 else d.strftime("%H:%M")


def ticks(t0: float, t1: float, most: int = 7) -> list[float]:
    """Round times between t0 and t1, at most `most` of them."""
    span = max(t1 - t0, 1.0)
    step = next((s for s in _TICKS if span / s <= most), None)
    if step is None:
        step = math.ceil(span / most / 86400) * 86400
    first = math.ceil(t0 / step) * step
    return [first + i * step for i in range(int((t1 - first) // step) + 1)]


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: values in 0..1 (None: not measured at that point)."""

    label: str
    colour: str
    values: tuple[tuple[float, float | None], ...]
    dash: str | None = None


def share_up(p: Point, kind: str | None = None) -> float | None:
    """Share of the configured targets (of one kind, or all) that are up at the point."""
    kinds = [kind] if kind is not None else list(p.targets)
    total = sum(p.targets.get(k, 0) for k in kinds)
    if total <= 0:
        return None
    return min(1.0, sum(p.up.get(k, 0) for k in kinds) / total)


def _mean(values: Iterable[float]) -> float | None:
    vs = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return sum(vs) / len(vs) if vs else None


class Sample(NamedTuple):
    """What the charts draw of one history point, and nothing else: the pages keep these
    (small; a tuple, so hashed and compared in C when a drawing is looked up by its samples)
    rather than the points, whose maps can name a thousand blocks."""

    t: float
    step: int
    state: str
    vantage_healthy: bool = True
    share: float | None = None  # of all targets, up
    kinds: tuple[tuple[str, float | None], ...] = ()  # per kind with targets: share up
    loss: float | None = None
    blocks: float | None = None  # mean block belief
    bgp: float | None = None  # mean BGP visibility

    @property
    def drawn(self) -> str:
        """The state as drawn: unknown while the vantage was blind."""
        return self.state if self.vantage_healthy else "unknown"


def sample(p: Point) -> Sample:
    return Sample(
        float(p.t),
        int(p.step),
        str(p.state),
        bool(p.vantage_healthy),
        share_up(p),
        tuple((k, share_up(p, k)) for k in sorted(p.targets) if p.targets[k] > 0),
        p.loss,
        _mean(p.blocks.values()),
        _mean(p.bgp.values()),
    )


_RANK = {"up": 0, "unknown": 1, "degraded": 2, "partial": 3, "down": 4}


def _least(values: Iterable[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return min(vs) if vs else None


def merge(group: Sequence[Sample], t: float, step: int) -> Sample:
    """One sample of `step` from those of its bucket, the worst of each as the history's own
    coarser tiers keep it (monitor.history.sampler.downsample): the most severe state, the
    lowest shares, beliefs and visibility, the mean loss; blind if the vantage ever was."""
    kinds: dict[str, list[float | None]] = {}
    for s in group:
        for k, v in s.kinds:
            kinds.setdefault(k, []).append(v)
    losses = [s.loss for s in group if s.loss is not None]
    return Sample(
        t,
        step,
        max((s.state for s in group), key=lambda x: _RANK.get(x, 1)),
        all(s.vantage_healthy for s in group),
        _least(s.share for s in group),
        tuple((k, _least(vs)) for k, vs in sorted(kinds.items())),
        sum(losses) / len(losses) if losses else None,
        _least(s.blocks for s in group),
        _least(s.bgp for s in group),
    )


def fit(samples: Sequence[Sample], width: float) -> Sequence[Sample]:
    """At most about `width` samples (one per pixel is all a strip of `width` pixels can
    show): merged into buckets of a whole multiple of their step when there are more."""
    if len(samples) <= width or not samples:
        return samples
    base = min(s.step for s in samples)
    span = samples[-1].t + samples[-1].step - samples[0].t
    step = base * math.ceil(span / base / width)
    out: list[Sample] = []
    group: list[Sample] = []
    current: float | None = None
    for s in samples:
        b = math.floor(s.t / step) * step
        if group and b != current:
            out.append(merge(group, float(current or 0.0), step))
            group = []
        current = b
        group.append(s)
    if group:
        out.append(merge(group, float(current or 0.0), step))
    return out


def event_series(samples: Sequence[Sample]) -> list[Series]:
    """The signals of the event chart: per kind share up, loss, mean block belief, mean BGP
    visibility; a series is left out when no point measures it."""
    kinds = sorted({k for s in samples for k, _ in s.kinds})
    per_kind: dict[str, list[tuple[float, float | None]]] = {k: [] for k in kinds}
    for s in samples:
        got = dict(s.kinds)
        for k in kinds:
            per_kind[k].append((s.t, got.get(k)))
    out = [Series(f"{k} up", KIND_COLOURS.get(k, "#455a64"), tuple(per_kind[k])) for k in kinds]
    out.append(Series("loss", LOSS_COLOUR, tuple((s.t, s.loss) for s in samples), "6 3"))
    out.append(
        Series("block belief", BLOCKS_COLOUR, tuple((s.t, s.blocks) for s in samples), "2 2")
    )
    out.append(
        Series("BGP visibility", BGP_COLOUR, tuple((s.t, s.bgp) for s in samples), "8 3 2 3")
    )
    return [s for s in out if any(v is not None for _, v in s.values)]


class _Frame:
    """Maps time and 0..1 values into the plot area."""

    def __init__(self, t0: float, t1: float, x: float, w: float) -> None:
        self.t0, self.t1, self.x, self.w = t0, max(t1, t0 + 1.0), x, w

    def tx(self, t: float) -> float:
        t = min(max(t, self.t0), self.t1)
        return self.x + (t - self.t0) / (self.t1 - self.t0) * self.w


def _step(samples: Sequence[Sample]) -> float:
    steps = [p.step for p in samples if p.step > 0]
    return float(min(steps)) if steps else 60.0


def state_strip(samples: Sequence[Sample], fr: _Frame, y: float, h: float) -> list[str]:
    """Runs of equal state as rectangles (one per run, not per point)."""
    out: list[str] = []
    step = _step(samples)
    run: tuple[str, float, float] | None = None  # state, start, end
    for p in sorted(samples, key=lambda p: p.t):
        state = p.drawn
        end = p.t + (p.step or step)
        if run is not None and run[0] == state and p.t - run[2] <= step / 2:
            run = (state, run[1], end)
            continue
        if run is not None:
            out.append(_rect(run, fr, y, h))
        run = (state, p.t, end)
    if run is not None:
        out.append(_rect(run, fr, y, h))
    return out


def _rect(run: tuple[str, float, float], fr: _Frame, y: float, h: float) -> str:
    state, a, b = run
    x0, x1 = fr.tx(a), fr.tx(b)
    colour = STATE_COLOURS.get(state, STATE_COLOURS["unknown"])
    # The run's times as attributes too: the browser tests read them, a reader hovers them.
    span = f"{_hms(a)} to {_hms(b)} UTC"
    return (
        f'<rect x="{_f(x0)}" y="{_f(y)}" width="{_f(max(x1 - x0, 0.5))}" height="{_f(h)}" '
        f'fill="{colour}" data-state="{_esc(state)}" data-start="{iso(a)}" data-end="{iso(b)}">'
        f"<title>{_esc(state)}, {span}</title></rect>"
    )


def _hms(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _path(s: Series, fr: _Frame, y: float, h: float, step: float) -> str:
    parts: list[str] = []
    prev: float | None = None
    # A joined run at one height is one straight segment: its first and last vertex draw it
    # (the middle ones would only lengthen the path and the time to write it; a steady
    # signal is most of any chart).
    held: float | None = None  # the time of the run's latest vertex, not yet written
    level: float | None = None  # the run's value
    yy = ""
    for t, v in sorted(s.values, key=lambda tv: tv[0]):
        if v is None or not math.isfinite(v) or t < fr.t0 or t > fr.t1:
            if held is not None:
                parts.append(f"L{_f(fr.tx(held))} {yy}")
            prev, held, level = None, None, None
            continue
        joined = prev is not None and t - prev <= 1.5 * step
        prev = t
        if joined and v == level:
            held = t
            continue
        if held is not None:
            parts.append(f"L{_f(fr.tx(held))} {yy}")
            held = None
        yy = _f(y + h - min(max(v, 0.0), 1.0) * h)
        parts.append(f"{'L' if joined else 'M'}{_f(fr.tx(t))} {yy}")
        level = v
    if held is not None:
        parts.append(f"L{_f(fr.tx(held))} {yy}")
    if not parts:
        return ""
    dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
    return (
        f'<path d="{" ".join(parts)}" fill="none" stroke="{s.colour}" stroke-width="1.8"'
        f"{dash}><title>{_esc(s.label)}</title></path>"
    )


def _axis(fr: _Frame, y_top: float, y_bottom: float) -> list[str]:
    out = []
    span = fr.t1 - fr.t0
    for t in ticks(fr.t0, fr.t1):
        x = _f(fr.tx(t))
        out.append(
            f'<line x1="{x}" x2="{x}" y1="{_f(y_top)}" y2="{_f(y_bottom)}" stroke="currentColor" '
            'stroke-opacity="0.15"/>'
            f'<text x="{x}" y="{_f(y_bottom + 14)}" text-anchor="middle" font-size="11" '
            f'fill="currentColor" {FONT}>{_esc(time_label(t, span))}</text>'
        )
    return out


def _open(svg_id: str, w: int, h: int, title: str, desc: str, step: float) -> str:
    # data-step: the points' step (seconds), i.e. how precise the drawn times are.
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{_esc(svg_id)}" class="chart" '
        f'data-step="{int(step)}" '
        f'viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'aria-labelledby="{_esc(svg_id)}-t {_esc(svg_id)}-d">'
        f'<title id="{_esc(svg_id)}-t">{_esc(title)}</title>'
        f'<desc id="{_esc(svg_id)}-d">{_esc(desc)}</desc>'
        f'<rect class="bg" x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>'
    )


def strip_svg(svg_id: str, samples: Sequence[Sample], t0: float, t1: float, title: str) -> str:
    """The status page's timeline: the state as a coloured strip and the share of all targets
    up as a line under it, over [t0, t1] (the samples merged down to one per pixel or so)."""
    w, h, left, right = 640, 78, 8, 8
    samples = fit(samples, STRIP_PLOT)
    fr = _Frame(t0, t1, left, w - left - right)
    body = _axis(fr, 4, 56)
    body.append(
        f'<rect x="{left}" y="4" width="{w - left - right}" height="18" fill="#9e9e9e" '
        'fill-opacity="0.15"/>'
    )
    body += state_strip(samples, fr, 4, 18)
    up = Series("targets up", KIND_COLOURS["icmp"], tuple((p.t, p.share) for p in samples))
    body.append(
        f'<line x1="{left}" x2="{w - right}" y1="56" y2="56" stroke="currentColor" '
        'stroke-opacity="0.4"/>'
    )
    body.append(_path(up, fr, 26, 30, _step(samples)))
    desc = "State over time (coloured strip) and the share of targets up (line), UTC."
    return _open(svg_id, w, h, title, desc, _step(samples)) + "".join(body) + "</svg>"


@dataclass(frozen=True, slots=True)
class Marker:
    t: float
    label: str
    colour: str = "#37474f"


def event_svg(
    svg_id: str,
    samples: Sequence[Sample],
    t0: float,
    t1: float,
    *,
    title: str,
    span: tuple[float, float | None],
    blind: Sequence[tuple[float | None, float | None]] = (),
    markers: Sequence[Marker] = (),
) -> str:
    """The event page's chart over [t0, t1]: the event's span shaded, the vantage's blind
    intervals hatched grey, the state strip on top, the signals as lines (0..1), markers as
    labelled vertical lines, a legend and a UTC time axis."""
    w, left, right = 900, 44, 12
    samples = fit(samples, EVENT_PLOT)
    top, strip_h, plot_top, plot_h = 28, 16, 52, 200
    series = event_series(samples)
    legend_rows = max(1, math.ceil((len(series) + 2) / 4))
    h = plot_top + plot_h + 24 + legend_rows * 18 + 6
    fr = _Frame(t0, t1, left, w - left - right)
    body: list[str] = [
        f'<text x="{left}" y="18" font-size="14" font-weight="600" fill="currentColor" {FONT}>'
        f"{_esc(title)}</text>"
    ]
    start, end = span
    x0, x1 = fr.tx(start), fr.tx(end if end is not None else t1)
    body.append(
        f'<rect x="{_f(x0)}" y="{top}" width="{_f(max(x1 - x0, 1))}" '
        f'height="{plot_top + plot_h - top}" fill="{SPAN_COLOUR}" fill-opacity="0.08"/>'
    )
    for a, b in blind:
        bx0, bx1 = fr.tx(a if a is not None else t0), fr.tx(b if b is not None else t1)
        body.append(
            f'<rect x="{_f(bx0)}" y="{plot_top}" width="{_f(max(bx1 - bx0, 1))}" '
            f'height="{plot_h}" fill="{BLIND_COLOUR}" fill-opacity="0.3">'
            "<title>vantage blind</title></rect>"
        )
    body.append(
        f'<rect x="{left}" y="{top}" width="{_f(fr.w)}" height="{strip_h}" fill="#9e9e9e" '
        'fill-opacity="0.15"/>'
    )
    body += state_strip(samples, fr, top, strip_h)
    body += _axis(fr, plot_top, plot_top + plot_h)
    for v in (0.0, 0.5, 1.0):
        yy = _f(plot_top + plot_h - v * plot_h)
        body.append(
            f'<line x1="{left}" x2="{w - right}" y1="{yy}" y2="{yy}" stroke="currentColor" '
            f'stroke-opacity="{0.4 if v == 0 else 0.12}"/>'
            f'<text x="{left - 6}" y="{yy}" dy="4" text-anchor="end" font-size="11" '
            f'fill="currentColor" {FONT}>{int(v * 100)}%</text>'
        )
    step = _step(samples)
    body += [_path(s, fr, plot_top, plot_h, step) for s in series]
    for i, m in enumerate(markers):
        if not t0 <= m.t <= t1:
            continue
        mx = _f(fr.tx(m.t))
        ly = plot_top + 12 + (i % 4) * 13
        anchor = "end" if fr.tx(m.t) > left + fr.w * 0.75 else "start"
        dx = -3 if anchor == "end" else 3
        body.append(
            f'<line x1="{mx}" x2="{mx}" y1="{top}" y2="{plot_top + plot_h}" stroke="{m.colour}" '
            f'stroke-width="1.2" stroke-dasharray="3 2"/>'
            f'<text x="{mx}" y="{ly}" dx="{dx}" text-anchor="{anchor}" font-size="11" '
            f'fill="{m.colour}" {FONT}>{_esc(m.label)}</text>'
        )
    # Legend: the series, then the shaded span and the blind hatch.
    items: list[tuple[str, str, str | None, bool]] = [
        (s.label, s.colour, s.dash, False) for s in series
    ]
    items.append(("event", SPAN_COLOUR, None, True))
    items.append(("vantage blind", BLIND_COLOUR, None, True))
    ly0 = plot_top + plot_h + 34
    for i, (label, colour, dash, box) in enumerate(items):
        lx = left + (i % 4) * 210
        ly = ly0 + (i // 4) * 18
        if box:
            swatch = (
                f'<rect x="{lx}" y="{ly - 9}" width="22" height="10" fill="{colour}" '
                'fill-opacity="0.3"/>'
            )
        else:
            d = f' stroke-dasharray="{dash}"' if dash else ""
            swatch = (
                f'<line x1="{lx}" x2="{lx + 22}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" '
                f'stroke-width="2"{d}/>'
            )
        body.append(
            swatch + f'<text x="{lx + 28}" y="{ly}" font-size="12" fill="currentColor" {FONT}>'
            f"{_esc(label)}</text>"
        )
    desc = (
        "Signals around the event, UTC: the entity's state (strip), the share of targets up "
        "per kind, loss, mean block belief and BGP visibility (lines, 0 to 100%)."
    )
    return _open(svg_id, w, h, title, desc, _step(samples)) + "".join(body) + "</svg>"
