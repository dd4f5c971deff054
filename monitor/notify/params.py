"""The `notify:` configuration: one typed receiver per list entry (validated in
monitor/notify/config.py, called from monitor/config.py), and the vocabulary the rest of the
package shares: transitions, the severity order of `min_severity`, URL redaction.

No import of apprise here: the daemon and `check-config` import it only when a receiver is
configured (it costs ~1.5 s and ~25 MB at the first URL it parses).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from monitor.detect.model import EventKind


class Transition(enum.StrEnum):
    """What a notification says happened (`transitions:` filters the first three)."""

    OPENED = "opened"
    ESCALATED = "escalated"
    CLOSED = "closed"
    VANTAGE_OFFLINE = "vantage_offline"
    VANTAGE_BACK = "vantage_back"
    TEST = "test"


EVENT_TRANSITIONS = (Transition.OPENED, Transition.ESCALATED, Transition.CLOSED)


class Format(enum.StrEnum):
    SHORT = "short"  # chat: a few lines
    LONG = "long"  # e-mail: the whole story


# `min_severity`: how much an event matters to a person who is paged (not the detector's own
# escalation order, monitor.detect.model.SEVERITY, which ranks routing above partial because
# routing loss usually precedes a blackout). Web, DNS and routing alone are one rank: each is
# one service lost while the rest of the network answers.
NOTIFY_SEVERITY: Mapping[EventKind, int] = {
    EventKind.DEGRADED: 1,
    EventKind.WEB: 2,
    EventKind.DNS: 2,
    EventKind.ROUTING: 2,
    EventKind.PARTIAL: 3,
    EventKind.BLACKOUT: 4,
}

# Schemes whose default format is the long one (e-mail reads well long; chat does not).
LONG_SCHEMES = frozenset({"mailto", "mailtos", "email", "emails"})

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class NotifyReceiver:
    """One `notify:` entry. `url` is a secret (tokens, passwords): it is never logged, never a
    metric label and never served; `name` stands for it everywhere."""

    url: str = field(repr=False)
    # Default `<scheme>-<index>` (e.g. `json-0`), set by the validator.
    name: str = ""
    entities: tuple[str, ...] | None = None  # None: every entity
    kinds: tuple[EventKind, ...] | None = None  # None: every kind
    min_severity: EventKind = EventKind.DEGRADED
    transitions: tuple[Transition, ...] = EVENT_TRANSITIONS
    # Opened/escalated messages per hour (0: no limit); a closed message always follows the
    # opened one it answers.
    rate_limit: int = 20
    vantage: bool = False  # also `vantage offline` / `vantage back` notices
    format: Format | None = None  # None: by scheme (mailto/mailtos long, the rest short)
    timeout: float = 10.0  # one delivery attempt, the receiver's connect and read included
    retry_initial: float = 30.0  # first retry after a failed attempt, then doubling ...
    retry_max: float = 1800.0  # ... up to this
    max_age: float = 86_400.0  # then given up (counted as dropped, reason expired)

    @property
    def scheme(self) -> str:
        return scheme_of(self.url)

    @property
    def message_format(self) -> Format:
        if self.format is not None:
            return self.format
        return Format.LONG if self.scheme in LONG_SCHEMES else Format.SHORT

    def __repr__(self) -> str:  # dataclass' repr would be fine too; this one is explicit
        return f"NotifyReceiver(name={self.name!r}, scheme={self.scheme!r})"


def scheme_of(url: str) -> str:
    head, sep, _ = url.partition("://")
    return head.lower() if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", head) else ""


def secrets_of(url: str) -> list[str]:
    """The parts of an Apprise URL that may be secret: the whole URL, user, password, every
    path segment and every query value (tokens hide in all of them; Apprise's URLs put them
    in the path for most services). Plain and percent-decoded forms; short pieces (< 4
    characters: `to`, `1`) are left alone so that redaction does not shred every message."""
    out = {url}
    try:
        parts = urlsplit(url)
        pieces = [parts.username or "", parts.password or ""]
        pieces += parts.path.split("/")
        pieces += [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
        # `tgram://BOT:TOKEN/...`: tokens where a host and port would be. Dotted names (a
        # host) stay readable; everything else of the authority counts as a secret.
        for piece in re.split(r"[@:]", parts.netloc):
            if "." not in piece:
                pieces.append(piece)
    except ValueError:
        pieces = []
    for p in pieces:
        for form in (p, unquote(p)):
            if len(form) >= 4:
                out.add(form)
    return sorted(out, key=len, reverse=True)


def redact(text: str, url: str) -> str:
    """`text` with every secret part of `url` replaced by `***` (error messages from Apprise
    and from the receiver may echo the URL)."""
    for s in secrets_of(url):
        text = text.replace(s, "***")
    return text
