"""The drill loop on loopback: real probes, real listeners, real sockets.

Schedule (fixed slots, no overlap, overruns skipped and recorded), stopping
(duration, Ctrl-C, --until-stable), the command's files and exit codes, and
the hop check's packet handling.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from netprobe.config import load_topology
from netprobe.diagnosis.model import State
from netprobe.errors import NetprobeError
from netprobe.watch import WatchOptions, run_watch, watch_command
from netprobe.watch.engine import groups_crossed, watch_plan
from netprobe.watch.hopcheck import HopAnswer, HopChecker, echo_request, parse_icmp, pick_line

SILENT_DNS = "127.0.0.99"  # a UDP socket that reads queries and never answers


def write_config(tmp_path: Path, tcp_port: int, closed_port: int, dns: bool = False) -> Path:
    dns_probe = (f"\n      - dns: {{query: www.intra.example, server: {SILENT_DNS}}}"
                 if dns else "")
    text = f"""\
version: 1
vantage: loopback
devices:
  ce: {{address: 127.0.0.1}}
lines:
  leased-a: {{device: ce, far_end: 127.0.0.2, group: wan, priority: 1}}
  broadband-b: {{device: ce, far_end: 127.0.0.3, group: wan, priority: 2}}
groups:
  wan: {{failback: manual}}
endpoints:
  app:
    address: 127.0.0.1
    path: [ce, wan]
    probes:
      - icmp
      - tcp/{tcp_port}
      - tcp/{closed_port}{dns_probe}
"""
    path = tmp_path / "lo.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def listening() -> socket.socket:
    """A TCP listener the kernel completes handshakes for (the backlog), so a
    test can close it mid-drill to make the service fail."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s
    s.close()


@pytest.fixture()
def silent_dns():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((SILENT_DNS, 53))
    except OSError as exc:
        s.close()
        pytest.skip(f"cannot bind {SILENT_DNS}:53 for a silent DNS server: {exc.strerror}")
    yield s
    s.close()


def test_plan_has_one_lane_per_probe_and_the_groups_behind(tmp_path, listening,
                                                          closed_tcp_port):
    topo = load_topology(str(write_config(tmp_path, listening.getsockname()[1],
                                          closed_tcp_port[1])))
    tasks, lanes, groups = watch_plan(topo, WatchOptions(interval_s=0.1))
    assert [lane.name for lane in lanes] == [t.target for t in tasks]
    assert all(t.attempts == 1 and t.timeout_s <= 0.08 + 1e-9 for t in tasks)
    assert "trace" not in {t.kind for t in tasks}
    assert groups_crossed(topo, f"app/tcp/{listening.getsockname()[1]}") == ("wan",)
    (g,) = groups
    assert g.lines == ("leased-a", "broadband-b") and g.endpoints == ("app",)
    assert g.failback == "manual"


@pytest.mark.icmp
def test_cycles_run_on_a_fixed_schedule_and_record_every_lane(tmp_path, listening,
                                                             closed_tcp_port):
    port = listening.getsockname()[1]
    topo = load_topology(str(write_config(tmp_path, port, closed_tcp_port[1])))
    tl = asyncio.run(run_watch(topo, WatchOptions(interval_s=0.1, duration_s=1.0)))
    assert tl.ended_by == "duration"
    assert 9 <= len(tl.cycles) <= 10
    assert tl.t_end_s == pytest.approx(1.0, abs=0.02)
    for k, c in enumerate(tl.cycles):
        assert c.t_s == pytest.approx(k * 0.1, abs=0.05)  # on its slot, not drifting
        assert c.skipped_slots == 0
        assert c.wall == pytest.approx(tl.wall_t0 + c.t_s)
    last = tl.cycles[-1]
    assert last.sample(f"app/tcp/{port}").state == State.UP
    refused = last.sample(f"app/tcp/{closed_tcp_port[1]}")
    assert refused.state == State.DOWN and refused.error == "refused"
    assert last.sample("leased-a").state == State.UP  # 127.0.0.2 answers ICMP
    assert last.sample("app").rtt_ms is not None and last.sample("app").rtt_ms < 50
    # Loopback has no carrier hop: the path stays unknown rather than guessed.
    assert all(r.line is None for c in tl.cycles for r in c.routes)


