"""The ICMP probe against real packets: loopback, and a namespace lab.

The lab (module-scoped, built only when a test needs it) is three namespaces
joined by veth pairs:

    src 198.18.0.1 ── 198.18.0.2 rtr 198.18.0.5 ── 198.18.0.6 tgt
        2001:db8:1::1    2001:db8:1::2 / 2001:db8:2::1   2001:db8:2::2

- tgt answers for 198.18.16.0/20 and 2001:db8:10::/48 (AnyIP routes on lo);
  nftables in tgt drops 198.18.24.0/21 and 2001:db8:10:1::/64 (dead
  addresses) and rewrites the source of the reply from 198.18.17.1 (a reply
  from an address we did not ask);
- rtr has `unreachable` routes for 198.18.9.0/24 and 2001:db8:9::/48, and a
  routing loop with tgt for 198.18.8.0/24 and 2001:db8:8::/48 (time exceeded);
- rtr routes 198.18.7.0/24 and 2001:db8:7::/48 via a next hop nobody owns (a
  device powered off): it answers "host unreachable" only when address
  resolution gives up, about 3 s later (late errors).

Tests run the probe inside src by switching this thread's network namespace
(setns) around `asyncio.run`; unprivileged tests run a child process as
`nobody`. Every namespace is named `npb-t<pid>-*` and is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from netprobe.evidence import ProbeError, ProbeResult
from netprobe.probes import get_probe
from netprobe.probes.icmp import PROBE, describe, permission_message
from netprobe.probes.interface import ProbeContext, ProbeTask, RateLimiter

IS_ROOT = os.geteuid() == 0
HAS_IP = shutil.which("ip") is not None
HAS_NFT = shutil.which("nft") is not None
HAS_SETPRIV = shutil.which("setpriv") is not None

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (raw ICMP sockets)")
needs_netns = pytest.mark.skipif(
    not (IS_ROOT and HAS_IP),
    reason="needs root and iproute2 `ip` (network namespaces)" if IS_ROOT
    else "needs root (network namespaces)")
needs_lab = pytest.mark.skipif(
    not (IS_ROOT and HAS_IP and HAS_NFT),
    reason="needs root, iproute2 `ip` and nftables `nft` (namespace lab)")
needs_setpriv = pytest.mark.skipif(not HAS_SETPRIV,
                                   reason="needs util-linux `setpriv` to drop to nobody")

PREFIX = f"npb-t{os.getpid()}"
CLONE_NEWNET = 0x40000000


# -- helpers -------------------------------------------------------------------
def task(address: str, *, attempts: int = 3, timeout_s: float = 0.5,
         interval_s: float = 0.05, name: str | None = None,
         late_grace_s: float = 0.0) -> ProbeTask:
    name = name or address
    return ProbeTask(id=f"{name}/icmp", kind="icmp", target=name, address=address,
                     attempts=attempts, timeout_s=timeout_s, interval_s=interval_s,
                     late_grace_s=late_grace_s)


async def run_all(tasks: list[ProbeTask], ctx: ProbeContext | None = None,
                  presend: bool = False) -> list[ProbeResult]:
    """Each task's `run`; with `presend`, after the burst of first attempts that
    the executor sends first when the rate is unlimited."""
    own = ctx is None
    ctx = ctx or ProbeContext(RateLimiter(0))
    try:
        if presend:
            await PROBE.presend(tasks, ctx)
        return list(await asyncio.gather(*(PROBE.run(t, ctx) for t in tasks)))
    finally:
        if own:
            await ctx.aclose()


def sh(*args: str, check: bool = True, input: str | None = None) -> str:
    out = subprocess.run(list(args), capture_output=True, text=True, input=input, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """Run this thread inside `netns`; sockets opened meanwhile stay there."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def run_in(netns: str, tasks: list[ProbeTask], presend: bool = False) -> list[ProbeResult]:
    with inside(netns):
        return asyncio.run(run_all(tasks, presend=presend))


# `run` alone, and `run` after `presend` sent the first attempts: the same results
SENDING = pytest.mark.parametrize("presend", [False, True], ids=["run", "presend"])


def delete_netns(*names: str) -> None:
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


