"""Deployment artifacts: the systemd unit, Prometheus config and rules, Alertmanager, Grafana.

The external checkers (systemd-analyze, promtool, amtool) are skipped when missing, unless
REQUIRE_TOOLS=1, which turns the skip into a failure (CI installs them).
"""

from __future__ import annotations

import ctypes.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "dprk-monitor.service"
PROM = DEPLOY / "prometheus"
PROM_CONFIG = PROM / "prometheus.yml"
RULES = sorted((PROM / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
ALERTMANAGER = DEPLOY / "alertmanager.yml"
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DOCS = ROOT / "docs" / "deploy.md"

INSTALLED_BINARY = "/opt/dprk-monitor/.venv/bin/dprk-monitor"
MAX_EXPOSURE = 2.0
JOB = "dprk-monitor"
DASHBOARD_UIDS = {"dprk-overview.json": "dprk-overview", "dprk-target.json": "dprk-target"}


def missing(what: str) -> NoReturn:
    """Skip a test for a missing external checker, or fail it when REQUIRE_TOOLS=1."""
    msg = f"{what} not installed (apt-get install prometheus prometheus-alertmanager systemd)"
    if os.environ.get("REQUIRE_TOOLS") == "1":
        pytest.fail(msg + "; REQUIRE_TOOLS=1")
    pytest.skip(msg)


def tool(name: str) -> str:
    """Path of an external checker (systemd-analyze, promtool, amtool)."""
    path = shutil.which(name)
    if path is None:
        missing(name)
    return path


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def unit_directives() -> dict[str, list[str]]:
    """`Key` -> values in order (systemd allows a key more than once; empty resets)."""
    out: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        if value == "":
            out[key] = []
        else:
            out.setdefault(key, []).append(value)
    return out


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def alert_rules() -> list[dict[str, Any]]:
    return [r for p in RULES for g in load_yaml(p)["groups"] for r in g["rules"] if "alert" in r]


# ---- systemd unit -----------------------------------------------------------------------------


def security(unit: Path) -> tuple[float, str]:
    """(overall exposure, report) of `systemd-analyze security --offline` for a unit file."""
    proc = run(tool("systemd-analyze"), "security", "--offline=true", "--no-pager", unit)
    out = proc.stdout + proc.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out)
    assert m is not None, out
    return float(m.group(1)), out


def verify(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` of a copy of the unit (and its drop-ins) says nothing about it."""
    sa = tool("systemd-analyze")
    # verify checks that ExecStart= is executable; the venv is not installed on this machine, so a
    # copy of the unit points at a stub. Nothing else in the unit is changed.
    stub = tmp_path / "dprk-monitor"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = unit.read_text()
    assert INSTALLED_BINARY in text
    unit.write_text(text.replace(INSTALLED_BINARY, str(stub)))
    proc = run(sa, "verify", "--man=no", unit)
    complaints = [
        line for line in (proc.stdout + proc.stderr).splitlines() if "dprk-monitor" in line
    ]
    assert proc.returncode == 0 and complaints == [], proc.stdout + proc.stderr


def with_ping_socket_dropin(tmp_path: Path) -> Path:
    """A copy of the unit with deploy/ping-socket.conf as its drop-in."""
    unit = tmp_path / "dprk-monitor.service"
    shutil.copy(UNIT, unit)
    dropins = tmp_path / "dprk-monitor.service.d"
    dropins.mkdir()
    shutil.copy(DEPLOY / "ping-socket.conf", dropins / "ping-socket.conf")
    return unit


def test_unit_security_exposure_is_at_most_2() -> None:
    """`systemd-analyze security --offline` rates the unit's exposure at 2.0 or better."""
    exposure, report = security(UNIT)
    assert exposure <= MAX_EXPOSURE, report


def test_unit_verifies_clean(tmp_path: Path) -> None:
    """`systemd-analyze verify` reports nothing about the unit (the binary stubbed in a copy)."""
    unit = tmp_path / "dprk-monitor.service"
    shutil.copy(UNIT, unit)
    verify(unit, tmp_path)


def test_ping_socket_dropin_removes_the_capability(tmp_path: Path) -> None:
    """With deploy/ping-socket.conf the unit holds no capability, verifies, and rates <= 2.0."""
    unit = with_ping_socket_dropin(tmp_path)
    exposure, report = security(unit)
    assert exposure <= MAX_EXPOSURE, report
    assert "does not receive ambient capabilities" in report
    assert "has no elevated networking privileges" in report
    verify(unit, tmp_path)


def test_ping_group_range_sysctl_admits_every_group() -> None:
    """deploy/60-ping-group-range.conf opens the ping socket to all groups (any DynamicUser GID)."""
    lines = (DEPLOY / "60-ping-group-range.conf").read_text().splitlines()
    settings = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    assert settings == ["net.ipv4.ping_group_range = 0 2147483647"]


def test_unit_verify_catches_a_misspelled_directive(tmp_path: Path) -> None:
    """The verify check above would notice an unknown directive (it is not vacuous)."""
    sa = tool("systemd-analyze")
    copy = tmp_path / "dprk-monitor.service"
    copy.write_text(
        UNIT.read_text()
        .replace(INSTALLED_BINARY, "/bin/true")
        .replace("ProtectKernelTunables=", "ProtectKernelTunable=")
    )
    proc = run(sa, "verify", "--man=no", copy)
    assert "ProtectKernelTunable" in proc.stdout + proc.stderr


def test_unit_speaks_the_daemons_notify_protocol() -> None:
    """Type=notify with watchdog, reload by SIGHUP, the documented install paths, restart."""
    d = unit_directives()
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert re.fullmatch(r"\d+s|\d+min", d["WatchdogSec"][0])
    assert d["ExecStart"] == [f"{INSTALLED_BINARY} run --config /etc/dprk-monitor/config.yaml"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["Restart"] == ["on-failure"]
    assert d["StateDirectory"] == ["dprk-monitor"]
    assert d["DynamicUser"] == ["yes"]


def test_unit_grants_only_raw_icmp_and_internet_sockets() -> None:
    """The only capability is CAP_NET_RAW; sockets: AF_INET, AF_INET6, AF_UNIX (sd_notify)."""
    d = unit_directives()
    assert d["AmbientCapabilities"] == ["CAP_NET_RAW"]
    assert d["CapabilityBoundingSet"] == ["CAP_NET_RAW"]
    assert d["NoNewPrivileges"] == ["yes"]
    assert set(" ".join(d["RestrictAddressFamilies"]).split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert d["MemoryDenyWriteExecute"] == ["yes"]
    assert "IPAddressDeny" not in d  # the daemon must reach the Internet


# The unit's sandbox, reproduced without systemd: an allow-list seccomp filter built from the same
# syscall groups (systemd-analyze syscall-filter expands them), socket() limited to the unit's
# address families, and W^X via the kernel's PR_SET_MDWE (Linux 6.3+), which enforces what
# MemoryDenyWriteExecute= does (no writable+executable mapping, no making memory executable).
# Then the launcher execs its argv: the daemon, or a probe of what must be denied.
SANDBOX_LAUNCHER = """
import ctypes, json, os, sys
spec = json.loads(sys.argv[1])
seccomp = ctypes.CDLL("libseccomp.so.2")
libc = ctypes.CDLL(None)
ALLOW, DENY = 0x7FFF0000, 0x00050000 | 1  # SCMP_ACT_ALLOW, SCMP_ACT_ERRNO(EPERM)

class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]

seccomp.seccomp_init.restype = ctypes.c_void_p
seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
seccomp.seccomp_rule_add_array.argtypes = [
    ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(Cmp)]
seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
ctx = seccomp.seccomp_init(DENY)
for name in spec["syscalls"]:
    nr = seccomp.seccomp_syscall_resolve_name(name.encode())
    if nr < 0:  # not a syscall of this architecture
        continue
    if name == "socket":
        for family in spec["families"]:
            cmp = (Cmp * 1)(Cmp(0, 4, family, 0))  # SCMP_A0(SCMP_CMP_EQ, family)
            assert seccomp.seccomp_rule_add_array(ctx, ALLOW, nr, 1, cmp) == 0
    else:
        assert seccomp.seccomp_rule_add_array(ctx, ALLOW, nr, 0, None) == 0, name
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
assert seccomp.seccomp_load(ctx) == 0
os.execv(sys.executable, [sys.executable, *spec["argv"]])
"""
ADDRESS_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10}


def syscall_group(group: str) -> set[str]:
    """The system calls of a systemd syscall group, nested groups expanded."""
    proc = run(tool("systemd-analyze"), "syscall-filter", "--no-pager", group)
    assert proc.returncode == 0, proc.stderr
    out: set[str] = set()
    for line in proc.stdout.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            out |= syscall_group(item) if item.startswith("@") else {item}
    return out


def sandboxed(argv: list[str]) -> list[str]:
    """A command running `python argv` under the unit's syscall filter, families and W^X."""
    if ctypes.util.find_library("seccomp") is None:
        missing("libseccomp (libseccomp2)")
    allowed: set[str] = set()
    denied: set[str] = set()
    for value in unit_directives()["SystemCallFilter"]:
        groups = value.removeprefix("~").split()
        target = denied if value.startswith("~") else allowed
        for g in groups:
            target |= syscall_group(g) if g.startswith("@") else {g}
    families = [
        ADDRESS_FAMILIES[f] for f in " ".join(unit_directives()["RestrictAddressFamilies"]).split()
    ]
    spec = {"syscalls": sorted(allowed - denied), "families": families, "argv": argv}
    return [sys.executable, "-c", SANDBOX_LAUNCHER, json.dumps(spec)]


def test_sandbox_emulation_denies_what_the_unit_denies() -> None:
    """The emulated sandbox is not vacuous: netlink sockets, setpriority and W+X memory fail."""
    probe = (
        "import mmap, os, socket\n"
        "def denied(f):\n"
        "    try:\n"
        "        f()\n"
        "    except OSError:\n"
        "        return True\n"
        "    return False\n"
        "assert denied(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))\n"
        "assert denied(lambda: os.setpriority(os.PRIO_PROCESS, 0, 5))\n"
        "assert denied(lambda: mmap.mmap(-1, 4096, prot=7))\n"
        "assert not denied(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())\n"
    )
    proc = run(*sandboxed(["-c", probe]))
    if proc.returncode == 77:
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    assert proc.returncode == 0, proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return str(r.read().decode())
    except OSError:
        return ""


def all_probes_answered(body: str, port: int) -> bool:
    """/metrics shows probes of every loopback target sent, up, and none failed."""
    ups = [
        f'target_up{{entity="loopback",kind="tcp",target="127.0.0.1:{port}"}} 1.0',
        f'target_up{{entity="loopback",kind="http",target="http://localhost:{port}/readyz"}} 1.0',
        f'target_up{{entity="loopback",kind="http",target="http://127.0.0.1:{port}/healthz"}} 1.0',
    ]
    sent = re.search(r'probes_total\{entity="loopback",kind="http"\} (\S+)', body)
    if sent is None or float(sent.group(1)) < 4:  # both HTTP targets, at least twice each
        return False
    failed = re.search(r'probe_failures_total\{entity="loopback"[^}]*\} [1-9]', body)
    return not failed and all(u in body for u in ups)


def test_daemon_runs_in_the_units_sandbox_and_speaks_sd_notify(tmp_path: Path) -> None:
    """In the unit's sandbox the daemon probes and sends READY, WATCHDOG, RELOADING, STOPPING."""
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "probing: {interval: 1s, timeout: 500ms}\n"
        "entities:\n"
        "  - name: loopback\n"
        f'    tcp: ["127.0.0.1:{port}"]\n'
        "    http:\n"
        f"      - {{url: 'http://127.0.0.1:{port}/healthz', expect_status: [200]}}\n"
        # resolved by name: getaddrinfo must work without AF_NETLINK
        f"      - {{url: 'http://localhost:{port}/readyz', expect_status: [200]}}\n"
        "controls:\n"
        f'  tcp: ["127.0.0.1:{port}"]\n'
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.5)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "1000000",
    }
    env.pop("WATCHDOG_PID", None)
    cmd = sandboxed(["-m", "monitor", "run", "--config", str(cfg)])
    daemon = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: list[str] = []

    def wait_for(message: str, deadline: float = 20.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if daemon.poll() is not None:
                if daemon.returncode == 77:
                    pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
                _, err = daemon.communicate()
                pytest.fail(f"daemon exited {daemon.returncode}: {err}")
            try:
                seen.extend(notify.recv(4096).decode().splitlines())
            except TimeoutError:
                continue
            if message in seen:
                seen.clear()
                return
        pytest.fail(f"no {message} from the daemon")

    try:
        wait_for("READY=1")
        wait_for("WATCHDOG=1")
        end = time.monotonic() + 20
        body = ""
        while time.monotonic() < end:
            body = scrape(port)
            if all_probes_answered(body, port):
                break
            time.sleep(0.2)
        else:
            pytest.fail("no successful probes in /metrics:\n" + body)
        daemon.send_signal(signal.SIGHUP)
        wait_for("RELOADING=1")
        wait_for("READY=1")
        daemon.send_signal(signal.SIGTERM)
        wait_for("STOPPING=1")
        _, stderr = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, stderr
        assert "Operation not permitted" not in stderr and "PermissionError" not in stderr, stderr
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
        notify.close()


# ---- Prometheus and Alertmanager --------------------------------------------------------------


def test_prometheus_config_is_valid() -> None:
    """`promtool check config` accepts prometheus.yml and the rule files it loads."""
    proc = run(tool("promtool"), "check", "config", PROM_CONFIG)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 rule files found" in proc.stdout


def test_every_monitor_target_has_a_unique_vantage_label() -> None:
    """Each scrape target of the dprk-monitor job carries its own `vantage` label (consensus)."""
    cfg = load_yaml(PROM_CONFIG)
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == JOB]
    vantages = [sc["labels"]["vantage"] for sc in job["static_configs"] for _ in sc["targets"]]
    assert len(vantages) >= 2 and len(set(vantages)) == len(vantages)


def test_rules_are_valid() -> None:
    """`promtool check rules` parses every recording and alerting rule."""
    proc = run(tool("promtool"), "check", "rules", *RULES)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_unit_tests_pass() -> None:
    """`promtool test rules` passes: each alert fires and stays silent where it should."""
    assert RULE_TESTS
    proc = run(tool("promtool"), "test", "rules", *RULE_TESTS, cwd=PROM / "tests")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    """Each alert has a promtool case where it fires and one where it must not."""
    fired: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in load_yaml(path)["tests"]:
            for t in case.get("alert_rule_test", []):
                (fired if t.get("exp_alerts") else silent).add(t["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - fired == set(), "never tested firing"
    assert names - silent == set(), "never tested silent"


def test_alerts_have_severity_summary_and_description() -> None:
    """Every alert is routable (severity) and explains itself (summary, description w/ runbook)."""
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert "Runbook" in rule["annotations"]["description"], rule["alert"]
        assert rule.get("for"), rule["alert"]


def test_monitor_down_alert_watches_the_scrape_job() -> None:
    """MonitorDown selects `up` of the job that scrapes the daemons."""
    (rule,) = [r for r in alert_rules() if r["alert"] == "MonitorDown"]
    assert f'up{{job="{JOB}"}}' in rule["expr"]


def test_alertmanager_config_is_valid() -> None:
    """`amtool check-config` accepts the Alertmanager example."""
    proc = run(tool("amtool"), "check-config", ALERTMANAGER)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "alertname=DPRKBlackout"], "pager-webhook,email-oncall"),
        (["severity=warning", "alertname=DPRKWebDown"], "email-oncall"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receivers: str) -> None:
    """Critical alerts page (webhook) and mail; warnings only mail."""
    proc = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER}",
        f"--verify.receivers={receivers}",
        *labels,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vantage_offline_inhibits_that_vantages_alerts() -> None:
    """An offline vantage silences the other alerts carrying the same vantage label."""
    rules = load_yaml(ALERTMANAGER)["inhibit_rules"]
    assert any(
        r["source_matchers"] == ['alertname = "VantageOffline"'] and r["equal"] == ["vantage"]
        for r in rules
    )


# ---- Grafana ----------------------------------------------------------------------------------


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    """Stable uid, modern schema, unique panel ids, panels inside the 24-column grid."""
    d = json.loads(path.read_text())
    assert d["uid"] == DASHBOARD_UIDS[path.name]
    assert 36 <= d["schemaVersion"] <= 41
    assert d.get("id") is None  # provisioned dashboards must not carry a database id
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels(d):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_use_the_datasource_variable(path: Path) -> None:
    """Every panel, query, variable and annotation uses `${datasource}` (any Prometheus)."""
    d = json.loads(path.read_text())
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    want = {"type": "prometheus", "uid": "${datasource}"}
    for p in panels(d):
        if p["type"] == "row":
            continue
        assert p["datasource"] == want, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == want and t["expr"].strip(), p["title"]
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == want, v["name"]
    for a in d["annotations"]["list"]:
        if not a.get("builtIn"):
            assert a["datasource"] == want and a["expr"], a["name"]


@pytest.mark.parametrize(
    ("name", "variables"),
    [
        ("dprk-overview.json", ["vantage", "entity"]),
        ("dprk-target.json", ["vantage", "entity", "target"]),
    ],
)
def test_dashboard_has_label_values_variables(name: str, variables: list[str]) -> None:
    """The vantage/entity (and target) selectors are label_values queries, multi-select with All."""
    d = json.loads((GRAFANA / "dashboards" / name).read_text())
    by_name = {v["name"]: v for v in d["templating"]["list"]}
    for var in variables:
        v = by_name[var]
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        assert v["type"] == "query" and re.fullmatch(rf"label_values\(.+, {var}\)", query), var
        assert v["includeAll"] and v["multi"], var
    exprs = " ".join(t["expr"] for p in panels(d) for t in p.get("targets", []))
    for var in variables:
        assert f'{var}=~"${var}"' in exprs, f"no panel filters on ${var}"


@pytest.mark.parametrize(
    ("name", "metrics"),
    [
        (
            "dprk-overview.json",
            [
                "dprk_monitor_entity_state",
                "dprk_monitor_outage_active",
                "dprk_monitor_probes_total",
                "dprk_monitor_probe_failures_total",
                "dprk_monitor_probe_rtt_seconds_bucket",
                "dprk_monitor_block_belief",
                "dprk_monitor_bgp_prefix_visibility_ratio",
                "dprk_monitor_vantage_healthy",
                "dprk_monitor_event_store_healthy",
                "dprk_monitor_targets",  # down apart from never answered
            ],
        ),
        (
            "dprk-target.json",
            [
                "dprk_monitor_target_up",
                "dprk_monitor_targets",
                "dprk_monitor_probe_failures_total",
                "dprk_monitor_probe_rtt_seconds_bucket",
            ],
        ),
    ],
)
def test_dashboard_shows_what_operators_need(name: str, metrics: list[str]) -> None:
    """The overview and drill-down dashboards each chart the metrics their questions need."""
    text = (GRAFANA / "dashboards" / name).read_text()
    assert [m for m in metrics if m not in text] == []


def test_dashboards_count_down_without_never_answered() -> None:
    """No panel counts 'targets down' from target_up == 0 (which never-answered targets are
    too): down comes from dprk_monitor_targets{state="down"}, never answered has its panel."""
    for name in ("dprk-overview.json", "dprk-target.json"):
        d = json.loads((GRAFANA / "dashboards" / name).read_text())
        exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
        assert not [e for e in exprs if re.search(r"target_up\{[^}]*\}\s*==\s*0", e)], name
        assert any('state="down"' in e for e in exprs), name
        assert any('state="never_answered"' in e for e in exprs), name


def test_overview_all_entities_leaves_out_the_controls() -> None:
    """On the overview, entity "All" matches monitored entities but not `_controls`."""
    d = json.loads((GRAFANA / "dashboards" / "dprk-overview.json").read_text())
    (var,) = [v for v in d["templating"]["list"] if v["name"] == "entity"]
    assert re.fullmatch(var["allValue"], "star-jv")
    assert re.fullmatch(var["allValue"], "_controls") is None


def test_overview_marks_outages_as_annotations() -> None:
    """Outages appear as annotations, from outage_active and from new outage events."""
    d = json.loads((GRAFANA / "dashboards" / "dprk-overview.json").read_text())
    exprs = [a["expr"] for a in d["annotations"]["list"] if not a.get("builtIn")]
    assert any("dprk_monitor_outage_active" in e for e in exprs)
    assert any("dprk_monitor_outages_total" in e for e in exprs)


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    """The datasource is a Prometheus; the dashboard provider is a file provider docs install to."""
    ds = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yaml")
    assert ds["apiVersion"] == 1
    assert [d["type"] for d in ds["datasources"]] == ["prometheus"]
    prov = load_yaml(GRAFANA / "provisioning" / "dashboards" / "dprk-monitor.yaml")
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path in DOCS.read_text(), "docs/deploy.md must say where the dashboards go"


def test_docs_cover_the_install_paths() -> None:
    """docs/deploy.md names the paths the unit and the config rely on."""
    text = DOCS.read_text()
    for needle in (
        "/opt/dprk-monitor/.venv",
        "/etc/dprk-monitor/config.yaml",
        "state_dir: /var/lib/dprk-monitor",
        "ping_group_range",
        "vantage",
        "remote_write",
    ):
        assert needle in text, needle
