"""The configuration contract: typed parsing, defaults and exact error messages."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from monitor import config
from monitor.probes.base import DnsTarget, HttpTarget, IcmpTarget, TcpTarget

MINIMAL = """\
entities:
  - name: star-jv
    icmp: [198.18.176.1]
"""


def parse(text: str) -> config.Config:
    return config.parse(textwrap.dedent(text), "c.yaml")


def test_default_config_is_valid() -> None:
    """The shipped default configuration loads and watches every DPRK block."""
    cfg = config.load(Path(__file__).parents[2] / "config" / "dprk.yaml")
    prefixes = {str(p) for e in cfg.entities for p in e.prefixes}
    assert {"175.45.176.0/22", "210.52.109.0/24", "77.94.35.0/24"} <= prefixes
    star = cfg.entity("star-jv")
    assert star is not None and star.asn == 131279
    blocks = {ipaddress.ip_network(f"{t.address}/24", strict=False) for t in star.targets.icmp}
    assert len(blocks) == 4, "a sample host in each /24"
    assert all(h.address is not None for h in star.targets.http), "web sites pinned"
    assert {str(d.server) for d in star.targets.dns} >= {"175.45.176.15", "175.45.176.16"}
    assert len(cfg.controls.icmp) >= 3 and cfg.controls.dns


def test_defaults_apply() -> None:
    """Keys left out take the contract's defaults."""
    cfg = parse(MINIMAL)
    assert (cfg.listen_host, cfg.listen_port) == ("127.0.0.1", 9474)
    assert cfg.probing.interval == 30 and cfg.probing.timeout == 3 and cfg.probing.max_rate == 20
    assert cfg.detection.down_after == 2 and cfg.detection.up_after == 2
    assert cfg.bgp.enabled and cfg.bgp.ris_live_url.startswith("wss://")


def test_durations_and_targets_parse() -> None:
    """Durations, ranges, CIDRs, host:port, pinned URLs and DNS items become typed targets."""
    cfg = parse("""
        probing: {interval: 5m, timeout: 500ms, max_rate: 2.5}
        entities:
          - name: e
            asn: 131279
            prefixes: [198.18.176.0/22, "2001:db8::/32"]
            icmp: [198.18.176.1-3, 198.18.177.0/30, "2001:db8::1", 198.18.176.2]
            tcp: ["198.18.176.71:80", "[2001:db8::1]:443"]
            http:
              - http://www.kcna.kp/
              - {url: "https://naenara.com.kp/", address: 198.18.176.67, expect_status: [200],
                 max_body: 64KiB, tls_verify: false}
            dns:
              - {server: 198.18.176.15, name: kp, type: soa, port: 5353}
    """)
    assert cfg.probing.interval == 300 and cfg.probing.timeout == 0.5
    t = cfg.entities[0].targets
    assert [str(x.address) for x in t.icmp] == [
        "198.18.176.1",
        "198.18.176.2",
        "198.18.176.3",
        "198.18.177.1",
        "198.18.177.2",
        "2001:db8::1",
    ]  # the duplicate .2 is folded
    assert t.tcp == (
        TcpTarget(ipaddress.ip_address("198.18.176.71"), 80),
        TcpTarget(ipaddress.ip_address("2001:db8::1"), 443),
    )
    assert t.http[0] == HttpTarget("http://www.kcna.kp/")
    assert t.http[1].address == ipaddress.ip_address("198.18.176.67")
    assert t.http[1].max_body == 65536 and t.http[1].expect_status == frozenset({200})
    assert t.dns[0] == DnsTarget(ipaddress.ip_address("198.18.176.15"), "kp", "SOA", 5353)
    assert isinstance(t.icmp[0], IcmpTarget)


