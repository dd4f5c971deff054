"""Feeds of the event log: `format=atom` (Atom 1.0, parsed and checked element by element)
and `format=codf` (Common Outage Data Format records), as served by a daemon on loopback and
rendered from plain events."""

from __future__ import annotations

import ipaddress
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema_rs

from monitor import config
from monitor.annotations import AnnotationUpdate
from monitor.daemon import Daemon
from monitor.detect.evidence import BlockEvidence, Evidence, KindEvidence, Seen
from monitor.detect.model import EventKind, EventRecord, iso, parse_time
from monitor.events import STREAM_CHUNK, EventStore
from monitor.feeds import (
    CODF_KEYS,
    AtomFeed,
    CodfExport,
    codf_record,
    last_change,
    location_of,
    tag_uri,
)
from monitor.openapi import document
from tests.unit.test_api import fetch, many, write_config

A = "{http://www.w3.org/2005/Atom}"
START = parse_time("2025-06-06T17:00:00Z")


def parse_atom(text: str) -> ET.Element:
    """The feed element, after checking what RFC 4287 requires of a feed and its entries."""
    root = ET.fromstring(text.encode())
    assert root.tag == f"{A}feed"
    for name in ("id", "title", "updated"):
        assert len(root.findall(f"{A}{name}")) == 1, name
    assert root.find(f"{A}author/{A}name") is not None
    for entry in root.findall(f"{A}entry"):
        for name in ("id", "title", "updated"):
            assert len(entry.findall(f"{A}{name}")) == 1, name
        alternates = [ln for ln in entry.findall(f"{A}link") if ln.get("rel") == "alternate"]
        assert len(alternates) == 1
        parse_time(entry.findtext(f"{A}updated") or "")  # an RFC 3339 time
    return root


def config_with(tmp: Path, extra: str) -> Path:
    path = write_config(tmp)
    text = path.read_text().replace("  - name: star-jv\n", "  - name: star-jv\n    asn: 131279\n")
    text = text.replace(
        '    tcp: ["127.0.0.1:9"]\n',
        '    tcp: ["127.0.0.1:9"]\n    prefixes: [175.45.176.0/22]\n',
    )
    path.write_text(text + extra)
    return path


async def test_atom_feed_from_the_api(tmp_path: Path) -> None:
    """`format=atom` is an Atom 1.0 feed: one entry per event with a tag: id, the title
    "kind at entity", the event page link on the request's host, and a summary with the
    times; an annotation moves the entry's `updated` and shows in it."""
    evs = many(tmp_path, 3)
    store = EventStore(tmp_path / "var")
    note_time = START + 86_400
    store.annotate(
        "ev00001",
        lambda old: AnnotationUpdate(
            cause="fibre cut", note="n", links=("https://r.example/",), maintenance=True
        ).apply(old, note_time),
    )
    store.close()
    cfg = write_config(tmp_path)
    d = Daemon(config.load(cfg), str(cfg))
    await d.start()
    try:
        code, headers, body = await fetch(d, "/api/v1/outages?format=atom")
        assert code == 200 and headers["Content-Type"].startswith("application/atom+xml")
        root = parse_atom(body)
        entries = root.findall(f"{A}entry")
        assert [e.findtext(f"{A}id") for e in entries] == [tag_uri(e.id) for e in evs]
        assert [e.findtext(f"{A}title") for e in entries] == [
            "dns at satgate",
            "dns at star-jv",
            "dns at star-jv",
        ]
        host = f"http://127.0.0.1:{d.listen_port}"
        link = next(ln for ln in entries[1].findall(f"{A}link") if ln.get("rel") == "alternate")
        assert link.get("href") == f"{host}/outages/ev00001"
        self_link = next(ln for ln in root.findall(f"{A}link") if ln.get("rel") == "self")
        assert self_link.get("href") == f"{host}/api/v1/outages?format=atom"
        assert entries[0].findtext(f"{A}updated") == iso(evs[0].end or 0)
        assert entries[1].findtext(f"{A}updated") == iso(note_time)
        summary = entries[1].findtext(f"{A}summary") or ""
        assert "started 2025-06-06T17:01:00Z" in summary
        assert "ended 2025-06-06T17:01:30Z (0m30s)" in summary
        assert "cause: fibre cut" in summary and "planned maintenance" in summary
        terms = [c.get("term") for c in entries[1].findall(f"{A}category")]
        assert terms == ["dns", "maintenance"]
        code, headers, body = await fetch(d, "/api/v1/outages?format=atom&limit=2")
        assert code == 200 and "X-Next-Cursor" in headers
        assert len(parse_atom(body).findall(f"{A}entry")) == 2
        code, _, body = await fetch(d, "/api/v1/outages?format=rss")
        assert code == 400
        assert json.loads(body)["error"] == "format: must be json, csv, atom or codf"
    finally:
        await d.stop()


async def test_atom_uses_the_configured_base_url_and_streams(tmp_path: Path) -> None:
    """With `api.base_url` the links use it, not the request's host; a feed longer than one
    streamed chunk is one well-formed document with every entry."""
    n = STREAM_CHUNK * 2 + 7
    many(tmp_path, n)
    cfg = config_with(tmp_path, "api:\n  base_url: https://monitor.example.org/dprk/\n")
    d = Daemon(config.load(cfg), str(cfg))
    await d.start()
    try:
        code, _, body = await fetch(d, "/api/v1/outages?format=atom")
        root = parse_atom(body)
        entries = root.findall(f"{A}entry")
        assert code == 200 and len(entries) == n
        hrefs = {ln.get("href") for e in entries for ln in e.findall(f"{A}link")}
        assert "https://monitor.example.org/dprk/outages/ev00005" in hrefs
        assert not any("127.0.0.1" in (h or "") for h in hrefs)
    finally:
        await d.stop()


