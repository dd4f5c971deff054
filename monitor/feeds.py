"""The event log as feeds: Atom 1.0 (`format=atom`) and the Common Outage Data Format
(`format=codf`, after ISI-TR-729 as IODA serves it) on `GET /api/v1/outages`.

Each is a `Renderer` (monitor/events.py): the store reads the events page by page in its
reader threads and calls `chunk()` there, so a feed of 100,000 events is streamed like the
JSON and CSV exports and never rendered on the event loop. Pure: events in, text out.
docs/FORMATS.md says what each field means and how it is derived.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from monitor import __version__
from monitor.detect.evidence import time_or_none
from monitor.detect.model import EventKind, EventRecord
from monitor.detect.times import JSON, iso

ATOM_NS = "http://www.w3.org/2005/Atom"
# RFC 4151 tag URIs: an authority name and a date it was held, then the specific part. The
# authority is the program's name (a syntactically valid DNS name): ids stay the same whatever
# host name the feed is fetched under.
TAG_PREFIX = "tag:dprk-outage-monitor,2025:"
FEED_ID = TAG_PREFIX + "outages"
CODF_DATASOURCE = "dprk-outage-monitor"

# Characters XML 1.0 cannot carry at all (even escaped): C0 controls but tab and newlines,
# surrogates, U+FFFE/U+FFFF. An id or a name read from an imported export may hold them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: object) -> str:
    """Text escaped for XML element content and double-quoted attributes."""
    s = _NOT_XML.sub("\ufffd", str(text))
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def tag_uri(event_id: str) -> str:
    """The Atom id of an event: stable, unique per event id."""
    return TAG_PREFIX + "outage/" + quote(event_id, safe="")


def event_path(event_id: str) -> str:
    return "/outages/" + quote(event_id, safe="")


def last_change(ev: EventRecord) -> float:
    """When the event last changed, read from its own content: its start, its end, the
    start and end of each phase, the recovery, the restarts it survived, the annotations.
    A feed reader sees an entry's `updated` move exactly when the event changed."""
    times = [ev.start]
    if ev.end is not None:
        times.append(ev.end)
    phases = ev.signals.get("phases")
    for ph in phases if isinstance(phases, list) else ():
        if isinstance(ph, dict):
            times += [t for t in map(time_or_none, (ph.get("start"), ph.get("end"))) if t]
    rec = time_or_none(ev.signals.get("recovered_at"))
    if rec is not None:
        times.append(rec)
    times += ev.evidence.resumed_at
    if ev.annotations is not None:
        times.append(ev.annotations.updated)
    return max(times)


