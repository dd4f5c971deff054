"""Annotations: the typed record and its codec, the limits, the event log's table (migration,
import, the detector's saves), `dprk-monitor annotate` against a running daemon, and the
HTTP write behind a bearer token read from a file."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import config
from monitor.annotations import (
    MAX_BODY,
    MAX_LINKS,
    MAX_NOTES,
    AnnotationError,
    Annotations,
    AnnotationUpdate,
    Note,
    bearer_ok,
    merge_imported,
    read_token_file,
)
from monitor.daemon import Daemon
from monitor.events import FILENAME, EventStore, parse_export, render_csv
from tests.unit.test_api import fetch, many, write_config
from tests.unit.test_events import T0, event

ROOT = Path(__file__).parents[2]
TOKEN = "s3cret-token-0123456789abcdef"

# --- the record -------------------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs")), min_size=1, max_size=60
).filter(lambda s: s.strip() == s and s != "")
_ms = st.integers(min_value=0, max_value=253_402_300_799_000).map(lambda ms: ms / 1000)
_link = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}.example/{path}",
    st.sampled_from(["http", "https", "HTTPS"]),
    st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_~%-]{0,30}", fullmatch=True),
)
ANNOTATIONS = st.builds(
    Annotations,
    cause=st.none() | _text,
    maintenance=st.booleans(),
    notes=st.lists(st.builds(Note, _ms, _text), max_size=5).map(tuple),
    links=st.lists(_link, max_size=5, unique=True).map(tuple),
    updated=_ms,
)


@given(ANNOTATIONS)
@settings(max_examples=200, deadline=None)
def test_codec_round_trip(a: Annotations) -> None:
    """from_json(to_json(a)) == a, also through the stored text (dumps/loads)."""
    assert Annotations.from_json(a.to_json()) == a
    assert Annotations.loads(a.dumps()) == a
    assert json.loads(json.dumps(a.to_json())) == a.to_json()


LIMIT_CASES = [
    (dict(cause="x" * 201), "cause: 201 characters, at most 200 are allowed"),
    (dict(note="n" * 2001), "note: 2001 characters, at most 2000 are allowed"),
    (dict(cause="a\x07b"), "cause: control character U+0007 at position 1"),
    (dict(cause="two\nlines"), "cause: control character U+000A at position 3"),
    (
        dict(note="bell\x1b[31m"),
        "note: control character U+001B at position 4 (only line breaks are allowed)",
    ),
    (dict(note="   "), "note: empty"),
    (dict(links=("ftp://example.org/x",)), "link: only http and https URLs are allowed"),
    (dict(links=("javascript:alert(1)",)), "link: only http and https URLs are allowed"),
    (dict(links=("http:///path",)), "link: no host in 'http:///path'"),
    (dict(links=("http://a b.example/",)), "link: a URL holds no spaces"),
    (dict(links=("http://example.org:99999/",)), "link: not a URL (Port out of range"),
    (dict(), "nothing to annotate: give a cause, a note, a link or the maintenance flag"),
]


@pytest.mark.parametrize(("kw", "message"), LIMIT_CASES)
def test_bad_updates_are_refused_with_the_reason(kw: dict[str, Any], message: str) -> None:
    """Each invalid change is refused with an error naming the field and the limit."""
    with pytest.raises(AnnotationError) as e:
        AnnotationUpdate(**kw)
    assert str(e.value).startswith(message), str(e.value)


def test_note_and_link_counts_are_bounded() -> None:
    """The 51st note and the 21st link are refused, and nothing changes."""
    a: Annotations | None = None
    for i in range(MAX_NOTES):
        a = AnnotationUpdate(note=f"n{i}").apply(a, T0 + i)
    assert a is not None and len(a.notes) == MAX_NOTES
    with pytest.raises(AnnotationError, match="already has 50 notes"):
        AnnotationUpdate(note="one more").apply(a, T0 + 100)
    links = tuple(f"https://e{i}.example/" for i in range(MAX_LINKS))
    b = AnnotationUpdate(links=links).apply(None, T0)
    with pytest.raises(AnnotationError, match="would have 21 links, at most 20"):
        AnnotationUpdate(links=("https://one-more.example/",)).apply(b, T0)
    with pytest.raises(AnnotationError, match="links: 21, at most 20"):
        AnnotationUpdate.from_json({"links": [*links, "https://x.example/"]})


def test_update_semantics() -> None:
    """A cause is set and cleared with "", notes are appended dated, links are not added
    twice, the maintenance flag is set and cleared, `updated` never goes back."""
    a = AnnotationUpdate(cause="fibre cut", note="first", maintenance=True).apply(None, T0)
    assert (a.cause, a.maintenance, a.notes, a.updated) == (
        "fibre cut",
        True,
        (Note(T0, "first"),),
        T0,
    )
    b = AnnotationUpdate(links=("https://a.example/", "https://a.example/")).apply(a, T0 - 50)
    assert b.links == ("https://a.example/",) and b.updated == T0  # a clock step back
    c = AnnotationUpdate(cause="", maintenance=False, note="line 1\nline 2").apply(b, T0 + 9)
    assert c.cause is None and not c.maintenance and c.notes[-1] == Note(T0 + 9, "line 1\nline 2")
    assert c.links == b.links


def test_from_json_is_strict() -> None:
    """A stored or imported document with an unknown key or a bad field is refused by name."""
    good = AnnotationUpdate(cause="x").apply(None, T0).to_json()
    with pytest.raises(AnnotationError, match="unknown key 'colour'"):
        Annotations.from_json({**good, "colour": "red"})
    with pytest.raises(AnnotationError, match=r"links\[0\]: only http and https"):
        Annotations.from_json({**good, "links": ["file:///etc/passwd"]})
    with pytest.raises(AnnotationError, match="maintenance: expected true or false"):
        Annotations.from_json({**good, "maintenance": "yes"})
    with pytest.raises(AnnotationError, match="unknown key 'colour'"):
        AnnotationUpdate.from_json({"colour": "red"})


def test_import_merge_keeps_the_newer() -> None:
    """An import writes annotations when none are stored or its version is newer."""
    old = AnnotationUpdate(cause="old").apply(None, T0)
    new = AnnotationUpdate(cause="new").apply(None, T0 + 1)
    assert merge_imported(None, old) == old
    assert merge_imported(old, new) == new
    assert merge_imported(new, old) is None
    assert merge_imported(new, new) is None
    assert merge_imported(new, None) is None


# --- the event log ------------------------------------------------------------------------------


def test_store_annotates_and_the_detector_saves_do_not_erase(tmp_path: Path) -> None:
    """annotate() stores annotations readable by every query; an unknown id gives None; the
    detector's later saves of the event (it knows nothing of them) keep them."""
    store = EventStore(tmp_path)
    store.save(event("e1"))
    assert store.annotate("nope", lambda old: AnnotationUpdate(cause="x").apply(old, T0)) is None
    a = store.annotate("e1", lambda old: AnnotationUpdate(cause="storm").apply(old, T0 + 5))
    assert a is not None and a.cause == "storm"
    store.save(event("e1", end=T0 + 60))  # the detector closes it
    ev = store.get("e1")
    assert ev is not None and ev.end == T0 + 60 and ev.annotations == a
    assert store.query()[0]["annotations"]["cause"] == "storm"
    ro = EventStore(tmp_path, readonly=True)
    assert ro.records()[0].annotations == a
    ro.close()
    store.close()