def test_an_overrunning_cycle_skips_slots_instead_of_queueing(tmp_path, listening,
                                                             closed_tcp_port, silent_dns):
    topo = load_topology(str(write_config(tmp_path, listening.getsockname()[1],
                                          closed_tcp_port[1], dns=True)))
    # The DNS probe waits its full 250 ms timeout for a server that never answers:
    # each cycle outlasts the 100 ms interval.
    opts = WatchOptions(interval_s=0.1, duration_s=1.2, probe_timeout_s=0.25)
    tl = asyncio.run(run_watch(topo, opts))
    assert 3 <= len(tl.cycles) <= 5
    for a, b in zip(tl.cycles, tl.cycles[1:], strict=False):
        assert a.duration_s > 0.2
        assert a.skipped_slots >= 2
        assert a.t_s + a.duration_s <= b.t_s + 1e-6  # never overlapping
        # the next one starts on the first free slot of the grid
        assert b.t_s == pytest.approx(round(b.t_s / 0.1) * 0.1, abs=0.04)
    assert tl.cycles[0].sample("app/dns").state == State.DOWN
    from netprobe.watch.timeline import EventKind, build_events

    slow = [e for e in build_events(tl) if e.kind == EventKind.SLOW_CYCLE]
    assert len(slow) >= 2 and "not queued" in slow[0].text


def test_until_stable_stops_once_the_network_settles(tmp_path, listening, closed_tcp_port):
    port = listening.getsockname()[1]
    topo = load_topology(str(write_config(tmp_path, port, closed_tcp_port[1])))
    opts = WatchOptions(interval_s=0.1, duration_s=10.0, until_stable=True, settle_s=0.6)

    async def main():
        asyncio.get_running_loop().call_later(0.45, listening.close)  # the service fails
        return await run_watch(topo, opts)

    tl = asyncio.run(main())
    assert tl.ended_by == "stable"
    # one change near 0.5 s, then 0.6 s of calm: well before the 10 s bound
    assert 1.0 <= tl.t_end_s <= 2.0
    states = [c.sample(f"app/tcp/{port}").state for c in tl.cycles]
    assert states[0] == State.UP and states[-1] == State.DOWN


def test_until_stable_without_any_change_runs_to_the_duration(tmp_path, listening,
                                                             closed_tcp_port):
    topo = load_topology(str(write_config(tmp_path, listening.getsockname()[1],
                                          closed_tcp_port[1])))
    opts = WatchOptions(interval_s=0.1, duration_s=0.8, until_stable=True, settle_s=0.2)
    tl = asyncio.run(run_watch(topo, opts))
    assert tl.ended_by == "duration"


def test_stop_ends_the_drill_and_keeps_what_was_measured(tmp_path, listening, closed_tcp_port):
    topo = load_topology(str(write_config(tmp_path, listening.getsockname()[1],
                                          closed_tcp_port[1])))

    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.35, stop.set)
        return await run_watch(topo, WatchOptions(interval_s=0.1, duration_s=30), stop=stop)

    tl = asyncio.run(main())
    assert tl.ended_by == "interrupted"
    assert 3 <= len(tl.cycles) <= 5
    assert tl.t_end_s < 1.0


def test_watch_command_writes_json_svg_html_and_exits_like_check(tmp_path, listening,
                                                                 closed_tcp_port, capsys):
    config = write_config(tmp_path, listening.getsockname()[1], closed_tcp_port[1])
    outs = [tmp_path / "drill.json", tmp_path / "drill.svg", tmp_path / "drill.html"]
    code = watch_command(config, interval_s=0.1, duration_s=0.6, outputs=outs, live=False)
    # the closed port is a service down at the end: CRITICAL, as `check` says
    assert code == 2
    data = json.loads(outs[0].read_text(encoding="utf-8"))
    assert data["schema"] == "netprobe.drill/1" and data["exit_code"] == 2
    assert data["groups"][0]["verdict"] == "steady"
    assert len(data["timeline"]["cycles"]) >= 5
    assert outs[1].read_text(encoding="utf-8").startswith("<svg")
    assert "<svg" in outs[2].read_text(encoding="utf-8")
    out = capsys.readouterr().out
    assert out.startswith("watching 6 probes and 1 group(s) every 100 ms")
    assert f"app/tcp/{closed_tcp_port[1]} stopped answering (refused)" in out
    assert "CRITICAL (exit 2)" in out
    assert not list(tmp_path.glob(".drill*"))  # no temporary files left behind


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"outputs": ["drill.txt"]}, "unknown extension .txt"),
    ({"outputs": ["/nonexistent-dir/drill.json"]}, "does not exist"),
    ({"interval_s": 0.001}, "--interval"),
    ({"duration_s": 0.05}, "--duration"),
    ({"fail_on": "sometimes"}, "--fail-on"),
])
def test_bad_options_are_refused_before_any_packet(tmp_path, kwargs, message):
    config = tmp_path / "never-read.yaml"  # refused before the config is even read
    with pytest.raises(NetprobeError, match=message):
        watch_command(config, **kwargs)


# -- the hop check ------------------------------------------------------------------

