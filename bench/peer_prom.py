"""The peer setup of bench_peer.py: prometheus-blackbox-exporter probing the daemon's targets,
scraped by a real Prometheus with the alert rules a careful user would write, both inside one
vantage namespace of the simulated world; and the once-a-second recorders of both tools' alert
state. Not a benchmark itself (run_all only runs `bench_*.py`).

The exporter's modules come from bench_footprint.blackbox_setup (the same translation of the
daemon's configuration the footprint bench measures), with one change a user would make after
the first look at the results: `min_version: TLS10` on the HTTPS modules, since Go's client
refuses TLS 1.0 by default and kcna.kp's stand-in speaks nothing newer.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from monitor.sim.promproc import PrometheusProcess
from monitor.sim.world import World

BLACKBOX = "prometheus-blackbox-exporter"
BLACKBOX_LISTEN = "127.0.0.1:9115"
SCRAPE_INTERVAL = "15s"
HOLD = "1m"
BLACKOUT_ALERT = "EntityIcmpAllDown"
TARGET_ALERT = "ProbeFailed"
CONTROLS = "controls"  # the `entity` label of the daemon config's controls

# Written as a user would: one rule for "the whole entity is dark" (every ICMP target of the
# entity failing) and the per-target rule of the usual blackbox_exporter examples.
RULES = f"""\
groups:
  - name: blackbox-dprk
    rules:
      - alert: {BLACKOUT_ALERT}
        expr: max by (entity) (probe_success{{module="icmp"}}) == 0
        for: {HOLD}
        labels:
          severity: page
        annotations:
          summary: "every ICMP target of {{{{ $labels.entity }}}} fails"
      - alert: {TARGET_ALERT}
        expr: probe_success == 0
        for: {HOLD}
        labels:
          severity: ticket
        annotations:
          summary: "{{{{ $labels.instance }}}} ({{{{ $labels.module }}}}) fails"
