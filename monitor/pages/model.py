"""What the pages read, as protocols: a history point and the history store (monitor/history,
built alongside; the pages only need these attributes), and an event's annotations read from
the event's JSON form. Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from monitor.detect.evidence import time_or_none


class Point(Protocol):
    """One history point (monitor.history.HistoryPoint): an entity at a step."""

    @property
    def t(self) -> float: ...
    @property
    def step(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def targets(self) -> Mapping[str, int]: ...
    @property
    def up(self) -> Mapping[str, int]: ...
    @property
    def loss(self) -> float | None: ...
    @property
    def blocks(self) -> Mapping[str, float]: ...
    @property
    def bgp(self) -> Mapping[str, float]: ...
    @property
    def vantage_healthy(self) -> bool: ...


class History(Protocol):
    """The history store's query (sync, thread-safe: the pages call it in a worker thread).
    `step` None: the store picks the finest tier that covers the range."""

    def query(
        self, entity: str, since: float, until: float, step: int | None = None
    ) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class Note:
    at: float | None
    text: str


@dataclass(frozen=True, slots=True)
class Annotations:
    """An event's annotations as its JSON form holds them (`"annotations"` of the API's
    event). Read leniently: a part that is not what it should be reads as absent."""

    cause: str | None = None
    maintenance: bool = False
    notes: tuple[Note, ...] = ()
    links: tuple[str, ...] = ()
    updated: float | None = None

    @property
    def empty(self) -> bool:
        return not (self.cause or self.maintenance or self.notes or self.links)

    @classmethod
    def from_api(cls, doc: object) -> Annotations | None:
        if not isinstance(doc, dict):
            return None
        cause = doc.get("cause")
        notes = []
        for n in doc.get("notes") or []:
            if isinstance(n, dict) and isinstance(n.get("text"), str):
                notes.append(Note(time_or_none(n.get("at")), n["text"]))
        raw_links = doc.get("links")
        links = (
            tuple(x for x in raw_links if isinstance(x, str)) if isinstance(raw_links, list) else ()
        )
        return cls(
            cause if isinstance(cause, str) and cause else None,
            doc.get("maintenance") is True,
            tuple(notes),
            links,
            time_or_none(doc.get("updated")),
        )
