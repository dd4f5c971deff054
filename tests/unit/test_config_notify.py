"""The `notify:` list: defaults, accepted values, and the exact error of each bad value (a
receiver's URL, a secret, never in an error)."""

from __future__ import annotations

import pytest

from monitor import config
from monitor.config import ConfigError
from monitor.detect.model import EventKind
from monitor.notify.params import Format, NotifyReceiver, Transition

BASE = "entities: [{name: star-jv, icmp: [192.0.2.1]}, {name: kptc, icmp: [192.0.2.2]}]\n"
SECRET = "tk_9f8e7d6c5b4a"


def parse(notify: str) -> config.Config:
    return config.parse(BASE + notify, "c.yaml")


def test_no_notify_is_no_receivers() -> None:
    """Without `notify:` (or with it empty) there is no receiver."""
    assert config.parse(BASE, "c.yaml").notify == ()
    assert parse("notify:\n").notify == ()
    assert parse("notify: []\n").notify == ()


def test_defaults_and_names() -> None:
    """Defaults: every entity and kind, from degraded, all three transitions, 20 per hour, no
    vantage notices, short for chat and long for mailto, 10 s per attempt, 30 s doubling to
    30 min for 24 h; the name defaults to scheme-index."""
    rs = parse(
        "notify:\n"
        "  - url: ntfys://ntfy.sh/dprk-watch\n"
        "  - url: mailto://user:pw@mail.example.org?to=oncall@example.org\n"
    ).notify
    a, b = rs
    assert (a.name, b.name) == ("ntfys-0", "mailto-1")
    assert a.entities is None and a.kinds is None and a.min_severity is EventKind.DEGRADED
    assert a.transitions == (Transition.OPENED, Transition.ESCALATED, Transition.CLOSED)
    assert (a.rate_limit, a.vantage) == (20, False)
    assert (a.timeout, a.retry_initial, a.retry_max, a.max_age) == (10, 30, 1800, 86400)
    assert (a.message_format, b.message_format) == (Format.SHORT, Format.LONG)
    assert "pw" not in repr(b) and "ntfy.sh" not in repr(a)


def test_a_full_entry_is_read() -> None:
    """Every key read."""
    (r,) = parse(
        "notify:\n"
        "  - url: json://127.0.0.1:8080/hook\n"
        "    name: hook\n"
        "    entities: [kptc]\n"
        "    kinds: [blackout, partial]\n"
        "    min_severity: partial\n"
        "    transitions: [opened, closed]\n"
        "    rate_limit: 0\n"
        "    vantage: true\n"
        "    format: long\n"
        "    timeout: 5s\n"
        "    retry_initial: 10s\n"
        "    retry_max: 1h\n"
        "    max_age: 48h\n"
    ).notify
    assert r == NotifyReceiver(
        url="json://127.0.0.1:8080/hook",
        name="hook",
        entities=("kptc",),
        kinds=(EventKind.BLACKOUT, EventKind.PARTIAL),
        min_severity=EventKind.PARTIAL,
        transitions=(Transition.OPENED, Transition.CLOSED),
        rate_limit=0,
        vantage=True,
        format=Format.LONG,
        timeout=5.0,
        retry_initial=10.0,
        retry_max=3600.0,
        max_age=172800.0,
    )


E = "c.yaml:3: notify[0]"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("notify: {url: x}", "c.yaml:2: notify: expected a list, got a mapping"),
        ("notify: [3]", "c.yaml:2: notify[0]: expected a mapping, got int 3"),
        (
            "notify:\n  - {name: x}",
            "c.yaml:3: notify[0]: missing key 'url'",
        ),
        (
            "notify:\n  - {url: 'json://h/', colour: red}",
            f"{E}.colour: unknown key (allowed: entities, format, kinds, max_age, min_severity, "
            "name, rate_limit, retry_initial, retry_max, timeout, transitions, url, vantage)",
        ),
        (
            f"notify:\n  - url: 'nosuch://{SECRET}@host/'",
            f"{E}.url: Apprise does not accept this nosuch:// URL (unknown service or bad "
            "fields; see https://github.com/caronc/apprise/wiki)",
        ),
        (
            f"notify:\n  - url: '{SECRET}'",
            f"{E}.url: not an Apprise URL (expected SCHEME://..., e.g. ntfys://ntfy.sh/TOPIC)",
        ),
        (
            f"notify:\n  - url: 'json://h/{SECRET} x'",
            f"{E}.url: the URL contains whitespace",
        ),
        ("notify:\n  - url: 3", f"{E}.url: expected an Apprise URL, got int 3"),
        (
            "notify:\n  - {url: 'json://h/', name: 'a b'}",
            f"{E}.name: expected a name of letters, digits, '_', '.', '-' (at most 64, starting "
            "with a letter or digit), got 'a b'",
        ),
        (
            "notify:\n  - {url: 'json://h/', name: x}\n  - {url: 'json://h/', name: x}",
            "c.yaml:4: notify[1].name: duplicate receiver name 'x'",
        ),
        (
            "notify:\n  - {url: 'json://h/'}\n  - {url: 'json://g/', name: json-0}",
            "c.yaml:4: notify[1].name: duplicate receiver name 'json-0'",
        ),
        (
            "notify:\n  - {url: 'json://h/', entities: [nope]}",
            f"{E}.entities: unknown entity 'nope' (entities: star-jv, kptc)",
        ),
        (
            "notify:\n  - {url: 'json://h/', entities: []}",
            f"{E}.entities: expected a non-empty list of entity names, got a list",
        ),
        (
            "notify:\n  - {url: 'json://h/', kinds: [outage]}",
            f"{E}.kinds: unknown event kind 'outage' (kinds: blackout, partial, web, dns, "
            "degraded, routing)",
        ),
        (
            "notify:\n  - {url: 'json://h/', min_severity: high}",
            f"{E}.min_severity: unknown event kind 'high' (kinds: blackout, partial, web, dns, "
            "degraded, routing)",
        ),
        (
            "notify:\n  - {url: 'json://h/', transitions: [resolved]}",
            f"{E}.transitions: unknown transition 'resolved' (transitions: opened, escalated, "
            "closed)",
        ),
        (
            "notify:\n  - {url: 'json://h/', rate_limit: -1}",
            f"{E}.rate_limit: must be between 0 and 10000, got -1",
        ),
        (
            "notify:\n  - {url: 'json://h/', vantage: yes}",
            f"{E}.vantage: expected true or false, got str 'yes'",
        ),
        (
            "notify:\n  - {url: 'json://h/', format: html}",
            f"{E}.format: expected short or long, got 'html'",
        ),
        (
            "notify:\n  - {url: 'json://h/', timeout: 2m}",
            f"{E}.timeout: must be at most 60s, got '2m'",
        ),
        (
            "notify:\n  - {url: 'json://h/', retry_initial: 1m, retry_max: 30s}",
            f"{E}.retry_max: must not be shorter than retry_initial",
        ),
        (
            "notify:\n  - {url: 'json://h/', max_age: 200h}",
            f"{E}.max_age: must be at most 168h, got '200h'",
        ),
        (
            "notify:\n  - {url: 'json://h/', max_age: 5s}",
            f"{E}.max_age: must not be shorter than timeout",
        ),
    ],
)
def test_bad_values_have_exact_errors(text: str, error: str) -> None:
    """Each bad value is refused with PATH:LINE: key.path: reason, and never shows a URL's
    secret."""
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert str(e.value) == error
    assert SECRET not in str(e.value)