def _human(seconds: float) -> str:
    s = int(seconds)
    d, rem = divmod(s, 86_400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    if d:
        return f"{d}d{h:02d}h{m:02d}m"
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def first_failed(ev: EventRecord) -> str:
    """What failed first, in words: the kinds in the order they failed, the first one's
    target, time and reason."""
    order = list(ev.evidence.failure_order)
    if not order:
        return ""
    first = ev.evidence.kinds.get(order[0])
    ff = first.first_failed if first is not None else None
    text = f"first to fail: {order[0]}"
    if ff is not None:
        text += f" ({ff.target} at {iso(ff.time)}, {ff.reason})"
    if len(order) > 1:
        text += ", then " + ", ".join(order[1:])
    return text


def summary(ev: EventRecord, now: float) -> str:
    """One paragraph: kind and entity, start, end (or still open) and duration, what failed
    first, the cause and the maintenance flag."""
    parts = [f"{ev.kind.value} at {ev.entity}", f"started {iso(ev.start)}"]
    dur = ev.duration(now) or 0.0
    if ev.end is None:
        parts.append(f"still open ({_human(dur)} so far)")
    else:
        parts.append(f"ended {iso(ev.end)} ({_human(dur)})")
    ff = first_failed(ev)
    if ff:
        parts.append(ff)
    a = ev.annotations
    if a is not None and a.cause is not None:
        parts.append(f"cause: {a.cause}")
    if a is not None and a.maintenance:
        parts.append("planned maintenance")
    return "; ".join(parts) + "."


class _Chunked(Protocol):
    def head(self, now: float) -> str: ...
    def item(self, ev: EventRecord, now: float) -> str: ...
    def tail(self) -> str: ...


# --- Atom 1.0 (RFC 4287) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AtomFeed:
    """One Atom feed document, one entry per event (in the store's order, oldest first).
    `base_url` (no trailing /) is where the event pages are; `self_url` the feed's own URL."""

    base_url: str
    self_url: str
    title: str = "dprk-outage-monitor: outage events"

    def head(self, now: float) -> str:
        # The feed's `updated` is when it was rendered: a streamed feed cannot know its newest
        # entry before it is written (the entries carry their own).
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            f'<feed xmlns="{ATOM_NS}">\n'
            f"<id>{FEED_ID}</id>\n"
            f"<title>{_x(self.title)}</title>\n"
            f"<updated>{iso(now)}</updated>\n"
            "<author><name>dprk-outage-monitor</name></author>\n"
            f'<generator version="{_x(__version__)}">dprk-outage-monitor</generator>\n'
            f'<link rel="self" type="application/atom+xml" href="{_x(self.self_url)}"/>\n'
            f'<link rel="alternate" type="text/html" href="{_x(self.base_url)}/"/>\n'
        )

    def item(self, ev: EventRecord, now: float) -> str:
        page = self.base_url + event_path(ev.id)
        api = self.base_url + "/api/v1/outages/" + quote(ev.id, safe="")
        lines = [
            "<entry>",
            f"<id>{_x(tag_uri(ev.id))}</id>",
            f"<title>{_x(f'{ev.kind.value} at {ev.entity}')}</title>",
            f"<updated>{iso(last_change(ev))}</updated>",
            f"<published>{iso(ev.start)}</published>",
            f'<link rel="alternate" type="text/html" href="{_x(page)}"/>',
            f'<link rel="related" type="application/json" href="{_x(api)}"/>',
            f'<category term="{_x(ev.kind.value)}"/>',
            f"<summary>{_x(summary(ev, now))}</summary>",
        ]
        a = ev.annotations
        if a is not None:
            if a.maintenance:
                lines.append('<category term="maintenance"/>')
            lines += [f'<link rel="related" href="{_x(u)}"/>' for u in a.links]
            if a.notes:
                text = "\n".join(f"{iso(n.at)}: {n.text}" for n in a.notes)
                lines.append(f"<content>{_x(text)}</content>")
        lines.append("</entry>\n")
        return "\n".join(lines)

    def tail(self) -> str:
        return "</feed>\n"

    def chunk(
        self, page: Sequence[EventRecord], now: float, first: bool, last: bool, after: bool
    ) -> str:
        return _chunk(self, page, now, first, last)


def _chunk(fmt: _Chunked, page: Iterable[EventRecord], now: float, first: bool, last: bool) -> str:
    out = [fmt.head(now)] if first else []
    out += [fmt.item(ev, now) for ev in page]
    if last:
        out.append(fmt.tail())
    return "".join(out)


# --- CODF ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Location:
    """Where an entity is, for CODF: its AS, its prefixes, how many /24 (IPv6: /48) blocks
    they hold."""

    asn: int | None = None
    prefixes: tuple[str, ...] = ()
    blocks: int = 0


def location_of(asn: int | None, prefixes: Iterable[Any]) -> Location:
    """From an entity's configuration (`ipaddress` networks)."""
    nets = list(prefixes)
    total = 0
    for n in nets:
        unit = 24 if n.version == 4 else 48
        total += 2 ** (unit - n.prefixlen) if n.prefixlen <= unit else 1
    return Location(asn, tuple(str(n) for n in nets), total)


CODF_KEYS = (
    "location",
    "location_name",
    "start",
    "duration",
    "uncertainty",
    "method",
    "datasource",
    "status",
    "fraction",
    "id",
    "kind",
    "end",
    "prefixes",
    "blocks",
    "cause",
    "maintenance",
)


