"""Exports and `outages --import`: a JSON export re-imported (idempotent by id, never rolling
an event back, every entry checked first), CSV cells safe in a spreadsheet."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from monitor import cli
from monitor.detect.model import EventKind, EventRecord
from monitor.events import EventStore, parse_export, render_csv
from tests.unit.test_events import T0, event


def closed(ev: EventRecord, end: float) -> EventRecord:
    """The event closed at `end`, with the recovery as its last phase (as the detector does)."""
    phases = [*ev.signals["phases"], {"kind": "recovered", "start": end, "end": None}]
    return replace(ev, end=end, signals=dict(ev.signals, phases=phases))


def export(store: EventStore) -> str:
    return json.dumps(store.query(now=T0 + 10**6), indent=2)


def test_export_reimports_idempotently(tmp_path: Path) -> None:
    """A JSON export imported into an empty log gives the same events; importing it again, or
    into the log it came from, changes nothing."""
    src = EventStore(tmp_path / "a")
    src.save(closed(event("a", start=T0 + 0.1234567), T0 + 3600.5))
    src.save(event("b", start=T0 + 10, kind=EventKind.DNS))
    src.save(replace(event("c", entity="satgate", start=T0 + 20), signals={"phases": [], "x": 1}))
    text = export(src)
    dst = EventStore(tmp_path / "b")
    result = dst.import_events(parse_export(text))
    assert (result.added, result.updated, result.unchanged, result.kept) == (3, 0, 0, 0)
    assert export(dst) == text
    again = dst.import_events(parse_export(text))
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
    assert src.import_events(parse_export(text)).unchanged == 3  # sub-ms times as exported
    assert export(dst) == text
    src.close()
    dst.close()


def test_import_never_rolls_an_event_back(tmp_path: Path) -> None:
    """A stored event is replaced by an imported version that differs and is not older, and
    kept when the stored one is further along (closed while the import has it open, or more
    phases); an id not stored is added."""
    store = EventStore(tmp_path)
    a_open = event("a")
    a_closed = closed(a_open, T0 + 600)
    store.save(a_closed)
    store.save(event("b"))
    b_escalated = replace(event("b"), kind=EventKind.PARTIAL)
    result = store.import_events([a_open, b_escalated, event("new", start=T0 + 5)])
    assert (result.added, result.updated, result.unchanged, result.kept) == (1, 1, 0, 1)
    assert store.get("a") == a_closed
    assert store.get("b") == b_escalated
    # A relapse (one more phase, open again) is further along than the closed version.
    relapse = replace(
        a_closed,
        end=None,
        signals=dict(a_closed.signals, phases=[*a_closed.signals["phases"], {"kind": "blackout"}]),
    )
    assert store.import_events([relapse]).updated == 1
    assert store.get("a") == relapse
    store.close()


BAD = [
    ("[1]", "entry 0: not an object"),
    ('{"id": "x"}', "not a JSON list of events"),
    ("[{]", "not JSON"),
    ('[{"id": "a", "entity": "e", "kind": "blackout"}]', "entry 0: start: missing"),
    ('[{"id": "", "entity": "e", "kind": "blackout", "start": 1}]', "entry 0: id: not a non"),
    ('[{"id": "a", "entity": "e", "kind": "meteor", "start": 1}]', "entry 0: kind: 'meteor'"),
    ('[{"id": "a", "entity": "e", "kind": "dns", "start": "soon"}]', "entry 0: start: not an"),
    ('[{"id": "a", "entity": "e", "kind": "dns", "start": NaN}]', "not JSON: NaN is not"),
    ('[{"id": "a", "entity": "e", "kind": "dns", "start": 1e300}]', "entry 0: start: not a time"),
    ('[{"id": "a", "entity": "e", "kind": "dns", "start": "nan"}]', "entry 0: start: not a"),
    ('[{"id": "a", "entity": "e", "kind": "dns", "start": 5, "end": 4}]', "end: before start"),
    ('[{"id": "a", "entity": "e", "kind": "dns", "start": 5, "evidence": []}]', "evidence: not"),
    ('[{"id": "a", "entity": "e", "kind": "dns", "start": 5, "more": 1}]', "unknown key 'more'"),
    (
        '[{"id": "a", "entity": "e", "kind": "dns", "start": 5},'
        ' {"id": "a", "entity": "e", "kind": "web", "start": 5}]',
        "entry 1: id 'a' already given, differently, by entry 0",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_exports_are_refused_naming_the_entry(text: str, message: str) -> None:
    """Every entry is checked before anything is written; the error names the file and the
    entry's index."""
    with pytest.raises(ValueError) as exc:
        parse_export(text, "backup.json")
    assert str(exc.value).startswith("backup.json: ") and message in str(exc.value)


