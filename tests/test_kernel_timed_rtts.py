"""TCP and DNS RTTs are the kernel's: they reflect the network's delay, and
neither a busy event loop nor a late wakeup changes them or whether an answer
came in time (what `rtt_from_kernel` promises the executor).

The delay is known: a DNS server on loopback that answers 100 ms late, or,
for TCP (whose handshake the kernel answers, so no server can delay it), a
first SYN dropped by nftables in a namespace the test creates, which the
kernel sends again after its 1 s retransmission timeout. The client's event
loop is then blocked past the answer's arrival, as the diagnosis made while
the probes wait would block it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from conftest import LOOPBACK, netns

from netprobe.lab.dns_server import DnsServer
from netprobe.lab.listeners import BackgroundLoop
from netprobe.probes import get_probe
from netprobe.probes.dns import Question, query_once
from netprobe.probes.interface import ProbeContext

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"),
                           reason="kernel timestamps (TCP_INFO, SO_TIMESTAMPNS) are read on Linux only")
ZONE = {"www.kt.example": [("A", "192.0.2.7")]}


def test_tcp_and_dns_declare_kernel_timed_rtts_on_linux() -> None:
    linux = sys.platform.startswith("linux")
    assert get_probe("tcp").rtt_from_kernel is linux
    assert get_probe("dns").rtt_from_kernel is linux


class _LateAnswers(asyncio.DatagramProtocol):
    """A DNS server's answers, each sent `delay_s` after its query came in."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.answers = DnsServer(ZONE)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        answer = self.answers.respond(data, over_udp=True)
        if answer is not None:
            asyncio.get_running_loop().call_later(
                self.delay_s, lambda: self.transport.sendto(answer, addr))


def _stalled_queries(port: int, n: int, timeout_s: float, stall_s: float) -> tuple[list, float]:
    """`n` queries sent, then the event loop blocked for `stall_s` before it can
    read any answer; the attempts and how long the whole took."""
    async def main() -> tuple[list, float]:
        loop = asyncio.get_running_loop()
        question = Question.make("www.kt.example", "A", ["192.0.2.7"])
        started = time.perf_counter()
        attempts = [asyncio.ensure_future(query_once(question, LOOPBACK, port, timeout_s,
                                                     ProbeContext())) for _ in range(n)]
        loop.call_soon(time.sleep, stall_s)  # after each query went out
        done = await asyncio.gather(*attempts)
        return list(done), time.perf_counter() - started

    return asyncio.run(main())


@LINUX
def test_dns_rtt_is_the_servers_delay_not_the_loops_stall(lab_loop: BackgroundLoop) -> None:
    async def start() -> asyncio.DatagramTransport:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _LateAnswers(0.1), local_addr=(LOOPBACK, 0))
        return transport

    transport = lab_loop.run(start())
    port = transport.get_extra_info("sockname")[1]
    try:
        # answers arrive at ~100 ms; the loop is blocked until 300 ms
        attempts, elapsed_s = _stalled_queries(port, 3, 1.0, 0.3)
        # a 150 ms timeout: the answers arrived in time, the loop read them after it
        in_time, _ = _stalled_queries(port, 3, 0.15, 0.3)
        # a 50 ms timeout: the answers came after it, though the loop read them all alike
        late, _ = _stalled_queries(port, 3, 0.05, 0.3)
    finally:
        lab_loop.loop.call_soon_threadsafe(transport.close)
    assert elapsed_s >= 0.3  # the stall happened inside every exchange
    assert [a.outcome for a in attempts] == ["ok"] * 3, attempts
    assert all(a.rtt_source == "kernel" and 95 <= a.rtt_ms < 200 for a in attempts), attempts
    assert [a.outcome for a in in_time] == ["ok"] * 3, in_time
    assert all(95 <= a.rtt_ms < 150 for a in in_time), in_time
    assert [a.outcome for a in late] == ["timeout"] * 3, late


_IN_NETNS = r"""
import asyncio, json, socket, sys, threading, time
from netprobe.probes.tcp import connect_once

port, timeout_s, stall_s, close_after_s = (int(sys.argv[1]), float(sys.argv[2]),
                                           float(sys.argv[3]), float(sys.argv[4]))
server = socket.create_server(("127.0.0.1", port))

def serve():  # in a thread of its own: the stall is the client's
    conn, _ = server.accept()
    time.sleep(close_after_s)
    conn.close()  # its FIN: an ACK received after the SYN-ACK

threading.Thread(target=serve, daemon=True).start()

async def attempt():
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    pending = asyncio.ensure_future(connect_once(socket.AF_INET, ("127.0.0.1", port), timeout_s))
    loop.call_soon(time.sleep, stall_s)  # after the SYN went out
    a = await pending
    return {"elapsed_s": time.perf_counter() - started, "outcome": a.outcome,
            "rtt_ms": a.rtt_ms, "rtt_source": a.rtt_source}

print(json.dumps(asyncio.run(attempt())))
"""

_PORT = 8443
# the first SYN to the port in each run is dropped: the kernel sends it again
# after its initial retransmission timeout, 1 s, a delay known in advance
_FIRST_SYN_LOST = f"""
table inet npt_kt {{
    chain input {{
        type filter hook input priority -1; policy accept;
        tcp dport {_PORT} tcp flags & (syn | ack) == syn limit rate 1/minute burst 1 packets drop
    }}
}}
"""


@pytest.fixture()
def first_syn_lost() -> Iterator[str]:
    """A fresh namespace (per test: the rule's one drop is used up) whose
    loopback drops the first SYN to `_PORT`."""
    if shutil.which("nft") is None:
        pytest.skip("needs the `nft` command (nftables)")
    with netns("synloss") as ns:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=_FIRST_SYN_LOST,
                       text=True, check=True, timeout=10)
        yield ns


def _connect_in(ns: str, timeout_s: float, stall_s: float, close_after_s: float = 0.0) -> dict:
    proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _IN_NETNS,
                           str(_PORT), str(timeout_s), str(stall_s), str(close_after_s)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.root
@LINUX
@pytest.mark.parametrize("close_after_s", [0.0, 0.2])
def test_tcp_rtt_spans_the_retransmission_not_the_loops_stall(first_syn_lost: str,
                                                              close_after_s: float) -> None:
    # the SYN-ACK arrives at ~1 s (the retransmission timeout), the server's FIN
    # at once or 0.2 s later; the loop is blocked until 1.4 s
    out = _connect_in(first_syn_lost, 3.0, 1.4, close_after_s)
    assert out["elapsed_s"] >= 1.4, out
    assert out["outcome"] == "open" and out["rtt_source"] == "kernel", out
    assert 950 <= out["rtt_ms"] < 1150, out


@pytest.mark.root
@LINUX
def test_tcp_in_time_is_judged_by_the_kernel_not_by_the_wakeup(first_syn_lost: str) -> None:
    # the loop wakes at 1.5 s, after the 1.2 s timeout, with the connect done at ~1 s
    out = _connect_in(first_syn_lost, 1.2, 1.5)
    assert out["outcome"] == "open" and 950 <= out["rtt_ms"] < 1200, out


@pytest.mark.root
@LINUX
def test_tcp_connected_after_its_timeout_is_a_timeout_however_the_loop_woke(
        first_syn_lost: str) -> None:
    # the 0.8 s timeout passed before the connect (~1 s); the loop, blocked until
    # 1.5 s, then finds the socket connected and the timer due at once
    out = _connect_in(first_syn_lost, 0.8, 1.5)
    assert out["outcome"] == "timeout", out
