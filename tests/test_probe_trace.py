"""The trace probe, on loopback and on a small chain of namespaces of its own.

    h0 192.0.2.2 ── 192.0.2.1 r1 198.51.100.1 ── 198.51.100.2 r2 203.0.113.1 ── 203.0.113.2 dst
       2001:db8:a::2   2001:db8:a::1  2001:db8:b::1   2001:db8:b::2  2001:db8:c::1   2001:db8:c::2

Namespaces are named `nptr<pid>-*` and removed after each test, even when it
fails. Packets go only to loopback or to these namespaces.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from netprobe.evidence import ProbeError, ProbeResult
from netprobe.lab import system
from netprobe.lab.netns import list_netns
from netprobe.lab.system import run_in_netns
from netprobe.probes import get_probe
from netprobe.probes.interface import ProbeContext, ProbeTask
from netprobe.probes.trace import PROBE

PREFIX = f"nptr{os.getpid()}"
R1_IN, R1_OUT, R2_IN, R2_OUT, DST = (
    "192.0.2.1", "198.51.100.1", "198.51.100.2", "203.0.113.1", "203.0.113.2")
R1_IN6, R2_IN6, DST6 = "2001:db8:a::1", "2001:db8:b::2", "2001:db8:c::2"


def trace_task(address: str, protocol: str = "icmp", port: int | None = None,
               timeout_s: float = 1.0, max_hops: int = 8, **params) -> ProbeTask:
    return ProbeTask(id="dst/trace", kind="trace", target="dst", address=address, port=port,
                     attempts=1, timeout_s=timeout_s,
                     params={"protocol": protocol, "max_hops": max_hops, **params})


def run_trace(task: ProbeTask, netns: str | None = None) -> ProbeResult:
    async def go() -> ProbeResult:
        ctx = ProbeContext()
        try:
            return await PROBE.run(task, ctx)
        finally:
            await ctx.aclose()

    if netns is None:
        return asyncio.run(go())
    return run_in_netns(netns, asyncio.run, go())


def hop_addresses(result: ProbeResult) -> list[str | None]:
    return [h["address"] for h in result.detail["hops"]]


# -- no packets needed -----------------------------------------------------------

def test_registered_under_its_kind():
    assert get_probe("trace") is PROBE
    assert PROBE.kind == "trace"


def test_a_name_instead_of_an_address_is_not_measured_rather_than_failed():
    result = run_trace(trace_task("dst.example"))
    assert result.error == ProbeError.RESOLVE
    assert not result.measured


def test_preflight_names_the_fix_without_raw_sockets():
    """Without CAP_NET_RAW the preflight says what to do (and sends nothing). As root,
    the capability is taken away from a child process with setpriv."""
    code = "from netprobe.probes.trace import PROBE\nprint(PROBE.preflight([]))\n"
    argv = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv (util-linux) to drop CAP_NET_RAW as root")
        argv = ["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    message = proc.stdout.strip()
    assert "root" in message and "setcap cap_net_raw+ep" in message


@pytest.mark.root
def test_preflight_passes_as_root():
    assert PROBE.preflight([trace_task("127.0.0.1")]) is None


@pytest.mark.root
def test_loopback_destination_is_the_first_hop():
    result = run_trace(trace_task("127.0.0.1", "icmp", timeout_s=1.0))
    assert result.reached is True and result.error is None
    assert hop_addresses(result) == ["127.0.0.1"]
    assert result.sent == 1 and len(result.rtts_ms) == 1
    assert result.detail["destination_reached"] is True


# -- a chain of namespaces ----------------------------------------------------------

@dataclass(frozen=True)
class Chain:
    h0: str
    r1: str
    r2: str
    dst: str


def _remove_stale() -> None:
    """Chains left by a test run that was killed (its pid is gone)."""
    for name in list_netns():
        m = re.match(r"^nptr(\d+)-", name)
        if m and int(m.group(1)) != os.getpid() and not os.path.exists(f"/proc/{m.group(1)}"):
            system.ip("netns", "del", name, check=False)


def _remove(prefix: str) -> None:
    for name in list_netns(prefix):
        for pid in system.netns_pids(name):
            system.kill_pid(pid)
        system.ip("netns", "del", name, check=False)


@pytest.fixture()
def chain() -> Iterator[Chain]:
    if os.geteuid() != 0:
        pytest.skip("needs root (euid 0) for network namespaces")
    if system.missing_tools():
        pytest.skip(f"needs {', '.join(system.missing_tools())}")
    _remove_stale()
    c = Chain(*(f"{PREFIX}-{r}" for r in ("h0", "r1", "r2", "dst")))
    try:
        for ns in (c.h0, c.r1, c.r2, c.dst):
            system.ip("netns", "add", ns)
            system.set_sysctls(ns, [("net.ipv4.icmp_ratelimit", "0"),
                                    ("net.ipv4.icmp_msgs_per_sec", "100000"),
                                    ("net.ipv4.icmp_msgs_burst", "100000"),
                                    ("net.ipv4.ip_forward", "1"),
                                    ("net.ipv6.icmp.ratelimit", "0"),
                                    ("net.ipv6.conf.all.forwarding", "1"),
                                    ("net.ipv6.conf.default.accept_dad", "0")])
        for a, a_if, b, b_if in ((c.h0, "eth0", c.r1, "in0"), (c.r1, "out0", c.r2, "in0"),
                                 (c.r2, "out0", c.dst, "eth0")):
            system.ip("link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if,
                      "netns", b)
        system.ip_batch(c.h0, ["link set lo up", "address add 192.0.2.2/30 dev eth0",
                               "address add 2001:db8:a::2/64 dev eth0 nodad",
                               "link set eth0 up", f"route add default via {R1_IN}",
                               f"route add ::/0 via {R1_IN6}"])
        system.ip_batch(c.r1, ["link set lo up", f"address add {R1_IN}/30 dev in0",
                               f"address add {R1_OUT}/30 dev out0",
                               f"address add {R1_IN6}/64 dev in0 nodad",
                               "address add 2001:db8:b::1/64 dev out0 nodad", "link set in0 up",
                               "link set out0 up", f"route add 203.0.113.0/24 via {R2_IN}",
                               f"route add 2001:db8:c::/48 via {R2_IN6}"])
        system.ip_batch(c.r2, ["link set lo up", f"address add {R2_IN}/30 dev in0",
                               f"address add {R2_OUT}/30 dev out0",
                               f"address add {R2_IN6}/64 dev in0 nodad",
                               "address add 2001:db8:c::1/64 dev out0 nodad", "link set in0 up",
                               "link set out0 up", f"route add 192.0.2.0/30 via {R1_OUT}",
                               "route add 2001:db8:a::/64 via 2001:db8:b::1"])
        system.ip_batch(c.dst, ["link set lo up", f"address add {DST}/30 dev eth0",
                                f"address add {DST6}/64 dev eth0 nodad",
                                "link set eth0 up", f"route add default via {R2_OUT}",
                                "route add ::/0 via 2001:db8:c::1"])
        _resolve_ipv6_neighbours(c)
        yield c
    finally:
        _remove(PREFIX)


def _resolve_ipv6_neighbours(chain: Chain) -> None:
    """Wait (at most 5 s) until IPv6 works end to end: a fresh namespace drops
    the first packets while its neighbour discovery settles. A datagram to a
    closed port comes back as port unreachable (ECONNREFUSED) once it does."""
    def ready() -> bool:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.settimeout(0.1)
            s.connect((DST6, 9))
            for _ in range(50):
                try:
                    s.send(b"x")
                    s.recv(16)
                except ConnectionRefusedError:
                    return True
                except (TimeoutError, OSError):
                    continue
        return False
    assert run_in_netns(chain.h0, ready), "IPv6 never worked end to end in the chain"


@pytest.fixture()
def listening_port(chain: Chain) -> Iterator[int]:
    """A TCP socket listening on the destination (the kernel answers SYNs)."""
    def listen() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((DST, 0))
        s.listen(16)
        return s

    sock = run_in_netns(chain.dst, listen)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.mark.root
def test_icmp_trace_shows_the_routers_in_order(chain: Chain):
    result = run_trace(trace_task(DST, "icmp"), chain.h0)
    assert result.reached is True and result.error is None
    assert hop_addresses(result) == [R1_IN, R2_IN, DST]
    assert [h["ttl"] for h in result.detail["hops"]] == [1, 2, 3]
    assert all(h["rtt_ms"] is not None and 0 <= h["rtt_ms"] < 1000
               for h in result.detail["hops"])
    assert result.rtts_ms[0] == pytest.approx(result.detail["hops"][-1]["rtt_ms"], abs=0.001)
    assert result.detail["source"] == "192.0.2.2"


@pytest.mark.root
@pytest.mark.parametrize("protocol", ["icmp", "tcp", "udp"])
def test_ipv6_trace_shows_the_routers_in_order(chain: Chain, protocol: str):
    port = {"tcp": 9, "udp": 33434, "icmp": None}[protocol]  # tcp: a RST answers too
    result = run_trace(trace_task(DST6, protocol, port), chain.h0)
    assert result.reached is True and result.error is None, result.message
    assert hop_addresses(result) == [R1_IN6, R2_IN6, DST6]
    assert result.detail["family"] == "ipv6"
    assert result.detail["source"] == "2001:db8:a::2"
    assert all(h["rtt_ms"] is not None for h in result.detail["hops"])


@pytest.mark.root
def test_ipv6_router_without_a_route_answers_unreachable(chain: Chain):
    result = run_trace(trace_task("2001:db8:c:9::1", "icmp", timeout_s=0.5, retries=0), chain.h0)
    assert result.error == ProbeError.UNREACHABLE
    assert hop_addresses(result) == [R1_IN6, R2_IN6]
    [notice] = result.notices
    assert (notice.source, notice.type) == (R2_IN6, 1)
    assert notice.description.startswith("ICMPv6")


@pytest.mark.root
def test_tcp_trace_reaches_an_open_port(chain: Chain, listening_port: int):
    result = run_trace(trace_task(DST, "tcp", listening_port), chain.h0)
    assert result.reached is True
    assert hop_addresses(result) == [R1_IN, R2_IN, DST]
    assert result.detail["protocol"] == "tcp" and result.detail["port"] == listening_port


@pytest.mark.root
def test_tcp_trace_to_a_closed_port_still_reaches_the_host(chain: Chain):
    """A RST is the destination answering: the path is proven even if the port is shut."""
    result = run_trace(trace_task(DST, "tcp", 9), chain.h0)
    assert result.reached is True
    assert hop_addresses(result)[-1] == DST


@pytest.mark.root
def test_udp_trace_ends_with_port_unreachable_from_the_destination(chain: Chain):
    result = run_trace(trace_task(DST, "udp", 33434), chain.h0)
    assert result.reached is True
    assert hop_addresses(result) == [R1_IN, R2_IN, DST]


@pytest.mark.root
def test_silent_router_is_a_gap_not_the_end(chain: Chain):
    system.nft_apply(chain.r2, """table inet quiet {
        chain out { type filter hook output priority 0; icmp type time-exceeded drop; }
    }""")
    result = run_trace(trace_task(DST, "icmp", timeout_s=0.5), chain.h0)
    assert result.reached is True
    assert hop_addresses(result) == [R1_IN, None, DST]
    assert result.detail["hops"][1]["rtt_ms"] is None
    # asked again (a rate limit would have refilled), and it stayed silent
    assert result.detail["retried"] == [2] and result.detail["silent"] == [2]
    assert result.detail["hops"][1]["retried"] is True
    assert result.detail["packets_sent"] == 8 * 2 + 2  # the burst, then one per round


def _spend_icmp_budget(chain: Chain, count: int = 10) -> None:
    """Make r2 send `count` errors to h0 (UDP to an address r2 has no route for),
    so its per-destination ICMP budget is empty."""
    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(count):
                s.sendto(b"x", ("203.0.113.9", 9))
    run_in_netns(chain.h0, send)
    time.sleep(0.1)  # the errors are on their way back


@pytest.mark.root
def test_rate_limited_router_is_heard_on_a_retry(chain: Chain):
    # r2 limits its ICMP errors as Linux does by default: a burst of 6 per
    # destination, then one a second. Spent, it has nothing for the first burst.
    system.set_sysctls(chain.r2, [("net.ipv4.icmp_ratelimit", "1000")])
    _spend_icmp_budget(chain)
    without = run_trace(trace_task(DST, "icmp", timeout_s=0.5, queries=1, retries=0), chain.h0)
    assert hop_addresses(without) == [R1_IN, None, DST]
    assert "retried" not in without.detail
    _spend_icmp_budget(chain)
    t0 = time.monotonic()
    result = run_trace(trace_task(DST, "icmp", timeout_s=0.5, queries=1), chain.h0)
    elapsed_s = time.monotonic() - t0
    assert hop_addresses(result) == [R1_IN, R2_IN, DST]
    assert result.detail["retried"] == [2] and result.detail["silent"] == []
    assert result.detail["hops"][1]["retried"] is True
    assert result.detail["hops"][0].get("retried") is None
    # one round was enough: back-off, one packet, its answer; not a second round
    assert elapsed_s < 0.5 + 1.1 + 0.5 + 1.0


@pytest.mark.root
def test_router_without_a_route_answers_unreachable(chain: Chain):
    result = run_trace(trace_task("203.0.113.9", "icmp", timeout_s=0.5), chain.h0)
    assert result.reached is False
    assert result.error == ProbeError.UNREACHABLE
    assert hop_addresses(result) == [R1_IN, R2_IN]
    assert [(n.source, n.type, n.code) for n in result.notices] == [(R2_IN, 3, 0)]
    assert result.outcome.value == "failed"


@pytest.mark.root
def test_silent_destination_times_out_after_the_last_router(chain: Chain):
    system.nft_apply(chain.dst, """table inet deaf {
        chain in { type filter hook input priority 0; policy drop; }
    }""")
    t0 = time.monotonic()
    result = run_trace(trace_task(DST, "tcp", 443, timeout_s=0.5), chain.h0)
    elapsed_s = time.monotonic() - t0
    assert result.reached is False and result.error == ProbeError.TIMEOUT
    assert hop_addresses(result) == [R1_IN, R2_IN]
    assert "198.51.100.2 at hop 2" in (result.message or "")
    # waited for the timeout and two retry rounds of the hops past the last
    # answer (a rate-limited router looks the same at first), not much longer
    assert elapsed_s < 0.5 + 2 * (1.1 + 0.5) + 2.0
    assert result.detail["retried"] == [3, 4] and result.detail["silent"] == [3, 4]
    assert result.sent == 1 and result.rtts_ms == ()


@pytest.mark.root
def test_finishes_early_once_the_path_is_complete(chain: Chain):
    t0 = time.monotonic()
    result = run_trace(trace_task(DST, "icmp", timeout_s=3.0), chain.h0)
    assert result.reached is True
    assert time.monotonic() - t0 < 2.5  # did not sit out the 3 s timeout


@pytest.mark.root
def test_max_hops_bounds_the_trace(chain: Chain):
    result = run_trace(trace_task(DST, "icmp", timeout_s=0.5, max_hops=2), chain.h0)
    assert result.reached is False
    assert hop_addresses(result) == [R1_IN, R2_IN]
    assert result.detail["packets_sent"] == 2 * result.detail["queries"]


@pytest.mark.root
def test_one_lost_packet_does_not_hide_a_hop(chain: Chain):
    """Two queries per TTL: r1 drops every other forwarded packet, yet hop 2 shows."""
    system.nft_apply(chain.r1, """table inet lossy {
        chain relay { type filter hook forward priority 0; iifname "in0" numgen inc mod 2 == 0 drop; }
    }""")
    result = run_trace(trace_task(DST, "icmp", timeout_s=0.5, queries=2), chain.h0)
    assert hop_addresses(result) == [R1_IN, R2_IN, DST]


@pytest.mark.root
def test_concurrent_traces_do_not_mix_their_answers(chain: Chain, listening_port: int):
    tasks = [trace_task(DST, "icmp"), trace_task(DST, "tcp", listening_port),
             trace_task(DST, "udp", 33434), trace_task(R2_IN, "icmp")]

    async def together() -> list[ProbeResult]:
        ctx = ProbeContext()
        try:
            return list(await asyncio.gather(*(PROBE.run(t, ctx) for t in tasks)))
        finally:
            await ctx.aclose()

    results = run_in_netns(chain.h0, asyncio.run, together())
    assert [hop_addresses(r) for r in results] == [
        [R1_IN, R2_IN, DST], [R1_IN, R2_IN, DST], [R1_IN, R2_IN, DST], [R1_IN, R2_IN]]
    assert all(r.reached for r in results)


@pytest.mark.root
def test_no_route_on_our_own_host_is_reported_as_such(chain: Chain):
    system.ip("-n", chain.h0, "route", "del", "default")
    result = run_trace(trace_task(DST, "icmp", timeout_s=0.5), chain.h0)
    assert result.error == ProbeError.NO_ROUTE
    assert result.reached is False and not result.measured  # nothing left this host



@pytest.mark.root
@pytest.mark.parametrize(("target", "expected"), [
    (DST, [(1, "time_exceeded", R1_IN), (2, "time_exceeded", R2_IN), (3, "echo_reply", DST)]),
    (DST6, [(1, "time_exceeded", R1_IN6), (2, "time_exceeded", R2_IN6),
            (3, "echo_reply", DST6)]),
])
def test_the_drills_hop_check_sees_each_router_over_both_families(chain: Chain, target: str,
                                                                  expected: list):
    """`watch` tells the active line with TTL-limited echo requests: the same
    chain answers them hop by hop over IPv4 and IPv6."""
    from netprobe.watch.hopcheck import HopChecker

    async def main():
        checker = HopChecker(raw=True)
        try:
            return await checker.probe(target, [1, 2, 3], timeout_s=1.0)
        finally:
            checker.close()

    answers = run_in_netns(chain.h0, asyncio.run, main())
    assert [(a.ttl, a.kind, a.source) for a in answers] == expected
