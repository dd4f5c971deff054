"""Messages people can act on, rendered from the typed event: short for chat, long for e-mail.
Pure: no I/O, the time zone and the base URL are given.

Both say the entity, the kind, the start in UTC and in the vantage's local time, what failed
first, the blocks lost, BGP and the path when known, the duration once closed, and the link
to the event's page (`{base_url}/outages/{id}`, when `api.base_url` is set). The long form adds
every block with its times, the targets down and the event's story (monitor/pages/story.py,
the event page's own words). The last line of both is the idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from urllib.parse import quote

from monitor.detect.model import EventRecord
from monitor.notify.params import Format, Transition
from monitor.pages.story import duration_words, tell

TITLE_PREFIX = "[dprk-monitor]"
SHORT_BLOCKS = 4  # blocks named in a short message; the rest counted

_KIND_WORDS = {
    "blackout": "blackout (nothing answers)",
    "partial": "partial outage (some blocks or prefixes down)",
    "web": "web sites down (network up)",
    "dns": "name servers down (network up)",
    "degraded": "degraded (loss or latency far above normal)",
    "routing": "routing (BGP visibility lost)",
}
_PROBE_WORDS = {"icmp": "ICMP", "tcp": "TCP", "http": "HTTP", "dns": "DNS"}


@dataclass(frozen=True, slots=True)
class FormatOptions:
    """`base_url`: `api.base_url` (no link without it); `tz`: the vantage's local zone (None:
    the machine's, as `datetime.astimezone()` finds it)."""

    base_url: str | None = None
    tz: tzinfo | None = None


def when(t: float, tz: tzinfo | None) -> str:
    """`2025-06-13 10:02:17 UTC (19:02:17 KST)`: UTC, then the vantage's local time (its date
    too when it differs; left out when the local zone is UTC)."""
    utc = datetime.fromtimestamp(t, tz=UTC)
    local = utc.astimezone(tz) if tz is not None else utc.astimezone()
    text = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    if local.utcoffset() == timedelta(0) and local.tzname() in ("UTC", "GMT", "Z", None):
        return text
    fmt = "%H:%M:%S" if local.date() == utc.date() else "%Y-%m-%d %H:%M:%S"
    name = local.tzname() or local.strftime("%z")
    return f"{text} ({local.strftime(fmt)} {name} local)"


def link(ev_id: str, opts: FormatOptions) -> str | None:
    if not opts.base_url:
        return None
    return f"{opts.base_url}/outages/{quote(ev_id, safe='')}"


def _first_failed(ev: EventRecord) -> str | None:
    order = list(ev.evidence.failure_order)
    if not order:
        return None
    first = order[0]
    ke = ev.evidence.kinds.get(first)
    text = _PROBE_WORDS.get(first, first)
    ff = ke.first_failed if ke is not None else None
    if ff is not None:
        text += f" ({ff.target}: {ff.reason})"
    if len(order) > 1:
        text += ", then " + ", ".join(_PROBE_WORDS.get(k, k) for k in order[1:])
    return text


def _blocks(ev: EventRecord, limit: int | None) -> str | None:
    names = [b.block for b in ev.evidence.blocks]
    if not names:
        return None
    if limit is not None and len(names) > limit:
        return ", ".join(names[:limit]) + f" (+{len(names) - limit} more)"
    return ", ".join(names)


def _bgp(ev: EventRecord) -> str | None:
    parts = []
    for prefix, r in sorted((ev.evidence.bgp or {}).items()):
        if r.withdrawal is not None and r.withdrawal.first is not None:
            ratio = r.withdrawal.ratio
            seen = "" if ratio is None else f", seen by {ratio:.0%} of peers"
            parts.append(f"{prefix} withdrawn ({r.withdrawal.peers_withdrawn} peers{seen})")
        elif r.visibility_ratio is not None and r.visibility_ratio < 1:
            parts.append(f"{prefix} seen by {r.visibility_ratio:.0%} of peers")
        for spec in sorted(r.more_specifics_missing):
            parts.append(f"{spec} missing")
    return "; ".join(parts) or None


def _path(ev: EventRecord) -> str | None:
    p = ev.evidence.path
    if p is None:
        return None
    text = p.summary or f"toward {p.target}"
    last = p.last_answer
    if last is not None and last.address and last.address not in text:
        owner = f" ({last.owner.label})" if last.owner is not None else ""
        text += f"; last answer from {last.address}{owner}"
    return text