# The child run as `nobody`: preflight, then (when allowed) run, as JSON.
CHILD = r"""
import asyncio, json, sys
from netprobe.probes.icmp import PROBE
from netprobe.probes.interface import ProbeContext, ProbeTask

async def main():
    tasks = [ProbeTask(id=a + "/icmp", kind="icmp", target=a, address=a, attempts=2,
                       timeout_s=0.5, interval_s=0.05) for a in sys.argv[1:]]
    out = {"preflight": PROBE.preflight(tasks), "results": []}
    ctx = ProbeContext()
    try:
        out["results"] = [r.to_json() for r in
                          await asyncio.gather(*(PROBE.run(t, ctx) for t in tasks))]
    finally:
        await ctx.aclose()
    print(json.dumps(out))

asyncio.run(main())
"""


def run_as_nobody(netns: str, *addresses: str) -> dict:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "setpriv", "--reuid=nobody", "--regid=nogroup",
         "--clear-groups", sys.executable, "-c", CHILD, *addresses],
        capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def lo_tx_packets(netns: str) -> int:
    return int(sh("ip", "netns", "exec", netns, "cat", "/sys/class/net/lo/statistics/tx_packets"))


# -- pure parts ----------------------------------------------------------------
def test_registered_under_its_kind() -> None:
    assert get_probe("icmp") is PROBE
    assert PROBE.kind == "icmp"


def test_describe_uses_icmp_wording() -> None:
    assert describe(4, 3, 1) == "ICMP host-unreachable"
    assert describe(4, 11, 0) == "ICMP ttl-exceeded"
    assert describe(6, 1, 0) == "ICMPv6 no-route"
    assert describe(6, 3, 0) == "ICMPv6 hop-limit-exceeded"


def test_permission_message_names_every_fix() -> None:
    message = permission_message()
    assert "root" in message
    assert "setcap cap_net_raw+ep" in message
    # the capability goes on a dedicated copy, never on the system-wide interpreter
    assert f"setcap cap_net_raw+ep {os.path.realpath(sys.executable)}" not in message
    assert "python-netraw" in message
    assert 'net.ipv4.ping_group_range="0 2147483647"' in message
    assert "\n" not in message  # one paragraph


def test_not_an_address_is_not_measured() -> None:
    [result] = asyncio.run(run_all([task("not-an-address.example")]))
    assert result.error is ProbeError.RESOLVE
    assert result.sent == 0
    assert not result.measured


# -- loopback --------------------------------------------------------------------
@pytest.mark.root
@needs_root
def test_preflight_passes_as_root() -> None:
    assert PROBE.preflight([task("127.0.0.1"), task("::1")]) is None


@pytest.mark.root
@needs_root
@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_loopback_replies(address: str) -> None:
    [result] = asyncio.run(run_all([task(address, attempts=3, interval_s=0.02)]))
    assert result.error is None, result.message
    assert result.sent == 3
    assert result.received == 3
    assert result.loss_ratio == 0.0
    assert result.reached is True
    assert all(0 < rtt < 500 for rtt in result.rtts_ms)
    assert result.notices == ()
    assert result.started_at is not None and abs(result.started_at - time.time()) < 10
    # 3 attempts 20 ms apart, replies in microseconds: no timeout is waited for
    assert result.duration_s is not None and 0.035 < result.duration_s < 0.4


@pytest.mark.root
@needs_root
def test_many_probes_share_one_socket_per_family() -> None:
    async def scenario() -> tuple[list[ProbeResult], set[int]]:
        ctx = ProbeContext(RateLimiter(0))
        tasks = ([task(f"127.0.0.{i}", attempts=2, interval_s=0.01) for i in range(1, 201)]
                 + [task("::1", attempts=2, interval_s=0.01, name=f"v6-{i}") for i in range(50)])
        try:
            results = await run_all(tasks, ctx)
            engines = ctx.resources["icmp"].by_family
            return results, {engine.sock.fileno() for engine in engines.values()}
        finally:
            await ctx.aclose()

    results, fds = asyncio.run(scenario())
    assert len(fds) == 2  # one IPv4 socket and one IPv6 socket, for 250 probes
    # 50 probes to ::1 at once: each counts its own replies only, never another's
    assert [(r.sent, r.received) for r in results] == [(2, 2)] * 250


