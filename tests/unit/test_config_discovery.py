"""`entities[].discover` and the `discovery:` block: parsed, defaulted, refused with exact text."""

from __future__ import annotations

import pytest

from monitor import config

ENTITY = """\
entities:
  - name: star-jv
    prefixes: [198.18.176.0/22]
    discover: true
"""


def test_discover_and_discovery_block_parse() -> None:
    """An entity with prefixes only and `discover: true`, and every discovery key, parse."""
    cfg = config.parse(
        ENTITY
        + "discovery:\n  interval: 12h\n  share: 0.1\n  tcp_ports: [80, 443]\n"
        + "  sample: 2\n  sample_max: 8\n  min_responsive: 3\n",
        "c.yaml",
    )
    (e,) = cfg.entities
    assert e.discover and len(e.targets) == 0
    d = cfg.discovery
    assert (d.interval, d.share, d.tcp_ports) == (43200.0, 0.1, (80, 443))
    assert (d.sample, d.sample_max, d.min_responsive) == (2, 8, 3)


def test_discovery_defaults() -> None:
    """Without a discovery block: a census a day at a quarter of max_rate; discover is off."""
    cfg = config.parse("entities:\n  - name: a\n    prefixes: [198.18.176.0/24]\n", "c.yaml")
    assert not cfg.entities[0].discover
    d = cfg.discovery
    assert (d.interval, d.share, d.tcp_ports, d.sample, d.sample_max, d.min_responsive) == (
        86400.0,
        0.25,
        (),
        1,
        15,
        2,
    )


INVALID = [
    (
        "entities:\n  - name: a\n    icmp: [198.18.176.1]\n    discover: true\n",
        "c.yaml:4: entities[0].discover: a census needs at least one IPv4 prefix in 'prefixes'",
    ),
    (
        "entities:\n  - name: a\n    prefixes: ['2001:db8::/64']\n    discover: true\n",
        "c.yaml:4: entities[0].discover: a census needs at least one IPv4 prefix in 'prefixes'",
    ),
    (
        "entities:\n  - name: a\n    prefixes: [10.0.0.0/8]\n    discover: true\n",
        "c.yaml:4: entities[0].discover: a census of these prefixes would probe 16777216 "
        "addresses (at most 65536)",
    ),
    (
        "entities:\n  - name: a\n    prefixes: [198.18.176.0/24]\n    discover: yes\n",
        "c.yaml:4: entities[0].discover: expected true or false, got str 'yes'",
    ),
    (
        ENTITY + "discovery:\n  interval: 30\n",
        "c.yaml:6: discovery.interval: expected a duration like 500ms, 30s or 5m, got 30",
    ),
    (
        ENTITY + "discovery:\n  interval: 800h\n",
        "c.yaml:6: discovery.interval: must be at most 720h, got '800h'",
    ),
    (
        ENTITY + "discovery:\n  share: 1\n",
        "c.yaml:6: discovery.share: must be above 0 and below 1 (a share of max_rate), got 1",
    ),
    (
        ENTITY + "discovery:\n  share: 0\n",
        "c.yaml:6: discovery.share: must be above 0 and below 1 (a share of max_rate), got 0",
    ),
    (
        ENTITY + "discovery:\n  tcp_ports: [80, 80]\n",
        "c.yaml:6: discovery.tcp_ports: a port is listed twice",
    ),
    (
        ENTITY + "discovery:\n  tcp_ports: [0]\n",
        "c.yaml:6: discovery.tcp_ports: must be between 1 and 65535, got 0",
    ),
    (
        ENTITY + "discovery:\n  tcp_ports: 80\n",
        "c.yaml:6: discovery.tcp_ports: expected a list of ports, got int 80",
    ),
    (
        ENTITY + "discovery:\n  sample: 0\n",
        "c.yaml:6: discovery.sample: must be between 1 and 256, got 0",
    ),
    (
        ENTITY + "discovery:\n  sample: 5\n  sample_max: 4\n",
        "c.yaml:6: discovery.sample: must not exceed sample_max",
    ),
    (
        ENTITY + "discovery:\n  min_responsive: 0\n",
        "c.yaml:6: discovery.min_responsive: must be between 1 and 256, got 0",
    ),
    (
        ENTITY + "discovery:\n  rate: 3\n",
        "c.yaml:6: discovery.rate: unknown key (allowed: interval, min_responsive, sample, "
        "sample_max, share, tcp_ports)",
    ),
    (
        ENTITY + "discovery: 5\n",
        "c.yaml:5: discovery: expected a mapping, got int 5",
    ),
]


@pytest.mark.parametrize(
    ("doc", "message"), INVALID, ids=[m.split(": ", 1)[1][:50] for _, m in INVALID]
)
def test_invalid_discovery_config_message(doc: str, message: str) -> None:
    """Each invalid discovery setting is refused with exactly this PATH:LINE: key.path: reason."""
    with pytest.raises(config.ConfigError) as info:
        config.parse(doc, "c.yaml")
    assert str(info.value) == message
