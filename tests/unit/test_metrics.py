"""Metrics: series lifecycle follows the configuration; the recorder counts what probes say."""

from __future__ import annotations

import pytest
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
    """target_up (0: not answered yet) and per-kind counters exist from the start; a removed
    target's series vanish."""
    m = fresh()
    m.apply_config(config.parse(CFG))
    assert (
        get(m, "dprk_monitor_target_up", entity="star-jv", kind="icmp", target="198.18.176.15") == 0
    )
    assert get(m, "dprk_monitor_probes_total", entity="star-jv", kind="dns") == 0
    assert (
        get(m, "dprk_monitor_probe_failures_total", entity="star-jv", kind="icmp", reason="timeout")
        == 0
    )
    assert get(m, "dprk_monitor_entity_state", entity="star-jv", state="unknown") == 1
    assert get(m, "dprk_monitor_outages_total", entity="star-jv", kind="blackout") == 0
    assert (
        get(m, "dprk_monitor_target_up", entity="_controls", kind="icmp", target="198.19.8.8") == 0
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
        get(m, "dprk_monitor_target_up", entity="star-jv", kind="icmp", target="198.18.176.15") == 0
    )


def test_target_up_starts_at_0_not_optimistic_1() -> None:
    """A target that never answered is not reported up: target_up is 0 at load (it was 1)."""
    m = fresh()
    m.apply_config(config.parse(CFG))
    m.set_target_up("star-jv", config.parse(CFG).entities[0].targets.icmp[0], True)
    m.apply_config(config.parse(CFG.replace("198.18.176.15]", "198.18.176.15, 198.18.176.16]")))
    ups = {
        k: get(m, "dprk_monitor_target_up", entity="star-jv", kind="icmp", target=k)
        for k in ("198.18.176.1", "198.18.176.15", "198.18.176.16")
    }
    assert ups == {"198.18.176.1": 1, "198.18.176.15": 0, "198.18.176.16": 0}, "a reload keeps"


def targets(m: Metrics, entity: str, kind: str) -> dict[str, float | None]:
    states = ("up", "down", "never_answered")
    return {s: get(m, "dprk_monitor_targets", entity=entity, kind=kind, state=s) for s in states}


def test_targets_by_state_created_at_load_all_never_answered() -> None:
    """dprk_monitor_targets{entity,kind,state} exists at load: every target never answered."""
    m = fresh()
    m.apply_config(config.parse(CFG))
    assert targets(m, "star-jv", "icmp") == {"up": 0, "down": 0, "never_answered": 2}
    assert targets(m, "star-jv", "http") == {"up": 0, "down": 0, "never_answered": 1}
    assert targets(m, "_controls", "icmp") == {"up": 0, "down": 0, "never_answered": 1}


