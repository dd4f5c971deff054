"""What `check-config` accepts, `run` can run: non-finite and absurd numbers, control characters,
deep nesting, DNS names and URLs the probers cannot send, `listen` without a host, a total-target
cap, conflicting HTTP pins. Each is refused as one `PATH:LINE: key.path: reason` line."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from monitor import cli, config, metrics
from monitor.detect.params import DetectionParams
from monitor.probes.base import HttpTarget

MIN = "entities:\n  - name: e\n    icmp: [198.18.176.1]\n"
BIG = "1" + "0" * 400  # a 401-digit number: a float of it is inf


def ent(body: str) -> str:
    """An entity `e` whose remaining keys are `body` (indented four spaces)."""
    return "entities:\n  - name: e\n" + body


def clipped(inner: str) -> str:
    """How an over-long value is shown in a message: repr cut to its first 40 and last 12."""
    r = repr(inner)
    return r[:40] + "..." + r[-12:]


# (document, expected error): the exact line users will see.
REFUSED = [
    # --- non-finite and absurd numbers ---------------------------------------------------
    (
        "probing:\n  max_rate: .inf\n" + MIN,
        "c.yaml:2: probing.max_rate: must be a finite number, got inf",
    ),
    (
        "probing:\n  max_rate: .nan\n" + MIN,
        "c.yaml:2: probing.max_rate: must be a finite number, got nan",
    ),
    (
        "probing:\n  max_rate: -.inf\n" + MIN,
        "c.yaml:2: probing.max_rate: must be a finite number, got -inf",
    ),
    (
        "probing:\n  max_rate: 100001\n" + MIN,
        "c.yaml:2: probing.max_rate: must be at most 100000 probes/s, got 100001",
    ),
    (
        f"probing:\n  max_rate: {BIG}\n" + MIN,
        "c.yaml:2: probing.max_rate: must be at most 100000 probes/s, got a 401-digit integer",
    ),
    (
        "probing:\n  max_rate: 0.001\n" + MIN,
        "c.yaml:2: probing.max_rate: must be at least 0.01 probes/s, got 0.001",
    ),
    (
        f"probing:\n  interval: {BIG}s\n" + MIN,
        f"c.yaml:2: probing.interval: must be at most 24h, got {clipped(BIG + 's')}",
    ),
    (
        "probing:\n  interval: 25h\n" + MIN,
        "c.yaml:2: probing.interval: must be at most 24h, got '25h'",
    ),
    (
        "probing:\n  interval: 5m\n  timeout: 61s\n" + MIN,
        "c.yaml:3: probing.timeout: must be at most 60s, got '61s'",
    ),
    (
        f"probing:\n  timeout: {BIG}ms\n" + MIN,
        f"c.yaml:2: probing.timeout: must be at most 60s, got {clipped(BIG + 'ms')}",
    ),
    (
        "detection:\n  merge_gap: 721h\n" + MIN,
        "c.yaml:2: detection.merge_gap: must be at most 720h, got '721h'",
    ),
    (
        f"detection:\n  normal_tau: {BIG}s\n" + MIN,
        f"c.yaml:2: detection.normal_tau: must be at most 720h, got {clipped(BIG + 's')}",
    ),
    (
        "detection:\n  degraded_rtt_factor: .inf\n" + MIN,
        "c.yaml:2: detection.degraded_rtt_factor: must be a finite number, got inf",
    ),
    (
        "detection:\n  degraded_rtt_increase: .nan\n" + MIN,
        "c.yaml:2: detection.degraded_rtt_increase: must be a finite number, got nan",
    ),
    (
        "detection:\n  belief_noise: -.inf\n" + MIN,
        "c.yaml:2: detection.belief_noise: must be a finite number, got -inf",
    ),
    (
        f"detection:\n  degraded_rtt_factor: {BIG}\n" + MIN,
        "c.yaml:2: detection.degraded_rtt_factor: must be at most 1000000, got a 401-digit integer",
    ),
    (
        "detection:\n  degraded_rtt_factor: 1.0e+7\n" + MIN,
        "c.yaml:2: detection.degraded_rtt_factor: must be at most 1000000, got 10000000.0",
    ),
    (
        ent("    http:\n      - {url: 'http://kcna.kp/', max_body: 65MiB}\n"),
        "c.yaml:4: entities[0].http[0].max_body: must be at most 64MiB, got '65MiB'",
    ),
    (
        ent("    http:\n      - {url: 'http://kcna.kp/', max_body: 67108865}\n"),
        "c.yaml:4: entities[0].http[0].max_body: must be at most 64MiB, got 67108865",
    ),
    (
        ent(f"    http:\n      - {{url: 'http://kcna.kp/', max_body: {BIG}}}\n"),
        "c.yaml:4: entities[0].http[0].max_body: must be at most 64MiB, got a 401-digit integer",
    ),
    (
        "probing:\n  max_rate: 1" + "0" * 5000 + "\n" + MIN,
        "c.yaml:2: cannot read this value (integer too large)",
    ),
    (
        "probing:\n  reprobes: 2020-13-45\n" + MIN,
        "c.yaml:2: cannot read this value (ValueError: month must be in 1..12)",
    ),
    # --- NUL and other control characters, anywhere --------------------------------------
    (
        'state_dir: "var\\0"\n' + MIN,
        "c.yaml:1: state_dir: contains the control character '\\x00'",
    ),
    (
        "state_dir: var\x00\n" + MIN,
        "c.yaml:1: YAML error: unacceptable character #x0000: special characters are not allowed",
    ),
    (
        'entities:\n  - name: "e\\0"\n    icmp: [198.18.176.1]\n',
        "c.yaml:2: entities[0].name: contains the control character '\\x00'",
    ),
    (
        ent('    icmp: ["198.18.176.1\\0"]\n'),
        "c.yaml:3: entities[0].icmp[0]: contains the control character '\\x00'",
    ),
    (
        ent('    http: ["http://kcna.kp/\\0"]\n'),
        "c.yaml:3: entities[0].http[0]: contains the control character '\\x00'",
    ),
    (
        ent('    http:\n      - {url: "https://a.kp/", ca_file: "/etc/ssl/a\\0.pem"}\n'),
        "c.yaml:4: entities[0].http[0].ca_file: contains the control character '\\x00'",
    ),
    (
        ent('    dns:\n      - {server: 198.18.176.15, name: "kp\\0"}\n'),
        "c.yaml:4: entities[0].dns[0].name: contains the control character '\\x00'",
    ),
    (
        MIN + 'upstreams:\n  - {prefix: 198.18.0.36/30, name: "China\\0Unicom"}\n',
        "c.yaml:5: upstreams[0].name: contains the control character '\\x00'",
    ),
    (
        'listen: "127.0.0.1\\0:9474"\n' + MIN,
        "c.yaml:1: listen: contains the control character '\\x00'",
    ),
    (
        MIN + 'bgp:\n  ris_live_url: "wss://ris-live.ripe.net/\\0"\n',
        "c.yaml:5: bgp.ris_live_url: contains the control character '\\x00'",
    ),
    (
        '"lis\\0ten": 127.0.0.1:1\n' + MIN,
        "c.yaml:1: key 'lis\\x00ten' contains the control character '\\x00'",
    ),
    (
        MIN + 'upstreams:\n  - {prefix: 198.18.0.36/30, name: "China\\tUnicom"}\n',
        "c.yaml:5: upstreams[0].name: contains the control character '\\t'",
    ),
    (
        MIN + 'upstreams:\n  - {prefix: 198.18.0.36/30, name: "China\\LUnicom"}\n',
        "c.yaml:5: upstreams[0].name: contains the line break '\\u2028'",
    ),
    (
        'state_dir: "var\\ud800"\n' + MIN,
        "c.yaml:1: state_dir: contains the unpaired surrogate '\\ud800'",
    ),
    # --- state_dir must be a plausible path ----------------------------------------------
    ("state_dir: ' var'\n" + MIN, "c.yaml:1: state_dir: leading or trailing whitespace in ' var'"),
    (
        f"state_dir: /{'x' * 256}\n" + MIN,
        "c.yaml:1: state_dir: a path component is longer than 255 bytes",
    ),
    (f"state_dir: {'/x' * 2048}\n" + MIN, "c.yaml:1: state_dir: longer than 4095 bytes"),
    # --- deep nesting ---------------------------------------------------------------------
    ("x: " + "[" * 249 + "]" * 249 + "\n" + MIN, "c.yaml:1: nested deeper than 64 levels"),
    ("x: " + "{a: " * 249 + "1" + "}" * 249 + "\n" + MIN, "c.yaml:1: nested deeper than 64 levels"),
    ("x: " + "[\n" * 100 + "]" * 100 + "\n" + MIN, "c.yaml:64: nested deeper than 64 levels"),
    # --- DNS names the prober cannot send -------------------------------------------------
    (
        ent("    dns:\n      - {server: 198.18.176.15, name: 'a\\999.kp'}\n"),
        "c.yaml:4: entities[0].dns[0].name: not a DNS name: 'a\\\\999.kp' (bad escape)",
    ),
    (
        ent(f"    dns:\n      - {{server: 198.18.176.15, name: {'ü' * 60}}}\n"),
        f"c.yaml:4: entities[0].dns[0].name: not a DNS name: '{'ü' * 60}' "
        "(a label is longer than 63 octets)",
    ),
    (
        ent("    dns:\n      - {server: 198.18.176.15, name: a..kp}\n"),
        "c.yaml:4: entities[0].dns[0].name: not a DNS name: 'a..kp' (empty label)",
    ),
    (
        ent(f"    dns:\n      - {{server: 198.18.176.15, name: {('a' * 63 + '.') * 4}kp}}\n"),
        "c.yaml:4: entities[0].dns[0].name: not a DNS name: "
        f"{clipped(('a' * 63 + '.') * 4 + 'kp')} (longer than 255 octets)",
    ),
    (
        ent("    dns:\n      - {server: 198.18.176.15, name: ☃.kp}\n"),
        "c.yaml:4: entities[0].dns[0].name: not a DNS name: '☃.kp' (not valid IDNA)",
    ),
    (
        ent("    dns:\n      - {server: 198.18.176.15, name: 'k p'}\n"),
        "c.yaml:4: entities[0].dns[0].name: not a DNS name: 'k p' (contains whitespace)",
    ),
    # --- trailing newlines and whitespace in names and URLs -------------------------------
    (
        ent('    dns:\n      - {server: 198.18.176.15, name: "kp\\n"}\n'),
        "c.yaml:4: entities[0].dns[0].name: contains the control character '\\n'",
    ),
    (
        ent("    dns:\n      - server: 198.18.176.15\n        name: |\n          kp\n"),
        "c.yaml:5: entities[0].dns[0].name: contains the control character '\\n'",
    ),
    (
        'entities:\n  - name: "e\\n"\n    icmp: [198.18.176.1]\n',
        "c.yaml:2: entities[0].name: contains the control character '\\n'",
    ),
    (
        MIN + "upstreams:\n  - {prefix: 198.18.0.36/30, name: 'China Unicom '}\n",
        "c.yaml:5: upstreams[0].name: leading or trailing whitespace in 'China Unicom '",
    ),
    (
        ent('    http: ["http://kcna.kp/\\n"]\n'),
        "c.yaml:3: entities[0].http[0]: contains the control character '\\n'",
    ),
    (
        ent("    http: [' http://kcna.kp/']\n"),
        "c.yaml:3: entities[0].http[0]: URL contains whitespace: ' http://kcna.kp/'",
    ),
    (
        ent("    http: ['http://a b/']\n"),
        "c.yaml:3: entities[0].http[0]: URL contains whitespace: 'http://a b/'",
    ),
    (
        ent("    http: ['http://a..kp/']\n"),
        "c.yaml:3: entities[0].http[0]: URL host is not a DNS name: 'a..kp' (empty label)",
    ),
    (
        ent("    http: ['http://%00/']\n"),
        "c.yaml:3: entities[0].http[0]: URL host is not a DNS name: '%00' (bad character)",
    ),
    (
        ent("    http: ['http://a\\999.kp/']\n"),
        "c.yaml:3: entities[0].http[0]: not a valid URL: 'http://a\\\\999.kp/'",
    ),
    (
        ent(f"    http: ['http://{'ü' * 60}.kp/']\n"),
        f"c.yaml:3: entities[0].http[0]: not a valid URL: {clipped('http://' + 'ü' * 60 + '.kp/')}",
    ),
    # --- listen without a host ------------------------------------------------------------
    (
        'listen: ":9474"\n' + MIN,
        "c.yaml:1: listen: no host: write 0.0.0.0:9474 or [::]:9474 to listen on every "
        "interface, or 127.0.0.1:9474 for this machine only",
    ),
    (
        'listen: "bad host:80"\n' + MIN,
        "c.yaml:1: listen: not an IP address or host name: 'bad host'",
    ),
    ('listen: "[localhost]:80"\n' + MIN, "c.yaml:1: listen: not an IPv6 address: 'localhost'"),
    # --- an IP-literal URL pinned to another address --------------------------------------
    (
        ent("    http:\n      - {url: 'http://198.18.176.1/', address: 198.18.176.2}\n"),
        "c.yaml:4: entities[0].http[0].address: 198.18.176.2 differs from the URL's host "
        "198.18.176.1; with an IP address in the URL, drop 'address' or make them equal",
    ),
    (
        ent("    http:\n      - {url: 'https://[2001:db8::1]:8443/', address: '2001:db8::2'}\n"),
        "c.yaml:4: entities[0].http[0].address: 2001:db8::2 differs from the URL's host "
        "2001:db8::1; with an IP address in the URL, drop 'address' or make them equal",
    ),
]


@pytest.mark.parametrize(
    ("doc", "message"), REFUSED, ids=[m.split(": ", 1)[1][:60] for _, m in REFUSED]
)
def test_refused_with_one_line(doc: str, message: str) -> None:
    """Each document is refused with exactly this one PATH:LINE: key.path: reason line."""
    with pytest.raises(config.ConfigError) as info:
        config.parse(doc, "c.yaml")
    assert str(info.value) == message
    assert len(str(info.value).splitlines()) == 1


ACCEPTED = [
    # Equal addresses are redundant, not conflicting; a zero duration still means "off".
    ent("    http:\n      - {url: 'http://198.18.176.1/', address: 198.18.176.1}\n"),
    ent("    http:\n      - {url: 'https://[2001:db8::1]/', address: '2001:db8:0::1'}\n"),
    "probing: {max_rate: 100000, interval: 24h, timeout: 60s}\n" + MIN,
    "detection: {merge_gap: 720h, degraded_rtt_factor: 1000000, negative_spacing: 0}\n" + MIN,
    ent("    http:\n      - {url: 'http://kcna.kp/', max_body: 64MiB}\n"),
    ent(
        "    dns:\n      - {server: 198.18.176.15, name: bücher.kp}\n      - {server: 198.18.176.15, name: '*.kp'}\n"
    ),
    ent(f"    dns:\n      - {{server: 198.18.176.15, name: {('a' * 63 + '.') * 3}{'b' * 61}}}\n"),
    'listen: "[::]:9474"\n' + MIN,
    'listen: "0.0.0.0:9474"\n' + MIN,
    'listen: "localhost:9474"\n' + MIN,
    MIN + "upstreams:\n  - {prefix: 198.18.0.36/30, name: China Unicom (AS4837)}\n",
]


@pytest.mark.parametrize("doc", ACCEPTED)
def test_accepted_edges(doc: str) -> None:
    """Values at the caps, equal HTTP pins, IDNA names and explicit wildcards are accepted."""
    cfg = config.parse(doc, "c.yaml")
    assert cfg.entities


def test_nesting_within_the_limit_is_composed() -> None:
    """60 levels of nesting are read; the error is then about the unknown key, not the depth."""
    with pytest.raises(config.ConfigError) as info:
        config.parse("x: " + "[" * 60 + "]" * 60 + "\n" + MIN, "c.yaml")
    assert str(info.value).startswith("c.yaml:1: x: unknown key")


def test_name_regex_does_not_match_before_a_trailing_newline() -> None:
    """An entity name is matched whole: `$` before a trailing newline no longer passes."""
    with pytest.raises(ValueError, match="expected a name"):
        config._parse_name("e\n")


# --- the total-target cap -------------------------------------------------------------------


def test_total_target_cap_names_the_entity_that_crosses_it() -> None:
    """Targets over all entities and controls are capped; the error names where it is crossed."""
    doc = textwrap.dedent("""\
        entities:
          - name: a
            icmp: [10.0.0.0/16, 10.1.0.0/16]
          - name: b
            icmp:
              - 10.2.0.0/16
              - 10.3.0.0/16
    """)
    with pytest.raises(config.ConfigError) as info:
        config.parse(doc, "c.yaml")
    assert str(info.value) == (
        "c.yaml:7: entities[1].icmp[1]: entity 'b' brings the total past 200000 targets "
        "(entities and controls together)"
    )


def test_total_target_cap_counts_controls() -> None:
    """Controls count toward the cap too."""
    doc = textwrap.dedent("""\
        entities:
          - name: a
            icmp: [10.0.0.0/16, 10.1.0.0/16, 10.2.0.0/16]
        controls:
          icmp: [10.9.0.0/20]
    """)
    with pytest.raises(config.ConfigError) as info:
        config.parse(doc, "c.yaml")
    assert str(info.value) == (
        "c.yaml:5: controls.icmp[0]: controls bring the total past 200000 targets "
        "(entities and controls together)"
    )


def test_total_target_cap_counts_distinct_targets() -> None:
    """Duplicates folded away do not count: the same /16 listed twice is 65534 targets."""
    doc = "entities:\n  - name: a\n    icmp: [10.0.0.0/16, 10.0.0.0/16, 10.0.0.0/16, 10.0.0.0/16]\n"
    cfg = config.parse(doc, "c.yaml")
    assert len(cfg.entities[0].targets) == 65534


# --- anything else raised while reading YAML ------------------------------------------------


def test_unexpected_yaml_exception_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever PyYAML raises (here a RecursionError) becomes a ConfigError at line 1."""

    def boom(self: object) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(config._Loader, "get_single_data", boom)
    with pytest.raises(config.ConfigError) as info:
        config.parse(MIN, "c.yaml")
    assert str(info.value) == "c.yaml:1: cannot parse this YAML (RecursionError)"


