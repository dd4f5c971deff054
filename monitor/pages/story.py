"""An outage event told in words: dated lines in time order, built from the event's phases
(`signals.phases`) and its typed evidence. Pure logic, no I/O, no HTML (render.py escapes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from monitor.detect.evidence import Evidence, HopEvidence, OwnerRef, time_or_none
from monitor.detect.model import SEVERITY, EventKind, EventRecord
from monitor.detect.times import iso

_EVENT_KINDS = frozenset(k.value for k in EventKind)
_KIND_WORDS = {
    "icmp": "ICMP (ping)",
    "tcp": "TCP",
    "http": "the web sites (HTTP)",
    "dns": "the name servers (DNS)",
}
_PHASE_WORDS = {
    "blackout": "blackout: nothing answers",
    "partial": "partial: some blocks or prefixes down",
    "web": "web sites down, network up",
    "dns": "name servers down, network up",
    "degraded": "degraded: loss or latency far above normal",
    "routing": "routing: BGP visibility lost",
    "recovered": "back up (watching for a relapse)",
}


@dataclass(frozen=True, slots=True)
class Line:
    """One sentence of the story; `t` None for lines that are not dated (sorted last)."""

    t: float | None
    topic: str  # opened, phase, failed, block, bgp, path, blind, resumed, closed
    text: str


@dataclass(frozen=True, slots=True)
class Phase:
    kind: str
    start: float
    end: float | None


def phases(ev: EventRecord) -> list[Phase]:
    out = []
    raw = ev.signals.get("phases")
    for p in raw if isinstance(raw, list) else []:
        if not isinstance(p, dict):
            continue
        start = time_or_none(p.get("start"))
        if start is None:
            continue
        out.append(Phase(str(p.get("kind")), start, time_or_none(p.get("end"))))
    return out


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def human(t: float) -> str:
    return iso(t).replace("T", " ").replace("Z", " UTC")


def owner_label(o: OwnerRef | None) -> str:
    return "" if o is None else o.label


def hop_owner(h: HopEvidence | None) -> str:
    return "" if h is None else owner_label(h.owner)


def _dur(seconds: float) -> str:
    s = round(seconds)
    if s < 90:
        return f"{s} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def duration_words(seconds: float | None) -> str:
    return "" if seconds is None else _dur(seconds)


def tell(ev: EventRecord, now: float) -> list[Line]:
    """The story of the event, in time order."""
    e: Evidence = ev.evidence
    lines: list[Line] = [
        Line(ev.start, "opened", f"First failed probe of the {ev.kind.value} event (its start).")
    ]
    order = [k for k in e.failure_order]
    if order:
        first = order[0]
        then = ", then ".join(_KIND_WORDS.get(k, k) for k in order[1:])
        text = f"{_KIND_WORDS.get(first, first)} failed first"
        lines_t = e.kinds.get(first)
        ff = lines_t.first_failed if lines_t is not None else None
        if ff is not None:
            text += f" ({ff.target}: {ff.reason}{', ' + ff.detail if ff.detail else ''})"
        text += f"; then {then}." if then else "."
        lines.append(Line(ff.time if ff is not None else ev.start, "failed", text))
    for kind, ke in sorted(e.kinds.items()):
        if ke.last_good is not None:
            lines.append(
                Line(
                    ke.last_good.time,
                    "failed",
                    f"Last answer of {_KIND_WORDS.get(kind, kind)} before the trouble: "
                    f"{ke.last_good.target}.",
                )
            )
        if ke.first_failed is not None and (not order or kind != order[0]):
            ff = ke.first_failed
            lines.append(
                Line(
                    ff.time,
                    "failed",
                    f"{_cap(_KIND_WORDS.get(kind, kind))} failed: {ff.target} "
                    f"({ff.reason}{', ' + ff.detail if ff.detail else ''}).",
                )
            )
    prev_sev = 0
    for i, ph in enumerate(phases(ev)):
        words = _PHASE_WORDS.get(ph.kind, ph.kind)
        sev = SEVERITY.get(EventKind(ph.kind), 0) if ph.kind in _EVENT_KINDS else 0
        if i == 0:
            text = f"Phase: {words}."
        elif sev > prev_sev and ph.kind != "recovered":
            text = f"Escalated: {words}."
        else:
            text = f"Phase: {words}."
        prev_sev = max(prev_sev, sev)
        lines.append(Line(ph.start, "phase", text))
    for b in e.blocks:
        if b.first_failed is not None:
            lines.append(Line(b.first_failed, "block", f"Block {b.block} lost."))
        if b.recovered is not None:
            lines.append(Line(b.recovered, "block", f"Block {b.block} answered again."))
        elif b.first_failed is not None:
            gone = "no return time recorded" if ev.end is not None else "not seen back yet"
            lines.append(Line(None, "block", f"Block {b.block}: {gone}."))
    for kind, targets in sorted(e.targets_down.items()):
        if targets:
            lines.append(
                Line(None, "failed", f"{kind.upper()} targets down: {', '.join(targets)}.")
            )
    for prefix, r in sorted((e.bgp or {}).items()):
        w = r.withdrawal
        if w is not None and w.first is not None:
            ratio = "" if w.ratio is None else f", visibility {w.ratio:.0%}"
            lines.append(
                Line(
                    w.first,
                    "bgp",
                    f"BGP: {prefix} withdrawn by {w.peers_withdrawn} route-collector peers{ratio}.",
                )
            )
            if w.confirmed is not None:
                lines.append(Line(w.confirmed, "bgp", f"BGP: {prefix} withdrawal confirmed."))
        elif r.visibility_ratio is not None and r.visibility_ratio < 1:
            lines.append(
                Line(
                    None,
                    "bgp",
                    f"BGP: {prefix} seen by {r.visibility_ratio:.0%} of peers "
                    f"({r.peers_seeing} of {r.peers_recent}).",
                )
            )
        for spec, v in sorted(r.more_specifics_missing.items()):
            lines.append(
                Line(
                    None,
                    "bgp",
                    f"BGP: more specific {spec} missing ({v.peers_seeing} peers see it).",
                )
            )
    p = e.path
    if p is not None:
        who = hop_owner(p.last_answer)
        last = p.last_answer
        text = f"Path toward {p.target}: {p.summary}" if p.summary else f"Path toward {p.target}."
        if last is not None and last.address and who and who not in text:
            text += f" Last answer from {last.address} ({who})."
        lines.append(Line(p.started, "path", text))
        for s in p.unreachable_from:
            owner = f" ({owner_label(s.owner)})" if s.owner is not None else ""
            lines.append(
                Line(
                    s.first,
                    "path",
                    f"{s.address}{owner} answered unreachable {s.note} for {s.block} "
                    f"({s.answers} times until {human(s.last)}).".replace("  ", " "),
                )
            )
    for iv in e.vantage_blind:
        if iv.start is None:
            continue
        end = f" until {human(iv.end)}" if iv.end is not None else ", still blind"
        lines.append(
            Line(
                iv.start,
                "blind",
                f"Vantage blind (our own uplink failed){end}: the truth in "
                "that interval is unknown.",
            )
        )
    if e.vantage_blind_dropped:
        lines.append(
            Line(None, "blind", f"{e.vantage_blind_dropped} more blind intervals not listed.")
        )
    for t in e.resumed_at:
        lines.append(Line(t, "resumed", "The daemon restarted and resumed this event."))
    if ev.end is not None:
        closing = "recovering (the end may still move if it relapses)" if ev.recovering else "ended"
        lines.append(
            Line(ev.end, "closed", f"Back up: {closing}, after {_dur(ev.end - ev.start)}.")
        )
    else:
        lines.append(Line(now, "open", f"Still open after {_dur(now - ev.start)}."))
    dated = sorted((ln for ln in lines if ln.t is not None), key=lambda ln: ln.t or 0.0)
    return dated + [ln for ln in lines if ln.t is None]


def first_failed_times(ev: EventRecord) -> Sequence[tuple[str, float]]:
    """(kind, time) of each kind's first failure, in failure order."""
    out = []
    for k in ev.evidence.failure_order:
        ke = ev.evidence.kinds.get(k)
        if ke is not None and ke.first_failed is not None:
            out.append((k, ke.first_failed.time))
    return out