def test_schema_2_log_is_readable_and_migrated(tmp_path: Path) -> None:
    """A schema 2 log (no annotations table) is read as it is by a read-only store, and gets
    the table (schema 3) at the first open for writing, every event kept."""
    store = EventStore(tmp_path)
    store.save(event("e1"))
    store.close()
    conn = sqlite3.connect(tmp_path / FILENAME)
    conn.executescript("DROP TABLE annotations; PRAGMA user_version=2;")
    conn.close()
    ro = EventStore(tmp_path, readonly=True)
    assert [e.id for e in ro.records()] == ["e1"] and ro.records()[0].annotations is None
    ro.close()
    conn = sqlite3.connect(tmp_path / FILENAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2  # not written
    conn.close()
    store = EventStore(tmp_path)
    assert store.annotate("e1", lambda old: AnnotationUpdate(cause="x").apply(old, T0))
    store.close()
    conn = sqlite3.connect(tmp_path / FILENAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    conn.close()


def test_import_carries_annotations_and_is_idempotent(tmp_path: Path) -> None:
    """An export's annotations are imported with the events; importing the same file again
    changes nothing; a newer version replaces the stored one, an older one does not."""
    src = EventStore(tmp_path / "a")
    src.save(event("e1", end=T0 + 60))
    src.save(event("e2", start=T0 + 100))
    src.annotate("e1", lambda old: AnnotationUpdate(cause="cut", note="n").apply(old, T0 + 70))
    text = json.dumps(src.query(now=T0 + 200))
    src.close()
    dst = EventStore(tmp_path / "b")
    first = dst.import_events(parse_export(text))
    assert (first.added, first.updated, first.unchanged) == (2, 0, 0)
    again = dst.import_events(parse_export(text))
    assert (again.added, again.updated, again.unchanged) == (0, 0, 2)
    got = dst.get("e1")
    assert got is not None and got.annotations is not None and got.annotations.cause == "cut"
    # The destination annotates further: an import of the older version keeps that.
    dst.annotate("e1", lambda old: AnnotationUpdate(cause="cable cut").apply(old, T0 + 80))
    kept = dst.import_events(parse_export(text))
    assert kept.unchanged == 2
    got = dst.get("e1")
    assert got is not None and got.annotations is not None
    assert got.annotations.cause == "cable cut"
    newer = json.loads(text)
    newer[0]["annotations"]["cause"] = "power"
    newer[0]["annotations"]["updated"] = "2030-01-01T00:00:00Z"
    res = dst.import_events(parse_export(json.dumps(newer)))
    assert (res.updated, res.unchanged) == (1, 1)
    got = dst.get("e1")
    assert got is not None and got.annotations is not None and got.annotations.cause == "power"
    dst.close()
    bad = json.loads(text)
    bad[0]["annotations"]["links"] = ["javascript:alert(1)"]
    with pytest.raises(ValueError, match=r"entry 0: annotations: links\[0\]: only http"):
        parse_export(json.dumps(bad))


def test_csv_has_an_annotations_column_that_no_spreadsheet_runs(tmp_path: Path) -> None:
    """The CSV export's `annotations` column holds the annotations as JSON text; a cause
    written as a formula never starts a cell."""
    store = EventStore(tmp_path)
    store.save(event("e1"))
    store.save(event("e2", start=T0 + 5))
    cause = '=HYPERLINK("http://evil.example/","x")'
    store.annotate("e1", lambda old: AnnotationUpdate(cause=cause).apply(old, T0))
    rows = list(csv.DictReader(io.StringIO(render_csv(store.query(now=T0 + 10)))))
    assert json.loads(rows[0]["annotations"])["cause"] == cause
    assert rows[1]["annotations"] == ""
    for row in rows:
        assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values() if v), row
    store.close()


# --- `dprk-monitor annotate` against a running daemon ------------------------------------------


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "annotate", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


async def test_cli_annotates_while_the_daemon_runs(tmp_path: Path) -> None:
    """`annotate` run in another process while the daemon serves: the daemon's API shows the
    annotation at its next read; an unknown id and a bad link exit 1 with one line."""
    many(tmp_path, 3)
    cfg = write_config(tmp_path)
    d = Daemon(config.load(cfg), str(cfg))
    await d.start()
    try:
        code, _, body = await fetch(d, "/api/v1/outages/ev00001")
        assert code == 200 and "annotations" not in json.loads(body)
        res = await asyncio.to_thread(
            cli,
            cfg,
            "ev00001",
            "--cause",
            "power cut in Pyongyang",
            "--note",
            "seen by two vantages",
            "--link",
            "https://example.org/report",
            "--maintenance",
        )
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["annotations"]["cause"] == "power cut in Pyongyang"
        code, _, body = await fetch(d, "/api/v1/outages/ev00001")
        ann = json.loads(body)["annotations"]
        assert ann["cause"] == "power cut in Pyongyang" and ann["maintenance"] is True
        assert ann["links"] == ["https://example.org/report"]
        assert [n["text"] for n in ann["notes"]] == ["seen by two vantages"]
        code, _, body = await fetch(d, "/api/v1/outages?limit=10")
        assert [("annotations" in e) for e in json.loads(body)] == [False, True, False]
        res = await asyncio.to_thread(cli, cfg, "ev00001", "--no-maintenance")
        assert res.returncode == 0, res.stderr
        code, _, body = await fetch(d, "/api/v1/outages/ev00001")
        assert json.loads(body)["annotations"]["maintenance"] is False

        res = await asyncio.to_thread(cli, cfg, "nope", "--cause", "x")
        assert res.returncode == 1 and "no event with id 'nope'" in res.stderr
        assert res.stderr.count("\n") == 1
        res = await asyncio.to_thread(cli, cfg, "ev00001", "--link", "ftp://x.example/")
        assert res.returncode == 1
        assert "link: only http and https URLs are allowed" in res.stderr
        res = await asyncio.to_thread(cli, cfg, "ev00001")
        assert res.returncode == 1 and "nothing to annotate" in res.stderr
    finally:
        await d.stop()


# --- the HTTP write ------------------------------------------------------------------------


def token_config(tmp: Path, token_file: Path | None) -> Path:
    path = write_config(tmp)
    if token_file is not None:
        path.write_text(path.read_text() + f"api:\n  annotation_token_file: {token_file}\n")
    return path


def token_file(tmp: Path, mode: int = 0o600, text: str = TOKEN + "\n") -> Path:
    p = tmp / "token"
    p.write_text(text)
    os.chmod(p, mode)
    return p


TOKEN_FILE_CASES = [
    (0o644, TOKEN, "is readable by every user (mode 0644)"),
    (0o600, "short", "the token has 5 characters, at least 16 are needed"),
    (0o600, "", "the token has 0 characters"),
    (0o600, TOKEN + "\nsecond line", "the token must be one line"),
]


@pytest.mark.parametrize(("mode", "text", "message"), TOKEN_FILE_CASES)
def test_token_file_rules(tmp_path: Path, mode: int, text: str, message: str) -> None:
    """A token file that is world-readable, empty, short or several lines is a config error
    at the key's line, saying why."""
    path = token_config(tmp_path, token_file(tmp_path, mode, text))
    with pytest.raises(config.ConfigError) as e:
        config.load(path)
    assert f"api.annotation_token_file: '{tmp_path}/token'" in str(e.value)
    assert message in str(e.value)
    assert ":9: " in str(e.value)  # the line of the key


def test_token_file_is_read_at_load(tmp_path: Path) -> None:
    """A good token file gives the token to the running config, which never shows it."""
    cfg = config.load(token_config(tmp_path, token_file(tmp_path)))
    assert cfg.api.annotation_token == TOKEN
    assert TOKEN not in repr(cfg)
    with pytest.raises(ValueError, match="cannot read"):
        read_token_file(str(tmp_path / "missing"))


def test_bearer_comparison() -> None:
    """Only `Bearer <the token>` passes (scheme case-insensitive)."""
    assert bearer_ok(f"Bearer {TOKEN}", TOKEN)
    assert bearer_ok(f"bearer {TOKEN}", TOKEN)
    for bad in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "):
        assert not bearer_ok(bad, TOKEN)


async def post(
    d: Daemon, path: str, body: bytes, auth: str | None = None
) -> tuple[int, dict[str, str], Any]:
    def run() -> tuple[int, dict[str, str], Any]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{d.listen_port}{path}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        if auth is not None:
            req.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), json.loads(r.read())
        except urllib.error.HTTPError as e:
            with e:
                return e.code, dict(e.headers), json.loads(e.read())

    return await asyncio.to_thread(run)


