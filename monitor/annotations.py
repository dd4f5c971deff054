"""What people add to an outage event afterwards: a cause, the maintenance flag, dated notes
and links. A typed record (`Annotations`) with one codec (`to_json` / `from_json`), the change
one `annotate` command or HTTP request makes (`AnnotationUpdate`), and the edges that use them:
the `dprk-monitor annotate` command and the bearer token of the HTTP write.

Annotations are kept in the event log (`annotations` table, see monitor/events.py), apart from
the detector's rows: the detector rewrites an event whole at every change and never touches
them. The JSON form is what the API, the exports and the feeds show:

    {"cause": str|null, "maintenance": bool, "notes": [{"at": ISO, "text": str}],
     "links": [str], "updated": ISO}

Unlike evidence (which the daemon writes), annotations are typed by people: `from_json` and
the update are strict, and every limit error names the field and the limit. Limits keep one
event's row small (a row is read on every page of the API): a cause of at most 200
characters, notes of at most 2,000 characters and 50 notes, at most 20 links of http(s) URLs.
Control characters are refused everywhere (a note may hold line breaks).
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import stat
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit

from monitor.detect.times import JSON, iso, parse_time

if TYPE_CHECKING:
    from monitor.events import EventStore

MAX_CAUSE = 200
MAX_NOTE = 2_000
MAX_NOTES = 50
MAX_LINKS = 20
MAX_LINK = 2_048  # characters of a URL: what browsers and servers commonly accept
# An HTTP write's body: the largest valid update (a note of 2,000 characters, each escaped as
# \uXXXX, and 20 links of 2,048) is ~55 KiB of JSON.
MAX_BODY = 64 * 1024
# A bearer token read from the token file: long enough to resist guessing, short enough to be
# one header line.
MIN_TOKEN = 16
MAX_TOKEN = 4_096

_UPDATE_KEYS = ("cause", "note", "links", "link", "maintenance")
_JSON_KEYS = frozenset(("cause", "maintenance", "notes", "links", "updated"))


class AnnotationError(ValueError):
    """Input that cannot be an annotation; the message names the field and says why."""


# --- validation (pure) ------------------------------------------------------------------------


def _check_text(name: str, value: object, limit: int, newlines: bool = False) -> str:
    """A non-blank string of at most `limit` characters without control characters (line
    breaks allowed where `newlines`); surrounding whitespace is stripped."""
    if not isinstance(value, str):
        raise AnnotationError(f"{name}: expected a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise AnnotationError(f"{name}: empty")
    if len(text) > limit:
        raise AnnotationError(f"{name}: {len(text)} characters, at most {limit} are allowed")
    for i, c in enumerate(text):
        if newlines and c == "\n":
            continue
        # Cc: C0, DEL and C1 controls; Zl/Zp: line separators; Cs: lone surrogates (not UTF-8).
        if unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs"):
            allowed = " (only line breaks are allowed)" if newlines else ""
            raise AnnotationError(
                f"{name}: control character U+{ord(c):04X} at position {i}{allowed}"
            )
    return text


def check_link(value: object, name: str = "link") -> str:
    """An absolute http or https URL with a host, as given (stripped)."""
    text = _check_text(name, value, MAX_LINK)
    if any(c.isspace() for c in text):
        raise AnnotationError(f"{name}: a URL holds no spaces: {text!r}")
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError as e:
        raise AnnotationError(f"{name}: not a URL ({e}): {text!r}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise AnnotationError(f"{name}: only http and https URLs are allowed, got {text!r}")
    if not parts.hostname:
        raise AnnotationError(f"{name}: no host in {text!r}")
    return text


def _time(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise AnnotationError(f"{name}: not a time: {value!r}")
    try:
        return parse_time(value)
    except (ValueError, OverflowError) as e:
        raise AnnotationError(f"{name}: {e}") from None


# --- the record ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Note:
    """A dated remark: `at` is when it was written (epoch seconds)."""

    at: float
    text: str

    def to_json(self) -> JSON:
        return {"at": iso(self.at), "text": self.text}

    @classmethod
    def from_json(cls, doc: object, name: str = "note") -> Note:
        if not isinstance(doc, dict):
            raise AnnotationError(f"{name}: expected an object with 'at' and 'text'")
        unknown = sorted(set(doc) - {"at", "text"})
        if unknown:
            raise AnnotationError(f"{name}: unknown key {unknown[0]!r}")
        if "at" not in doc or "text" not in doc:
            raise AnnotationError(f"{name}: needs 'at' and 'text'")
        return cls(
            _time(f"{name}.at", doc["at"]),
            _check_text(f"{name}.text", doc["text"], MAX_NOTE, newlines=True),
        )


@dataclass(frozen=True, slots=True)
class Annotations:
    """An event's annotations. `updated` is when they last changed (epoch seconds): an
    import keeps the newer of two versions by it."""

    cause: str | None = None
    maintenance: bool = False
    notes: tuple[Note, ...] = ()
    links: tuple[str, ...] = ()
    updated: float = 0.0

    def __post_init__(self) -> None:
        # Limits hold for every instance, however built: a bad one never reaches the log.
        if self.cause is not None:
            _check_text("cause", self.cause, MAX_CAUSE)
        if len(self.notes) > MAX_NOTES:
            raise AnnotationError(f"notes: {len(self.notes)}, at most {MAX_NOTES} are kept")
        if len(self.links) > MAX_LINKS:
            raise AnnotationError(f"links: {len(self.links)}, at most {MAX_LINKS} are kept")

    def to_json(self) -> JSON:
        return {
            "cause": self.cause,
            "maintenance": self.maintenance,
            "notes": [n.to_json() for n in self.notes],
            "links": list(self.links),
            "updated": iso(self.updated),
        }

    @classmethod
    def from_json(cls, doc: object) -> Annotations:
        """The JSON form read back (a stored row, an imported export); AnnotationError names
        the first field that is not valid."""
        if not isinstance(doc, dict):
            raise AnnotationError("expected an object")
        unknown = sorted(set(doc) - _JSON_KEYS)
        if unknown:
            raise AnnotationError(
                f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_JSON_KEYS))})"
            )
        cause = doc.get("cause")
        maintenance = doc.get("maintenance", False)
        if not isinstance(maintenance, bool):
            raise AnnotationError("maintenance: expected true or false")
        notes = doc.get("notes", [])
        links = doc.get("links", [])
        if not isinstance(notes, list):
            raise AnnotationError("notes: expected a list")
        if not isinstance(links, list):
            raise AnnotationError("links: expected a list")
        if "updated" not in doc:
            raise AnnotationError("updated: missing")
        return cls(
            cause=None if cause is None else _check_text("cause", cause, MAX_CAUSE),
            maintenance=maintenance,
            notes=tuple(Note.from_json(n, f"notes[{i}]") for i, n in enumerate(notes)),
            links=tuple(check_link(u, f"links[{i}]") for i, u in enumerate(links)),
            updated=_time("updated", doc["updated"]),
        )

    def dumps(self) -> str:
        """The stored text (compact JSON)."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def loads(cls, text: str) -> Annotations:
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise AnnotationError(f"not JSON: {e}") from None
        return cls.from_json(doc)

    def flat(self) -> str:
        """One line for people (a feed's summary): cause, maintenance, counts."""
        parts = []
        if self.cause is not None:
            parts.append(f"cause: {self.cause}")
        if self.maintenance:
            parts.append("maintenance")
        if self.notes:
            parts.append(f"{len(self.notes)} note{'s' if len(self.notes) > 1 else ''}")
        if self.links:
            parts.append(f"{len(self.links)} link{'s' if len(self.links) > 1 else ''}")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class AnnotationUpdate:
    """One change: set (or with "" clear) the cause, append a note, add links (a link already
    there is not added twice), set or clear the maintenance flag. Fields left None or empty
    are not touched."""

    cause: str | None = None
    note: str | None = None
    links: tuple[str, ...] = field(default=())
    maintenance: bool | None = None

    def __post_init__(self) -> None:
        if self.cause is None and self.note is None and not self.links and self.maintenance is None:
            raise AnnotationError(
                "nothing to annotate: give a cause, a note, a link or the maintenance flag"
            )
        if self.cause is not None and self.cause != "":
            _check_text("cause", self.cause, MAX_CAUSE)
        if self.note is not None:
            _check_text("note", self.note, MAX_NOTE, newlines=True)
        for i, u in enumerate(self.links):
            check_link(u, f"links[{i}]" if len(self.links) > 1 else "link")

    @classmethod
    def from_json(cls, doc: object) -> AnnotationUpdate:
        """An HTTP body: {"cause", "note", "links" (a list) or "link", "maintenance"}."""
        if not isinstance(doc, dict):
            raise AnnotationError("expected a JSON object")
        unknown = sorted(set(doc) - set(_UPDATE_KEYS))
        if unknown:
            raise AnnotationError(f"unknown key {unknown[0]!r} (known: {', '.join(_UPDATE_KEYS)})")
        cause, note, maintenance = doc.get("cause"), doc.get("note"), doc.get("maintenance")
        if cause is not None and not isinstance(cause, str):
            raise AnnotationError("cause: expected a string")
        if note is not None and not isinstance(note, str):
            raise AnnotationError("note: expected a string")
        if maintenance is not None and not isinstance(maintenance, bool):
            raise AnnotationError("maintenance: expected true or false")
        links: list[object] = []
        if doc.get("links") is not None:
            if not isinstance(doc["links"], list):
                raise AnnotationError("links: expected a list of URLs")
            links += doc["links"]
        if doc.get("link") is not None:
            links.append(doc["link"])
        if len(links) > MAX_LINKS:
            raise AnnotationError(f"links: {len(links)}, at most {MAX_LINKS} are kept")
        checked = tuple(check_link(u, f"links[{i}]") for i, u in enumerate(links))
        return cls(cause, note, checked, maintenance)

    def apply(self, old: Annotations | None, now: float) -> Annotations:
        """The annotations after this change, `updated` = now (never before the last
        change: an import keeps the newer version by it). Raises AnnotationError when a limit
        would be passed; nothing is changed then."""
        base = old if old is not None else Annotations()
        cause = base.cause
        if self.cause is not None:
            cause = _check_text("cause", self.cause, MAX_CAUSE) if self.cause.strip() else None
        notes = base.notes
        if self.note is not None:
            if len(notes) >= MAX_NOTES:
                raise AnnotationError(
                    f"note: the event already has {MAX_NOTES} notes, the most it keeps"
                )
            text = _check_text("note", self.note, MAX_NOTE, newlines=True)
            notes = (*notes, Note(max(now, base.updated), text))
        links = list(base.links)
        for u in self.links:
            if u.strip() not in links:
                links.append(u.strip())
        if len(links) > MAX_LINKS:
            raise AnnotationError(
                f"link: the event would have {len(links)} links, at most {MAX_LINKS} are kept"
            )
        maintenance = base.maintenance if self.maintenance is None else self.maintenance
        return Annotations(cause, maintenance, notes, tuple(links), max(now, base.updated))