# (document, expected error) — the exact message users will see.
INVALID = [
    ("", "c.yaml:1: the file is empty"),
    ("- a\n- b\n", "c.yaml:1: expected a mapping, got a list"),
    (
        "entities: [\n",
        "c.yaml:2: YAML syntax error: expected the node content, but found '<stream end>'",
    ),
    ("listen: 9474\n" + MINIMAL, "c.yaml:1: listen: expected HOST:PORT, got int 9474"),
    (
        "listen: 'x:70000'\n" + MINIMAL,
        "c.yaml:1: listen: port must be between 0 and 65535, got 70000",
    ),
    (
        "bogus: 1\n" + MINIMAL,
        "c.yaml:1: bogus: unknown key (allowed: api, bgp, controls, detection, discovery, "
        "entities, grafana_url, history, listen, log_level, notify, probing, state_dir, upstreams)",
    ),
    (
        "probing:\n  interval: 30\n" + MINIMAL,
        "c.yaml:2: probing.interval: expected a duration like 500ms, 30s or 5m, got 30",
    ),
    (
        "probing:\n  interval: 0s\n" + MINIMAL,
        "c.yaml:2: probing.interval: must be positive, got '0s'",
    ),
    (
        "probing:\n  interval: 2s\n  timeout: 3s\n" + MINIMAL,
        "c.yaml:3: probing.timeout: must be shorter than probing.interval",
    ),
    (
        "probing:\n  max_rate: -1\n" + MINIMAL,
        "c.yaml:2: probing.max_rate: must be positive, got -1",
    ),
    (
        "probing:\n  max_rate: yes\n" + MINIMAL,
        "c.yaml:2: probing.max_rate: expected a number, got str 'yes'",
    ),
    (
        "probing:\n  intervall: 30s\n" + MINIMAL,
        "c.yaml:2: probing.intervall: unknown key (allowed: interval, max_rate, min_timeout, reprobes, splay, timeout)",
    ),
    (
        "detection:\n  down_after: 0\n" + MINIMAL,
        "c.yaml:2: detection.down_after: must be between 1 and 100, got 0",
    ),
    (
        "detection:\n  merge_gap: 120\n" + MINIMAL,
        "c.yaml:2: detection.merge_gap: expected a duration like 500ms, 30s or 5m, got 120",
    ),
    (
        "detection:\n  bgp_lost_ratio: 0.05\n  bgp_withdrawn_ratio: 0.1\n" + MINIMAL,
        "c.yaml:3: detection.bgp_withdrawn_ratio: need 0 <= bgp_withdrawn_ratio <= bgp_lost_ratio <= 1",
    ),
    (
        "log_level: loud\n" + MINIMAL,
        "c.yaml:1: log_level: expected one of debug, info, warning, error, got 'loud'",
    ),
    ("entities: []\n", "c.yaml:1: entities: at least one entity is needed"),
    ("entities:\n  - icmp: [198.18.176.1]\n", "c.yaml:2: entities[0]: missing key 'name'"),
    (
        "entities:\n  - name: Star JV\n    icmp: [198.18.176.1]\n",
        "c.yaml:2: entities[0].name: expected a name of lower-case letters, digits, '.', '_' or '-', "
        "got 'Star JV'",
    ),
    (
        MINIMAL + "  - name: star-jv\n    icmp: [198.18.176.2]\n",
        "c.yaml:4: entities[1].name: duplicate entity 'star-jv'",
    ),
    (
        "entities:\n  - name: e\n",
        "c.yaml:2: entities[0]: an entity needs at least one target or prefix",
    ),
    (
        "entities:\n  - name: e\n    icmp:\n      - 198.18.176.1\n      - 198.18.176.300\n",
        "c.yaml:5: entities[0].icmp[1]: not an IP address: '198.18.176.300'",
    ),
    (
        "entities:\n  - name: e\n    icmp: [198.18.0.0/8]\n",
        "c.yaml:3: entities[0].icmp[0]: '198.18.0.0/8' has host bits set",
    ),
    (
        "entities:\n  - name: e\n    icmp: [10.0.0.0/8]\n",
        "c.yaml:3: entities[0].icmp[0]: 10.0.0.0/8 expands to more than 65536 addresses",
    ),
    (
        "entities:\n  - name: e\n    icmp: [198.18.176.9-198.18.176.1]\n",
        "c.yaml:3: entities[0].icmp[0]: range '198.18.176.9-198.18.176.1' ends before it starts",
    ),
    (
        "entities:\n  - name: e\n    prefixes: [198.18.176.1/22]\n",
        "c.yaml:3: entities[0].prefixes[0]: '198.18.176.1/22' has host bits set",
    ),
    (
        "entities:\n  - name: e\n    asn: AS131279\n    icmp: [198.18.176.1]\n",
        "c.yaml:3: entities[0].asn: expected an integer, got str 'AS131279'",
    ),
    (
        "entities:\n  - name: e\n    tcp: ['198.18.176.71']\n",
        "c.yaml:3: entities[0].tcp[0]: expected ADDRESS:PORT (IPv6 as [ADDR]:PORT), got '198.18.176.71'",
    ),
    (
        "entities:\n  - name: e\n    tcp: ['198.18.176.71:0']\n",
        "c.yaml:3: entities[0].tcp[0]: port must be between 1 and 65535, got 0",
    ),
    (
        "entities:\n  - name: e\n    http: ['ftp://kcna.kp/']\n",
        "c.yaml:3: entities[0].http[0]: URL scheme must be http or https, got 'ftp://kcna.kp/'",
    ),
    (
        "entities:\n  - name: e\n    http:\n      - {url: 'http://kcna.kp/', expect_status: [999]}\n",
        "c.yaml:4: entities[0].http[0].expect_status: not an HTTP status code: 999",
    ),
    (
        "entities:\n  - name: e\n    http:\n      - {url: 'http://kcna.kp/', adress: 198.18.176.1}\n",
        "c.yaml:4: entities[0].http[0].adress: unknown key (allowed: address, ca_file, "
        "expect_status, max_body, min_tls_version, tls_verify, url)",
    ),
    (
        "entities:\n  - name: e\n    http:\n      - {url: 'https://a.kp/', ca_file: /nonexistent.pem}\n",
        "c.yaml:4: entities[0].http[0].ca_file: cannot read '/nonexistent.pem'",
    ),
    (
        "entities:\n  - name: e\n    dns:\n      - {server: 198.18.176.15}\n",
        "c.yaml:4: entities[0].dns[0]: missing key 'name'",
    ),
    (
        "entities:\n  - name: e\n    dns:\n      - {server: 198.18.176.15, name: kp, type: SOAP}\n",
        "c.yaml:4: entities[0].dns[0].type: unknown DNS record type 'SOAP'",
    ),
    (
        "entities:\n  - name: e\n    dns:\n      - {server: ns1.kptc.kp, name: kp}\n",
        "c.yaml:4: entities[0].dns[0].server: not an IP address: 'ns1.kptc.kp'",
    ),
    (
        MINIMAL + "controls:\n  icmp: [1.1.1]\n",
        "c.yaml:5: controls.icmp[0]: not an IP address: '1.1.1'",
    ),
    (
        MINIMAL + "bgp:\n  enabled: no\n",
        "c.yaml:5: bgp.enabled: expected true or false, got str 'no'",
    ),
    (
        MINIMAL + "bgp:\n  ris_live_url: https://ris-live.ripe.net/v1/ws/\n",
        "c.yaml:5: bgp.ris_live_url: expected a ws:// or wss:// URL, got 'https://ris-live.ripe.net/v1/ws/'",
    ),
    ("listen: a:1\nlisten: b:2\n" + MINIMAL, "c.yaml:2: listen: duplicate key"),
    (
        MINIMAL + "upstreams: {prefix: 198.18.0.36/30, name: China Unicom}\n",
        "c.yaml:4: upstreams: expected a list, got a mapping",
    ),
    (
        MINIMAL + "upstreams:\n  - {name: China Unicom, asn: 4837}\n",
        "c.yaml:5: upstreams[0]: missing key 'prefix' (or 'address')",
    ),
    (
        MINIMAL + "upstreams:\n  - {prefix: 198.18.0.36/30, address: 198.18.0.38, name: x}\n",
        "c.yaml:5: upstreams[0]: give either 'prefix' or 'address', not both",
    ),
    (
        MINIMAL + "upstreams:\n  - {prefix: 198.18.0.36/30, asn: 4837}\n",
        "c.yaml:5: upstreams[0]: missing key 'name'",
    ),
    (
        MINIMAL + "upstreams:\n  - prefix: 198.18.0.37/30\n    name: China Unicom\n",
        "c.yaml:5: upstreams[0].prefix: '198.18.0.37/30' has host bits set",
    ),
    (
        MINIMAL + "upstreams:\n  - address: unicom-gw\n    name: China Unicom\n",
        "c.yaml:5: upstreams[0].address: not an IP address: 'unicom-gw'",
    ),
    (
        MINIMAL + "upstreams:\n  - {prefix: 198.18.0.36/30, name: China Unicom, asn: AS4837}\n",
        "c.yaml:5: upstreams[0].asn: expected an integer, got str 'AS4837'",
    ),
    (
        MINIMAL + "upstreams:\n  - {prefix: 198.18.0.36/30, name: China Unicom, as: 4837}\n",
        "c.yaml:5: upstreams[0].as: unknown key (allowed: address, asn, name, prefix)",
    ),
    (
        MINIMAL
        + "upstreams:\n  - {address: 198.18.0.38, name: a}\n  - {prefix: 198.18.0.38/32, name: b}\n",
        "c.yaml:6: upstreams[1].prefix: 198.18.0.38/32 is already in upstreams[0]",
    ),
]


