"""dprk_monitor_tls_version_info: one series per HTTPS target with the last negotiated TLS
version and cipher; replaced when they change, removed with the target."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from monitor import config
from monitor.metrics import Metrics
from monitor.probes.base import ProbeResult, Reason

CFG = """\
entities:
  - name: kcna
    icmp: [198.18.176.1]
    http: [{url: "https://kcna.kp/", address: 198.18.176.80}]
"""
NAME = "dprk_monitor_tls_version_info"


def series(m: Metrics) -> dict[tuple[str, str, str, str], float]:
    """Every sample of the metric, by (entity, target, version, cipher)."""
    out: dict[tuple[str, str, str, str], float] = {}
    for family in m.registry.collect():
        for s in family.samples:
            if s.name == NAME:
                key = (s.labels["entity"], s.labels["target"])
                out[(*key, s.labels["version"], s.labels["cipher"])] = s.value
    return out


def test_version_recorded_replaced_and_removed() -> None:
    """A probe's tls_version/tls_cipher make one series = 1; a new version replaces it; a failed
    probe leaves it; removing the target from the configuration removes it."""
    m = Metrics(CollectorRegistry())
    cfg = config.parse(CFG)
    m.apply_config(cfg)
    http = cfg.entities[0].targets.http[0]
    key = http.key

    legacy = {"tls_version": "TLSv1", "tls_cipher": "AES128-SHA", "status": 200}
    m.record("kcna", ProbeResult.success(http, 0.0, 0.4, legacy))
    m.record("kcna", ProbeResult.success(http, 1.0, 0.4, legacy))
    assert series(m) == {("kcna", key, "TLSv1", "AES128-SHA"): 1.0}

    upgraded = {"tls_version": "TLSv1.3", "tls_cipher": "TLS_AES_256_GCM_SHA384"}
    m.record("kcna", ProbeResult.success(http, 2.0, 0.4, upgraded))
    assert series(m) == {("kcna", key, "TLSv1.3", "TLS_AES_256_GCM_SHA384"): 1.0}

    m.record("kcna", ProbeResult.failure(http, 3.0, Reason.TLS_ERROR, "tls: x", upgraded))
    assert series(m) == {("kcna", key, "TLSv1.3", "TLS_AES_256_GCM_SHA384"): 1.0}

    m.apply_config(config.parse(CFG.replace('    http: [{url: "https://kcna.kp/", ', "#")))
    assert series(m) == {}


def test_plain_http_makes_no_series() -> None:
    """An answer without TLS (plain http) creates no tls_version_info series."""
    m = Metrics(CollectorRegistry())
    cfg = config.parse(CFG)
    m.apply_config(cfg)
    http = cfg.entities[0].targets.http[0]
    m.record("kcna", ProbeResult.success(http, 0.0, 0.1, {"status": 200}))
    assert series(m) == {}