"""


def _blackbox_setup(doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    # bench_footprint lives next to this file; bench scripts put bench/ on sys.path.
    from bench_footprint import blackbox_setup

    return blackbox_setup(doc)


def blackbox_config(doc: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """The exporter's configuration for the daemon config `doc`, and every probe as (entity,
    module, target). blackbox_setup lists the probes holder by holder (entities in order, then
    the controls), each holder's icmp, tcp, http, dns items in that order: the entity of each
    probe follows from those counts."""
    bb, paths = _blackbox_setup(doc)
    for module in bb["modules"].values():
        tls = module.get("http", {}).get("tls_config")
        if tls is not None:
            tls["min_version"] = "TLS10"
    owners: list[str] = []
    for holder, name in [*((e, e["name"]) for e in doc["entities"]), (doc["controls"], CONTROLS)]:
        n = sum(len(holder.get(k) or ()) for k in ("icmp", "tcp", "http", "dns"))
        owners += [name] * n
    if len(owners) != len(paths):
        raise RuntimeError(f"blackbox_setup gave {len(paths)} probes for {len(owners)} targets")
    probes: list[tuple[str, str, str]] = []
    for owner, path in zip(owners, paths, strict=True):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        probes.append((owner, q["module"][0], q["target"][0]))
    return bb, probes


def prometheus_config(probes: list[tuple[str, str, str]], rules: Path, listen: str) -> str:
    """One scrape job through the exporter (the relabelling of the exporter's README), targets
    grouped by entity and module; every 15 s, rules evaluated every 15 s."""
    groups: dict[tuple[str, str], list[str]] = {}
    for entity, module, target in probes:
        groups.setdefault((entity, module), []).append(target)
    doc = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": "10s",
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "blackbox",
                "metrics_path": "/probe",
                "static_configs": [
                    {"targets": t, "labels": {"entity": e, "__param_module": m}}
                    for (e, m), t in groups.items()
                ],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"source_labels": ["__param_module"], "target_label": "module"},
                    {"target_label": "__address__", "replacement": BLACKBOX_LISTEN},
                ],
            },
            {"job_name": "prometheus", "static_configs": [{"targets": [listen]}]},
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class PeerStack:
    """blackbox_exporter + Prometheus in vantage `vantage` of `world`, for the daemon config
    `doc`. start() / stop(); every process is the world's (stopped by PID, killed at teardown)."""

    world: World
    doc: dict[str, Any]
    workdir: Path
    vantage: int = 1
    probes: list[tuple[str, str, str]] = field(default_factory=list)
    exporter: Any = None
    prom: PrometheusProcess | None = None
    started_at: float = 0.0

    def start(self) -> PeerStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        bb, self.probes = blackbox_config(self.doc)
        bb_cfg = self.workdir / "blackbox.yml"
        bb_cfg.write_text(yaml.safe_dump(bb, sort_keys=False), encoding="utf-8")
        rules = self.workdir / "rules.yml"
        rules.write_text(RULES, encoding="utf-8")
        log = open(self.workdir / "blackbox.log", "wb")  # noqa: SIM115 (lives with the process)
        self.exporter = self.world.popen(
            self.vantage,
            [BLACKBOX, f"--config.file={bb_cfg}", f"--web.listen-address={BLACKBOX_LISTEN}"],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 30
        while self.world.http_get(self.vantage, f"http://{BLACKBOX_LISTEN}/-/ready").status != 200:
            if self.exporter.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{BLACKBOX} not ready: {self.log_tail('blackbox.log')}")
            time.sleep(0.1)
        role = f"vantage{self.vantage}"
        from monitor.sim.promproc import free_port

        port = free_port(self.world, role)
        listen = f"127.0.0.1:{port}"
        self.prom = PrometheusProcess(
            self.world,
            self.workdir / "prometheus",
            prometheus_config(self.probes, rules, listen),
            role=role,
            port=port,
        )
        self.prom.start(timeout=60)
        self.started_at = time.time()
        return self

    def stop(self) -> None:
        if self.prom is not None:
            self.prom.stop()
            self.prom = None
        if self.exporter is not None:
            self.world.stop_process(self.exporter, grace=5)
            self.exporter = None

    def log_tail(self, name: str, chars: int = 2000) -> str:
        try:
            return (self.workdir / name).read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def alert_states(self) -> dict[str, str]:
        """`alertname|entity|module|instance` -> pending / firing, for every active alert (the
        blackout rule's alerts carry no module or instance: `alertname|entity||`)."""
        assert self.prom is not None
        out: dict[str, str] = {}
        for a in self.prom.api("alerts")["alerts"]:
            lb = a["labels"]
            key = "|".join(lb.get(k, "") for k in ("alertname", "entity", "module", "instance"))
            out[key] = a["state"]
        return out


# -- recording ------------------------------------------------------------------------------

Transition = tuple[float, str, str]  # (wall time first seen, key, new state)


class Recorder(threading.Thread):
    """Samples `sample()` (key -> state) every `every` seconds and keeps the transitions: a key
    seen for the first time, changed, or gone (state `absent`). A failed sample is counted and
    skipped."""

    def __init__(self, name: str, sample: Callable[[], dict[str, str]], every: float = 1.0):
        super().__init__(name=f"recorder-{name}", daemon=True)
        self.sample, self.every = sample, every
        self.transitions: list[Transition] = []
        self.samples = 0
        self.errors: list[str] = []
        self.last: dict[str, str] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set():
            try:
                now = self.sample()
                t = time.time()
            except Exception as e:  # one failed poll is a gap, not the end of the run
                if len(self.errors) < 50:
                    self.errors.append(f"{time.time():.1f} {type(e).__name__}: {e}"[:300])
            else:
                with self._lock:
                    self.samples += 1
                    for k, v in now.items():
                        if self.last.get(k) != v:
                            self.transitions.append((t, k, v))
                    for k in self.last.keys() - now.keys():
                        self.transitions.append((t, k, "absent"))
                    self.last = now
            next_at += self.every
            self._halt.wait(max(0.0, next_at - time.monotonic()))

    def state(self, key: str) -> str:
        with self._lock:
            return self.last.get(key, "absent")

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self.last)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
