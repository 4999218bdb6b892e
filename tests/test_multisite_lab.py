"""Two vantage points in the namespace lab: `merge` and a real Prometheus.

The lab's city hall (the office, with carrier A's leased line and carrier B's
broadband) gets a branch office: a host behind its own router `bce`, whose only
line goes to carrier A's router pe-a. So carrier A dead is seen from both
sites; the city hall's own line cut is seen from the city hall only.
Everything stays inside namespaces this test creates (prefix `npms<pid>`) and
removes; Prometheus and the two `netprobe serve` listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, stop_process

from netprobe.lab import layout, scenarios, system
from netprobe.lab.lab import Lab, LabSettings

pytestmark = [pytest.mark.lab, pytest.mark.root]

REPO = Path(__file__).resolve().parents[1]
OFFICE_CONFIG = REPO / "configs" / "lab.yaml"
PREFIX = f"npms{os.getpid() % 100000}"
BRANCH_ADDR, BCE_LAN, BCE_WAN, PE_A_BRANCH = "192.0.2.70", "192.0.2.65", "198.51.100.18", \
    "198.51.100.17"

BRANCH_CONFIG = f"""\
version: 1
vantage: lab-branch
defaults: {{timeout: 500ms, attempts: 3}}
devices:
  bce: {{address: {BCE_LAN}}}                 # the branch's own router
  dc-edge: {{address: {layout.DC_EDGE_ADDR}, path: [bce, branch-a]}}
lines:
  branch-a: {{device: bce, far_end: {PE_A_BRANCH}, carrier: carrier-a}}
endpoints:
  dc-app:
    address: {layout.SERVER_ADDR}
    path: [bce, branch-a, dc-edge]
    probes: [icmp, tcp/443]
"""


def add_branch(lab: Lab) -> None:
    """branch (192.0.2.70) -- bce -- pe-a, and the routes back to it."""
    branch = lab.add_namespace("branch", layout.OFFICE_SYSCTLS)
    bce = lab.add_namespace("bce", layout.ROUTER_SYSCTLS)
    system.ip("link", "add", "eth0", "netns", branch, "type", "veth", "peer", "name", "lan0",
              "netns", bce)
    system.ip("link", "add", "wan0", "netns", bce, "type", "veth", "peer", "name", "to-br",
              "netns", lab.ns("pe-a"))
    system.ip_batch(branch, ["link set lo up", f"address add {BRANCH_ADDR}/26 dev eth0",
                             "link set eth0 up", f"route add default via {BCE_LAN}"])
    system.ip_batch(bce, ["link set lo up", f"address add {BCE_LAN}/26 dev lan0",
                          f"address add {BCE_WAN}/30 dev wan0", "link set lan0 up",
                          "link set wan0 up", f"route add default via {PE_A_BRANCH}"])
    system.ip_batch(lab.ns("pe-a"), [f"address add {PE_A_BRANCH}/30 dev to-br",
                                     "link set to-br up",
                                     f"route add 192.0.2.64/26 via {BCE_WAN}"])
    system.ip_batch(lab.ns("dc-edge"), [f"route add 192.0.2.64/26 via 198.51.100.9 "
                                        f"src {layout.DC_EDGE_ADDR}"])


def carrier_a_down(lab: Lab) -> None:
    """The lab's scenario, and the branch's port on pe-a too: carrier A's router is
    dead for every customer. `heal` removes it with the scenario's tables."""
    lab.break_("carrier-a-down")
    scenarios.drop_ingress(lab, "pe-a", ["to-br"], "branch_port")


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if system.missing_tools():
        pytest.skip(f"missing {', '.join(system.missing_tools())}")
    lab = Lab(LabSettings(prefix=PREFIX, max_seconds=600))
    try:
        lab.up()
        add_branch(lab)
        config = tmp_path_factory.mktemp("branch") / "branch.yaml"
        config.write_text(BRANCH_CONFIG)
        yield lab, config
    finally:
        lab.down(purge=True)


