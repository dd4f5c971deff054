"""The deployment end to end: real daemons in the simulated world, scraped by a real Prometheus
that evaluates the shipped alert rules, Alertmanager routing them to a webhook, and every
Grafana dashboard query run against the result.

Layout: `World.build(monitoring=True)` adds a `mon` namespace linked to each vantage by its own
/30 (198.18.254.0/24); each daemon listens on its monitoring-link address and Prometheus,
Alertmanager and the webhook receiver run on `mon`'s loopback, each started by the test (own
storage directory, free port) and stopped at teardown. The monitoring links route nothing else:
a vantage whose uplink is cut loses its probes but is still scraped. A RIS Live stand-in
(`monitor.sim.rislive`) feeds BGP visibility.

Time scale: the daemons run at SCALE (0.2: a 30 s probing interval becomes 6 s, every detection
duration alike, `scenarios.scaled_config`). The rules were written for the 30 s interval, so
Prometheus loads a copy of deploy/prometheus/rules/*.rules.yml with every `for:` and range window
scaled by the same factor (`promproc.scaled_rules`: `for: 1m` -> 12 s, `[5m]` -> `[60s]`),
scrapes every 1 s and evaluates every 1 s. The shipped file itself is what `promtool test rules`
checks (tests/unit/test_deploy.py).

Without prometheus (or alertmanager, for the one test that uses it) the tests are skipped, unless
REQUIRE_NETNS=1 or REQUIRE_TOOLS=1, where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.sim import promproc, scenarios
from monitor.sim.daemonproc import DaemonProcess
from monitor.sim.rislive import RisLiveSim, make_peers, world_routes
from monitor.sim.spec import dprk
from monitor.sim.world import World
from tests.integration.conftest import daemon_unavailable, world_unavailable

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))

SCALE = 0.2
INTERVAL = scenarios.DEFAULT_INTERVAL * SCALE  # 6 s
VANTAGES = ("fra1", "sgp1", "nrt1")
ENTITY = "star-jv"
PEERS = make_peers(4)  # RIS route-collector peers of the RIS Live stand-in
PORT = 9474
# Generous bounds: detection (<= 40 s scaled, i.e. 8 s) + the scaled `for:` + scrape/evaluation.
FIRE_WITHIN = 8 * INTERVAL  # 48 s
RESOLVE_WITHIN = 6 * INTERVAL

REQUIRED = os.environ.get("REQUIRE_NETNS") == "1" or os.environ.get("REQUIRE_TOOLS") == "1"


def skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"REQUIRE_NETNS/REQUIRE_TOOLS set but {reason}", pytrace=False)
    pytest.skip(reason)


def tool(name: str) -> str:
    """Path of prometheus, alertmanager (Debian: prometheus-alertmanager), promtool or amtool."""
    path = promproc.alertmanager_binary() if name == "alertmanager" else shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} not installed (apt-get install prometheus prometheus-alertmanager)")
    assert path is not None
    return path


# --- the stack: world + daemons + Prometheus (+ Alertmanager and its webhook) -------------------


@dataclass
class Stack:
    world: World
    prometheus: promproc.PrometheusProcess
    daemons: list[DaemonProcess]
    ris: RisLiveSim | None = None
    alertmanager: promproc.AlertmanagerProcess | None = None
    webhook: promproc.WebhookReceiver | None = None

    @property
    def names(self) -> list[str]:
        return list(VANTAGES[: len(self.daemons)])

    def state(self, vantage: str, entity: str = ENTITY) -> str | None:
        """The entity's state as Prometheus last scraped it from `vantage`."""
        got = self.prometheus.query(
            f'dprk_monitor_entity_state{{vantage="{vantage}", entity="{entity}"}} == 1'
        )
        return got[0]["metric"]["state"] if got else None

    def wait(self, check: Callable[[], Any], within: float, what: str) -> Any:
        try:
            return promproc.wait_until(check, within, what, every=0.5)
        except TimeoutError as e:
            raise AssertionError(f"{e}\n{self.debug()}") from None

    def debug(self) -> str:
        p = self.prometheus
        alerts = [(a["labels"], a["state"]) for a in p.alerts()]
        states = {v: self.state(v) for v in self.names}
        healthy = {
            s["metric"].get("vantage"): s["value"][1]
            for s in p.query("dprk_monitor_vantage_healthy")
        }
        return f"alerts: {alerts}\nstates: {states}\nhealthy: {healthy}"