def merge_imported(stored: Annotations | None, imported: Annotations | None) -> Annotations | None:
    """What an import stores: the imported annotations when there are none yet or they are
    newer (by `updated`), else None (keep what is stored)."""
    if imported is None:
        return None
    if stored is None or imported.updated > stored.updated:
        return None if stored == imported else imported
    return None


# --- the bearer token of the HTTP write (edges: files) --------------------------------------


def read_token_file(path: str) -> str:
    """The token in `path` (its first line, stripped). ValueError says why the file cannot be
    used: not a regular file, readable by every user, empty, too short, not one line."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as e:
        raise ValueError(f"cannot read {path!r}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path!r} is not a regular file")
        if st.st_mode & stat.S_IROTH:
            raise ValueError(
                f"{path!r} is readable by every user (mode {stat.S_IMODE(st.st_mode):04o}): "
                f"the token would be no secret; chmod o-rwx {path}"
            )
        raw = os.read(fd, MAX_TOKEN + 2)
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"{path!r}: the token must be ASCII text") from None
    lines = text.splitlines()
    token = lines[0].strip() if lines else ""
    if any(line.strip() for line in lines[1:]):
        raise ValueError(f"{path!r}: the token must be one line")
    if len(token) > MAX_TOKEN:
        raise ValueError(f"{path!r}: the token is longer than {MAX_TOKEN} characters")
    if len(token) < MIN_TOKEN:
        raise ValueError(
            f"{path!r}: the token has {len(token)} characters, at least {MIN_TOKEN} are "
            "needed (e.g. `openssl rand -hex 32 > FILE`)"
        )
    if not token.isprintable() or any(c.isspace() for c in token):
        raise ValueError(f"{path!r}: the token holds spaces or control characters")
    return token


def bearer_ok(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `Bearer <token>`; the token is compared in
    constant time (its length is not secret)."""
    if header is None:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


