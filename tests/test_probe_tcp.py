"""The TCP probe against real listeners on loopback and a real routed namespace lab."""

from __future__ import annotations

import asyncio
import socket
import statistics
import struct
import sys
import time

import pytest
from conftest import LOOPBACK, RoutedLab, ipv6_loopback_works, sh

from netprobe.evidence import IcmpNotice, Outcome, ProbeError, ProbeResult
from netprobe.lab.listeners import TcpListener
from netprobe.probes import get_probe
from netprobe.probes.interface import ProbeContext, ProbeTask, RateLimiter
from netprobe.probes.tcp import PROBE, connect_once, kernel_rtt_ms, parse_extended_err, summarize

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"),
                           reason="the kernel's handshake RTT (TCP_INFO) is read on Linux only")


def task(address: str, port: int, **kw) -> ProbeTask:
    kw.setdefault("attempts", 3)
    kw.setdefault("interval_s", 0.01)
    kw.setdefault("timeout_s", 1.0)
    return ProbeTask(id=f"svc/tcp/{port}", kind="tcp", target=f"svc/tcp/{port}",
                     address=address, port=port, **kw)


def run(t: ProbeTask, ctx: ProbeContext | None = None) -> ProbeResult:
    return asyncio.run(PROBE.run(t, ctx or ProbeContext()))


def test_registry_finds_the_tcp_probe() -> None:
    probe = get_probe("tcp")
    assert probe.kind == "tcp"
    assert probe.preflight([task(LOOPBACK, 80)]) is None


def test_open_port_counts_every_connect_and_closes_them(tcp_listener: TcpListener) -> None:
    result = run(task(tcp_listener.host, tcp_listener.port, attempts=4))
    assert result.outcome is Outcome.OK
    assert result.error is None and result.reached is True
    assert (result.sent, result.received) == (4, 4)
    assert all(0 < rtt < 1000 for rtt in result.rtts_ms)
    assert result.detail == {"port": tcp_listener.port, "outcomes": ["open"] * 4,
                             "rtt_source": "kernel" if sys.platform.startswith("linux") else "clock"}
    deadline = time.monotonic() + 2
    while tcp_listener.accepted < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tcp_listener.accepted == 4  # real handshakes reached the listener


@LINUX
def test_loopback_rtt_is_the_kernels_handshake_time(tcp_listener: TcpListener) -> None:
    async def main() -> list:
        return [await connect_once(socket.AF_INET, (tcp_listener.host, tcp_listener.port), 1.0)
                for _ in range(5)]

    attempts = asyncio.run(main())
    assert [a.rtt_source for a in attempts] == ["kernel"] * 5
    # loopback: tens of microseconds, a 1 us floor; never more than the clock around it
    assert all(0.001 <= a.rtt_ms <= a.clock_ms for a in attempts), attempts
    assert statistics.median(a.rtt_ms for a in attempts) < 20, attempts


@LINUX
def test_kernel_rtt_needs_a_connected_socket(tcp_listener: TcpListener) -> None:
    with socket.socket() as fresh:
        assert kernel_rtt_ms(fresh) is None  # TCP_CLOSE: no handshake, no figure
    with socket.socket() as listening:
        listening.bind((LOOPBACK, 0))
        listening.listen()
        assert kernel_rtt_ms(listening) is None
    with socket.create_connection((tcp_listener.host, tcp_listener.port), timeout=2) as conn:
        rtt_ms = kernel_rtt_ms(conn)
        assert rtt_ms is not None and 0 < rtt_ms < 100


def stalled_connects(host: str, port: int, n: int, stall_s: float, timeout_s: float) -> list:
    """`n` connects issued, then the event loop held by a blocking callback for
    `stall_s` before it can notice any of them: a loop busy with thousands of
    other probes, as in a check with --rate 0."""
    async def main() -> list:
        loop = asyncio.get_running_loop()
        attempts = [asyncio.ensure_future(connect_once(socket.AF_INET, (host, port), timeout_s))
                    for _ in range(n)]
        # runs after the tasks' first steps (each connect() issued, waiting to be
        # noticed) and before the loop next polls its sockets
        loop.call_soon(time.sleep, stall_s)
        return list(await asyncio.gather(*attempts))

    return asyncio.run(main())