@pytest.mark.parametrize(
    ("doc", "message"), INVALID, ids=[m.split(": ", 1)[1][:50] for _, m in INVALID]
)
def test_invalid_config_message(doc: str, message: str) -> None:
    """Each invalid document is refused with exactly this PATH:LINE: key.path: reason."""
    with pytest.raises(config.ConfigError) as info:
        config.parse(doc, "c.yaml")
    assert str(info.value) == message


def test_upstreams_map_router_addresses_to_owners() -> None:
    """`upstreams` entries (a prefix, or one address as a /32 or /128) name an AS and owner."""
    cfg = parse(
        MINIMAL
        + """\
upstreams:
  - {prefix: 198.18.0.36/30, asn: 4837, name: China Unicom}
  - address: 198.18.0.42
    asn: 20485
    name: TransTelecom
  - {address: "2001:db8::1", name: SatGate}
"""
    )
    assert cfg.upstreams == (
        config.UpstreamConfig(ipaddress.ip_network("198.18.0.36/30"), "China Unicom", 4837),
        config.UpstreamConfig(ipaddress.ip_network("198.18.0.42/32"), "TransTelecom", 20485),
        config.UpstreamConfig(ipaddress.ip_network("2001:db8::1/128"), "SatGate", None),
    )
    assert parse(MINIMAL).upstreams == () and parse(MINIMAL + "upstreams:\n").upstreams == ()


def test_detection_keys_map_onto_params() -> None:
    """detection.* keys set the detector's parameters; durations and numbers as typed."""
    cfg = parse(
        MINIMAL + "detection: {down_after: 3, merge_gap: 2m, belief_down: 0.2, extra_max: 7}\n"
    )
    d = cfg.detection
    assert (d.down_after, d.merge_gap, d.belief_down, d.extra_max) == (3, 120.0, 0.2, 7)
    assert d.up_after == 2


def test_unreadable_file(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming the file, not a traceback."""
    with pytest.raises(config.ConfigError, match=r"nope.yaml:0: cannot read: No such file"):
        config.load(tmp_path / "nope.yaml")
