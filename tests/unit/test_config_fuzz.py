"""Hypothesis over the config loader: any text, any YAML-ish structure either parses into a
Config whose numbers are finite and within the caps, or is refused as one `PATH:LINE: ` line.
Never another exception."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor import config
from monitor.probes.base import DnsTarget, HttpTarget

# Reproducible in CI: the same examples every run, no example database.
FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
ERROR = re.compile(r"^c\.yaml:\d+: ")


def _check_value(value: Any, where: str) -> None:
    """Every number finite, every string free of control characters, recursively."""
    if isinstance(value, float):
        assert math.isfinite(value), where
    elif isinstance(value, str):
        assert config._bad_char(value) is None, where
    elif isinstance(value, Path):
        _check_value(str(value), where)
    elif isinstance(value, tuple | frozenset):
        for i, v in enumerate(value):
            _check_value(v, f"{where}[{i}]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _check_value(getattr(value, f.name), f"{where}.{f.name}")


def check_outcome(text: str) -> None:
    """The loader's contract on one document."""
    try:
        cfg = config.parse(text, "c.yaml")
    except config.ConfigError as e:
        message = str(e)
        assert ERROR.match(message), message
        assert len(message.splitlines()) == 1, message
        return
    _check_value(cfg, "cfg")
    p = cfg.probing
    assert config.MIN_RATE <= p.max_rate <= config.MAX_RATE
    assert 0 < p.timeout < p.interval <= config.MAX_INTERVAL and p.timeout <= config.MAX_TIMEOUT
    targets = list(config.configured_targets(cfg))
    assert 0 < len(targets) <= config.MAX_TARGETS
    for _, t in targets:
        if isinstance(t, HttpTarget):
            assert 0 < t.max_body <= config.MAX_BODY
        if isinstance(t, DnsTarget):
            config._dns_name(t.name)  # what the prober will do with it: must not raise


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    """Arbitrary text: a Config or a one-line ConfigError, never another exception."""
    check_outcome(text)


# YAML-ish fragments: the text of valid documents cut and spliced with YAML syntax.
_PIECES = [
    "entities:\n",
    "  - name: e\n",
    "    icmp: [198.18.176.1]\n",
    "probing: {max_rate: ",
    "interval: ",
    "[",
    "{",
    "]",
    "}",
    ": ",
    "- ",
    "\n",
    "  ",
    "&a ",
    "*a ",
    "!!int ",
    "!!binary ",
    "!!timestamp ",
    "? ",
    '"\\0"',
    '"\\x85"',
    "'",
    "#",
    ".inf",
    ".nan",
    "1" + "0" * 30,
    "2020-13-45",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "|\n",
]


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=8)), max_size=40))
def test_spliced_yaml(pieces: list[str]) -> None:
    """Pieces of YAML syntax and valid keys spliced at random: never another exception."""
    check_outcome("".join(pieces))


# --- structured documents: known keys with random values ----------------------------------

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**420),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "30s",
            "500ms",
            "5m",
            "1h",
            "0",
            "0s",
            "1" + "0" * 400 + "s",
            "25h",
            "64KiB",
            "65MiB",
            "198.18.176.1",
            "198.18.176.0/30",
            "198.18.176.1-3",
            "2001:db8::1",
            "[2001:db8::1]:443",
            "198.18.176.71:80",
            ":9474",
            "127.0.0.1:9474",
            "http://kcna.kp/",
            "https://[2001:db8::1]:8443/",
            "http://198.18.176.1/",
            "wss://ris-live.ripe.net/v1/ws/",
            "kp",
            "a\\999.kp",
            "ü" * 60,
            "kp\n",
            "SOA",
            "NOERROR",
            "var\0",
            "./var",
            "star-jv",
            "debug",
        ]
    ),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2),
        st.dictionaries(st.sampled_from(["a", "name", "url", "icmp", "server"]), inner, max_size=2),
    ),
    max_leaves=5,
)