@LINUX
def test_a_busy_event_loop_does_not_inflate_the_rtt(tcp_listener: TcpListener) -> None:
    attempts = stalled_connects(tcp_listener.host, tcp_listener.port, 5, 0.3, 2.0)
    assert [a.outcome for a in attempts] == ["open"] * 5
    # the clock, read when the loop noticed, carries the whole stall ...
    assert all(a.clock_ms >= 300 for a in attempts), attempts
    # ... the kernel's handshake time does not
    assert all(a.rtt_source == "kernel" and a.rtt_ms < 50 for a in attempts), attempts
    result = summarize(task(tcp_listener.host, tcp_listener.port, attempts=5), attempts,
                       time.time(), 0.3)
    assert result.outcome is Outcome.OK and result.rtt_max_ms < 50
    assert result.detail["rtt_source"] == "kernel"


@LINUX
def test_a_connect_noticed_after_its_timeout_is_open_when_the_kernel_says_in_time(
        tcp_listener: TcpListener) -> None:
    # the loop wakes after the 0.1 s deadline, with the handshakes long done
    attempts = stalled_connects(tcp_listener.host, tcp_listener.port, 3, 0.3, 0.1)
    assert [a.outcome for a in attempts] == ["open"] * 3, attempts
    assert all(a.rtt_source == "kernel" and a.rtt_ms < 50 for a in attempts), attempts


def test_closed_port_is_refused_and_proves_the_host_up(closed_tcp_port) -> None:
    host, port = closed_tcp_port
    result = run(task(host, port))
    assert result.error is ProbeError.REFUSED
    assert result.reached is True and result.host_answered is True
    assert (result.sent, result.received) == (3, 0)
    assert result.detail["outcomes"] == ["refused"] * 3
    assert result.loss_ratio == 0.0  # a RST is an answer: the host is there
    assert "refused" in result.message and str(port) in result.message


def test_partial_success_keeps_no_error_but_shows_the_failures(tcp_listener, lab_loop) -> None:
    # The listener goes away between attempts: the first connect opens, the rest are refused.
    async def main() -> ProbeResult:
        probe = asyncio.ensure_future(PROBE.run(
            task(tcp_listener.host, tcp_listener.port, attempts=3, interval_s=0.3),
            ProbeContext()))
        await asyncio.sleep(0.15)
        await asyncio.to_thread(lab_loop.run, tcp_listener.stop())
        return await probe

    result = asyncio.run(main())
    assert result.detail["outcomes"] == ["open", "refused", "refused"]
    assert result.error is None and result.received == 1 and result.reached is True
    # every attempt was answered (an accept or a RST): no loss, but 2/3 failed
    assert result.answered == 3 and result.loss_ratio == 0.0
    assert result.failure_ratio == pytest.approx(2 / 3)
    assert "2/3" in result.message