# --- keys and defaults come from the dataclasses --------------------------------------------


def test_section_keys_are_the_dataclass_fields() -> None:
    """Each section's allowed keys are its dataclass' fields: the unknown-key error lists them."""
    cases = {
        "probing": config.ProbingConfig,
        "bgp": config.BgpConfig,
        "detection": DetectionParams,
    }
    for section, cls in cases.items():
        with pytest.raises(config.ConfigError) as info:
            config.parse(f"{section}:\n  zz: 1\n" + MIN, "c.yaml")
        names = sorted(f.name for f in dataclasses.fields(cls) if f.init)
        assert info.value.reason == f"unknown key (allowed: {', '.join(names)})"


def test_a_field_without_a_converter_is_caught() -> None:
    """A dataclass field the validator does not know is an error at import, not a silent default."""
    with pytest.raises(TypeError, match=r"ProbingConfig.*interval"):
        config._check_table(config.ProbingConfig, {"timeout", "max_rate", "reprobes", "splay"})
    config._check_table(
        config.ProbingConfig, {f.name for f in dataclasses.fields(config.ProbingConfig)}
    )


def test_defaults_are_the_dataclass_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys left out take exactly the dataclasses' defaults."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    cfg = config.parse(
        MIN + "controls:\n  http: [http://a.kp/]\n  dns: [{server: 198.19.8.8, name: kp}]\n",
        "c.yaml",
    )
    assert cfg.probing == config.ProbingConfig()
    assert cfg.detection == DetectionParams()
    assert cfg.bgp == config.BgpConfig()
    d = config.Config()
    assert (cfg.listen_host, cfg.listen_port, cfg.state_dir, cfg.log_level) == (
        d.listen_host,
        d.listen_port,
        d.state_dir,
        d.log_level,
    )
    assert cfg.controls.http[0] == HttpTarget("http://a.kp/")
    dns_t = cfg.controls.dns[0]
    assert (dns_t.type, dns_t.port, dns_t.expect_rcode, dns_t.expect_answer) == (
        "SOA",
        53,
        "NOERROR",
        True,
    )


