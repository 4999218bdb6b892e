"""Dual-stack hosts: a host name with IPv4 and IPv6 addresses is probed over
both; a family that fails beside one that works is a finding.

The diagnosis part is pure (synthetic evidence). The executor is shown the
split with a resolver answering both families for a name; the end-to-end test
runs `netprobe check` in a namespace of its own, with a private mount
namespace whose /etc/hosts gives `dual.example` both 127.0.0.1 and ::1 (the
host's /etc/hosts is never touched), ICMPv6 echo requests dropped on input by
nftables in that namespace (a broken path, not a local refusal), and a TCP listener on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from builders import make_evidence, make_result, make_topology
from conftest import HAS_IP, HAS_NFT, IS_ROOT, netns, stop_process

from netprobe.diagnosis import diagnose
from netprobe.diagnosis.families import split_families
from netprobe.diagnosis.model import FindingKind, State
from netprobe.evidence import base_id, twin_id
from netprobe.executor import RunOptions, run_plan
from netprobe.probes import ProbeTask

REPO = Path(__file__).resolve().parents[1]
ENDPOINT = {"web": {"host": "dual.example", "probes": ["icmp", "tcp/443"]}}


def topo():
    return make_topology(devices={}, lines={}, groups={}, endpoints=ENDPOINT, sites={})


def v4(probe_id, **kw):
    return make_result(probe_id, address="192.0.2.80", **kw)


def v6(probe_id, **kw):
    return make_result(twin_id(probe_id), target=probe_id.split("/icmp")[0]
                       if probe_id.endswith("/icmp") else probe_id,
                       kind="icmp" if probe_id.endswith("/icmp") else "tcp",
                       address="2001:db8::80", **kw)


def state(d, name):
    return next(c for c in d.components if c.name == name).state


# -- pure -------------------------------------------------------------------------
def test_twin_ids_round_trip():
    assert twin_id("web/icmp") == "web/icmp@ipv6"
    assert base_id("web/icmp@ipv6") == "web/icmp" and base_id("web/icmp") == "web/icmp"


def test_a_broken_ipv6_path_beside_a_working_ipv4_one_is_a_finding():
    ev = make_evidence(v4("web/icmp"), v6("web/icmp", ok=False),
                       v4("web/tcp/443"), v6("web/tcp/443"))
    d = diagnose(topo(), ev)
    assert state(d, "web")== State.UP  # the host answers: IPv4 proves it
    [f] = [f for f in d.findings if f.kind == FindingKind.FAMILY_DOWN]
    assert f.components == ("web",)
    assert f.evidence == ("web/icmp", "web/icmp@ipv6")
    assert "works over IPv4 (192.0.2.80: 3/3" in f.summary
    assert "not over IPv6 (2001:db8::80: 0/3 replies)" in f.summary
    assert d.status().value == "warning"


def test_only_ipv6_working_keeps_the_host_up_and_names_ipv4():
    ev = make_evidence(v4("web/icmp", ok=False), v6("web/icmp"),
                       v4("web/tcp/443", ok=False), v6("web/tcp/443"))
    d = diagnose(topo(), ev)
    assert state(d, "web")== State.UP
    assert state(d, "web/tcp/443")== State.UP
    kinds = [f.kind for f in d.findings]
    assert kinds.count(FindingKind.FAMILY_DOWN) == 2
    assert FindingKind.ENDPOINT_DOWN not in kinds
    assert all("not over IPv4" in f.summary for f in d.findings
               if f.kind == FindingKind.FAMILY_DOWN)


def test_both_families_failing_is_one_verdict_not_a_family_finding():
    ev = make_evidence(v4("web/icmp", ok=False), v6("web/icmp", ok=False),
                       v4("web/tcp/443", ok=False), v6("web/tcp/443", ok=False))
    d = diagnose(topo(), ev)
    assert state(d, "web")== State.DOWN
    assert FindingKind.FAMILY_DOWN not in {f.kind for f in d.findings}


def test_a_trace_that_stops_short_over_one_family_is_no_finding():
    trace4 = make_result("web/trace", address="192.0.2.80", sent=1, hops=["192.0.2.1", "192.0.2.80"],
                         reached=True)
    trace6 = make_result("web/trace@ipv6", kind="trace", target="web", address="2001:db8::80",
                         hops=["2001:db8::1", None], reached=False, ok=False, sent=1)
    d = diagnose(topo(), make_evidence(v4("web/icmp"), v6("web/icmp"), trace4, trace6))
    assert FindingKind.FAMILY_DOWN not in {f.kind for f in d.findings}


def test_split_keeps_one_result_per_planned_probe():
    ev = make_evidence(v4("web/icmp", ok=False), v6("web/icmp"), v4("web/tcp/443"))
    one, pairs = split_families(ev)
    assert [r.id for r in one.results] == ["web/icmp@ipv6", "web/tcp/443"]
    assert [(a.id, b.id) for a, b in pairs] == [("web/icmp", "web/icmp@ipv6")]
    assert make_evidence(v4("web/icmp")).results == split_families(
        make_evidence(v4("web/icmp")))[0].results


# -- the executor -------------------------------------------------------------------
class _Echo:
    kind = "echoaddr"

    def preflight(self, tasks):
        return None

    async def run(self, task, ctx):
        from netprobe.evidence import ProbeResult

        return ProbeResult(id=task.id, kind=task.kind, target=task.target,
                           address=task.address, sent=1, rtts_ms=(1.0,))


def test_a_name_with_both_families_is_probed_over_both(monkeypatch):
    import types

    from netprobe import executor
    from netprobe.probes import PROBE_MODULES

    module = types.ModuleType("echoaddr_probe")
    module.PROBE = _Echo()
    monkeypatch.setitem(sys.modules, "echoaddr_probe", module)
    monkeypatch.setitem(PROBE_MODULES, "echoaddr", "echoaddr_probe")
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if host == "dual.example":  # what a resolver answers for a dual-stack name
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::80", 0, 0, 0)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.80", 0))]
        if host == "v6only.example":
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::81", 0, 0, 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(executor.socket, "getaddrinfo", fake)
    tasks = [ProbeTask(id=f"{n}/e", kind="echoaddr", target=n, address=None, host=h)
             for n, h in (("a", "dual.example"), ("b", "v6only.example"))]
    ev = asyncio.run(run_plan(tasks, RunOptions(confirm_attempts=0)))
    assert [(r.id, r.address, r.family) for r in ev.results] == [
        ("a/e", "192.0.2.80", "ipv4"), ("a/e@ipv6", "2001:db8::80", "ipv6"),
        ("b/e", "2001:db8::81", "ipv6")]
    assert ev.results[1].to_json()["family"] == "ipv6"


# -- end to end -----------------------------------------------------------------------
DROP_ICMP6_ECHO = """table inet npt_dual {
    chain in {
        type filter hook input priority 0; policy accept;
        icmpv6 type echo-request drop
    }
}
"""
needs_ns = pytest.mark.skipif(
    not (IS_ROOT and HAS_IP and HAS_NFT and shutil.which("unshare")),
    reason="needs root, iproute2 `ip`, nftables `nft` and util-linux `unshare`")


@pytest.mark.root
@needs_ns
def test_check_finds_the_broken_family_of_a_dual_stack_host(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost dual.example\n::1 dual.example\n")
    with socket.socket() as s:  # a free port number for the listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "dual.yaml"
    config.write_text(
        "version: 1\nvantage: dual-test\ndefaults: {timeout: 300ms, attempts: 2}\n"
        "endpoints:\n  web:\n    host: dual.example\n"
        f"    probes: [icmp, tcp/{port}]\n")
    with netns("dual") as ns:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], check=True, text=True,
                       input=DROP_ICMP6_ECHO)
        listener = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "netprobe.lab.listeners",
             "--listen", "127.0.0.1", "--port", str(port), "--max-seconds", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        try:
            for _ in range(50):  # bounded wait for the listener
                probe = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                                        f"import socket; socket.create_connection(('127.0.0.1', "
                                        f"{port}), 0.2).close()"], capture_output=True)
                if probe.returncode == 0:
                    break
            out = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts),
                 sys.executable, "-m", "netprobe", "check", str(config), "--netns", ns,
                 "-f", "json", "--late-grace", "0"],
                capture_output=True, text=True, timeout=60, cwd=REPO)
        finally:
            stop_process(listener)
    report = json.loads(out.stdout)
    probes = {p["id"]: p for p in report["probes"]}
    assert probes["web/icmp"]["family"] == "ipv4" and probes["web/icmp"]["received"] == 2
    assert probes["web/icmp@ipv6"]["family"] == "ipv6"
    assert probes["web/icmp@ipv6"]["address"] == "::1"
    assert probes["web/icmp@ipv6"]["received"] == 0
    assert probes[f"web/tcp/{port}"]["error"] is None
    assert probes[f"web/tcp/{port}@ipv6"]["error"] == "refused"
    states = {c["name"]: c["state"] for c in report["components"]}
    assert states == {"web": "up", f"web/tcp/{port}": "up"}
    family = [f for f in report["findings"] if f["kind"] == "family_down"]
    assert {tuple(f["components"]) for f in family} == {("web",), (f"web/tcp/{port}",)}
    assert report["status"] == "warning" and out.returncode == 1, out.stderr