def write_config(tmp: Path, state: Path) -> Path:
    path = tmp / f"{state.name}.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        state_dir: {state}
        entities:
          - name: star-jv
            tcp: ["127.0.0.1:9"]
        """)
    )
    return path


def test_outages_import_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`outages --format json` then `outages --import` on another machine's log gives the same
    list, while that log's writer (the daemon) is open and writing; a second import changes
    nothing; a bad file exits 1 with the entry named and writes nothing."""
    src_cfg = write_config(tmp_path, tmp_path / "old")
    src = EventStore(tmp_path / "old")
    for i in range(450):  # more than one import transaction
        src.save(event(f"e{i:03d}", start=T0 + i, end=T0 + i + 0.5))
    src.close()
    assert cli.main(["outages", "--config", str(src_cfg), "--format", "json"]) == 0
    dump = capsys.readouterr().out
    backup = tmp_path / "backup.json"
    backup.write_text(dump)

    dst_cfg = write_config(tmp_path, tmp_path / "new")
    daemon = EventStore(tmp_path / "new")  # the running daemon's writer
    daemon.save(event("live", start=T0 + 10**5))
    assert cli.main(["outages", "--config", str(dst_cfg), "--import", str(backup)]) == 0
    assert "450 events: 450 added, 0 updated, 0 unchanged, 0 kept" in capsys.readouterr().out
    assert daemon.save(replace(event("live", start=T0 + 10**5), end=T0 + 10**5 + 1))
    assert cli.main(["outages", "--config", str(dst_cfg), "--import", str(backup)]) == 0
    assert "0 added, 0 updated, 450 unchanged" in capsys.readouterr().out
    assert cli.main(["outages", "--config", str(dst_cfg), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[:-1] == json.loads(dump) and listed[-1]["id"] == "live"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([json.loads(dump)[0], {"id": "x"}]))
    assert cli.main(["outages", "--config", str(dst_cfg), "--import", str(bad)]) == 1
    assert f"{bad}: entry 1: entity: missing" in capsys.readouterr().err
    assert len(daemon.records()) == 451
    daemon.close()


def test_csv_cells_are_safe_in_a_spreadsheet(tmp_path: Path) -> None:
    """Text cells starting with = + - @ tab or CR get a leading apostrophe (OWASP); numbers,
    times and the JSON cells are written as they are."""
    store = EventStore(tmp_path)
    store.save(replace(event("=cmd|' /C calc'!A0", entity="+SUM(A1)", end=T0 + 1.5)))
    store.save(event("-2+3", entity="@x", start=T0 + 1))
    store.save(event("\tid", entity="\rent", start=T0 + 2, end=T0 + 3))
    store.save(event("plain", entity="star-jv", start=T0 + 3))
    rows = list(csv.DictReader(io.StringIO(render_csv(store.query(now=T0 + 4)))))
    assert [(r["id"], r["entity"]) for r in rows] == [
        ("'=cmd|' /C calc'!A0", "'+SUM(A1)"),
        ("'-2+3", "'@x"),
        ("'\tid", "'\rent"),
        ("plain", "star-jv"),
    ]
    assert rows[0]["duration_seconds"] == "1.5" and rows[0]["start"] == "2023-11-14T22:13:20Z"
    assert json.loads(rows[0]["signals"]) == event().signals
    store.close()
