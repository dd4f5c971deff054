"""Metrics: series lifecycle follows the configuration; the recorder counts what probes say."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from monitor import config
from monitor.metrics import Metrics
from monitor.probes.base import ProbeResult, Reason

CFG = """\
entities:
  - name: star-jv
    icmp: [198.18.176.1, 198.18.176.15]
    http: [{url: "https://naenara.com.kp/", address: 198.18.176.67}]
    dns: [{server: 198.18.176.15, name: kp}]
controls:
  icmp: [198.19.8.8]
"""


def get(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def fresh() -> Metrics:
    return Metrics(CollectorRegistry())


def test_series_created_at_load_and_removed_when_target_goes() -> None:
    """target_up and per-kind counters exist from the start; a removed target's series vanish."""
    m = fresh()
    m.apply_config(config.parse(CFG))
    assert (
        get(m, "dprk_monitor_target_up", entity="star-jv", kind="icmp", target="198.18.176.15") == 1
    )
    assert get(m, "dprk_monitor_probes_total", entity="star-jv", kind="dns") == 0
    assert (
        get(m, "dprk_monitor_probe_failures_total", entity="star-jv", kind="icmp", reason="timeout")
        == 0
    )
    assert get(m, "dprk_monitor_entity_state", entity="star-jv", state="unknown") == 1
    assert get(m, "dprk_monitor_outages_total", entity="star-jv", kind="blackout") == 0
    assert (
        get(m, "dprk_monitor_target_up", entity="_controls", kind="icmp", target="198.19.8.8") == 1
    )

    m.apply_config(
        config.parse(
            CFG.replace("198.18.176.1, ", "").replace(
                "    dns: [{server: 198.18.176.15, name: kp}]\n", ""
            )
        )
    )
    assert (
        get(m, "dprk_monitor_target_up", entity="star-jv", kind="icmp", target="198.18.176.1")
        is None
    )
    assert get(m, "dprk_monitor_probes_total", entity="star-jv", kind="dns") is None
    assert (
        get(m, "dprk_monitor_target_up", entity="star-jv", kind="icmp", target="198.18.176.15") == 1
    )


def test_entity_removed_drops_its_state_series() -> None:
    """An entity that leaves the configuration takes its entity_state and outage series along."""
    m = fresh()
    m.apply_config(config.parse(CFG))
    m.apply_config(config.parse(CFG.replace("star-jv", "other")))
    assert get(m, "dprk_monitor_entity_state", entity="star-jv", state="unknown") is None
    assert get(m, "dprk_monitor_outage_active", entity="star-jv") is None
    assert get(m, "dprk_monitor_outage_active", entity="other") == 0


def test_record_counts_success_failure_and_extras() -> None:
    """Successes feed the RTT histogram, failures their reason, TLS expiry and SOA serial gauges."""
    cfg = config.parse(CFG)
    m = fresh()
    m.apply_config(cfg)
    star = cfg.entities[0]
    icmp, http, dns_t = star.targets.icmp[0], star.targets.http[0], star.targets.dns[0]
    m.record("star-jv", ProbeResult.success(icmp, 0.0, 0.02))
    m.record("star-jv", ProbeResult.failure(icmp, 0.0, Reason.TIMEOUT))
    m.record(
        "star-jv", ProbeResult.success(http, 0.0, 0.3, {"tls_not_after": 1.9e9, "status": 200})
    )
    m.record("star-jv", ProbeResult.success(dns_t, 0.0, 0.01, {"soa_serial": 2016091901}))
    assert get(m, "dprk_monitor_probes_total", entity="star-jv", kind="icmp") == 2
    assert (
        get(m, "dprk_monitor_probe_failures_total", entity="star-jv", kind="icmp", reason="timeout")
        == 1
    )
    assert get(m, "dprk_monitor_probe_rtt_seconds_count", entity="star-jv", kind="icmp") == 1
    assert (
        get(m, "dprk_monitor_probe_rtt_seconds_bucket", entity="star-jv", kind="icmp", le="0.025")
        == 1
    )
    assert (
        get(
            m,
            "dprk_monitor_tls_cert_not_after_timestamp_seconds",
            entity="star-jv",
            target=http.key,
        )
        == 1.9e9
    )
    assert get(m, "dprk_monitor_dns_soa_serial", entity="star-jv", target=dns_t.key) == 2016091901


def test_counter_source_exported_at_scrape() -> None:
    """A component's own counters (ICMP ignored replies) are read at scrape time."""
    m = fresh()
    assert get(m, "dprk_monitor_icmp_replies_ignored_total", reason="stray") is None
    counts = {"stray": 0}
    m.bind_icmp_ignored(lambda: counts)
    counts["stray"] = 3
    assert get(m, "dprk_monitor_icmp_replies_ignored_total", reason="stray") == 3
    assert b"dprk_monitor_icmp_replies_ignored_total" in m.render()