async def test_http_write_is_off_without_a_token_file(tmp_path: Path) -> None:
    """Without `api.annotation_token_file` the POST is 403 (saying how to turn it on), token
    or not, and nothing is stored."""
    many(tmp_path, 2)
    cfg = token_config(tmp_path, None)
    d = Daemon(config.load(cfg), str(cfg))
    await d.start()
    try:
        body = json.dumps({"cause": "x"}).encode()
        for auth in (None, f"Bearer {TOKEN}"):
            code, _, doc = await post(d, "/api/v1/outages/ev00001/annotations", body, auth)
            assert code == 403 and "api.annotation_token_file" in doc["error"]
        _, _, got = await fetch(d, "/api/v1/outages/ev00001")
        assert "annotations" not in json.loads(got)
    finally:
        await d.stop()


async def test_http_write_with_a_token(tmp_path: Path) -> None:
    """With a token file: no or a wrong token is 401, a bad body 400, an unknown id 404, a
    body over the cap 413; the right token stores the change and answers the event, which
    GET .../annotations then shows. A reload that drops the key turns the route off."""
    many(tmp_path, 2)
    cfg = token_config(tmp_path, token_file(tmp_path))
    d = Daemon(config.load(cfg), str(cfg))
    await d.start()
    path = "/api/v1/outages/ev00001/annotations"
    good = json.dumps(
        {"cause": "fibre cut", "note": "hi", "links": ["https://x.example/"], "maintenance": True}
    ).encode()
    try:
        code, headers, _ = await post(d, path, good)
        assert code == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        code, _, _ = await post(d, path, good, "Bearer wrong-token-0123456789")
        assert code == 401
        code, _, doc = await post(d, path, b'{"cause": 5}', f"Bearer {TOKEN}")
        assert code == 400 and doc["error"] == "cause: expected a string"
        code, _, doc = await post(d, path, b"not json", f"Bearer {TOKEN}")
        assert code == 400 and "not JSON" in doc["error"]
        code, _, _ = await post(d, "/api/v1/outages/nope/annotations", good, f"Bearer {TOKEN}")
        assert code == 404
        big = json.dumps({"note": "x" * (MAX_BODY + 1)}).encode()
        code, _, doc = await post(d, path, big, f"Bearer {TOKEN}")
        assert code == 413
        _, _, got = await fetch(d, "/api/v1/outages/ev00001")
        assert "annotations" not in json.loads(got)  # nothing stored by the refusals
        code, _, got = await fetch(d, path)
        assert code == 200 and json.loads(got) == {"id": "ev00001", "annotations": None}
        code, _, _ = await fetch(d, "/api/v1/outages/nope/annotations")
        assert code == 404

        code, _, doc = await post(d, path, good, f"Bearer {TOKEN}")
        assert code == 200 and doc["id"] == "ev00001"
        assert doc["annotations"]["cause"] == "fibre cut"
        assert doc["annotations"]["links"] == ["https://x.example/"]
        _, _, got = await fetch(d, "/api/v1/outages/ev00001")
        assert json.loads(got)["annotations"] == doc["annotations"]
        _, _, got = await fetch(d, path)
        assert json.loads(got)["annotations"] == doc["annotations"]

        cfg.write_text(write_config(tmp_path).read_text())  # the api block removed
        assert d.reload()
        code, _, _ = await post(d, path, good, f"Bearer {TOKEN}")
        assert code == 403
    finally:
        await d.stop()


