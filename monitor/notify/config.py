"""Validation of the `notify:` list (called by monitor/config.py's `parse`), in its style: every
error is `PATH:LINE: notify[i].key: reason` on one line; unknown keys are errors. A receiver's
URL is a secret: no error message ever shows it (only its scheme).

```yaml
notify:
  - url: ntfys://ntfy.sh/dprk-watch          # any Apprise URL
    name: phone                              # default: <scheme>-<index>
    entities: [star-jv]                      # default: every entity
    kinds: [blackout, partial]               # default: every kind
    min_severity: partial                    # degraded < web = dns = routing < partial < blackout
    transitions: [opened, escalated, closed] # the default
    rate_limit: 20                           # opened/escalated per hour; 0: none
    vantage: false                           # also `vantage offline` / `vantage back`
    format: short                            # short | long (default: long for mailto/mailtos)
    timeout: 10s                             # one delivery attempt
    retry_initial: 30s                       # then doubling ...
    retry_max: 30m                           # ... up to this
    max_age: 24h                             # then given up
```
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from monitor.config import (
    _bool,
    _Ctx,
    _describe,
    _duration_in,
    _int_in,
    _join,
    _Map,
    _show,
    _yaml_keys,
)
from monitor.detect.model import EventKind
from monitor.notify.params import (
    EVENT_TRANSITIONS,
    NAME_RE,
    Format,
    NotifyReceiver,
    Transition,
    scheme_of,
)

MAX_RECEIVERS = 64
MAX_RATE_LIMIT = 10_000
_KINDS = ", ".join(k.value for k in EventKind)
_TRANSITIONS = ", ".join(t.value for t in EVENT_TRANSITIONS)


def _url(value: Any) -> str:
    """An Apprise URL Apprise accepts. The value is never echoed (tokens, passwords)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected an Apprise URL, got {_describe(value)}")
    if value != value.strip() or any(c.isspace() for c in value):
        raise ValueError("the URL contains whitespace")
    scheme = scheme_of(value)
    if not scheme:
        raise ValueError("not an Apprise URL (expected SCHEME://..., e.g. ntfys://ntfy.sh/TOPIC)")
    from monitor.notify.sender import validate_url

    try:
        ok = validate_url(value)
    except Exception as e:  # an Apprise plugin bug: still one line, still no URL
        raise ValueError(
            f"Apprise could not read this {scheme}:// URL ({type(e).__name__})"
        ) from None
    if not ok:
        raise ValueError(
            f"Apprise does not accept this {scheme}:// URL (unknown service or bad fields; "
            "see https://github.com/caronc/apprise/wiki)"
        )
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValueError(
            "expected a name of letters, digits, '_', '.', '-' (at most 64, starting with a "
            f"letter or digit), got {_show(value)}"
        )
    return value


def _kind(value: Any) -> EventKind:
    if not isinstance(value, str):
        raise ValueError(f"expected an event kind ({_KINDS}), got {_describe(value)}")
    try:
        return EventKind(value)
    except ValueError:
        raise ValueError(f"unknown event kind {_show(value)} (kinds: {_KINDS})") from None


def _list_of(conv: Callable[[Any], Any], what: str) -> Callable[[Any], tuple[Any, ...]]:
    def read(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list) or not value:
            raise ValueError(f"expected a non-empty list of {what}, got {_describe(value)}")
        out = []
        for v in value:
            x = conv(v)
            if x not in out:
                out.append(x)
        return tuple(out)

    return read


def _transition(value: Any) -> Transition:
    if isinstance(value, str):
        for t in EVENT_TRANSITIONS:
            if t.value == value:
                return t
    raise ValueError(f"unknown transition {_show(value)} (transitions: {_TRANSITIONS})")


def _entity_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected an entity name, got {_describe(value)}")
    return value


def _format(value: Any) -> Format:
    if value in ("short", "long"):
        return Format(value)
    raise ValueError(f"expected short or long, got {_show(value)}")


_RECEIVER: dict[str, Callable[[Any], Any]] = {
    "url": _url,
    "name": _name,
    "entities": _list_of(_entity_name, "entity names"),
    "kinds": _list_of(_kind, "event kinds"),
    "min_severity": _kind,
    "transitions": _list_of(_transition, "transitions"),
    "rate_limit": _int_in(0, MAX_RATE_LIMIT),
    "vantage": _bool,
    "format": _format,
    "timeout": _duration_in(60.0, "60s"),
    "retry_initial": _duration_in(3600.0, "1h"),
    "retry_max": _duration_in(86_400.0, "24h"),
    "max_age": _duration_in(7 * 86_400.0, "168h"),
}
_KEYS = _yaml_keys(NotifyReceiver)
if set(_RECEIVER) != _KEYS:  # a new field must get a converter (as config._check_table)
    raise TypeError(f"NotifyReceiver: converters {sorted(_RECEIVER)} != fields {sorted(_KEYS)}")


def parse_notify(
    ctx: _Ctx, value: Any, line: int, entities: Collection[str]
) -> tuple[NotifyReceiver, ...]:
    """The `notify:` list (null or [] for none)."""
    if value is None:
        return ()
    items = ctx.seq(value, line, "notify")
    if len(items) > MAX_RECEIVERS:
        raise ctx.fail(line, "notify", f"at most {MAX_RECEIVERS} receivers, got {len(items)}")
    out: list[NotifyReceiver] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        key = _join("notify", i)
        m: _Map = ctx.mapping(item, items.item_lines[i], key, _RECEIVER.keys())
        r: NotifyReceiver = ctx.section(m, key, NotifyReceiver, _RECEIVER)
        if "name" not in m:
            r = _with(r, name=f"{r.scheme}-{i}")
        if r.name in names:
            raise ctx.fail(
                m.key_lines.get("name", m.line),
                _join(key, "name"),
                f"duplicate receiver name {r.name!r}",
            )
        names.add(r.name)
        for e in r.entities or ():
            if e not in entities:
                raise ctx.fail(
                    m.key_lines["entities"],
                    _join(key, "entities"),
                    f"unknown entity {_show(e)} (entities: {', '.join(entities)})",
                )
        if r.retry_max < r.retry_initial:
            raise ctx.fail(
                m.key_lines.get("retry_max", m.line),
                _join(key, "retry_max"),
                "must not be shorter than retry_initial",
            )
        if r.max_age < r.timeout:
            raise ctx.fail(
                m.key_lines.get("max_age", m.line),
                _join(key, "max_age"),
                "must not be shorter than timeout",
            )
        out.append(r)
    return tuple(out)


def _with(r: NotifyReceiver, **kw: Any) -> NotifyReceiver:
    from dataclasses import replace

    return replace(r, **kw)