@pytest.mark.root
@needs_root
def test_rate_limiter_paces_every_packet() -> None:
    # 20 packets at 100 pps with a burst of 10: at least ~0.1 s
    async def scenario() -> float:
        ctx = ProbeContext(RateLimiter(100))
        t0 = time.perf_counter()
        try:
            await run_all([task(f"127.0.0.{i}", attempts=2, interval_s=0.0) for i in range(1, 11)],
                          ctx)
        finally:
            await ctx.aclose()
        return time.perf_counter() - t0

    assert asyncio.run(scenario()) >= 0.09


@pytest.mark.root
@needs_root
def test_reply_read_late_counts_with_its_arrival_time() -> None:
    # The event loop is blocked for 0.4 s right after the send: the reply waits
    # in our socket longer than the 0.2 s timeout, but it arrived in time, and
    # the kernel's arrival stamp says so.
    async def scenario() -> ProbeResult:
        ctx = ProbeContext(RateLimiter(0))
        try:
            await run_all([task("127.0.0.1", attempts=1)], ctx)  # socket open, stamps on
            await asyncio.sleep(0.05)  # the kernel turns arrival stamps on lazily
            probe = asyncio.ensure_future(PROBE.run(task("127.0.0.1", attempts=1,
                                                         timeout_s=0.2), ctx))
            await asyncio.sleep(0)  # the probe sends
            time.sleep(0.4)  # a stalled loop (a long GC pause, a busy host)
            return await probe
        finally:
            await ctx.aclose()

    result = asyncio.run(scenario())
    assert result.error is None, result.message
    assert result.received == 1
    assert result.rtts_ms[0] < 100  # not the 400 ms it sat in our queue


@pytest.mark.root
@needs_root
def test_sequence_numbers_wrap_without_reusing_one_in_flight() -> None:
    async def scenario() -> tuple[list[ProbeResult], int]:
        ctx = ProbeContext(RateLimiter(0))
        try:
            await run_all([task("127.0.0.1", attempts=1)], ctx)  # opens the socket
            engine = ctx.resources["icmp"].by_family[socket.AF_INET]
            engine._next_seq = 65530
            results = await run_all(
                [task(f"127.0.0.{i}", attempts=3, interval_s=0.01) for i in range(1, 11)], ctx)
            return results, engine._next_seq
        finally:
            await ctx.aclose()

    results, next_seq = asyncio.run(scenario())
    assert next_seq < 65530  # it did wrap past 65535
    assert all(r.received == 3 and r.error is None for r in results)


# -- the namespace lab -------------------------------------------------------------
LAB_SRC, LAB_RTR, LAB_TGT = f"{PREFIX}-src", f"{PREFIX}-rtr", f"{PREFIX}-tgt"
MAC = {"s0": "02:4e:50:00:00:01", "r0": "02:4e:50:00:00:02",
       "r1": "02:4e:50:00:00:03", "t0": "02:4e:50:00:00:04"}

NFT_TGT = """
table inet npb {
  chain input {
    type filter hook input priority 0;
    ip daddr 198.18.24.0/21 drop
    ip6 daddr 2001:db8:10:1::/64 drop
  }
  chain output {
    type filter hook output priority 0;
    ip saddr 198.18.17.1 icmp type echo-reply ip saddr set 198.18.17.99
  }
}
"""