_MINIMAL = "entities:\n  - name: a\n    tcp: ['127.0.0.1:9']\n"
API_CONFIG_CASES = [
    (
        "api:\n  base_url: ftp://x.example/\n",
        "c.yaml:5: api.base_url: URL scheme must be http or https, got 'ftp://x.example/'",
    ),
    (
        "api:\n  base_url: https://x.example/a?b=1\n",
        "c.yaml:5: api.base_url: a base URL has no query or fragment: 'https://x.example/a?b=1'",
    ),
    (
        "api:\n  bogus: 1\n",
        "c.yaml:5: api.bogus: unknown key (allowed: annotation_token_file, base_url)",
    ),
]


@pytest.mark.parametrize(("extra", "message"), API_CONFIG_CASES)
def test_api_config_errors(extra: str, message: str) -> None:
    """The `api:` block's invalid values are refused with the key path and the reason."""
    with pytest.raises(config.ConfigError) as e:
        config.parse(_MINIMAL + extra, "c.yaml")
    assert str(e.value) == message


def test_api_config_defaults_and_base_url() -> None:
    """Without `api:` writes are off and no base URL is set; a base URL loses its last /."""
    assert config.parse(_MINIMAL, "c.yaml").api == config.ApiConfig()
    cfg = config.parse(_MINIMAL + "api:\n  base_url: https://x.example/p/\n", "c.yaml")
    assert cfg.api.base_url == "https://x.example/p" and cfg.api.annotation_token is None
