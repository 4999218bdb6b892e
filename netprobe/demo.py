"""`netprobe demo`: the main job end to end, on targets the demo itself creates.

- `lab`: the namespace lab (root). Healthy, then the primary line cut with the
  CE's failover working, then the same cut with the failover frozen; each time
  a real `netprobe check` inside the lab's office, then the lab is torn down.
- `local`: loopback only, no root. TCP listeners and a DNS server on
  127.0.0.0/8 started here, probed by `netprobe check` with the built-in
  `localhost.yaml`.

Each check runs as its own process, as an operator would run it, and the demo
reads the JSON report it wrote to say whether the verdict was the expected one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rich.console import Console

from netprobe.errors import NetprobeError


def builtin_config(name: str) -> Path:
    """A config shipped inside the package (`lab.yaml`, `localhost.yaml`)."""
    path = Path(str(resources.files("netprobe") / "data" / name))
    if not path.is_file():
        raise NetprobeError(f"built-in config {name} is missing from the installed package "
                            f"(looked in {path}); reinstall netprobe")
    return path


@dataclass(frozen=True)
class Step:
    title: str
    scenario: str | None  # lab scenario to break into; None: healthy
    expect_verdict: str  # dc-wan's verdict
    explain: str


LAB_STEPS = (
    Step("healthy", None, "nominal",
         "Traffic to the data centre goes over carrier A's leased line; the broadband "
         "line from carrier B stands by."),
    Step("primary line cut", "primary-cut", "failed_over",
         "Carrier A's leased line now passes nothing. The CE's route tracking notices "
         "and moves traffic to broadband-b."),
    Step("primary line cut, failover frozen", "primary-cut-frozen", "failover_failed",
         "The same cut, but the CE does not switch (the silent switch-over failure of the "
         "accident reports): the standby line is up, yet traffic stays on the dead line."),
)


def _check(console: Console, config: Path, extra: list[str], report: Path) -> dict:
    """Run `netprobe check` as its own process; return the JSON report it wrote."""
    argv = [sys.executable, "-m", "netprobe", "check", str(config), "-o", str(report), *extra]
    console.print("$ netprobe " + " ".join(argv[3:]), style="dim", markup=False)
    proc = subprocess.run(argv, check=False)
    # exit 3 with a report is a verdict too (UNKNOWN: e.g. ICMP not measured
    # without privilege); only a run that wrote nothing has nothing to show
    if not report.exists():
        raise NetprobeError(f"the check exited {proc.returncode} without a usable report; "
                            "see its message above")
    return json.loads(report.read_text(encoding="utf-8"))


def run_lab_demo(console: Console, prefix: str = "npdemo") -> int:
    from netprobe.lab.lab import Lab, LabSettings

    Lab.require_root(prefix)
    lab = Lab(LabSettings(prefix=prefix, max_seconds=600))
    config = builtin_config("lab.yaml")
    failures: list[str] = []
    console.rule("netprobe demo: a city hall with two carrier lines to its data centre")
    try:
        console.print(f"bringing up the namespace lab ({prefix}-*) ...", markup=False)
        lab.up()
        with tempfile.TemporaryDirectory(prefix="netprobe-demo-") as tmp:
            for n, step in enumerate(LAB_STEPS, 1):
                if step.scenario:
                    lab.heal()
                    lab.break_(step.scenario)
                console.rule(f"{n}/{len(LAB_STEPS)} {step.title}")
                console.print(step.explain, markup=False)
                report = _check(console, config, ["--netns", lab.office],
                                Path(tmp) / f"step{n}.json")
                group = next((g for g in report["groups"] if g["name"] == "dc-wan"), None)
                verdict = group["verdict"] if group else "missing"
                mark = "as expected" if verdict == step.expect_verdict else \
                    f"EXPECTED {step.expect_verdict}"
                console.print(f"→ dc-wan verdict: {verdict} ({mark}); exit code "
                              f"{report['exit_code']}", markup=False)
                if verdict != step.expect_verdict:
                    failures.append(f"{step.title}: dc-wan was {verdict}, expected "
                                    f"{step.expect_verdict}")
    finally:
        lab.down()
        console.print(f"lab {prefix} torn down", markup=False)
    console.rule("summary")
    if failures:
        for f in failures:
            console.print(f"✗ {f}", markup=False)
        return 1
    console.print("✓ netprobe told a working failover (failed_over) from a silent failed one "
                  "(failover_failed), with the evidence for the carrier.", markup=False)
    console.print("Next, as root: `netprobe lab up`, then `netprobe lab break --help` for the "
                  "twelve ways to break it.", markup=False)
    return 0


def run_local_demo(console: Console) -> int:
    """Loopback listeners and a DNS server, probed with the built-in localhost.yaml."""
    from netprobe.lab.dns_server import DnsServer
    from netprobe.lab.listeners import BackgroundLoop, TcpListener

    config = builtin_config("localhost.yaml")
    console.rule("netprobe demo (loopback): listeners and a DNS server started here")
    with BackgroundLoop() as bg, tempfile.TemporaryDirectory(prefix="netprobe-demo-") as tmp:
        try:
            for host, port in (("127.0.80.1", 8443), ("127.0.80.1", 8022)):
                bg.run(TcpListener(host, port).start())
            bg.run(DnsServer({"www.local.example": [("A", "127.0.80.1")]},
                             host="127.0.53.1", port=5353).start())
        except OSError as exc:
            raise NetprobeError(f"cannot start the demo's loopback listeners ({exc.strerror}); "
                                "is another demo running? Ports 8443, 8022 (127.0.80.1) and "
                                "5353 (127.0.53.1) must be free") from None
        report = _check(console, config, [], Path(tmp) / "local.json")
    console.rule("summary")
    console.print(f"status {report['status']} (exit {report['exit_code']}); ICMP needs root or "
                  "net.ipv4.ping_group_range — without them it is reported as not measured, "
                  "never as down.", markup=False)
    return 0 if report["status"] in ("ok", "unknown") else 1
