"""`watch` on the namespace lab: the drill's numbers against the controller's log.

The lab's failover controller logs each switch with the monotonic clock,
which every process on the host shares; the drill records its own monotonic
origin, so the two logs line up without any wall-clock guesswork. Namespaces
use the prefix `npw<pid>` and are removed at the end, also when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netprobe.lab import layout

pytestmark = [pytest.mark.lab, pytest.mark.slow]

INTERVAL_S = 0.2
# Our own pid in the prefix: two test runs at once (two engineers, CI) each get a lab.
PREFIX = f"npw{os.getpid()}"

LAB_CONFIG = f"""\
version: 1
vantage: lab-office
devices:
  ce-hq: {{address: {layout.CE_LAN_ADDR}}}
  dc-edge: {{address: {layout.DC_EDGE_ADDR}, path: [ce-hq, dc-wan]}}
lines:
  leased-a: {{device: ce-hq, far_end: {layout.PRIMARY.far_end}, carrier: carrier-a,
             group: dc-wan, priority: 1}}
  broadband-b: {{device: ce-hq, far_end: {layout.SECONDARY.far_end}, carrier: carrier-b,
                group: dc-wan, priority: 2}}
groups:
  dc-wan: {{failback: auto}}
endpoints:
  dc-app:
    address: {layout.SERVER_ADDR}
    path: [ce-hq, dc-wan, dc-edge]
    probes: [icmp, tcp/443]
  intra-dns:
    address: {layout.DNS_ADDR}
    path: [ce-hq, dc-wan, dc-edge]
    probes: [icmp, {{dns: {{query: www.intra.example, type: A, expect: [{layout.SERVER_ADDR}]}}}}]