def title(ev: EventRecord, transition: Transition, previous_kind: str | None = None) -> str:
    name, kind = ev.entity, ev.kind.value
    if transition is Transition.OPENED:
        return f"{TITLE_PREFIX} {name}: {kind} started"
    if transition is Transition.ESCALATED:
        was = f" (was {previous_kind})" if previous_kind else ""
        return f"{TITLE_PREFIX} {name}: escalated to {kind}{was}"
    return f"{TITLE_PREFIX} {name}: {kind} over after {duration_words(ev.duration()) or '?'}"


def render(
    ev: EventRecord,
    transition: Transition,
    fmt: Format,
    opts: FormatOptions,
    key: str,
    now: float,
    previous_kind: str | None = None,
) -> tuple[str, str]:
    """(title, body) of an event's notification."""
    lines: list[str] = []
    kind_words = _KIND_WORDS.get(ev.kind.value, ev.kind.value)
    if transition is Transition.CLOSED:
        lines.append(f"{ev.entity}: {kind_words} is over.")
    elif transition is Transition.ESCALATED:
        lines.append(f"{ev.entity}: now {kind_words} (was {previous_kind}).")
    else:
        lines.append(f"{ev.entity}: {kind_words}.")
    lines.append(f"Start: {when(ev.start, opts.tz)}")
    if ev.end is not None and transition is Transition.CLOSED:
        lines.append(f"End: {when(ev.end, opts.tz)} (lasted {duration_words(ev.duration())})")
    first = _first_failed(ev)
    if first:
        lines.append(f"First failed: {first}")
    blocks = _blocks(ev, SHORT_BLOCKS if fmt is Format.SHORT else None)
    if blocks:
        word = "Blocks lost" if transition is Transition.CLOSED else "Blocks down"
        lines.append(f"{word}: {blocks}")
    bgp = _bgp(ev)
    if bgp:
        lines.append(f"BGP: {bgp}")
    path = _path(ev)
    if path:
        lines.append(f"Path: {path}")
    if fmt is Format.LONG:
        _long_part(ev, lines, opts, now)
    url = link(ev.id, opts)
    lines.append(f"Event: {url}" if url else f"Event id: {ev.id}")
    lines.append(f"Key: {key}")
    return title(ev, transition, previous_kind), "\n".join(lines)


def _long_part(ev: EventRecord, lines: list[str], opts: FormatOptions, now: float) -> None:
    e = ev.evidence
    if e.blocks:
        lines.append("")
        lines.append("Blocks:")
        for b in e.blocks:
            lost = when(b.first_failed, opts.tz) if b.first_failed is not None else "?"
            back = (
                f"back {when(b.recovered, opts.tz)}"
                if b.recovered is not None
                else ("not seen back" if ev.end is not None else "not back yet")
            )
            lines.append(f"  {b.block}: lost {lost}; {back}")
    down = [(k, v) for k, v in sorted(e.targets_down.items()) if v]
    if down:
        lines.append("")
        lines.append("Targets down:")
        for k, targets in down:
            lines.append(f"  {_PROBE_WORDS.get(k, k)}: {', '.join(targets)}")
    story = tell(ev, now)
    if story:
        lines.append("")
        lines.append("Story:")
        for ln in story:
            stamp = when(ln.t, opts.tz) if ln.t is not None else "-"
            lines.append(f"  {stamp}  {ln.text}")
    lines.append("")
    lines.append(f"Event id: {ev.id}")


def vantage_message(
    transition: Transition, offline_at: float, now: float, opts: FormatOptions, key: str
) -> tuple[str, str]:
    """(title, body) of a `vantage offline` / `vantage back` notice."""
    if transition is Transition.VANTAGE_OFFLINE:
        t = f"{TITLE_PREFIX} vantage offline"
        body = [
            "This monitor's own uplink fails (its control targets do not answer): outages are "
            "not judged until it is back, and no outage message is sent meanwhile.",
            f"Since: {when(offline_at, opts.tz)}",
        ]
    else:
        took = duration_words(max(0.0, now - offline_at))
        t = f"{TITLE_PREFIX} vantage back after {took}"
        body = [
            "This monitor's uplink works again: outages are judged again.",
            f"Offline: {when(offline_at, opts.tz)}",
            f"Back: {when(now, opts.tz)}",
        ]
    body.append(f"Key: {key}")
    return t, "\n".join(body)


def test_message(name: str, now: float, opts: FormatOptions) -> tuple[str, str]:
    """The `notify-test` message."""
    return (
        f"{TITLE_PREFIX} test message",
        f"A test of the notification receiver {name!r} (dprk-monitor notify-test).\n"
        f"Sent: {when(now, opts.tz)}\n"
        f"Key: test/{name}/{now:.0f}",
    )
