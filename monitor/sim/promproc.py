"""Prometheus and Alertmanager as real processes in the world's monitoring namespace (`mon`,
`World.build(monitoring=True)`), scraping the daemons of every vantage, for the end-to-end tests
of the deployment files (deploy/prometheus, deploy/alertmanager.yml, grafana/dashboards).

- `scaled_rules(text, scale)`: a rule file with every `for:`, range window and offset scaled, so
  that alert rules written for a 30 s probing interval fit daemons run `scale` times faster
  (`monitor.sim.scenarios.scaled_config(scale)`). The shipped file itself is tested unscaled by
  `promtool test rules`.
- `prometheus_config(...)` / `alertmanager_config(...)`: the shipped configurations with the
  sim's targets, short intervals, and every receiver turned into a local webhook.
- `PrometheusProcess`, `AlertmanagerProcess`: start (each with its own storage directory and a
  free port on the namespace's loopback), wait until ready, query, stop (by PID, through the
  world, which also kills them at teardown).
- `WebhookReceiver`: a tiny HTTP server inside a namespace recording Alertmanager's notifications.

Nothing here listens outside the namespace it is started in; the processes only talk to loopback
and to the monitoring links.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import yaml

import monitor
from monitor.sim.world import World

PROJECT_ROOT = Path(monitor.__file__).resolve().parent.parent
DEPLOY = PROJECT_ROOT / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.rules.yml"))
ALERTMANAGER_YML = DEPLOY / "alertmanager.yml"
JOB = "dprk-monitor"  # the scrape job the rules and dashboards select

T = TypeVar("T")

# Debian ships Alertmanager as prometheus-alertmanager.
ALERTMANAGER_BINARIES = ("alertmanager", "prometheus-alertmanager")


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def alertmanager_binary() -> str | None:
    for name in ALERTMANAGER_BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


# --- time-scaled rules ---------------------------------------------------------------------------

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_UNITS_MS["y"] = 365 * _UNITS_MS["d"]
_DUR = r"(?:\d+(?:ms|[smhdwy]))+"
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_RANGE = re.compile(rf"\[\s*({_DUR})\s*(?::\s*({_DUR})?\s*)?\]")
_OFFSET = re.compile(rf"\boffset\s+({_DUR})")


def duration_ms(text: str) -> int:
    """A Prometheus duration (`1m`, `1h30m`, `500ms`) in milliseconds."""
    if not re.fullmatch(_DUR, text):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS_MS[u] for n, u in re.findall(r"(\d+)(ms|[smhdwy])", text))


def format_ms(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def scale_duration(text: str, scale: float) -> str:
    """`1m` scaled by 0.2 -> `12s` (at least 1 ms)."""
    return format_ms(max(1, round(duration_ms(text) * scale)))


def scale_expr(expr: str, scale: float) -> str:
    """Every range window (`[5m]`, subquery `[5m:1m]`) and `offset` of a PromQL expression
    scaled; string literals (label values, regexes) are left alone."""

    def rng(m: re.Match[str]) -> str:
        step = m.group(2)
        inner = scale_duration(m.group(1), scale)
        if ":" in m.group(0):
            inner += ":" + (scale_duration(step, scale) if step else "")
        return f"[{inner}]"

    def code(part: str) -> str:
        part = _RANGE.sub(rng, part)
        return _OFFSET.sub(lambda m: f"offset {scale_duration(m.group(1), scale)}", part)

    out, last = [], 0
    for m in _STRING.finditer(expr):
        out.append(code(expr[last : m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(code(expr[last:]))
    return "".join(out)


def scaled_rules(text: str, scale: float) -> str:
    """A rule file (YAML text) with `for:` and the expressions' windows scaled by `scale`.

    Scaling both alike keeps what the rules mean: "down for 1 minute at a 30 s interval"
    becomes "down for 12 s at a 6 s interval" with `scale=0.2`.
    """
    doc = yaml.safe_load(text)
    for group in doc["groups"]:
        if "interval" in group:
            group["interval"] = scale_duration(group["interval"], scale)
        for rule in group["rules"]:
            rule["expr"] = scale_expr(str(rule["expr"]), scale)
            if "for" in rule:
                rule["for"] = scale_duration(str(rule["for"]), scale)
    header = f"# Generated: the shipped rules with every duration scaled by {scale:g}.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=100)


# --- configurations ------------------------------------------------------------------------------


def prometheus_config(
    targets: Mapping[str, str],
    rule_files: Sequence[str | Path],
    *,
    listen: str,
    alertmanager: str | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> str:
    """The shipped prometheus.yml with the sim's daemons: `targets` is vantage name ->
    `host:port`, each target labelled `vantage` exactly as the shipped file does."""
    doc: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    doc["global"]["scrape_interval"] = scrape_interval
    doc["global"]["evaluation_interval"] = evaluation_interval
    doc["rule_files"] = [str(p) for p in rule_files]
    if alertmanager is None:
        doc.pop("alerting", None)
    else:
        doc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    timeout_ms = max(100, duration_ms(scrape_interval) * 4 // 5)
    for job in doc["scrape_configs"]:
        job["scrape_interval"] = scrape_interval
        job["scrape_timeout"] = format_ms(timeout_ms)
        if job["job_name"] == JOB:
            job["static_configs"] = [
                {"targets": [addr], "labels": {"vantage": name}} for name, addr in targets.items()
            ]
        elif job["job_name"] == "prometheus":
            job["static_configs"] = [{"targets": [listen]}]
    if not any(job["job_name"] == JOB for job in doc["scrape_configs"]):
        raise ValueError(f"{PROMETHEUS_YML} has no {JOB!r} job")
    return yaml.safe_dump(doc, sort_keys=False)


def alertmanager_config(
    webhook: str,
    *,
    group_wait: str = "1s",
    group_interval: str = "2s",
    repeat_interval: str = "1h",
) -> str:
    """The shipped alertmanager.yml, routes and inhibitions unchanged, with every receiver
    replaced by a webhook to `{webhook}/{receiver name}` (no mail leaves) and short timers."""
    doc: dict[str, Any] = yaml.safe_load(ALERTMANAGER_YML.read_text(encoding="utf-8"))
    doc["global"] = {k: v for k, v in doc.get("global", {}).items() if not k.startswith("smtp_")}

    def timers(route: dict[str, Any]) -> None:
        for key, value in (
            ("group_wait", group_wait),
            ("group_interval", group_interval),
            ("repeat_interval", repeat_interval),
        ):
            if key in route or route is doc["route"]:
                route[key] = value
        for child in route.get("routes", []):
            timers(child)

    timers(doc["route"])
    doc["receivers"] = [
        {
            "name": r["name"],
            "webhook_configs": [{"url": f"{webhook}/{r['name']}", "send_resolved": True}],
        }
        for r in doc["receivers"]
    ]
    return yaml.safe_dump(doc, sort_keys=False)


# --- processes -----------------------------------------------------------------------------------


class PromError(RuntimeError):
    pass


def free_port(world: World, role: str, address: str = "127.0.0.1") -> int:
    """A TCP port free on `address` inside the namespace `role` (bound once, then released)."""

    def probe() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
            port: int = s.getsockname()[1]
            return port

    return world.call_in(role, probe)


def wait_until(check: Callable[[], T], timeout: float, what: str, every: float = 0.5) -> T:
    """Call `check` until it returns something truthy (and return that); TimeoutError after."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