def event(**kw: Any) -> EventRecord:
    base: dict[str, Any] = dict(
        id_="e1",
        entity="star-jv",
        kind=EventKind.PARTIAL,
        start=START,
        end=START + 600,
        signals={
            "phases": [
                {"kind": "partial", "start": iso(START), "end": iso(START + 300)},
                {"kind": "recovered", "start": iso(START + 300), "end": None},
            ]
        },
        evidence=Evidence(
            kinds={
                "icmp": KindEvidence(last_good=Seen("175.45.176.1", START - 25)),
                "dns": KindEvidence(last_good=Seen("175.45.176.15", START - 40)),
            },
            failure_order=("icmp", "dns"),
            blocks=(BlockEvidence("175.45.177.0/24", START, START + 590),),
        ),
    )
    base.update(kw)
    return EventRecord(
        base["id_"],
        base["entity"],
        base["kind"],
        base["start"],
        base["end"],
        base["signals"],
        base["evidence"],
        base.get("annotations"),
    )


WHERE = location_of(131279, [ipaddress.ip_network("175.45.176.0/22")])


def test_codf_record_fields() -> None:
    """A CODF record says where (AS, prefixes, blocks lost), when (epoch start, duration,
    the uncertainty back to the last answer), how (method), whether it is over, and the
    share of the location that was out."""
    rec = codf_record(event(), START + 1000, WHERE)
    assert list(rec) == list(CODF_KEYS)
    assert rec["location"] == "asn/131279" and rec["location_name"] == "star-jv"
    assert (rec["start"], rec["duration"], rec["end"]) == (int(START), 600, int(START) + 600)
    assert rec["uncertainty"] == 25  # the icmp probe answered 25 s before the start
    assert rec["status"] == 0 and rec["fraction"] == 0.25  # one /24 of the /22's four
    assert rec["blocks"] == ["175.45.177.0/24"] and rec["prefixes"] == ["175.45.176.0/22"]
    assert rec["method"] == "active-probing" and rec["datasource"] == "dprk-outage-monitor"
    open_blackout = codf_record(
        event(kind=EventKind.BLACKOUT, end=None, evidence=Evidence()), START + 90.4, None
    )
    assert open_blackout["status"] == 1 and open_blackout["duration"] == 90
    assert open_blackout["fraction"] == 1.0 and open_blackout["uncertainty"] is None
    assert open_blackout["location"] == "entity/star-jv" and open_blackout["end"] is None
    web = codf_record(event(kind=EventKind.WEB), START + 1000, WHERE)
    assert web["fraction"] is None


async def test_codf_from_the_api_matches_the_document(tmp_path: Path) -> None:
    """`format=codf` answers a JSON list of CODF records that validate against the OpenAPI
    document's schema, located by the entity's configured AS."""
    many(tmp_path, STREAM_CHUNK + 3)
    cfg = config_with(tmp_path, "")
    d = Daemon(config.load(cfg), str(cfg))
    await d.start()
    try:
        code, headers, body = await fetch(d, "/api/v1/outages?format=codf")
        assert code == 200 and headers["Content-Type"].startswith("application/json")
        records = json.loads(body)
        assert len(records) == STREAM_CHUNK + 3
        doc = document()
        schema = doc["paths"]["/api/v1/outages"]["get"]["responses"]["200"]["content"][
            "application/json"
        ]["schema"]
        jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]}).validate(
            records
        )
        star = [r for r in records if r["location_name"] == "star-jv"]
        assert star[0]["location"] == "asn/131279"
        assert star[0]["prefixes"] == ["175.45.176.0/22"]
        assert {r["location"] for r in records if r["location_name"] == "satgate"} == {
            "entity/satgate"
        }
    finally:
        await d.stop()


def test_atom_survives_hostile_text_and_counts_changes() -> None:
    """Ids and notes holding markup or characters XML cannot carry still give a well-formed
    feed; an entry's `updated` is its last change: end, phase or annotation."""
    nasty = event(id_="x<y>&\x01z", entity="a&b")
    ann = AnnotationUpdate(note="<script>alert(1)</script>\nline").apply(None, START + 9000)
    annotated = event(id_="e2", annotations=ann)
    feed = AtomFeed("http://h", "http://h/api/v1/outages?format=atom")
    text = feed.chunk([nasty, annotated], START + 10_000, True, True, False)
    root = parse_atom(text)
    entries = root.findall(f"{A}entry")
    assert entries[0].findtext(f"{A}title") == "partial at a&b"
    assert "<script>" in (entries[1].findtext(f"{A}content") or "")
    assert last_change(event()) == START + 600
    assert last_change(annotated) == START + 9000
    assert last_change(event(end=None, signals={})) == START
    empty = feed.chunk([], START, True, True, False)
    assert parse_atom(empty).findall(f"{A}entry") == []
    codf = CodfExport({"star-jv": WHERE})
    assert json.loads(codf.chunk([], START, True, True, False)) == []
    parts = [
        codf.chunk([event()], START, True, False, False),
        codf.chunk([event(id_="e3")], START, False, True, True),
    ]
    assert [r["id"] for r in json.loads("".join(parts))] == ["e1", "e3"]
