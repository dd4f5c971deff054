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


def test_target_up_renders_as_a_gauge_would() -> None:
    """target_up is kept as exposition lines (memory, scrape cost at 100,000 targets): the text
    is what a prometheus_client Gauge renders, escaping included, once, and parses back."""
    from prometheus_client import Gauge
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from monitor.metrics import _TargetKey, configured_targets

    cfg = config.parse(CFG)
    m = fresh()
    m.apply_config(cfg)
    reference = CollectorRegistry()
    g = Gauge(m.target_up.name, m.target_up.doc, ["entity", "kind", "target"], registry=reference)
    for entity, t in configured_targets(cfg):
        g.labels(entity, t.kind.value, t.key).set(1)
    odd = 'http://x.kp/a"b\\c\nd'  # no config accepts this URL; the escaping must still hold
    m.target_up.set(_TargetKey("star-jv", "http", odd).labels_text(), 0)
    g.labels("star-jv", "http", odd).set(0)
    icmp = cfg.entities[0].targets.icmp[0]
    m.set_target_up("star-jv", icmp, False)
    g.labels("star-jv", "icmp", icmp.key).set(0)

    ours = b"".join(m.target_up.text_parts(m.target_up.snapshot(), lines=2))
    theirs = generate_latest(reference)
    assert sorted(ours.splitlines()) == sorted(theirs.splitlines())
    size, parts = m.render_parts(lines=3)
    body = b"".join(parts)
    assert size == len(body) and body == m.render()
    text = body.decode()
    assert text.count("# HELP dprk_monitor_target_up ") == 1
    parsed = {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        if f.name == "dprk_monitor_target_up"
        for s in f.samples
    }
    assert parsed[(("entity", "star-jv"), ("kind", "http"), ("target", odd))] == 0
    assert get(m, "dprk_monitor_target_up", entity="star-jv", kind="http", target=odd) == 0
    assert get(m, "dprk_monitor_target_up", entity="star-jv", kind="icmp", target=icmp.key) == 0
    assert len(parsed) == len(m.target_up.keys()) == len(list(configured_targets(cfg))) + 1