class _Process:
    """A server binary inside a namespace of the world, with an HTTP API on its loopback."""

    name = "server"

    def __init__(self, world: World, workdir: Path, role: str, binary: str) -> None:
        self.world, self.workdir, self.role, self.binary = world, workdir, role, binary
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def listen(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        if self.proc is not None:
            raise PromError(f"{self.name} already started")
        self.port = self.port or free_port(self.world, self.role)
        with open(self.log_path, "ab") as log:
            self.proc = self.world.popen(
                self.role, self.argv(), stdout=log, stderr=log, cwd=str(self.workdir)
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PromError(f"{self.name} exited ({self.proc.returncode}):\n{self.log_tail()}")
            if self.get("/-/ready", timeout=0.5)[0] == 200:
                return
            if time.monotonic() > deadline:
                raise PromError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL; the process is the one this object started (by PID)."""
        if self.proc is None:
            return None
        rc = self.world.stop_process(self.proc, grace=5.0)
        self.proc = None
        return rc

    def get(self, path: str, timeout: float = 5.0) -> tuple[int | None, bytes]:
        r = self.world.http_get(self.role, f"http://{self.listen}{path}", timeout=timeout)
        return r.status, r.body

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"


class PrometheusProcess(_Process):
    """`prometheus` in a namespace, its own storage directory, listening on loopback."""

    name = "prometheus"

    def __init__(
        self, world: World, workdir: Path, config: str, role: str = "mon", port: int = 0
    ) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise PromError("prometheus is not installed")
        super().__init__(world, workdir, role, binary)
        self.port = port
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(config, encoding="utf-8")

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.listen}",
            "--log.level=info",
        ]

    def api(self, path: str, **params: object) -> Any:
        """GET /api/v1/<path> and return its `data` (PromError on an error answer)."""
        query = urlencode({k: v for k, v in params.items() if v is not None})
        status, body = self.get(f"/api/v1/{path}" + (f"?{query}" if query else ""))
        try:
            doc = json.loads(body)
        except ValueError:
            raise PromError(f"/api/v1/{path}: HTTP {status} {body[:200]!r}") from None
        if doc.get("status") != "success":
            raise PromError(f"/api/v1/{path}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (now, or at the epoch time `at`): the result vector."""
        data = self.api("query", query=expr, time=at)
        if data["resultType"] not in ("vector", "matrix"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str, default: float | None = None, **labels: str) -> float | None:
        """The value of the first sample of `expr` whose labels include `labels`."""
        for s in self.query(expr):
            if all(s["metric"].get(k) == v for k, v in labels.items()):
                return float(s["value"][1])
        return default

    def alerts(self, name: str | None = None, **labels: str) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) from /api/v1/alerts, filtered."""
        out: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return [
            a
            for a in out
            if (name is None or a["labels"].get("alertname") == name)
            and all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    def firing(self, name: str, **labels: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts(name, **labels) if a["state"] == "firing"]

    def targets_up(self) -> dict[str, bool]:
        """vantage -> the last scrape of its daemon succeeded."""
        active = self.api("targets", state="active")["activeTargets"]
        return {
            t["labels"].get("vantage", t["scrapeUrl"]): t["health"] == "up"
            for t in active
            if t["labels"].get("job") == JOB
        }


class AlertmanagerProcess(_Process):
    """Alertmanager in a namespace, clustering off, its own storage directory."""

    name = "alertmanager"

    def __init__(
        self, world: World, workdir: Path, config: str, role: str = "mon", port: int = 0
    ) -> None:
        binary = alertmanager_binary()
        if binary is None:
            raise PromError("alertmanager is not installed")
        super().__init__(world, workdir, role, binary)
        self.port = port
        self.config_path = workdir / "alertmanager.yml"
        self.config_path.write_text(config, encoding="utf-8")

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.listen}",
            "--cluster.listen-address=",  # no gossip: a single instance
            "--log.level=info",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        status, body = self.get("/api/v2/alerts")
        if status != 200:
            raise PromError(f"alertmanager /api/v2/alerts: HTTP {status}")
        out: list[dict[str, Any]] = json.loads(body)
        return out


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class WebhookReceiver:
    """An HTTP server inside a namespace that records every POSTed JSON body by path.

    The listening socket is created inside the namespace (sockets keep the namespace they were
    made in); the serving thread itself runs in the caller's process like any other thread.
    """

    def __init__(self, world: World, role: str = "mon") -> None:
        self.world, self.role = world, role
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {"_invalid": body.decode("utf-8", "replace")}
                with receiver._lock:
                    receiver.posts.append((self.path, doc))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        def make() -> socketserver.ThreadingTCPServer:
            return _Server(("127.0.0.1", 0), Handler)

        server = self.world.call_in(self.role, make)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def received(self, path: str | None = None) -> list[dict[str, Any]]:
        """Notifications received (on `path`, e.g. `/pager-webhook`), oldest first."""
        with self._lock:
            return [doc for p, doc in self.posts if path is None or p == path]

    def alerts(self, path: str | None = None) -> list[tuple[str, str, dict[str, str]]]:
        """(notification status, alert status, alert labels) of every alert notified."""
        return [
            (doc.get("status", ""), a.get("status", ""), a.get("labels", {}))
            for doc in self.received(path)
            for a in doc.get("alerts", [])
        ]

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
