"""The real daemon (`python -m monitor run`) as a process inside a vantage namespace, for the
integration tests and the demo: start and wait for /readyz, stop, kill -9, restart, and read
/metrics (parsed with prometheus_client) and the JSON API from inside the namespace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import monitor
from monitor.sim.tools import HttpResult
from monitor.sim.world import World

PROJECT_ROOT = Path(monitor.__file__).resolve().parent.parent


class DaemonError(RuntimeError):
    pass


Sample = tuple[dict[str, str], float]


class Metrics(dict[str, list[Sample]]):
    """Sample name (`dprk_monitor_target_up`, `..._total`, `..._bucket`) -> [(labels, value)]."""

    def values(self, name: str, **labels: str) -> list[Sample]:  # type: ignore[override]
        """Samples of `name` whose labels include all of `labels`."""
        return [
            (lb, v)
            for lb, v in self.get(name, [])
            if all(lb.get(k) == want for k, want in labels.items())
        ]

    def value(self, name: str, default: float | None = None, **labels: str) -> float | None:
        """The value of the first sample matching `labels`, else `default`."""
        found = self.values(name, **labels)
        return found[0][1] if found else default

    def total(self, name: str, **labels: str) -> float:
        return sum(v for _, v in self.values(name, **labels))

    def one_hot(self, name: str, key: str, **labels: str) -> str | None:
        """For a one-hot gauge like entity_state{state=...}: the `key` label whose value is 1."""
        for lb, v in self.values(name, **labels):
            if v == 1:
                return lb.get(key)
        return None


def parse_metrics(text: str) -> Metrics:
    out = Metrics()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


class DaemonProcess:
    """`dprk-monitor run --config PATH` inside a world's vantage namespace."""

    def __init__(
        self,
        world: World,
        config_path: str | os.PathLike[str],
        vantage: int = 0,
        listen: str = "127.0.0.1:9474",
        argv: list[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.world = world
        self.config_path = str(config_path)
        self.vantage = vantage
        self.listen = listen
        self.argv = argv or [sys.executable, "-m", "monitor", "run", "--config", self.config_path]
        self.log_path = Path(log_path or world.tmpdir / f"daemon-vantage{vantage}.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        """Start and wait until GET /readyz answers 200 (raise with the log tail if not)."""
        if self.running:
            raise DaemonError("already running")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "ab") as log:
            log.write(f"--- start #{self.starts + 1}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = self.world.popen(
                self.vantage, self.argv, stdout=log, stderr=log, env=env, cwd=str(PROJECT_ROOT)
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise DaemonError(
                    f"daemon exited with {self.proc.returncode} before ready:\n" + self.log_tail()
                )
            r = self.get("/readyz", timeout=0.5)
            if r.status == 200:
                return self
            if time.monotonic() > deadline:
                raise DaemonError(
                    f"daemon not ready after {timeout}s (last: {r.status} "
                    f"{r.error}):\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful), SIGKILL after `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        rc = self.world.stop_process(self.proc, grace=timeout)
        return rc

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def restart(self, timeout: float = 30.0) -> DaemonProcess:
        self.stop()
        return self.start(timeout)

    def reload(self) -> None:
        """SIGHUP: re-read the configuration."""
        if self.proc is None or self.proc.poll() is not None:
            raise DaemonError("not running")
        os.kill(self.proc.pid, signal.SIGHUP)

    def get(self, path: str, timeout: float = 2.0) -> HttpResult:
        return self.world.http_get(self.vantage, self.url + path, timeout=timeout)

    def metrics(self) -> Metrics:
        r = self.get("/metrics", timeout=5.0)
        if r.status != 200:
            raise DaemonError(f"/metrics: {r.status} {r.error}")
        return parse_metrics(r.text)

    def json(self, path: str) -> Any:
        """Parsed JSON of `path`, or None when the daemon answers 404 (not implemented yet)."""
        r = self.get(path, timeout=5.0)
        if r.status == 404:
            return None
        if r.status != 200:
            raise DaemonError(f"{path}: {r.status} {r.error} {r.text[:200]}")
        return json.loads(r.body)

    def status(self) -> Any:
        return self.json("/api/v1/status")

    def outages(self) -> Any:
        return self.json("/api/v1/outages")

    def wait_for(
        self, predicate: Callable[[Metrics], bool], timeout: float = 30.0, interval: float = 0.25
    ) -> Metrics:
        """Poll /metrics until `predicate(metrics)` is true; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if predicate(m):
                return m
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met after {timeout}s")
            time.sleep(interval)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"