def test_targets_by_state_follow_snapshots_and_reloads() -> None:
    """set_target_counts sets the counts; a reload counts new targets as never answered and
    drops the series of an (entity, kind) that went; a snapshot drops pairs it lacks."""
    from monitor.detect.hysteresis import TargetState as S

    m = fresh()
    m.apply_config(config.parse(CFG))
    m.set_target_counts(
        [
            ("star-jv", "icmp", {S.UP: 1, S.DOWN: 1, S.NEVER_ANSWERED: 0}),
            ("star-jv", "http", {S.NEVER_ANSWERED: 1}),
            ("star-jv", "dns", {S.DOWN: 1}),
            ("_controls", "icmp", {S.UP: 1}),
        ]
    )
    assert targets(m, "star-jv", "icmp") == {"up": 1, "down": 1, "never_answered": 0}
    assert targets(m, "star-jv", "dns") == {"up": 0, "down": 1, "never_answered": 0}
    m.apply_config(
        config.parse(
            CFG.replace("198.18.176.15]", "198.18.176.15, 198.18.176.16]").replace(
                "    dns: [{server: 198.18.176.15, name: kp}]\n", ""
            )
        )
    )
    assert targets(m, "star-jv", "icmp") == {"up": 1, "down": 1, "never_answered": 1}
    assert targets(m, "star-jv", "dns") == {"up": None, "down": None, "never_answered": None}
    m.set_target_counts([("star-jv", "icmp", {S.UP: 3})])
    assert targets(m, "star-jv", "icmp") == {"up": 3, "down": 0, "never_answered": 0}
    assert targets(m, "_controls", "icmp")["up"] is None


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

    from monitor.config import configured_targets
    from monitor.metrics import _TargetKey

    cfg = config.parse(CFG)
    m = fresh()
    m.apply_config(cfg)
    reference = CollectorRegistry()
    g = Gauge(m.target_up.name, m.target_up.doc, ["entity", "kind", "target"], registry=reference)
    for entity, t in configured_targets(cfg):
        g.labels(entity, t.kind.value, t.key).set(0)
    answered = cfg.entities[0].targets.icmp[1]
    m.set_target_up("star-jv", answered, True)
    g.labels("star-jv", "icmp", answered.key).set(1)
    odd = 'http://x.kp/a"b\\c\nd'  # no config accepts this URL; the escaping must still hold
    m.target_up.set(_TargetKey("star-jv", "http", odd).labels_text(), 0)
    g.labels("star-jv", "http", odd).set(0)
    icmp = cfg.entities[0].targets.icmp[0]
    m.set_target_up("star-jv", icmp, False)
    g.labels("star-jv", "icmp", icmp.key).set(0)

    ours = b"".join(m.target_up.text_parts(chunk=7))
    theirs = generate_latest(reference)
    assert sorted(ours.splitlines()) == sorted(theirs.splitlines())
    size, parts = m.render_parts(chunk=5)
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


@pytest.mark.parametrize("collide", [False, True])
def test_target_up_buffer_removes_and_rewrites_in_place(
    collide: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values are rewritten in place, removed series vanish from the exposition before and
    after the buffer is compacted, and the survivors keep their values; also when every
    prefix has the same hash (series are found by hash, then confirmed)."""
    import monitor.metrics
    from monitor.metrics import _TargetUp

    if collide:
        monkeypatch.setattr(monitor.metrics, "_hash", lambda _b: 7)

    up = _TargetUp("t_up", "help")
    labels = [f'entity="e",kind="icmp",target="198.18.0.{i}"' for i in range(6)]
    for i, lab in enumerate(labels):
        up.set(lab, i % 2)
    up.set(labels[0], 1)
    with pytest.raises(ValueError):
        up.set(labels[1], 0.5)

    def lines() -> list[bytes]:
        body = b"".join(up.text_parts(chunk=10))
        assert len(body) == up.size()
        return [ln for ln in body.splitlines() if not ln.startswith(b"#")]

    assert lines()[0] == b"t_up{" + labels[0].encode() + b"} 1.0"
    up.remove(labels[2])
    up.remove(labels[3])
    stale = lines()  # before compaction: built from the live series
    up.compact()
    assert lines() == stale and len(stale) == 4
    assert not any(b"198.18.0.2" in ln or b"198.18.0.3" in ln for ln in stale)
    assert [ln.rsplit(b" ", 1)[1] for ln in stale] == [b"1.0", b"1.0", b"0.0", b"1.0"]
    up.set(labels[4], 1)  # offsets moved by the compaction: still the right line
    assert lines()[2].endswith(b'198.18.0.4"} 1.0')
    assert up.keys() == {labels[i] for i in (0, 1, 4, 5)} and len(up) == 4
    assert labels[2] not in up and labels[4] in up
    up.set(labels[5], 0)
    assert not up.update(labels[2], 1) and labels[2] not in up  # removed: not brought back
    assert up.update(labels[1], 1)
    fam = next(iter(up.collect()))
    assert sorted(s.value for s in fam.samples) == [0.0, 1.0, 1.0, 1.0]
    parts = up.text_parts(chunk=16)
    next(parts), next(parts)
    up.set(labels[0], 0)  # a value rewritten mid-scrape: fine
    next(parts)
    up.set('entity="e",kind="icmp",target="198.18.1.1"', 1)  # a line added: the body would tear
    with pytest.raises(RuntimeError):
        list(parts)