@pytest.fixture
def stack(world_factory: Callable[..., World], tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """`stack(vantages=1, bgp=False, alertmanager=False)`: a world with the monitoring network,
    one scaled daemon per vantage (listening on its monitoring link), Prometheus in `mon` with
    the scaled rules, optionally the RIS Live stand-in and Alertmanager with a webhook."""
    for reason in (world_unavailable(), daemon_unavailable()):
        if reason:
            skip_or_fail(reason)
    tool("prometheus")
    made: list[Stack] = []
    cleanups: list[Callable[[], object]] = []

    def make(vantages: int = 1, *, bgp: bool = False, alertmanager: bool = False) -> Stack:
        if alertmanager:
            tool("alertmanager")
        w = world_factory(vantages=vantages, monitoring=True)
        ris: RisLiveSim | None = None
        if bgp:  # on vantage0's loopback, like test_routing.py
            ris = RisLiveSim(w, 0).start()
            cleanups.append(ris.stop)
        daemons: list[DaemonProcess] = []
        targets: dict[str, str] = {}
        for i in range(vantages):
            listen = f"{w.monitoring_address(i)}:{PORT}"
            targets[VANTAGES[i]] = listen
            cfg = w.daemon_config(
                vantage=i,
                listen=listen,
                state_dir=str(tmp_path / f"var-{VANTAGES[i]}"),
                bgp={"enabled": True, "ris_live_url": ris.url} if ris else None,
                **scenarios.scaled_config(SCALE),
            )
            path = tmp_path / f"{VANTAGES[i]}.yaml"
            path.write_text(cfg, encoding="utf-8")
            d = DaemonProcess(
                w, path, vantage=i, listen=listen, log_path=tmp_path / f"{VANTAGES[i]}.log"
            )
            cleanups.append(d.stop)
            daemons.append(d.start())
        if ris is not None:
            ris.wait_subscribed()
            ris.announce(world_routes(w), PEERS)
        am: promproc.AlertmanagerProcess | None = None
        hook: promproc.WebhookReceiver | None = None
        if alertmanager:
            hook = promproc.WebhookReceiver(w, "mon").start()
            cleanups.append(hook.stop)
            am = promproc.AlertmanagerProcess(
                w, tmp_path / "alertmanager", promproc.alertmanager_config(hook.url)
            )
            cleanups.append(am.stop)
            am.start()
        port = promproc.free_port(w, "mon")
        config = promproc.prometheus_config(
            targets,
            write_scaled_rules(tmp_path / "rules"),
            listen=f"127.0.0.1:{port}",
            alertmanager=am.listen if am else None,
        )
        prom = promproc.PrometheusProcess(w, tmp_path / "prometheus", config, port=port)
        cleanups.append(prom.stop)
        prom.start()
        s = Stack(w, prom, daemons, ris, am, hook)
        made.append(s)
        return s

    yield make
    for stop in reversed(cleanups):
        with contextlib.suppress(Exception):  # the world's teardown kills whatever is left
            stop()
    for s in made:  # shown by pytest only when the test failed
        for proc in (s.prometheus, s.alertmanager, *s.daemons):
            if proc is not None:
                print(f"--- {proc.log_path} ---\n{proc.log_tail(2000)}")


def write_scaled_rules(directory: Path) -> list[Path]:
    """A time-scaled copy (SCALE) of every shipped rule file, for the scaled daemons."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for shipped in promproc.RULE_FILES:
        path = directory / shipped.name
        path.write_text(promproc.scaled_rules(shipped.read_text(), SCALE), encoding="utf-8")
        out.append(path)
    assert out, "no rule files shipped"
    return out


def wait_healthy_and_up(s: Stack) -> None:
    """Every vantage scraped, healthy, and seeing the entity up (through Prometheus)."""
    p = s.prometheus

    def ready() -> bool:
        up = p.targets_up()
        healthy = p.value("dprk_monitor:vantages_healthy:count")
        return (
            all(up.get(v) for v in s.names)
            and healthy == len(s.names)
            and all(s.state(v) == "up" for v in s.names)
        )

    s.wait(ready, 10 * INTERVAL, "every vantage scraped, healthy, entity up")


# --- dashboards ----------------------------------------------------------------------------------

# Grafana's built-ins. $__rate_interval is max($__interval + scrape interval, 4 x scrape
# interval): with a 1 s scrape it could be shorter than one probing round of the scaled daemons
# (6 s), so use a window spanning several rounds, as the 15 s scrape of a deployment gives (60 s).
GRAFANA_VARS = {"$__rate_interval": "30s", "$__interval": "1s", "$__range": "5m"}
# Queries that by design return data only while something is wrong: annotations (open outage,
# new event) and failure panels filtered with `> 0`. They are checked during the blackout.
TROUBLE_ONLY = re.compile(r"\)\s*(==\s*1|>\s*0)\s*$")


def dashboard_queries() -> list[tuple[str, str, dict[str, Any]]]:
    """(dashboard/panel/refId, expr, dashboard) for every annotation and panel target."""
    out: list[tuple[str, str, dict[str, Any]]] = []

    def walk(node: Any, where: str, d: dict[str, Any]) -> None:
        if isinstance(node, dict):
            where = f"{where}/{node.get('title') or node.get('name') or ''}".rstrip("/")
            if isinstance(node.get("expr"), str):
                out.append((f"{where}/{node.get('refId', '')}".rstrip("/"), node["expr"], d))
            for key, value in node.items():
                if key != "templating":
                    walk(value, where, d)
        elif isinstance(node, list):
            for item in node:
                walk(item, where, d)

    for path in DASHBOARDS:
        d = json.loads(path.read_text(encoding="utf-8"))
        walk([d["annotations"], d["panels"]], path.stem, d)
    return out


def substitute(expr: str, dashboard: dict[str, Any], chosen: dict[str, str]) -> str:
    """A query as Grafana sends it: built-ins replaced, `vantage`/`entity` set to one value,
    every other query variable to its "All" value."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    values = dict(chosen)
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query" and var["name"] not in values:
            values[var["name"]] = var.get("allValue") or ".*"
    for name, value in values.items():
        expr = re.sub(rf"\$\{{{name}(?::\w+)?\}}|\${name}\b", value, expr)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def variable_queries() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(dashboard/$name, series selector, label, dashboard) of every label_values variable."""
    out = []
    for path in DASHBOARDS:
        d = json.loads(path.read_text(encoding="utf-8"))
        for var in d["templating"]["list"]:
            if var["type"] != "query":
                continue
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_]+)\)", q.strip(), re.S)
            assert m, f"{path.stem}/${var['name']}: not a label_values query: {q}"
            out.append((f"{path.stem}/${var['name']}", m.group(1), m.group(2), d))
    return out


def check_dashboards(p: promproc.PrometheusProcess, vantage: str, trouble_at: float) -> None:
    """Every dashboard query returns data now, or (TROUBLE_ONLY ones) at `trouble_at`, and every
    label_values variable lists at least one value: with one vantage and entity selected, and
    with every variable at "All"."""
    empty, checked = [], 0
    for chosen in ({"vantage": vantage, "entity": ENTITY}, {}):
        for where, raw, d in dashboard_queries():
            expr = substitute(raw, d, chosen)
            at = trouble_at if TROUBLE_ONLY.search(expr) else None
            checked += 1
            if not p.query(expr, at=at):
                empty.append(f"{where} (at {'the blackout' if at else 'the end'}): {expr}")
        for where, selector, label, d in variable_queries():
            sel = substitute(selector, d, chosen)
            if not p.api(f"label/{label}/values", **{"match[]": sel}):
                empty.append(f"{where}: label_values({sel}, {label})")
    assert checked >= 60, "the extractor found the dashboards' queries"
    assert not empty, "queries without data:\n" + "\n".join(empty)


# --- unit level: the generated files (promtool / amtool only, no namespaces) --------------------


def test_scaled_rules_scale_every_duration_and_stay_valid(tmp_path: Path) -> None:
    """The scaled rule copy scales `for:`, windows and offsets (not label values); promtool accepts it."""
    assert promproc.scale_expr('rate(x{a=~"[5m]"}[5m]) offset 1h', 0.2) == (
        'rate(x{a=~"[5m]"}[60s]) offset 720s'
    )
    assert promproc.scale_expr("max_over_time(x[10m:30s])", 0.1) == "max_over_time(x[60s:3s])"
    assert promproc.scale_duration("1m", 0.2) == "12s"
    assert promproc.scale_duration("1s", 0.25) == "250ms"
    paths = write_scaled_rules(tmp_path)
    pairs = []
    for shipped_path, path in zip(promproc.RULE_FILES, paths, strict=True):
        shipped, scaled = yaml.safe_load(shipped_path.read_text()), yaml.safe_load(path.read_text())
        for ga, gb in zip(shipped["groups"], scaled["groups"], strict=True):
            pairs += list(zip(ga["rules"], gb["rules"], strict=True))
    blackout = next(b for a, b in pairs if a.get("alert") == "DPRKBlackout")
    assert blackout["for"] == "12s"
    loss = next(b for a, b in pairs if a.get("record", "").endswith("loss:ratio_rate5m"))
    assert "[60s]" in loss["expr"] and "[5m]" not in loss["expr"]
    for a, b in pairs:
        assert (a.get("alert"), a.get("record"), a.get("labels")) == (
            b.get("alert"),
            b.get("record"),
            b.get("labels"),
        )
    proc = subprocess.run(
        [tool("promtool"), "check", "rules", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_generated_prometheus_and_alertmanager_configs_are_valid(tmp_path: Path) -> None:
    """The shipped configs with the sim's targets and a local webhook pass promtool and amtool."""
    cfg = promproc.prometheus_config(
        {"fra1": "198.18.254.2:9474", "sgp1": "198.18.254.6:9474"},
        write_scaled_rules(tmp_path / "rules"),
        listen="127.0.0.1:9090",
        alertmanager="127.0.0.1:9093",
    )
    doc = yaml.safe_load(cfg)
    (job,) = [j for j in doc["scrape_configs"] if j["job_name"] == promproc.JOB]
    assert [c["labels"]["vantage"] for c in job["static_configs"]] == ["fra1", "sgp1"]
    (tmp_path / "prometheus.yml").write_text(cfg, encoding="utf-8")
    proc = subprocess.run(
        [tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    am = promproc.alertmanager_config("http://127.0.0.1:8080")
    assert "smtp" not in am and "example.org" not in am
    (tmp_path / "alertmanager.yml").write_text(am, encoding="utf-8")
    proc = subprocess.run(
        [tool("amtool"), "check-config", str(tmp_path / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the monitoring network ----------------------------------------------------------------------


def test_monitoring_pool_must_stay_in_the_range_and_apart() -> None:
    """The monitoring pool is refused outside 198.18.0.0/15, too small, or over a used prefix."""
    base = replace(dprk(), monitoring=True)
    base.validate()
    for pool in ("10.0.0.0/24", "198.18.254.0/29", "198.18.0.0/24", "198.18.176.0/24"):
        with pytest.raises(ValueError):
            replace(base, monitoring_pool=pool).validate()
    replace(base, monitoring=False, monitoring_pool="198.18.176.0/24").validate()  # unused


@pytest.mark.netns
def test_monitoring_links_reach_each_vantage_and_route_nothing_else(
    world_factory: Callable[..., World],
) -> None:
    """`mon` reaches each vantage's daemon address and nothing else; nobody forwards across."""
    w = world_factory(vantages=2, monitoring=True)
    for i in range(2):
        assert w.ping("mon", w.monitoring_address(i), count=1).received == 1
        routes = w.exec(i, ["ip", "-j", "route", "show", "dev", "mon"], check=True).stdout
        assert [r["dst"] for r in json.loads(routes)] == [w.link("mon", f"vantage{i}").net]
    for dst in ("198.18.176.1", "198.19.8.8", w.vantage_addresses[0]):
        p = w.exec("mon", ["ip", "route", "get", dst])
        assert p.returncode != 0 and "unreachable" in p.stderr, (dst, p.stdout)
    for role in ("mon", "vantage0", "vantage1"):
        fwd = w.call_in(role, lambda: Path("/proc/sys/net/ipv4/ip_forward").read_text().strip())
        assert fwd == "0", role
    # vantage0 cannot reach vantage1's monitoring link through mon
    assert w.ping(0, w.monitoring_address(1), count=1, timeout=0.3).received == 0


@pytest.mark.netns
def test_cut_uplink_still_cuts_probes_with_a_monitoring_link(
    world_factory: Callable[..., World],
) -> None:
    """A cut uplink still silences the vantage's probes; `mon` still reaches its daemon."""
    w = world_factory(vantages=2, monitoring=True)
    w.cut_vantage_uplink(0)
    assert w.ping(0, "198.18.176.1", count=2, timeout=0.3).received == 0
    assert w.ping(0, "198.19.8.8", count=2, timeout=0.3).received == 0
    assert w.ping("mon", w.monitoring_address(0), count=1).received == 1
    assert w.ping(1, "198.18.176.1", count=1).received == 1
    w.restore_vantage_uplink(0)
    assert w.ping(0, "198.18.176.1", count=1).received == 1


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.netns
def test_single_vantage_blackout_pages_resolves_and_fills_the_dashboards(
    stack: Callable[..., Stack],
) -> None:
    """One vantage: a blackout fires DPRKBlackout (paged; BGP alert inhibited) and resolves after
    the repair; every dashboard query returns data."""
    s = stack(1, bgp=True, alertmanager=True)
    p, hook, am = s.prometheus, s.webhook, s.alertmanager
    assert hook is not None and am is not None and s.ris is not None
    wait_healthy_and_up(s)
    assert p.alerts() == [], "nothing fires while DPRK is up"
    assert p.value("entity_prefix:dprk_monitor_bgp_prefix_visibility_ratio:max") == 1.0

    cut = s.world.blackout()
    s.ris.withdraw(list(world_routes(s.world)), PEERS)
    fired = s.wait(
        lambda: p.firing("DPRKBlackout", entity=ENTITY), FIRE_WITHIN, "DPRKBlackout firing"
    )
    fired_after = time.time() - cut.at
    assert fired[0]["labels"]["severity"] == "critical"
    assert "vantage" not in fired[0]["labels"], "country-level alerts carry no vantage"
    assert s.state("fra1") == "down"
    trouble_at = time.time()

    # Alertmanager: the blackout reaches both critical receivers; the BGP alert is inhibited.
    def notified(receiver: str, status: str) -> bool:
        return any(
            lb.get("alertname") == "DPRKBlackout" and st == status
            for _, st, lb in hook.alerts(receiver)
        )

    for receiver in ("/pager-webhook", "/email-oncall"):
        s.wait(partial(notified, receiver, "firing"), 10, f"DPRKBlackout notified to {receiver}")
    notified_after = time.time() - trouble_at
    s.wait(
        lambda: p.firing("DPRKBGPVisibilityLost", entity=ENTITY, prefix="198.18.176.0/22"),
        FIRE_WITHIN,
        "DPRKBGPVisibilityLost firing",
    )
    bgp_after = time.time() - cut.at

    def bgp_inhibited() -> bool:
        return any(
            a["labels"].get("alertname") == "DPRKBGPVisibilityLost"
            and a["labels"].get("entity") == ENTITY
            and a["status"]["inhibitedBy"]
            for a in am.alerts()
        )

    s.wait(bgp_inhibited, 10, "DPRKBGPVisibilityLost inhibited by DPRKBlackout")
    assert not any(
        lb.get("alertname") == "DPRKBGPVisibilityLost" and lb.get("entity") == ENTITY
        for _, _, lb in hook.alerts()
    ), "an inhibited alert is not notified"

    rep = s.world.repair_blackout()
    s.ris.announce(world_routes(s.world), PEERS)
    s.wait(lambda: not p.alerts("DPRKBlackout", entity=ENTITY), RESOLVE_WITHIN, "DPRKBlackout gone")
    resolved_after = time.time() - rep.at
    s.wait(
        lambda: not p.alerts("DPRKBGPVisibilityLost", entity=ENTITY),
        RESOLVE_WITHIN,
        "DPRKBGPVisibilityLost gone",
    )
    s.wait(lambda: notified("/pager-webhook", "resolved"), 15, "resolved DPRKBlackout paged")
    assert s.state("fra1") == "up"
    print(
        f"DPRKBlackout fired {fired_after:.1f}s after the blackout (both receivers notified "
        f"{notified_after:.1f}s later), gone {resolved_after:.1f}s after the repair; "
        f"DPRKBGPVisibilityLost fired {bgp_after:.1f}s after the withdrawal (scale {SCALE})"
    )
    check_dashboards(p, "fra1", trouble_at)


@pytest.mark.netns
def test_consensus_blackout_needs_the_vantages_to_agree(stack: Callable[..., Stack]) -> None:
    """Three vantages: one seeing DPRK down or losing its uplink fires no blackout (only its
    VantageOffline); DPRK dark for all fires DPRKBlackout, resolved after the repair."""
    s = stack(3)
    p, w = s.prometheus, s.world
    wait_healthy_and_up(s)
    assert p.value("dprk_monitor:consensus_quorum:count") == 2

    def hold(seconds: float, what: str) -> None:
        """No DPRKBlackout (not even pending) for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert not p.alerts("DPRKBlackout"), f"{what}: DPRKBlackout\n{s.debug()}"
            time.sleep(0.5)

    # 1. Only fra1's path loses every DPRK prefix: one healthy vantage of three sees it down.
    w.withdraw_for_vantage(0)
    s.wait(
        lambda: p.value("entity:dprk_monitor_vantages_down:count", entity=ENTITY) == 1,
        FIRE_WITHIN,
        "fra1 sees star-jv down (recorded)",
    )
    assert s.state("fra1") == "down"
    assert {s.state("sgp1"), s.state("nrt1")} == {"up"}
    hold(3 * INTERVAL, "one vantage of three sees DPRK down")  # > the scaled `for: 1m`
    w.restore_for_vantage(0)
    s.wait(lambda: s.state("fra1") == "up", 10 * INTERVAL, "fra1 sees star-jv up again")

    # 2. nrt1 loses its own uplink: VantageOffline for nrt1 only, still no blackout.
    w.cut_vantage_uplink(2)
    offline = s.wait(
        lambda: p.firing("VantageOffline"), FIRE_WITHIN + 4 * INTERVAL, "VantageOffline firing"
    )
    assert [a["labels"]["vantage"] for a in offline] == ["nrt1"]
    assert offline[0]["labels"]["severity"] == "warning"
    assert s.state("nrt1") == "unknown"
    assert p.value("dprk_monitor:vantages_healthy:count") == 2
    hold(INTERVAL, "nrt1 offline")
    assert {a["labels"]["alertname"] for a in p.alerts()} == {"VantageOffline"}
    w.restore_vantage_uplink(2)
    s.wait(lambda: not p.alerts("VantageOffline"), 10 * INTERVAL, "VantageOffline gone")
    wait_healthy_and_up(s)

    # 3. DPRK goes dark for everyone: the healthy vantages agree.
    cut = w.blackout()
    fired = s.wait(
        lambda: p.firing("DPRKBlackout", entity=ENTITY), FIRE_WITHIN, "DPRKBlackout firing"
    )
    fired_after = time.time() - cut.at
    assert "healthy vantage(s) see star-jv down" in fired[0]["annotations"]["description"]
    s.wait(
        lambda: p.value("entity:dprk_monitor_vantages_down:count", entity=ENTITY) == 3,
        2 * INTERVAL,
        "all three vantages see star-jv down",
    )
    rep = w.repair_blackout()
    s.wait(lambda: not p.alerts("DPRKBlackout"), RESOLVE_WITHIN, "DPRKBlackout gone")
    print(
        f"consensus DPRKBlackout fired {fired_after:.1f}s after the blackout, gone "
        f"{time.time() - rep.at:.1f}s after the repair (scale {SCALE})"
    )