def test_parse_icmp_matches_echo_replies_and_errors_quoting_our_request():
    request = echo_request(False, 0x1234, 7)
    reply = bytes([0, 0]) + request[2:]
    assert parse_icmp(False, reply) == ("echo_reply", 0x1234, 7)
    inner_ip = bytes([0x45]) + bytes(19)  # a minimal IPv4 header, IHL 5
    exceeded = struct.pack("!BBHI", 11, 0, 0, 0) + inner_ip + request[:8]
    assert parse_icmp(False, exceeded) == ("time_exceeded", 0x1234, 7)
    unreachable = struct.pack("!BBHI", 3, 1, 0, 0) + inner_ip + request[:8]
    assert parse_icmp(False, unreachable) == ("unreachable", 0x1234, 7)
    # an error about someone's UDP datagram is not ours
    udp_inner = inner_ip + struct.pack("!HHHH", 1234, 33434, 8, 0)
    assert parse_icmp(False, struct.pack("!BBHI", 11, 0, 0, 0) + udp_inner) is None
    assert parse_icmp(False, b"\x00\x00") is None
    v6_request = echo_request(True, 9, 65535)
    v6_exceeded = struct.pack("!BBHI", 3, 0, 0, 0) + bytes(40) + v6_request[:8]
    assert parse_icmp(True, v6_exceeded) == ("time_exceeded", 9, 65535)


def test_ipv4_echo_request_checksum_is_valid():
    from netprobe.packets import inet_checksum as _checksum

    assert _checksum(echo_request(False, 4321, 99)) == 0


def test_pick_line_takes_the_lowest_hop_that_belongs_to_a_line():
    answers = [HopAnswer(3, "echo_reply", "203.0.113.10"),
               HopAnswer(1, "time_exceeded", "192.0.2.1"),
               HopAnswer(2, "time_exceeded", "198.51.100.5")]
    hops = {"leased-a": ["198.51.100.1"], "broadband-b": ["198.51.100.5"]}
    line, answer = pick_line(answers, hops)
    assert line == "broadband-b" and answer.ttl == 2
    assert pick_line([HopAnswer(2, "none")], hops) == (None, None)


@pytest.mark.root
def test_raw_hop_check_gets_an_echo_reply_from_loopback():
    async def main():
        checker = HopChecker(raw=True)
        assert checker.preflight() is None
        try:
            return await checker.probe("127.0.0.1", [1, 2], timeout_s=1.0)
        finally:
            checker.close()

    answers = asyncio.run(main())
    assert [(a.ttl, a.kind, a.source) for a in answers] == \
        [(1, "echo_reply", "127.0.0.1"), (2, "echo_reply", "127.0.0.1")]
    assert all(a.rtt_ms is not None and a.rtt_ms < 100 for a in answers)


@pytest.fixture()
def own_netns():
    """A namespace `npw-<pid>-hop` with lo up, always deleted afterwards."""
    if shutil.which("ip") is None:
        pytest.skip("needs the `ip` command (iproute2)")
    name = f"npw-{os.getpid()}-hop"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@pytest.mark.root
def test_unprivileged_hop_check_works_where_ping_sockets_are_allowed(own_netns):
    """In a namespace of our own whose ping_group_range admits us, the datagram
    socket path (no raw socket) gets its echo replies too."""
    ns = own_netns
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                    "net.ipv4.ping_group_range=0 2147483647"], check=True)
    code = ("import asyncio, sys\n"
            "from netprobe.watch.hopcheck import HopChecker\n"
            "async def main():\n"
            "    c = HopChecker(raw=False)\n"
            "    assert c.preflight() is None, c.preflight()\n"
            "    try:\n"
            "        return await c.probe('127.0.0.1', [1, 3], 1.0)\n"
            "    finally:\n"
            "        c.close()\n"
            "print([(a.ttl, a.kind, a.source) for a in asyncio.run(main())])\n")
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[(1, 'echo_reply', '127.0.0.1'), (3, 'echo_reply', '127.0.0.1')]"


def test_cli_watch_runs_the_drill_and_refuses_bad_input_with_exit_3(tmp_path, listening,
                                                                    closed_tcp_port):
    config = write_config(tmp_path, listening.getsockname()[1], closed_tcp_port[1])
    out = tmp_path / "drill.json"
    run = subprocess.run([sys.executable, "-m", "netprobe", "watch", str(config), "--interval",
                          "100ms", "--duration", "500ms", "--fail-on", "critical", "-o", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr  # a service down is critical
    assert json.loads(out.read_text(encoding="utf-8"))["fail_on"] == "critical"
    bad = subprocess.run([sys.executable, "-m", "netprobe", "watch", str(config), "--interval",
                          "soon"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3
    assert "--interval soon" in bad.stderr and "Traceback" not in bad.stderr