def build_lab() -> None:
    S, R, T = LAB_SRC, LAB_RTR, LAB_TGT
    for ns in (S, R, T):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", "s0", "address", MAC["s0"], "netns", S, "type", "veth",
       "peer", "r0", "address", MAC["r0"], "netns", R)
    sh("ip", "link", "add", "r1", "address", MAC["r1"], "netns", R, "type", "veth",
       "peer", "t0", "address", MAC["t0"], "netns", T)
    for ns, dev, v4, v6 in ((S, "s0", "198.18.0.1/30", "2001:db8:1::1/64"),
                            (R, "r0", "198.18.0.2/30", "2001:db8:1::2/64"),
                            (R, "r1", "198.18.0.5/30", "2001:db8:2::1/64"),
                            (T, "t0", "198.18.0.6/30", "2001:db8:2::2/64")):
        sh("ip", "-n", ns, "addr", "add", v4, "dev", dev)
        sh("ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad")
        sh("ip", "-n", ns, "link", "set", dev, "up")
    # static neighbours: a burst of 2,000 packets must not wait on ARP/ND
    for ns, dev, addrs, peer in ((S, "s0", ("198.18.0.2", "2001:db8:1::2"), "r0"),
                                 (R, "r0", ("198.18.0.1", "2001:db8:1::1"), "s0"),
                                 (R, "r1", ("198.18.0.6", "2001:db8:2::2"), "t0"),
                                 (T, "t0", ("198.18.0.5", "2001:db8:2::1"), "r1")):
        for addr in addrs:
            sh("ip", "-n", ns, "neigh", "replace", addr, "lladdr", MAC[peer], "dev", dev,
               "nud", "permanent")
    routes = [
        (S, "198.18.0.0/15", "via", "198.18.0.2"), (S, "2001:db8::/32", "via", "2001:db8:1::2"),
        (T, "198.18.0.0/15", "via", "198.18.0.5"), (T, "2001:db8::/32", "via", "2001:db8:2::1"),
        (R, "198.18.16.0/20", "via", "198.18.0.6"), (R, "2001:db8:10::/48", "via", "2001:db8:2::2"),
        (R, "198.18.8.0/24", "via", "198.18.0.6"), (R, "2001:db8:8::/48", "via", "2001:db8:2::2"),
    ]
    for ns, prefix, *how in routes:
        sh("ip", "-n", ns, "route", "add", prefix, *how)
    sh("ip", "-n", R, "route", "add", "unreachable", "198.18.9.0/24")
    # a next hop on r1's link that nobody answers ARP/ND for: a powered-off device
    sh("ip", "-n", R, "addr", "add", "198.18.3.1/24", "dev", "r1")
    sh("ip", "-n", R, "addr", "add", "2001:db8:3::1/64", "dev", "r1", "nodad")
    sh("ip", "-n", R, "route", "add", "198.18.7.0/24", "via", "198.18.3.2")
    sh("ip", "-n", R, "route", "add", "2001:db8:7::/48", "via", "2001:db8:3::2")
    sh("ip", "-n", R, "-6", "route", "add", "unreachable", "2001:db8:9::/48")
    sh("ip", "-n", T, "route", "add", "local", "198.18.16.0/20", "dev", "lo")
    sh("ip", "-n", T, "-6", "route", "add", "local", "2001:db8:10::/48", "dev", "lo")
    for ns in (R, T):  # routers: forward, answer every error at once, no redirects
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
           "net.ipv6.conf.all.forwarding=1", "net.ipv4.icmp_ratelimit=0",
           "net.ipv6.icmp.ratelimit=0", "net.ipv4.conf.all.send_redirects=0")
    sh("ip", "netns", "exec", S, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    sh("ip", "netns", "exec", T, "nft", "-f", "-", input=NFT_TGT)


@pytest.fixture(scope="module")
def lab() -> Iterator[str]:
    try:
        build_lab()
        yield LAB_SRC
    finally:
        delete_netns(LAB_SRC, LAB_RTR, LAB_TGT)


@pytest.mark.lab
@needs_lab
@SENDING
def test_lab_live_addresses_reply(lab: str, presend: bool) -> None:
    results = run_in(lab, [task("198.18.16.1"), task("2001:db8:10::7")], presend=presend)
    for result in results:
        assert result.error is None, result.message
        assert result.received == 3 and result.reached is True


@pytest.mark.lab
@needs_lab
@pytest.mark.parametrize("address", ["198.18.24.1", "2001:db8:10:1::1"])
@SENDING
def test_blackholed_target_costs_one_timeout_after_the_last_packet(lab: str,
                                                                    address: str, presend: bool) -> None:
    attempts, interval_s, timeout_s = 3, 0.1, 0.5
    [result] = run_in(lab, [task(address, attempts=attempts, interval_s=interval_s,
                                 timeout_s=timeout_s)], presend=presend)
    assert result.error is ProbeError.TIMEOUT
    assert result.sent == 3 and result.received == 0
    assert result.loss_ratio == 1.0
    assert result.reached is False
    assert result.notices == ()
    assert result.measured
    expected_s = (attempts - 1) * interval_s + timeout_s  # 0.7 s, not 3 x 0.5 s
    assert result.duration_s is not None
    assert expected_s - 0.01 <= result.duration_s <= expected_s + 0.25


@pytest.mark.lab
@needs_lab
@pytest.mark.parametrize(("address", "router", "icmp_type"),
                         [("198.18.9.1", "198.18.0.2", 3), ("2001:db8:9::1", "2001:db8:1::2", 1)])
@SENDING
def test_unreachable_names_the_router(lab: str, address: str, router: str,
                                      icmp_type: int, presend: bool) -> None:
    # Two attempts: the router's kernel answers an `unreachable` route with at most
    # 5 errors at once, then one a second, per sender (net.ipv4.route.error_burst,
    # host-wide: the lab leaves it alone); both variants in a row stay under it.
    [result] = run_in(lab, [task(address, attempts=2, timeout_s=1.0)], presend=presend)
    assert result.error is ProbeError.UNREACHABLE
    assert result.received == 0 and result.reached is False
    assert result.notices, "the router's ICMP error should be kept as evidence"
    assert {n.source for n in result.notices} == {router}
    assert {n.type for n in result.notices} == {icmp_type}
    assert router in (result.message or "")
    # every attempt was answered by an error: no timeout was waited for
    assert result.duration_s is not None and result.duration_s < 0.5


@pytest.mark.lab
@needs_lab
@pytest.mark.parametrize(("address", "router", "icmp_type"),
                         [("198.18.7.1", "198.18.0.2", 3), ("2001:db8:7::1", "2001:db8:1::2", 1)])
@SENDING
def test_late_unreachable_is_kept_without_changing_the_rtts(lab: str, address: str, router: str,
                                                            icmp_type: int, presend: bool) -> None:
    # The router answers only when its address resolution gives up (~3 s), long
    # after the 0.5 s timeout: without a grace window that is a plain timeout...
    [quick] = run_in(lab, [task(address, timeout_s=0.5)])
    assert quick.error is ProbeError.TIMEOUT
    assert "late_errors" not in quick.detail
    assert quick.duration_s is not None and quick.duration_s < 1.0
    # ...with one, the late errors are path evidence naming the router
    [result] = run_in(lab, [task(address, timeout_s=0.5, late_grace_s=4.5)], presend=presend)
    assert result.error is ProbeError.TIMEOUT  # the measurement itself: nothing in time
    assert result.sent == 3 and result.received == 0 and result.rtts_ms == ()
    assert result.loss_ratio == 1.0 and result.notices == ()
    late = result.detail["late_errors"]
    assert {e["source"] for e in late} == {router}
    assert {e["type"] for e in late} == {icmp_type}
    assert all(1500 < e["after_ms"] < 5000 for e in late), late
    assert router in (result.message or "") and "later" in (result.message or "")
    # every attempt got its late error: the window closed early, not after 4.5 s
    assert len(late) == 3
    assert result.duration_s is not None and result.duration_s < 0.6 + 4.0


@pytest.mark.lab
@needs_lab
@pytest.mark.parametrize(("address", "router"),
                         [("198.18.8.1", "198.18.0.6"), ("2001:db8:8::1", "2001:db8:2::2")])
def test_routing_loop_is_ttl_exceeded(lab: str, address: str, router: str) -> None:
    [result] = run_in(lab, [task(address, timeout_s=1.0)])
    assert result.error is ProbeError.TTL_EXCEEDED
    assert {n.source for n in result.notices} == {router}
    assert all("exceeded" in n.description for n in result.notices)


@pytest.mark.lab
@needs_lab
def test_reply_from_another_address_is_not_counted(lab: str) -> None:
    # tgt rewrites the reply's source to 198.18.17.99 (see NFT_TGT)
    [spoofed, control] = run_in(lab, [task("198.18.17.1"), task("198.18.17.2")])
    assert control.received == 3
    assert spoofed.received == 0
    assert spoofed.error is ProbeError.TIMEOUT


@pytest.mark.lab
@needs_lab
@SENDING
def test_no_route_on_our_side_is_reported_without_waiting(lab: str, presend: bool) -> None:
    # src has no route to 203.0.113.0/24: the kernel refuses the send, nothing leaves
    [result] = run_in(lab, [task("203.0.113.1", timeout_s=2.0)], presend=presend)
    assert result.error is ProbeError.NO_ROUTE
    assert result.received == 0
    assert not result.measured  # nothing left this host: no evidence about the path
    assert result.duration_s is not None and result.duration_s < 0.5


@pytest.mark.lab
@needs_lab
@SENDING
def test_two_thousand_targets_at_once_are_all_classified(lab: str, presend: bool) -> None:
    live = ([f"198.18.{18 + i // 256}.{i % 256}" for i in range(900)]  # not 17.x: spoofed
            + [f"2001:db8:10::{i:x}" for i in range(1, 101)])
    dead = ([f"198.18.{24 + i // 256}.{i % 256}" for i in range(900)]
            + [f"2001:db8:10:1::{i:x}" for i in range(1, 101)])
    tasks = [task(a, attempts=1, timeout_s=1.0) for a in live + dead]
    t0 = time.perf_counter()
    results = run_in(lab, tasks, presend=presend)
    wall_s = time.perf_counter() - t0
    by_address = {r.address: r for r in results}
    wrong_live = [a for a in live if by_address[a].received != 1]
    wrong_dead = [a for a in dead if by_address[a].error is not ProbeError.TIMEOUT]
    assert not wrong_live, f"{len(wrong_live)} live targets misread, e.g. {wrong_live[:5]}"
    assert not wrong_dead, f"{len(wrong_dead)} dead targets misread, e.g. {wrong_dead[:5]}"
    assert wall_s < 6.0


@pytest.mark.lab
@needs_lab
@SENDING
def test_more_requests_than_sequence_numbers_wait_for_expiry(lab: str, presend: bool) -> None:
    # Shrink the sequence space to 16 so that 40 targets (20 dead) overflow it:
    # requests wait for the dead ones to expire instead of reusing their numbers.
    async def scenario() -> list[ProbeResult]:
        ctx = ProbeContext(RateLimiter(0))
        try:
            await run_all([task("198.18.16.1", attempts=1)], ctx)
            ctx.resources["icmp"].by_family[socket.AF_INET].seq_space = 16
            tasks = [task(f"198.18.24.{i}", attempts=1, timeout_s=0.2) for i in range(20)]
            tasks += [task(f"198.18.16.{i}", attempts=1, timeout_s=0.2) for i in range(20)]
            return await run_all(tasks, ctx, presend=presend)
        finally:
            await ctx.aclose()

    with inside(lab):
        results = asyncio.run(scenario())
    assert [r.error for r in results[:20]] == [ProbeError.TIMEOUT] * 20
    assert [r.received for r in results[20:]] == [1] * 20


@pytest.mark.lab
@needs_lab
def test_run_carries_on_from_the_first_attempt_presend_sent(lab: str) -> None:
    async def scenario() -> tuple[set, dict, list[ProbeResult]]:
        ctx = ProbeContext(RateLimiter(0))
        try:
            tasks = [task("198.18.16.1", attempts=3), task("198.18.24.1", attempts=1, timeout_s=0.3)]
            await PROBE.presend(tasks, ctx)
            sent_first = set(ctx.resources["icmp.first_sent"])
            results = await run_all(tasks, ctx)
            return sent_first, dict(ctx.resources["icmp.first_sent"]), results
        finally:
            await ctx.aclose()

    with inside(lab):
        sent_first, left, (live, dead) = asyncio.run(scenario())
    assert sent_first == {"198.18.16.1/icmp", "198.18.24.1/icmp"}
    assert left == {}  # each run took its own
    assert live.sent == 3 and live.received == 3  # one by presend, two by run: not four
    assert dead.sent == 1 and dead.error is ProbeError.TIMEOUT
    # its timeout ran from presend's send
    assert dead.duration_s is not None and 0.29 <= dead.duration_s <= 0.5


# -- unprivileged ------------------------------------------------------------------
@pytest.fixture()
def fresh_netns() -> Iterator[str]:
    name = f"{PREFIX}-u{time.monotonic_ns() % 100000}"
    try:
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        delete_netns(name)


@pytest.mark.root
@needs_netns
@needs_setpriv
def test_without_privilege_preflight_explains_and_nothing_is_sent(fresh_netns: str) -> None:
    # a fresh namespace's ping_group_range is "1 0": nobody may open ICMP sockets
    assert "1\t0" in sh("ip", "netns", "exec", fresh_netns, "sysctl", "-n",
                        "net.ipv4.ping_group_range")
    before = lo_tx_packets(fresh_netns)
    out = run_as_nobody(fresh_netns, "127.0.0.1", "::1")
    message = out["preflight"]
    assert message is not None
    for fix in ("root", "setcap cap_net_raw+ep", "net.ipv4.ping_group_range"):
        assert fix in message
    assert [r["error"] for r in out["results"]] == ["permission", "permission"]
    assert [r["outcome"] for r in out["results"]] == ["not_measured", "not_measured"]
    assert [r["sent"] for r in out["results"]] == [0, 0]
    assert out["results"][0]["message"] == message
    assert lo_tx_packets(fresh_netns) == before


@pytest.mark.root
@needs_netns
@needs_setpriv
def test_unprivileged_datagram_sockets_when_ping_group_range_allows(fresh_netns: str) -> None:
    sh("ip", "netns", "exec", fresh_netns, "sysctl", "-qw",
       "net.ipv4.ping_group_range=0 2147483647")
    out = run_as_nobody(fresh_netns, "127.0.0.1", "::1")
    assert out["preflight"] is None
    for result in out["results"]:
        assert result["error"] is None, result["message"]
        assert result["received"] == 2


# presend, then run, to N loopback addresses: how many replied
BURST_CHILD = r"""
import asyncio, sys
from netprobe.probes.icmp import PROBE
from netprobe.probes.interface import ProbeContext, ProbeTask, RateLimiter

async def main():
    addresses = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(int(sys.argv[1]))]
    tasks = [ProbeTask(id=a + "/icmp", kind="icmp", target=a, address=a, attempts=1,
                       timeout_s=1.0) for a in addresses]
    ctx = ProbeContext(RateLimiter(0))
    try:
        await PROBE.presend(tasks, ctx)
        results = await asyncio.gather(*(PROBE.run(t, ctx) for t in tasks))
    finally:
        await ctx.aclose()
    print(sum(r.received for r in results))

asyncio.run(main())
"""


@pytest.mark.root
@needs_netns
@needs_setpriv
def test_an_unprivileged_burst_is_read_before_the_socket_overflows(fresh_netns: str) -> None:
    """Without root the receive buffer is what net.core.rmem_max allows (4 MiB here:
    ~10,000 replies queued, the rest dropped, when the reader waited for the end of a
    20,000-packet burst): presend lets the reader in as the buffer fills."""
    sh("ip", "netns", "exec", fresh_netns, "sysctl", "-qw",
       "net.ipv4.ping_group_range=0 2147483647")
    out = subprocess.run(
        ["ip", "netns", "exec", fresh_netns, "setpriv", "--reuid=nobody", "--regid=nogroup",
         "--clear-groups", sys.executable, "-c", BURST_CHILD, "20000"],
        capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == 20000


@pytest.mark.lab
@needs_lab
@needs_setpriv
def test_unprivileged_errors_come_from_the_error_queue(lab: str) -> None:
    out = run_as_nobody(lab, "198.18.16.1", "198.18.9.1", "2001:db8:9::1", "198.18.8.1",
                        "198.18.24.1", "198.18.17.1")
    live, unreach4, unreach6, loop, dead, spoofed = out["results"]
    assert live["received"] == 2
    assert unreach4["error"] == "unreachable"
    assert {n["source"] for n in unreach4["notices"]} == {"198.18.0.2"}
    assert unreach6["error"] == "unreachable"
    assert {n["source"] for n in unreach6["notices"]} == {"2001:db8:1::2"}
    assert loop["error"] == "ttl_exceeded"
    assert dead["error"] == "timeout"
    assert spoofed["error"] == "timeout" and spoofed["received"] == 0