def uncertainty(ev: EventRecord) -> int | None:
    """Seconds before `start` in which the outage began: from the last probe that answered
    (of any kind, at or before the start) to the first failed one. None when no probe had
    answered before it (the event was resumed, imported, or seen from the first round)."""
    good = [
        k.last_good.time
        for k in ev.evidence.kinds.values()
        if k.last_good is not None and k.last_good.time <= ev.start
    ]
    if not good:
        return None
    return math.ceil(ev.start - max(good))


def fraction(ev: EventRecord, where: Location) -> float | None:
    """The share of the location's blocks that were out: 1 for a blackout; blocks lost over
    blocks held for a partial outage; None where the network stayed up or it is not known
    (web, dns, degraded, routing; a partial outage of an entity without prefixes)."""
    if ev.kind is EventKind.BLACKOUT:
        return 1.0
    if ev.kind is EventKind.PARTIAL and where.blocks > 0:
        lost = len({b.block for b in ev.evidence.blocks})
        return round(min(1.0, lost / where.blocks), 4)
    return None


def codf_record(ev: EventRecord, now: float, where: Location | None) -> JSON:
    """One event as a CODF record (docs/FORMATS.md)."""
    loc = where if where is not None else Location()
    method = "active-probing"
    if ev.evidence.bgp or ev.kind is EventKind.ROUTING:
        method += "+bgp"
    a = ev.annotations
    rec: JSON = {
        "location": f"asn/{loc.asn}" if loc.asn is not None else f"entity/{ev.entity}",
        "location_name": ev.entity,
        "start": math.floor(ev.start),
        "duration": round(ev.duration(now) or 0.0),
        "uncertainty": uncertainty(ev),
        "method": method,
        "datasource": CODF_DATASOURCE,
        # 0: over, the duration is final; 1: still going on, the duration runs to now.
        "status": 1 if ev.end is None else 0,
        "fraction": fraction(ev, loc),
        "id": ev.id,
        "kind": ev.kind.value,
        "end": None if ev.end is None else math.ceil(ev.end),
        "prefixes": list(loc.prefixes),
        "blocks": sorted({b.block for b in ev.evidence.blocks}),
        "cause": None if a is None else a.cause,
        "maintenance": False if a is None else a.maintenance,
    }
    return rec


@dataclass(frozen=True, slots=True)
class CodfExport:
    """A JSON list of CODF records, one per event; `locations` per entity name (an entity no
    longer configured is located by its name)."""

    locations: Mapping[str, Location]

    def chunk(
        self, page: Sequence[EventRecord], now: float, first: bool, last: bool, after: bool
    ) -> str:
        body = ",\n".join(
            json.dumps(
                codf_record(ev, now, self.locations.get(ev.entity)),
                separators=(",", ":"),
                ensure_ascii=False,
            )
            for ev in page
        )
        head = "[\n" if first else ""
        if body and after:
            head += ",\n"
        return head + body + ("\n]\n" if last else "")


FORMATS = ("json", "csv", "atom", "codf")
CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "atom": "application/atom+xml",
    "codf": "application/json",
}

# The OpenAPI schema of a CODF record (monitor/openapi.py puts it in the document).
_INT_OR_NULL = {"type": ["integer", "null"]}
CODF_SCHEMA: JSON = {
    "type": "object",
    "description": "one event in the Common Outage Data Format (docs/FORMATS.md)",
    "required": list(CODF_KEYS),
    "properties": {
        "location": {"type": "string", "description": "asn/N, or entity/NAME without an AS"},
        "location_name": {"type": "string"},
        "start": {"type": "integer", "description": "epoch seconds"},
        "duration": {"type": "integer", "minimum": 0, "description": "seconds"},
        "uncertainty": {**_INT_OR_NULL, "description": "seconds before start it may have begun"},
        "method": {"type": "string"},
        "datasource": {"type": "string"},
        "status": {"type": "integer", "enum": [0, 1], "description": "0 over, 1 ongoing"},
        "fraction": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "id": {"type": "string"},
        "kind": {"type": "string", "enum": [k.value for k in EventKind]},
        "end": _INT_OR_NULL,
        "prefixes": {"type": "array", "items": {"type": "string"}},
        "blocks": {"type": "array", "items": {"type": "string"}},
        "cause": {"type": ["string", "null"]},
        "maintenance": {"type": "boolean"},
    },
}