# --- configured_targets ---------------------------------------------------------------------


def test_configured_targets_lives_in_config() -> None:
    """configured_targets yields (entity, target), then (CONTROLS, control); metrics re-exports
    CONTROLS."""
    cfg = config.parse(
        MIN + "  - name: f\n    tcp: ['198.18.176.2:80']\ncontrols:\n  icmp: [198.19.8.8]\n",
        "c.yaml",
    )
    got = list(config.configured_targets(cfg))
    assert [(n, t.key) for n, t in got] == [
        ("e", "198.18.176.1"),
        ("f", "198.18.176.2:80"),
        (config.CONTROLS, "198.19.8.8"),
    ]
    assert metrics.CONTROLS is config.CONTROLS == "_controls"


# --- the command line: check-config exits 1, run exits 78, one line each --------------------

# Targets on loopback only, BGP off, port 0: should `run` ever get past the config, it touches
# nothing outside this host.
SAFE = "listen: 127.0.0.1:0\nbgp: {enabled: false}\nentities:\n  - name: e\n    icmp: [127.0.0.1]\n"

CLI_CASES = [
    ("probing:\n  max_rate: .inf\n", "probing.max_rate: must be a finite number, got inf"),
    ("probing:\n  max_rate: .nan\n", "probing.max_rate: must be a finite number, got nan"),
    (
        f"probing:\n  interval: {BIG}s\n",
        f"probing.interval: must be at most 24h, got {clipped(BIG + 's')}",
    ),
    ('state_dir: "var\\0"\n', "state_dir: contains the control character '\\x00'"),
    ("x: " + "[" * 249 + "]" * 249 + "\n", "nested deeper than 64 levels"),
    (
        "controls:\n  dns: [{server: 127.0.0.1, name: 'a\\999.kp'}]\n",
        "controls.dns[0].name: not a DNS name: 'a\\\\999.kp' (bad escape)",
    ),
]
CLI_IDS = [r[:40] for _, r in CLI_CASES]