def test_full_backlog_times_out_and_attempts_overlap() -> None:
    # A listener that never accepts, with its accept queue already full, drops
    # new SYNs: a real timeout without leaving loopback.
    with socket.socket() as server:
        server.bind((LOOPBACK, 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        try:
            for _ in range(3):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex((LOOPBACK, port))
                fillers.append(s)
            time.sleep(0.05)
            started = time.monotonic()
            result = run(task(LOOPBACK, port, attempts=4, interval_s=0.05, timeout_s=0.4))
            elapsed = time.monotonic() - started
        finally:
            for s in fillers:
                s.close()
    assert result.error is ProbeError.TIMEOUT
    assert result.reached is False and result.received == 0 and result.sent == 4
    assert result.detail["outcomes"] == ["timeout"] * 4
    # Pipelined: ~ 3 x 0.05 + 0.4 s, far below 4 x 0.4 s sequential.
    assert 0.4 <= elapsed < 1.2


def test_each_syn_takes_a_rate_token(tcp_listener) -> None:
    # 5 pps with a burst of 1: four connects need at least ~0.6 s of tokens.
    started = time.monotonic()
    result = run(task(tcp_listener.host, tcp_listener.port, attempts=4, interval_s=0.0),
                 ProbeContext(RateLimiter(5)))
    elapsed = time.monotonic() - started
    assert result.received == 4
    assert elapsed >= 0.55


@pytest.mark.skipif(not ipv6_loopback_works(), reason="needs IPv6 on loopback (::1)")
def test_ipv6_open_and_refused() -> None:
    async def main() -> tuple[ProbeResult, ProbeResult]:
        async with TcpListener("::1", 0) as listener:
            opened = await PROBE.run(task("::1", listener.port, attempts=2), ProbeContext())
        with socket.socket(socket.AF_INET6) as closed:
            closed.bind(("::1", 0))
            refused = await PROBE.run(task("::1", closed.getsockname()[1], attempts=2),
                                      ProbeContext())
        return opened, refused

    opened, refused = asyncio.run(main())
    assert opened.received == 2 and opened.error is None
    assert refused.error is ProbeError.REFUSED and refused.reached is True


def test_bad_address_is_not_measured_not_down() -> None:
    result = run(task("not-an-ip.example", 80))
    assert result.outcome is Outcome.NOT_MEASURED and result.sent == 0
    no_address = run(ProbeTask(id="x/tcp/80", kind="tcp", target="x/tcp/80", address=None,
                               host="x.example", port=80))
    assert no_address.error is ProbeError.RESOLVE


def test_parse_extended_err_reads_the_offender() -> None:
    ee = struct.pack("=IBBBBII", 113, 2, 3, 13, 0, 0, 0)
    offender = struct.pack("=H", socket.AF_INET) + b"\0\0" + socket.inet_aton("198.51.100.1") + bytes(8)
    notice = parse_extended_err(ee + offender)
    assert notice == IcmpNotice(source="198.51.100.1", type=3, code=13,
                                description="ICMP admin-prohibited")
    ee6 = struct.pack("=IBBBBII", 13, 3, 1, 1, 0, 0, 0)
    offender6 = (struct.pack("=H", socket.AF_INET6) + b"\0\0" + bytes(4)
                 + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + bytes(4))
    assert parse_extended_err(ee6 + offender6).source == "2001:db8::1"
    local = struct.pack("=IBBBBII", 90, 1, 0, 0, 0, 0, 0) + struct.pack("=H", 0) + bytes(14)
    assert parse_extended_err(local) is None  # a local error names no router


# -- through a router, in namespaces -----------------------------------------------

@pytest.mark.root
def test_routed_open_refused_and_timeout(routed_lab: RoutedLab) -> None:
    L = routed_lab
    opened, refused, dropped = L.run([
        task(L.SERVER4, L.TCP_PORT, attempts=2),
        task(L.SERVER4, 81, attempts=2),
        task(L.DROPPED4, 80, attempts=3, interval_s=0.05, timeout_s=0.4),
    ])
    assert opened.received == 2 and opened.error is None
    assert refused.error is ProbeError.REFUSED and refused.reached is True
    assert dropped.error is ProbeError.TIMEOUT and dropped.reached is False
    assert dropped.notices == ()
    assert dropped.duration_s < 0.9  # overlapping attempts (~0.5 s), not 3 x 0.4 s


@pytest.mark.root
def test_unreachable_names_the_router_that_said_so(routed_lab: RoutedLab) -> None:
    L = routed_lab
    host4, prohibited4, host6, prohibited6 = L.run([
        task(L.HOST_UNREACH4, 443, attempts=2),
        task(L.PROHIBITED4, 443, attempts=2),
        task(L.ADDR_UNREACH6, 443, attempts=2),
        task(L.PROHIBITED6, 443, attempts=2),
    ])
    for result in (host4, prohibited4, host6, prohibited6):
        assert result.error is ProbeError.UNREACHABLE, result.message
        assert result.reached is False
        assert result.detail["outcomes"] == ["unreachable", "unreachable"]
        assert result.duration_s < 0.5  # the ICMP error ends the attempt at once
    assert host4.notices == (IcmpNotice(L.ROUTER4, 3, 1, "ICMP host-unreachable"),)
    assert prohibited4.notices == (IcmpNotice(L.ROUTER4, 3, 13, "ICMP admin-prohibited"),)
    assert host6.notices == (IcmpNotice(L.ROUTER6, 1, 3, "ICMPv6 address-unreachable"),)
    assert prohibited6.notices == (IcmpNotice(L.ROUTER6, 1, 1, "ICMPv6 admin-prohibited"),)
    assert L.ROUTER4 in host4.message  # the evidence to hand to a carrier
    # The notices survive a JSON round trip (a saved run is diagnosed offline).
    assert ProbeResult.from_json(host4.to_json()).notices == host4.notices


@pytest.mark.root
def test_a_late_unreachable_is_kept_and_the_attempt_stays_a_timeout(
        routed_lab: RoutedLab) -> None:
    """The router's next hop is gone: its host-unreachable comes after ARP gives
    up (~3 s), long after the 0.5 s timeout. Without a window it is lost."""
    L = routed_lab
    quick, patient = L.run([
        task(L.DEAD_NEXT_HOP4, 443, attempts=2, timeout_s=0.5),
        task(L.DEAD_NEXT_HOP4, 444, attempts=2, timeout_s=0.5, late_grace_s=4.5),
    ])
    assert quick.error is ProbeError.TIMEOUT and "late_errors" not in quick.detail
    assert patient.error is ProbeError.TIMEOUT  # nothing in time: still a timeout
    assert patient.rtts_ms == () and patient.notices == ()
    late = patient.detail["late_errors"]
    assert {(e["source"], e["type"], e["code"]) for e in late} == {(L.ROUTER4, 3, 1)}
    # after the 0.5 s timeout (ARP gives up at ~3 s from the first packet to that
    # next hop, which a concurrent probe may have sent earlier)
    assert all(500 < e["after_ms"] < 5000 for e in late), late
    assert f"later ICMP host-unreachable from {L.ROUTER4}" in patient.message
    # each attempt ended at its error, not at the end of the window
    assert patient.duration_s < 0.5 + 4.0


# the router drops the first SYN to the server's port 80, and lets the retransmission through
_FIRST_SYN_LOST = """
table inet npt_synloss {
    chain forward {
        type filter hook forward priority -1; policy accept;
        ip daddr 198.18.2.10 tcp dport 80 tcp flags & (syn | ack) == syn limit rate 1/minute burst 1 packets drop
    }
}
"""


@pytest.mark.root
@LINUX
def test_a_retransmitted_syn_is_timed_from_the_first_syn(routed_lab: RoutedLab, tmp_path) -> None:
    L = routed_lab
    rules = tmp_path / "synloss.nft"
    rules.write_text(_FIRST_SYN_LOST)
    sh("ip", "netns", "exec", L.router, "nft", "-f", str(rules))
    try:
        (result,) = L.run([task(L.SERVER4, L.TCP_PORT, attempts=1, timeout_s=3.0)])
    finally:
        sh("ip", "netns", "exec", L.router, "nft", "delete", "table", "inet", "npt_synloss")
    # tcpi_rtt is the retransmission's alone; the user waited the 1 s RTO as well,
    # which the SYN-ACK's kernel arrival time (tcpi_last_ack_recv) includes
    assert result.received == 1 and result.detail["rtt_source"] == "kernel"
    assert 900 <= result.rtts_ms[0] < 3000, result.rtts_ms


@pytest.mark.root
def test_icmp_refusal_by_a_firewall_is_not_the_host_answering(routed_lab: RoutedLab) -> None:
    L = routed_lab
    fake, router_itself = L.run([
        task(L.FAKE_CLOSED4, 443, attempts=2),  # router forges port-unreachable
        task(L.ROUTER4, L.ROUTER_REJECT_PORT, attempts=2),  # the target rejects itself
    ])
    assert fake.error is ProbeError.UNREACHABLE and fake.reached is False
    assert fake.detail["outcomes"] == ["unreachable", "unreachable"]
    assert fake.detail["errnos"] == ["ECONNREFUSED", "ECONNREFUSED"]  # what the kernel said
    assert fake.notices[0].source == L.ROUTER4 and fake.notices[0].code == 3
    # An ICMP error sent by the target itself proves the target is up.
    assert router_itself.error is ProbeError.UNREACHABLE and router_itself.reached is True
    assert router_itself.notices[0].source == L.ROUTER4


@pytest.mark.root
def test_no_route_is_our_own_stack(routed_lab: RoutedLab) -> None:
    L = routed_lab
    v4, v6 = L.run([task(L.NO_ROUTE4, 80, attempts=2), task(L.NO_ROUTE6, 80, attempts=2)])
    for result in (v4, v6):
        assert result.error is ProbeError.NO_ROUTE
        assert result.notices == () and result.reached is False
        assert result.detail["errnos"] == ["ENETUNREACH", "ENETUNREACH"]


@pytest.mark.root
def test_ipv6_through_the_router(routed_lab: RoutedLab) -> None:
    L = routed_lab
    opened, dropped = L.run([task(L.SERVER6, L.TCP_PORT, attempts=2),
                             task(L.DROPPED6, 80, attempts=1, timeout_s=0.3)])
    assert opened.received == 2 and opened.error is None
    assert dropped.error is ProbeError.TIMEOUT


_EXHAUSTED = r"""
import asyncio, json, resource, socket, sys
from netprobe.probes import ProbeContext, ProbeTask, get_probe

kind, port = sys.argv[1], int(sys.argv[2])
probe = get_probe(kind)  # imports need descriptors: do them first
params = {"query": "www.intra.example", "type": "A"} if kind == "dns" else {}
task = ProbeTask(id="x", kind=kind, target="x", address="127.0.0.1", port=port, attempts=2,
                 interval_s=0.0, timeout_s=0.5, params=params)

async def main():
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    hoard = []
    try:
        while True:
            hoard.append(socket.socket())
    except OSError:
        pass
    return await probe.run(task, ProbeContext())

print(json.dumps(asyncio.run(main()).to_json()))
"""


def run_without_file_descriptors(kind: str, port: int) -> ProbeResult:
    """Run one probe in a child process that has used up its open-file limit."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _EXHAUSTED, kind, str(port)],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    return ProbeResult.from_json(json.loads(proc.stdout))


def test_no_free_descriptor_is_not_measured_not_down(tcp_listener) -> None:
    result = run_without_file_descriptors("tcp", tcp_listener.port)
    assert result.outcome is Outcome.NOT_MEASURED and result.error is ProbeError.INTERNAL
    assert result.sent == 0 and "EMFILE" in result.message and "ulimit" in result.message


@pytest.mark.root
def test_routing_loop_is_ttl_exceeded(routed_lab: RoutedLab) -> None:
    L = routed_lab
    (result,) = L.run([task(L.LOOPING4, 443, attempts=2)])
    assert result.error is ProbeError.TTL_EXCEEDED, result.message
    assert result.reached is False and result.duration_s < 0.5
    assert result.notices and all(n.type == 11 for n in result.notices)
    assert {n.source for n in result.notices} <= {L.ROUTER4, "198.18.2.1", L.SERVER4}
    assert "loop" in result.message


def test_our_own_host_refusing_to_send_is_not_measured_not_unreachable() -> None:
    # e.g. an IPv6 target on a host without IPv6: socket() fails with EAFNOSUPPORT
    import errno

    from netprobe.probes.tcp import _failed, summarize

    task = ProbeTask(id="e/tcp/443", kind="tcp", target="e/tcp/443", address="2001:db8::10",
                     port=443, attempts=3)
    for err in (errno.EAFNOSUPPORT, errno.EPERM, errno.ENETUNREACH):
        result = summarize(task, [_failed(err, local=True)] * 3, 0.0, 0.0)
        assert result.error is ProbeError.NO_ROUTE and not result.measured, err
    # the same errno from the network (a router's answer) is a measurement
    assert summarize(task, [_failed(errno.ENETUNREACH, local=False)] * 3, 0.0, 0.0).measured
