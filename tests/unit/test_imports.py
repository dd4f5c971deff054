"""What the daemon loads: the runtime, not the simulator or the test tools."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]

NOT_AT_RUN_TIME = ("monitor.sim", "trustme", "scapy", "hypothesis", "pytest", "cryptography")


def test_run_and_the_other_commands_do_not_import_the_simulator() -> None:
    """Building the command line and everything `run`, `probe` and `outages` use loads neither
    `monitor.sim` nor a test tool: a runtime-only install (`make run`) works."""
    code = (
        "import sys, monitor.cli as c\n"
        "c.build_parser()\n"
        "import monitor.daemon, monitor.probe_once, monitor.events, monitor.probes\n"
        "from monitor.probes.icmp import IcmpProber\n"
        "from monitor.probes.http import HttpProber\n"
        "from monitor.probes.dns import DnsProber\n"
        "from monitor.probes.tcp import TcpProber\n"
        f"bad = sorted(m for m in sys.modules if m.startswith({NOT_AT_RUN_TIME!r}))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "", out.stdout


def test_runtime_dependencies_hold_no_test_tools() -> None:
    """trustme (the simulated world's CA) and scapy (crafting in tests) are extras, not what
    the daemon installs."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = " ".join(meta["project"]["dependencies"])
    for tool in ("trustme", "scapy", "pytest", "hypothesis", "cryptography"):
        assert tool not in runtime
    assert any("trustme" in d for d in meta["project"]["optional-dependencies"]["sim"])