def check(ns: str, config: Path, out: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "netprobe", "check", str(config), "--netns",
                           ns, "-q", "-o", str(out)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert out.exists(), proc.stderr
    return json.loads(out.read_text())


def merge(tmp: Path, lab: Lab, branch_config: Path) -> tuple[int, dict[str, Any]]:
    office = check(lab.office, OFFICE_CONFIG, tmp / "office.json")
    branch = check(lab.ns("branch"), branch_config, tmp / "branch.json")
    assert office["vantage"] == "lab-office" and branch["vantage"] == "lab-branch"
    proc = subprocess.run([sys.executable, "-m", "netprobe", "merge", str(tmp / "office.json"),
                           str(tmp / "branch.json"), "-f", "json"], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def carrier_verdicts(merged: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["verdict"] for c in merged["carriers"]}


def test_merge_tells_a_carrier_failure_from_one_sites_line(two_sites, tmp_path: Path) -> None:
    lab, branch_config = two_sites
    code, merged = merge(tmp_path, lab, branch_config)
    assert carrier_verdicts(merged) == {"carrier-a": "up", "carrier-b": "up"}, merged
    shared = {c["name"]: c for c in merged["components"] if c["scope"] == "shared"}
    assert shared["dc-app"]["state"] == "up" and len(shared["dc-app"]["seen_from"]) == 2

    lab.break_("primary-cut")  # the city hall's leased line only
    try:
        code, merged = merge(tmp_path, lab, branch_config)
    finally:
        lab.heal()
    assert carrier_verdicts(merged)["carrier-a"] == "partial", merged
    (line,) = [f for f in merged["findings"] if f["kind"] == "line_down"]
    assert line["vantages"] == ["lab-office"] and line["components"] == ["leased-a"]
    assert "not the carrier" in line["summary"]
    assert not [f for f in merged["findings"] if f["kind"] == "carrier_down"]

    carrier_a_down(lab)
    try:
        code, merged = merge(tmp_path, lab, branch_config)
    finally:
        lab.heal()
    assert code == 2
    assert carrier_verdicts(merged)["carrier-a"] == "down", merged
    (down,) = [f for f in merged["findings"] if f["kind"] == "carrier_down"]
    assert set(down["vantages"]) == {"lab-office", "lab-branch"}
    assert set(down["components"]) == {"leased-a", "branch-a"}
    assert not [f for f in merged["findings"] if f["kind"] == "line_down"]


# -- a real Prometheus scraping two `netprobe serve` ---------------------------------

def start_serve(ns: str, config: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "netprobe", "serve", str(config), "--netns", ns, "--listen",
         "127.0.0.1:0", "--interval", "500ms"], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, cwd=REPO)
    line = proc.stderr.readline()
    if "listening on " not in line:
        stop_process(proc)
        raise AssertionError(f"serve in {ns} did not start: {line!r}")
    return proc, line.rsplit("http://", 1)[1].strip()


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    url = f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())["data"]["result"]


def wait_for(prom: str, expr: str, want: float, timeout_s: float = 60.0,
             count: int = 1) -> list[dict]:
    """Until `expr` has at least `count` series, all of value `want` (the two
    exporters' first reports reach Prometheus at different scrapes)."""
    deadline = time.monotonic() + timeout_s
    result: list[dict] = []
    while time.monotonic() < deadline:
        try:
            result = query(prom, expr)
        except OSError:
            result = []
        if len(result) >= count and all(float(r["value"][1]) == want for r in result):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{expr} did not become {want} in {timeout_s} s: {result}")


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="prometheus is not installed (Debian package prometheus)")
def test_prometheus_joins_two_sites(two_sites, tmp_path: Path) -> None:
    lab, branch_config = two_sites
    procs = []
    try:
        office, office_at = start_serve(lab.office, OFFICE_CONFIG)
        procs.append(office)
        branch, branch_at = start_serve(lab.ns("branch"), branch_config)
        procs.append(branch)
        shutil.copy(REPO / "configs" / "prometheus" / "recording.yml", tmp_path)
        (tmp_path / "prometheus.yml").write_text(f"""\
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [recording.yml]
scrape_configs:
  - job_name: netprobe
    scrape_timeout: 1s
    static_configs:
      - targets: ["{office_at}", "{branch_at}"]
""")
        prom_at = f"127.0.0.1:{free_port()}"
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address={prom_at}",
             "--storage.tsdb.retention.time=1h"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
        procs.append(prom)
        wait_for(prom_at, 'up{job="netprobe"}', 1.0, count=2)
        healthy = wait_for(prom_at, "netprobe:carrier_down", 0.0, count=2)
        assert {r["metric"]["carrier"] for r in healthy} == {"carrier-a", "carrier-b"}
        assert len(query(prom_at, 'netprobe_line_info{carrier="carrier-a"}')) == 2

        carrier_a_down(lab)
        try:
            wait_for(prom_at, 'netprobe:carrier_down{carrier="carrier-a"}', 1.0)
            assert float(query(prom_at, 'netprobe:carrier_down{carrier="carrier-b"}')
                         [0]["value"][1]) == 0.0
            assert not query(prom_at, "netprobe:site_line_down")
            # the two exporters' latest reports merge to the same verdict
            for name, at in (("office", office_at), ("branch", branch_at)):
                with urllib.request.urlopen(f"http://{at}/report.json", timeout=5) as resp:
                    (tmp_path / f"{name}.json").write_bytes(resp.read())
            proc = subprocess.run([sys.executable, "-m", "netprobe", "merge",
                                   str(tmp_path / "office.json"), str(tmp_path / "branch.json"),
                                   "-f", "json"], capture_output=True, text=True, timeout=60,
                                  cwd=REPO)
            assert carrier_verdicts(json.loads(proc.stdout))["carrier-a"] == "down", proc.stdout
        finally:
            lab.heal()
        wait_for(prom_at, 'netprobe:carrier_down{carrier="carrier-a"}', 0.0)
    finally:
        for p in procs:
            stop_process(p)