"""


def _remove_stale_labs() -> None:
    """Labs of ours left by a run that was killed (its pid is gone)."""
    from netprobe.lab.lab import Lab, LabSettings
    from netprobe.lab.netns import list_netns

    for pid in {m.group(1) for n in list_netns() if (m := re.match(r"^npw(\d+)-", n))}:
        if not os.path.exists(f"/proc/{pid}"):
            stale = Lab(LabSettings(prefix=f"npw{pid}"))
            stale.down()
            shutil.rmtree(stale.state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def lab() -> Iterator:
    from netprobe.lab.lab import Lab, LabSettings

    _remove_stale_labs()
    lab = Lab(LabSettings(prefix=PREFIX, max_seconds=600))
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
        shutil.rmtree(lab.state_dir, ignore_errors=True)


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(LAB_CONFIG, encoding="utf-8")
    return path


def start_watch(config: Path, out: Path, duration_s: float, *extra: str) -> subprocess.Popen:
    """`netprobe watch` in the lab's office, as an operator would run it; returns
    once the drill has started (its first line is out)."""
    argv = [sys.executable, "-m", "netprobe", "watch", str(config), "--interval",
            f"{INTERVAL_S * 1000:.0f}ms", "--duration", f"{duration_s}s", "-o", str(out),
            "--netns", f"{PREFIX}-office", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("watching"):
                return proc
            if not line and proc.poll() is not None:
                break
    proc.kill()
    raise AssertionError(f"watch did not start: {proc.stdout.read() if proc.stdout else ''}")


def finish(proc: subprocess.Popen, timeout_s: float) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"watch did not end in time:\n{out}") from None
    return proc.returncode, out


def switches(lab, after_mono: float) -> list[dict]:
    return [e for e in lab.controller_events()
            if e.get("event") == "switch" and e["mono_s"] >= after_mono]


def test_cut_and_repair_times_agree_with_the_controller(lab, config: Path, tmp_path: Path):
    lab.heal()
    out = tmp_path / "drill.json"
    t_start = time.monotonic()
    proc = start_watch(config, out, 11.0, "--failback-window", "5s")
    try:
        time.sleep(1.5)
        lab.break_("primary-cut")  # returns once the controller has switched
        time.sleep(2.5)
        lab.heal()  # returns once traffic is back on the primary
    finally:
        code, text = finish(proc, 30)
    drill = json.loads(out.read_text(encoding="utf-8"))
    ctrl = switches(lab, t_start)
    assert [e["to"] for e in ctrl] == ["broadband-b", "leased-a"], ctrl
    group = drill["groups"][0]
    assert group["verdict"] == "failback_done", text
    assert group["matches_policy"] is True
    assert code == 0, text
    (episode,) = group["episodes"]
    t0 = drill["timeline"]["monotonic_t0"]

    # The drill sees each path change at the first cycle after it: never before
    # the controller made it, at most one probe interval after.
    seen_switch = t0 + episode["switch_at_s"]
    seen_failback = t0 + episode["failback_at_s"]
    assert episode["switched_to"] == "broadband-b"
    assert abs(seen_switch - ctrl[0]["mono_s"]) <= INTERVAL_S, (seen_switch, ctrl[0])
    assert abs(seen_failback - ctrl[1]["mono_s"]) <= INTERVAL_S, (seen_failback, ctrl[1])

    # The switch-over time: from the first lost probe to the path change. The
    # controller's own count starts at its first unanswered probe (100 ms ticks),
    # ours at our first lost probe: each end carries its own sampling step.
    ctrl_switch_over_s = ctrl[0]["mono_s"] - ctrl[0]["down_since_mono_s"]
    assert abs(episode["switch_over_s"] - ctrl_switch_over_s) <= INTERVAL_S + 0.1, \
        (episode["switch_over_s"], ctrl_switch_over_s)
    # Failback is timed from the preferred line answering again, which precedes
    # the controller's decision (it waits for replies in a row).
    assert 0 <= episode["failback_s"] <= ctrl[1]["mono_s"] - (t0 + episode["preferred_back_s"]) \
        + INTERVAL_S

    # The endpoints behind the group were out from the cut until the switch.
    outages = {o["lane"]: o for o in episode["outages"]}
    assert set(outages) >= {"dc-app", "dc-app/tcp/443", "intra-dns", "intra-dns/dns"}
    for o in outages.values():
        assert o["recovered_s"] is not None
        assert o["lost_probes"] >= 3
        assert abs(o["recovered_s"] - episode["switch_at_s"]) <= 2 * INTERVAL_S
    kinds = [e["kind"] for e in drill["events"]]
    assert "switch_over" in kinds and "failback" in kinds
    assert "traffic to dc-app moved to broadband-b" in text


def test_frozen_controller_is_a_failed_failover(lab, config: Path, tmp_path: Path):
    lab.heal()
    out = tmp_path / "drill.json"
    t_start = time.monotonic()
    proc = start_watch(config, out, 7.0, "--failover-window", "2.5s")
    try:
        time.sleep(1.0)
        lab.break_("primary-cut-frozen")  # returns once the controller held its switch
    finally:
        code, text = finish(proc, 30)
    ctrl = switches(lab, t_start)
    lab.heal()
    drill = json.loads(out.read_text(encoding="utf-8"))
    assert ctrl == []  # the ground truth: the controller never switched
    group = drill["groups"][0]
    assert group["verdict"] == "failover_failed", text
    assert group["matches_policy"] is False
    assert code == 2, text
    assert drill["status"] == "critical"
    (episode,) = group["episodes"]
    assert episode["switch_at_s"] is None
    assert any(o["lane"] == "dc-app" and o["recovered_s"] is None for o in episode["outages"])
    assert "failover_failed" in text


@pytest.mark.parametrize("raw", [True, False], ids=["raw-socket", "ping-socket"])
def test_hop_check_tells_the_lines_apart(lab, raw: bool):
    """One TTL-limited probe names the active line: the carrier's router answers
    time-exceeded from its far-end address. The ping-socket variant reads it from
    the error queue (the lab's office admits unprivileged ICMP)."""
    lab.heal()
    code = ("import asyncio, sys\n"
            "from netprobe.watch.hopcheck import HopChecker, pick_line\n"
            "async def main():\n"
            f"    c = HopChecker(raw={raw})\n"
            "    assert c.preflight() is None, c.preflight()\n"
            "    try:\n"
            f"        answers = await c.probe('{layout.SERVER_ADDR}', [1, 2, 3, 4, 5], 1.0)\n"
            "    finally:\n"
            "        c.close()\n"
            f"    hops = {{'leased-a': ['{layout.PRIMARY.far_end}'],"
            f" 'broadband-b': ['{layout.SECONDARY.far_end}']}}\n"
            "    line, answer = pick_line(answers, hops)\n"
            "    print(line, answer.ttl, answer.kind, [a.kind for a in answers])\n"
            "asyncio.run(main())\n")

    def look() -> str:
        out = subprocess.run(["ip", "netns", "exec", lab.office, sys.executable, "-c", code],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert look() == ("leased-a 2 time_exceeded ['time_exceeded', 'time_exceeded', "
                      "'time_exceeded', 'echo_reply', 'echo_reply']")
    lab.break_("primary-cut")  # the controller moves the default route
    try:
        assert look().startswith("broadband-b 2 time_exceeded")
    finally:
        lab.heal()