def _write(tmp_path: Path, extra: str) -> tuple[Path, int]:
    """The config file, and the line its error points at."""
    path = tmp_path / "bad.yaml"
    state = "" if "state_dir" in extra else f"state_dir: {tmp_path / 'var'}\n"
    path.write_text(SAFE + state + extra)
    first = len((SAFE + state).splitlines()) + 1
    # Errors inside a section point at the value's line, the one after the section key.
    return path, first + 1 if extra.splitlines()[0].endswith(":") else first


@pytest.mark.parametrize(("extra", "reason"), CLI_CASES, ids=CLI_IDS)
def test_check_config_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, reason: str
) -> None:
    """check-config prints exactly one line, the error, and exits 1: never a traceback."""
    path, line = _write(tmp_path, extra)
    rc = cli.main(["check-config", str(path)])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert err.splitlines() == [f"{path}:{line}: {reason}"]


@pytest.mark.parametrize(("extra", "reason"), CLI_CASES, ids=CLI_IDS)
def test_run_exits_78_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, reason: str
) -> None:
    """`run` refuses the same configs with the same line and EX_CONFIG (78), before starting."""
    path, line = _write(tmp_path, extra)
    rc = cli.main(["run", "--config", str(path)])
    _, err = capsys.readouterr()
    assert rc == cli.EX_CONFIG == 78
    assert err.splitlines() == [f"{path}:{line}: {reason}"]


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "dprk-monitor"
    return [str(script)] if script.exists() else [sys.executable, "-m", "monitor"]


