"""The notification record: what one receiver is to be told, with one codec (the outbox's
row). Pure data.

The idempotency key names what happened, not when it was sent: `<event id>/opened`,
`<event id>/escalated/<kind>`, `<event id>/closed`, `vantage/<offline time>/offline` and
`.../back`. It is written in every message (a `Key:` line of the body, and the
`X-Dprk-Monitor-Key` header of e-mails) so that a receiver seeing a message twice (delivery is
at least once: a crash after the receiver answered but before the outbox recorded it sends it
again) can tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.notify.params import Transition

KEY_HEADER = "X-Dprk-Monitor-Key"


def event_key(event_id: str, transition: Transition, kind: str | None = None) -> str:
    if transition is Transition.ESCALATED:
        return f"{event_id}/escalated/{kind}"
    return f"{event_id}/{transition.value}"


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one receiver. `title`/`body` are rendered when it is created (the
    event as it was at that transition), so a retry hours later says the same thing."""

    receiver: str
    key: str
    transition: Transition
    created: float
    title: str
    body: str
    entity: str | None = None
    kind: str | None = None
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "key": self.key,
            "transition": self.transition.value,
            "created": self.created,
            "title": self.title,
            "body": self.body,
            "entity": self.entity,
            "kind": self.kind,
            "event_id": self.event_id,
        }

    @classmethod
    def from_json(cls, doc: object) -> Notification:
        """Read back; raises ValueError on a row that is not one (the outbox skips it)."""
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        try:
            created = doc["created"]
            if isinstance(created, bool) or not isinstance(created, int | float):
                raise ValueError("created is not a number")
            for k in ("receiver", "key", "title", "body"):
                if not isinstance(doc[k], str):
                    raise ValueError(f"{k} is not a string")
            opt = {k: doc.get(k) for k in ("entity", "kind", "event_id")}
            if any(v is not None and not isinstance(v, str) for v in opt.values()):
                raise ValueError("entity, kind or event_id is not a string")
            return cls(
                receiver=doc["receiver"],
                key=doc["key"],
                transition=Transition(doc["transition"]),
                created=float(created),
                title=doc["title"],
                body=doc["body"],
                entity=opt["entity"],
                kind=opt["kind"],
                event_id=opt["event_id"],
            )
        except KeyError as e:
            raise ValueError(f"missing {e}") from None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One delivery attempt: ok, or why not (redacted: never the receiver's URL)."""

    ok: bool
    reason: str = ""