def _mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Nine times in ten a plausible value for the key, else anything: so that most documents
    get deep into validation, and many all the way to a Config."""
    return st.integers(0, 9).flatmap(lambda i: good if i < 9 else _value)


def _section(spec: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={k: _mostly(v) for k, v in spec.items()})


_PROBING = _section(
    {
        "interval": st.sampled_from(["30s", "5m", "1s", "24h", "25h", "1" + "0" * 400 + "s"]),
        "timeout": st.sampled_from(["3s", "500ms", "60s", "61s", "0s"]),
        "max_rate": st.one_of(
            st.floats(min_value=0.005, max_value=200_000), st.sampled_from([20, 100000])
        ),
        "reprobes": st.integers(0, 12),
        "splay": st.booleans(),
    }
)
_DETECTION = _section(
    {
        "down_after": st.integers(0, 5),
        "merge_gap": st.sampled_from(["2m", "0", "720h", "721h"]),
        "degraded_rtt_factor": st.floats(min_value=0, max_value=2e6),
        "belief_noise": st.floats(min_value=0, max_value=0.2),
        "normal_tau": st.sampled_from(["1h", "10m"]),
        "extra_max": st.integers(0, 100),
    }
)
_ADDRESSES = st.sampled_from(
    ["198.18.176.1", "198.18.176.0/30", "198.18.176.1-3", "2001:db8::1", "198.18.177.0/28"]
)
_URLS = st.sampled_from(
    ["http://kcna.kp/", "https://[2001:db8::1]:8443/", "http://198.18.176.1/", "http://a..kp/"]
)
_HTTP_ITEM = st.one_of(
    _URLS,
    _section(
        {
            "address": st.sampled_from(["198.18.176.1", "198.18.176.2"]),
            "expect_status": st.lists(st.integers(100, 599), min_size=1, max_size=2),
            "max_body": st.sampled_from(["64KiB", "64MiB", "65MiB", 1024]),
            "tls_verify": st.booleans(),
        }
    ).flatmap(lambda d: _mostly(_URLS).map(lambda url: {"url": url, **d})),
)
_DNS_ITEM = _section(
    {
        "type": st.sampled_from(["SOA", "a", "NS", "TYPE65535"]),
        "port": st.integers(1, 65535),
        "expect_rcode": st.sampled_from(["NOERROR", "nxdomain"]),
        "expect_answer": st.booleans(),
    }
).flatmap(
    lambda d: _mostly(st.sampled_from(["kp", "bücher.kp", ".", "a\\999.kp", "ü" * 60])).map(
        lambda name: {"server": "198.18.176.15", "name": name, **d}
    )
)
_TARGETS = _section(
    {
        "icmp": st.lists(_mostly(_ADDRESSES), max_size=3),
        "tcp": st.lists(
            _mostly(st.sampled_from(["198.18.176.71:80", "[2001:db8::1]:443"])), max_size=2
        ),
        "http": st.lists(_mostly(_HTTP_ITEM), max_size=2),
        "dns": st.lists(_mostly(_DNS_ITEM), max_size=2),
    }
)
_ENTITY = st.builds(
    lambda name, icmp, targets, extra: {"name": name, "icmp": icmp, **targets, **extra},
    _mostly(st.sampled_from(["e", "f", "star-jv"])),
    st.lists(_mostly(_ADDRESSES), min_size=1, max_size=3),
    _TARGETS,
    _section(
        {
            "asn": st.integers(1, 2**32),
            "prefixes": st.lists(st.sampled_from(["198.18.176.0/22", "2001:db8::/32"])),
        }
    ),
)
_DOC = st.fixed_dictionaries(
    {"entities": st.lists(_mostly(_ENTITY), min_size=1, max_size=2)},
    optional={
        "listen": _mostly(st.sampled_from(["127.0.0.1:9474", "[::1]:0", "localhost:1", ":1"])),
        "state_dir": _mostly(st.sampled_from(["./var", "/tmp/x", " var"])),
        "log_level": _mostly(st.sampled_from(["info", "debug"])),
        "probing": _mostly(_PROBING),
        "detection": _mostly(_DETECTION),
        "controls": _mostly(_TARGETS),
        "bgp": _mostly(
            _section(
                {
                    "ris_live_url": st.just("wss://ris-live.ripe.net/v1/ws/"),
                    "enabled": st.booleans(),
                }
            )
        ),
        "upstreams": st.lists(
            _mostly(
                _section(
                    {
                        "prefix": st.sampled_from(["198.18.0.36/30", "198.18.0.37/30"]),
                        "name": st.sampled_from(["China Unicom", "China Unicom "]),
                        "asn": st.integers(1, 2**32),
                    }
                )
            ),
            max_size=2,
        ),
    },
)


def _dump(doc: Any) -> str | None:
    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, ValueError, OverflowError):
        return None


@FUZZ
@given(_DOC, st.one_of(st.just(200), st.integers(min_value=0, max_value=199)))
def test_structured_documents(doc: dict[str, Any], cut: int) -> None:
    """Known keys with random values, lists and nesting, whole or cut short (a half-written
    file): a sane Config or a one-line error."""
    text = _dump(doc)
    if text is not None:
        check_outcome(text[: len(text) * cut // 200])