@pytest.mark.parametrize(
    "extra",
    ["probing:\n  max_rate: .inf\n", 'state_dir: "var\\0"\n'],
    ids=["max_rate-inf", "state_dir-NUL"],
)
def test_run_process_exits_78_fast(tmp_path: Path, extra: str) -> None:
    """`dprk-monitor run` on a non-finite max_rate or a NUL in state_dir exits 78 at once."""
    path, _ = _write(tmp_path, extra)
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "STATE_DIRECTORY")}
    # The old code started (and then hung or crashed) here: a short timeout fails the test.
    proc = subprocess.run(
        [*_console_script(), "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 78, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(f"{path}:")


def test_validator_bug_is_one_line_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the validator itself raise, check-config says so in one line (exit 1, run 78)."""

    def broken(path: str) -> config.Config:
        raise KeyError("line one\nline two")

    monkeypatch.setattr(config, "load", broken)
    assert cli.main(["check-config", "x.yaml"]) == 1
    assert cli.main(["run", "--config", "x.yaml"]) == 78
    lines = capsys.readouterr().err.splitlines()
    expected = "x.yaml:0: cannot validate (KeyError: 'line one\\nline two'); please report this"
    assert lines == [expected, expected]


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_detection_params_refuse_non_finite(bad: float) -> None:
    """DetectionParams built in code (not only from YAML) refuse inf and nan, naming the field."""
    with pytest.raises(ValueError, match=r"^merge_gap: must be a finite number$"):
        DetectionParams(merge_gap=bad)
    with pytest.raises(ValueError, match=r"^degraded_rtt_factor: must be a finite number$"):
        DetectionParams(degraded_rtt_factor=bad)