# --- `dprk-monitor annotate` (edges: the event log) -----------------------------------------


def update_from_args(args: argparse.Namespace) -> AnnotationUpdate:
    return AnnotationUpdate(
        cause=args.cause,
        note=args.note,
        links=tuple(args.link or ()),
        maintenance=args.maintenance,
    )


def annotate(
    store: EventStore, event_id: str, update: AnnotationUpdate, clock: Callable[[], float]
) -> Annotations | None:
    """Apply `update` to the event's stored annotations in one write transaction; None when
    the log holds no event with this id. Raises AnnotationError, StoreError."""
    return store.annotate(event_id, lambda old: update.apply(old, clock()))


def run_cli(
    state_dir: Path,
    args: argparse.Namespace,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    clock: Callable[[], float] = time.time,
) -> int:
    """`dprk-monitor annotate ID ...`: prints the event's annotations as JSON; 1 with a
    one-line reason on a bad value, an unknown id or a log that cannot be written. Safe while
    the daemon runs (WAL, a short busy timeout); the daemon shows the change at its next
    read."""
    from monitor.events import FILENAME, EventStore, StoreError

    try:
        update = update_from_args(args)
    except AnnotationError as e:
        print(f"dprk-monitor: {e}", file=err)
        return 1
    path = Path(state_dir) / FILENAME
    if not path.exists():
        print(f"dprk-monitor: no event log at {path}: no event {args.id!r}", file=err)
        return 1
    try:
        store = EventStore(state_dir)
    except StoreError as e:
        print(f"dprk-monitor: {e}", file=err)
        return 1
    try:
        result = annotate(store, args.id, update, clock)
    except (AnnotationError, StoreError) as e:
        print(f"dprk-monitor: {e}", file=err)
        return 1
    finally:
        store.close()
    if result is None:
        print(f"dprk-monitor: no event with id {args.id!r} in {path}", file=err)
        return 1
    out.write(json.dumps({"id": args.id, "annotations": result.to_json()}, indent=2) + "\n")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `dprk-monitor annotate` (the parser lives in cli.py)."""
    p.add_argument("id", help="the event's id (from `dprk-monitor outages` or the API)")
    p.add_argument("--cause", help=f"what caused it (at most {MAX_CAUSE} characters; '' clears)")
    p.add_argument("--note", help=f"a note, dated now (at most {MAX_NOTE} characters)")
    p.add_argument(
        "--link",
        action="append",
        metavar="URL",
        help="an http(s) link (a report, a post); repeat for several",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--maintenance",
        dest="maintenance",
        action="store_true",
        default=None,
        help="mark it as planned maintenance",
    )
    g.add_argument(
        "--no-maintenance",
        dest="maintenance",
        action="store_false",
        default=None,
        help="clear the mark",
    )


def stored(text: object) -> Annotations | None:
    """A stored annotations cell read back; None when absent or not readable (an event is
    never lost over its annotations)."""
    if not isinstance(text, str):
        return None
    try:
        return Annotations.loads(text)
    except AnnotationError:
        return None


# --- the OpenAPI description (pure data; monitor/openapi.py puts it in the document) -------

_TIME = {"type": "string", "description": "UTC ISO 8601 with a Z"}
_ERR = {"$ref": "#/components/schemas/Error"}


def _answer(schema: JSON, description: str) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OPENAPI_SCHEMAS: JSON = {
    "Annotations": {
        "type": "object",
        "description": "what people added to the event (`dprk-monitor annotate` or the POST)",
        "required": ["cause", "maintenance", "notes", "links", "updated"],
        "additionalProperties": False,
        "properties": {
            "cause": {"type": ["string", "null"], "maxLength": MAX_CAUSE},
            "maintenance": {"type": "boolean", "description": "planned maintenance"},
            "notes": {
                "type": "array",
                "maxItems": MAX_NOTES,
                "items": {
                    "type": "object",
                    "required": ["at", "text"],
                    "properties": {"at": _TIME, "text": {"type": "string", "maxLength": MAX_NOTE}},
                },
            },
            "links": {
                "type": "array",
                "maxItems": MAX_LINKS,
                "items": {"type": "string", "description": "an http or https URL"},
            },
            "updated": {**_TIME, "description": "when they last changed"},
        },
    },
    "AnnotationUpdate": {
        "type": "object",
        "description": "one change; fields left out are not touched",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "cause": {
                "type": "string",
                "maxLength": MAX_CAUSE,
                "description": "sets the cause; an empty string clears it",
            },
            "note": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_NOTE,
                "description": "a note to append, dated now (line breaks allowed)",
            },
            "links": {
                "type": "array",
                "maxItems": MAX_LINKS,
                "items": {"type": "string", "maxLength": MAX_LINK},
                "description": "http(s) URLs to add (one already there is not added twice)",
            },
            "link": {"type": "string", "maxLength": MAX_LINK, "description": "one URL to add"},
            "maintenance": {"type": "boolean", "description": "sets or clears the mark"},
        },
    },
}

OPENAPI_PATH: JSON = {
    "get": {
        "operationId": "getOutageAnnotations",
        "summary": "An outage event's annotations (null: none yet)",
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        "responses": {
            "200": _answer(
                {
                    "type": "object",
                    "required": ["id", "annotations"],
                    "properties": {
                        "id": {"type": "string"},
                        "annotations": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/Annotations"},
                                {"type": "null"},
                            ]
                        },
                    },
                },
                "the event's annotations",
            ),
            "404": _answer(_ERR, "no event has this id"),
            "503": _answer(_ERR, "the event log cannot be read"),
        },
    },
    "post": {
        "operationId": "annotateOutage",
        "summary": "Add a cause, a note, links or the maintenance mark to an outage event",
        "description": (
            "Off by default: answers 403 unless the configuration names a token file "
            "(`api.annotation_token_file`); then the header `Authorization: Bearer <token>` "
            "(the file's token) is needed, 401 without it. The body is at most "
            f"{MAX_BODY} bytes. Answers the annotated event. The same change as "
            "`dprk-monitor annotate`. (No OpenAPI security requirement is declared: by "
            "default the route is off for everyone, which a security scheme cannot say.)"
        ),
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/AnnotationUpdate"}}
            },
        },
        "responses": {
            "200": _answer({"$ref": "#/components/schemas/Event"}, "the annotated event"),
            "400": _answer(_ERR, "the body is not a valid change (the message names the field)"),
            "401": _answer(_ERR, "no or a wrong bearer token"),
            "403": _answer(_ERR, "annotation writes are off (no token file configured)"),
            "404": _answer(_ERR, "no event has this id"),
            "413": _answer(_ERR, f"the body is larger than {MAX_BODY} bytes"),
            "503": _answer(_ERR, "the event log cannot be written"),
        },
    },
}
