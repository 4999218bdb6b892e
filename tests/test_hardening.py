"""Hardening, end to end through the CLI: missing privilege, unresolvable names,
many targets under a small file-descriptor limit.

Each test runs `netprobe check` as its own process inside a network namespace
that the test creates (only `lo`, so nothing can leave it) and deletes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

IS_ROOT = os.geteuid() == 0
HAS_IP = shutil.which("ip") is not None
HAS_SETPRIV = shutil.which("setpriv") is not None
HAS_PRLIMIT = shutil.which("prlimit") is not None
HAS_NFT = shutil.which("nft") is not None

needs_netns = pytest.mark.skipif(not (IS_ROOT and HAS_IP),
                                 reason="needs root (euid 0) and iproute2 `ip` for a namespace")
pytestmark = [pytest.mark.root, needs_netns]


@pytest.fixture
def netns():
    name = f"nphd-{os.getpid()}-{time.monotonic_ns() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "pids", name], capture_output=True)
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-9", pid], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def shared_dir():
    """A directory an unprivileged user can read (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="netprobe-hardening-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_config(directory: Path, text: str) -> Path:
    path = directory / "site.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(0o644)
    return path


def check(netns: str, config: Path, *extra: str, as_nobody: bool = False,
          prefix: list[str] | None = None, timeout_s: float = 60) -> tuple[int, dict, str]:
    argv = ["ip", "netns", "exec", netns, *(prefix or [])]
    if as_nobody:
        argv += ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    argv += [sys.executable, "-m", "netprobe", "check", str(config), "-f", "json", *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, "HOME": "/tmp"})
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc.returncode, report, proc.stderr


def start_listener(netns: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "netprobe.lab.listeners",
         "--listen", "127.0.0.1", "--port", str(port), "--max-seconds", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # bounded wait for the port to open
        probe = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c",
                                f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"],
                               capture_output=True)
        if probe.returncode == 0:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("listener did not start")


@pytest.mark.skipif(not HAS_SETPRIV, reason="needs util-linux `setpriv` to drop to nobody")
def test_without_privilege_icmp_is_not_measured_and_nothing_is_called_down(netns, shared_dir):
    # A new namespace's ping_group_range is "1 0": nobody may not open ICMP sockets
    # and has no raw sockets, so every ICMP probe must come back "not measured".
    listener = start_listener(netns, 18443)
    try:
        config = write_config(shared_dir, """
            version: 1
            vantage: unprivileged
            defaults: {timeout: 300ms, attempts: 2}
            devices:
              gw: {address: 127.0.0.1}
            endpoints:
              web:
                address: 127.0.0.1
                path: [gw]
                probes: [icmp, tcp/18443]
              quiet:
                address: 127.0.0.2
                path: [gw]
                probes: [icmp]
            """)
        code, report, stderr = check(netns, config, as_nobody=True)
    finally:
        listener.kill()
        listener.wait()
    assert report, stderr
    states = {c["name"]: c["state"] for c in report["components"]}
    assert "down" not in states.values(), states
    # decided by ICMP alone: unknown; the web endpoint is proven up by its TCP answer
    assert states["quiet"] == "unknown"
    assert states["web/tcp/18443"] == "up" and states["web"] == "up"
    icmp = [p for p in report["probes"] if p["kind"] == "icmp"]
    assert icmp and all(p["error"] == "permission" and p["sent"] == 0 for p in icmp)
    assert "ping_group_range" in icmp[0]["message"]
    assert any(f["kind"] == "not_measured" for f in report["findings"])
    assert code == 3 and report["status"] == "unknown"


def test_a_host_name_that_does_not_resolve_is_not_measured_exit_3(netns, tmp_path):
    # Inside a namespace with only `lo`, a lookup cannot leave the namespace:
    # the resolver is unreachable and the name does not resolve.
    config = write_config(tmp_path, """
        version: 1
        defaults: {timeout: 300ms, attempts: 1}
        endpoints:
          portal:
            host: portal.nonexistent.example
            probes: [tcp/443]
        """)
    code, report, stderr = check(netns, config)
    assert code == 3, stderr
    probe = report["probes"][0]
    assert probe["error"] == "resolve_error" and probe["sent"] == 0
    assert "portal.nonexistent.example" in probe["message"]
    states = {c["name"]: c["state"] for c in report["components"]}
    assert states["portal"] == "unknown" and states["portal/tcp/443"] == "unknown"


@pytest.mark.slow
@pytest.mark.skipif(not HAS_PRLIMIT, reason="needs util-linux `prlimit`")
def test_thousands_of_targets_run_under_a_small_fd_limit(netns, tmp_path):
    # 3,000 ICMP targets with at most 256 open files: ICMP shares one socket,
    # so the run must not need a descriptor per target. The namespace answers
    # for 127.0.0.0/8 on lo; .2.x addresses exist, 198.18.0.0/24 does not (no route).
    lines = ["version: 1", "defaults: {timeout: 500ms, attempts: 1}", "endpoints:"]
    for i in range(3000):
        lines.append(f"  t{i}: {{address: 127.1.{i // 250}.{i % 250 + 1}, probes: [icmp]}}")
    config = tmp_path / "many.yaml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, report, stderr = check(netns, config, "--rate", "0",
                                 prefix=["prlimit", "--nofile=256:256"], timeout_s=120)
    assert report, stderr
    states = [c["state"] for c in report["components"]]
    assert len(states) == 3000
    assert states.count("up") == 3000, {s: states.count(s) for s in set(states)}
    assert code == 0


@pytest.mark.skipif(not HAS_NFT, reason="needs nftables `nft` to drop echo requests")
def test_ctrl_c_reports_what_was_measured_marked_interrupted(netns, tmp_path):
    # Inside the namespace 198.18.0.0/24 is local but its echo requests are
    # dropped: those probes wait out a long timeout while 127.0.0.1 answers.
    subprocess.run(["ip", "-n", netns, "route", "add", "local", "198.18.0.0/24", "dev", "lo"],
                   check=True)
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], check=True, text=True,
                   input="table inet t {\n chain in {\n  type filter hook input priority 0;\n"
                         "  ip daddr 198.18.0.0/24 icmp type echo-request drop\n }\n}\n")
    config = write_config(tmp_path, """
        version: 1
        defaults: {timeout: 20s, attempts: 1}
        devices:
          gw: {address: 127.0.0.1}
          far: {address: 198.18.0.9}
        """)
    out = tmp_path / "run.json"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "netprobe", "check", str(config),
         "-o", str(out), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # gw has answered; far is waiting on its 20 s timeout
    proc.send_signal(2)  # SIGINT, as Ctrl-C sends
    _, stderr = proc.communicate(timeout=30)
    assert "interrupted" in stderr
    report = json.loads(out.read_text())
    assert report["interrupted"] is True and report["status"] == "unknown"
    assert proc.returncode == 3
    probes = {p["id"]: p for p in report["probes"]}
    assert probes["gw/icmp"]["received"] == 1
    assert probes["far/icmp"]["error"] == "skipped" and "interrupted" in probes["far/icmp"]["message"]
    states = {c["name"]: c["state"] for c in report["components"]}
    assert states == {"gw": "up", "far": "unknown"}
