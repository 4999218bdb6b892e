"""Shared fixtures: real listeners and a real DNS server on loopback, and namespaces.

Everything here sends packets only to 127.0.0.0/8, ::1, or addresses inside
network namespaces created (and always removed) by these fixtures. Namespace
names start with `npt-` and carry the pid, so parallel runs never touch each
other's.

Tests marked `root` or `lab` are skipped by capability (euid 0; for `lab` also
`ip` and `nft`), and `icmp` ones when no ICMP socket can be opened, with a
reason that names what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from netprobe.evidence import ProbeResult
from netprobe.lab.dns_server import DnsServer
from netprobe.lab.listeners import BackgroundLoop, TcpListener
from netprobe.probes.interface import ProbeTask

LOOPBACK = "127.0.0.1"

# A small zone served by the `dns_server` fixture.
TEST_ZONE: dict[str, list[tuple[str, str]]] = {
    "www.intra.example": [("A", "203.0.113.10"), ("AAAA", "2001:db8::10")],
    "pool.intra.example": [("A", "203.0.113.11"), ("A", "203.0.113.12")],
    "alias.intra.example": [("CNAME", "www.intra.example")],
    "intra.example": [("MX", "10 mail.intra.example"), ("NS", "ns1.intra.example")],
    "txt.intra.example": [("TXT", "v=spf1 -all")],
}

NETNS_PREFIX = "npt"

# Every test reads its configs from their text, and none writes to the home
# directory: the cache of configs already read (netprobe.configcache) is off
# unless a test turns it on. CLI subprocesses inherit this.
os.environ["NETPROBE_CACHE_DIR"] = ""

IS_ROOT = os.geteuid() == 0
HAS_IP = shutil.which("ip") is not None
HAS_NFT = shutil.which("nft") is not None



def _can_send_icmp() -> bool:
    """Whether this process may open an ICMP socket: raw (root, CAP_NET_RAW) or
    datagram (`net.ipv4.ping_group_range` admits our group)."""
    for kind in (socket.SOCK_RAW, socket.SOCK_DGRAM):
        try:
            socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
            return True
        except OSError:
            continue
    return False


CAN_ICMP = _can_send_icmp()

requires_root = pytest.mark.skipif(
    not IS_ROOT, reason="needs root (euid 0) for network namespaces and raw sockets")
requires_ip = pytest.mark.skipif(not HAS_IP, reason="needs the `ip` command (iproute2)")
requires_nft = pytest.mark.skipif(not HAS_NFT, reason="needs the `nft` command (nftables)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip `root`/`lab` tests by capability, naming what is missing."""
    marks = {m.name for m in item.iter_markers()}
    if "icmp" in marks and not CAN_ICMP:
        pytest.skip("needs an ICMP socket: root, CAP_NET_RAW, or net.ipv4.ping_group_range "
                    f"admitting gid {os.getgid()}")
    if marks & {"root", "lab"} and not IS_ROOT:
        pytest.skip(f"needs root (euid 0); running as euid {os.geteuid()}")
    if "lab" in marks:
        missing = [name for name, ok in (("ip (iproute2)", HAS_IP), ("nft (nftables)", HAS_NFT))
                   if not ok]
        if missing:
            pytest.skip("needs " + " and ".join(missing))


def free_port(host: str = LOOPBACK, kind: int = socket.SOCK_STREAM) -> int:
    """A port free right now on `host` (another process could take it later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- loopback servers ------------------------------------------------------------

@pytest.fixture(scope="session")
def lab_loop() -> Iterator[BackgroundLoop]:
    """An event loop in a thread that hosts servers while tests run their own loops."""
    with BackgroundLoop() as bg:
        yield bg


@pytest.fixture()
def tcp_listener(lab_loop: BackgroundLoop) -> Iterator[TcpListener]:
    """An accept-and-close listener on 127.0.0.1, ephemeral port (`.host`, `.port`, `.accepted`)."""
    listener = lab_loop.run(TcpListener(LOOPBACK, 0).start())
    try:
        yield listener
    finally:
        lab_loop.run(listener.stop())


@pytest.fixture()
def closed_tcp_port() -> Iterator[tuple[str, int]]:
    """(host, port) where a connect is refused: the port is held bound but not listening,
    so nothing else can start listening there during the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        yield LOOPBACK, s.getsockname()[1]


@pytest.fixture()
def dns_server(lab_loop: BackgroundLoop) -> Iterator[DnsServer]:
    """A DnsServer on 127.0.0.1 (UDP+TCP, ephemeral port) serving TEST_ZONE.

    Its switches (`servfail`, `truncate_udp`, `drop`) may be flipped by a test."""
    server = lab_loop.run(DnsServer(TEST_ZONE, LOOPBACK, 0).start())
    try:
        yield server
    finally:
        lab_loop.run(server.stop())


# -- network namespaces ----------------------------------------------------------

_netns_counter = itertools.count()


def sh(*argv: str, check: bool = True, timeout_s: float = 10.0) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with its stderr (setup errors must be loud)."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@contextlib.contextmanager
def netns(label: str) -> Iterator[str]:
    """A fresh namespace `npt-<pid>-<n>-<label>` with lo up, deleted afterwards."""
    name = f"{NETNS_PREFIX}-{os.getpid()}-{next(_netns_counter)}-{label}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


_RUNNER = r"""
import asyncio, json, sys
from netprobe.probes import ProbeContext, ProbeTask, get_probe

async def main(specs):
    ctx = ProbeContext()
    tasks = [ProbeTask(**s) for s in specs]
    try:
        results = await asyncio.gather(*(get_probe(t.kind).run(t, ctx) for t in tasks))
    finally:
        await ctx.aclose()
    return [r.to_json() for r in results]

print(json.dumps(asyncio.run(main(json.load(sys.stdin)))))
"""


def run_probes_in_netns(ns: str, tasks: list[ProbeTask], timeout_s: float = 30.0) -> list[ProbeResult]:
    """Run the real probes of `tasks` concurrently from inside namespace `ns`."""
    specs = [dataclasses.asdict(t) for t in tasks]
    proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _RUNNER],
                          input=json.dumps(specs), capture_output=True, text=True,
                          timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"probe runner failed in {ns}: {proc.stderr.strip()}")
    return [ProbeResult.from_json(d) for d in json.loads(proc.stdout)]


@dataclass
class RoutedLab:
    """client ── router ── server, three namespaces (see `routed_lab`)."""

    client: str
    router: str
    server: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    # client side
    CLIENT4 = "198.18.1.2"
    CLIENT6 = "2001:db8:1::2"
    # the router, as the client sees it
    ROUTER4 = "198.18.1.1"
    ROUTER6 = "2001:db8:1::1"
    # the server: a TCP listener on 80 and a DNS server on 53 (both families)
    SERVER4 = "198.18.2.10"
    SERVER6 = "2001:db8:2::10"
    TCP_PORT = 80
    # behind the router, each treated by its forward filter:
    DROPPED4, DROPPED6 = "198.18.2.20", "2001:db8:2::20"  # silently dropped
    HOST_UNREACH4, ADDR_UNREACH6 = "198.18.2.21", "2001:db8:2::21"  # host/address-unreachable
    PROHIBITED4, PROHIBITED6 = "198.18.2.22", "2001:db8:2::22"  # admin-prohibited
    FAKE_CLOSED4 = "198.18.2.23"  # the router answers port-unreachable for the host
    LOOPING4 = "198.18.3.30"  # router and server hand it to each other until the TTL ends
    NO_ROUTE4, NO_ROUTE6 = "198.18.99.1", "2001:db8:99::1"  # the client has no route there
    # routed by the router via a next hop nobody owns (a device powered off): it
    # answers host-unreachable only when ARP gives up, about 3 s later
    DEAD_NEXT_HOP4 = "198.18.7.1"
    ROUTER_REJECT_PORT = 7  # the router itself rejects this port with admin-prohibited

    def run(self, tasks: list[ProbeTask]) -> list[ProbeResult]:
        return run_probes_in_netns(self.client, tasks)


_ROUTER_NFT = """
table inet npt_lab {
    chain forward_filter {
        type filter hook forward priority 0; policy accept;
        ip daddr 198.18.2.20 drop
        ip6 daddr 2001:db8:2::20 drop
        ip daddr 198.18.2.21 reject with icmp type host-unreachable
        ip6 daddr 2001:db8:2::21 reject with icmpv6 type addr-unreachable
        ip daddr 198.18.2.22 reject with icmp type admin-prohibited
        ip6 daddr 2001:db8:2::22 reject with icmpv6 type admin-prohibited
        ip daddr 198.18.2.23 reject with icmp type port-unreachable
    }
    chain input_filter {
        type filter hook input priority 0; policy accept;
        tcp dport 7 reject with icmp type admin-prohibited
    }
}
"""


def _wait_for_line(proc: subprocess.Popen, word: str, timeout_s: float = 10.0) -> str:
    """Read the child's stdout until a line containing `word` (its ready message)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if word in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise RuntimeError(f"child did not report {word!r}: exit {proc.poll()}")


@pytest.fixture(scope="session")
def routed_lab() -> Iterator[RoutedLab]:
    """Three namespaces: a client, a router whose forward filter drops or rejects
    chosen addresses (with ICMP rate limits off), and a server running the real
    listener and DNS server processes. Skips without root, `ip` or `nft`."""
    if not IS_ROOT:
        pytest.skip(f"needs root (euid 0) for network namespaces; running as euid {os.geteuid()}")
    if not HAS_IP or not HAS_NFT:
        pytest.skip("needs the `ip` (iproute2) and `nft` (nftables) commands")
    L = RoutedLab
    with contextlib.ExitStack() as stack:
        c, r, s = (stack.enter_context(netns(x)) for x in ("c", "r", "s"))
        lab = RoutedLab(client=c, router=r, server=s)
        for ns in (c, r, s):  # no duplicate address detection: addresses usable at once
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0",
               "net.ipv6.conf.all.accept_dad=0")
        tag = f"{os.getpid() % 100000}{next(_netns_counter)}"
        cr, rc, rs, sr = f"npc{tag}", f"npr{tag}", f"nprs{tag}", f"nps{tag}"
        sh("ip", "link", "add", cr, "netns", c, "type", "veth", "peer", "name", rc, "netns", r)
        sh("ip", "link", "add", rs, "netns", r, "type", "veth", "peer", "name", sr, "netns", s)
        for ns, dev, v4, v6 in ((c, cr, f"{L.CLIENT4}/24", f"{L.CLIENT6}/64"),
                                (r, rc, f"{L.ROUTER4}/24", f"{L.ROUTER6}/64"),
                                (r, rs, "198.18.2.1/24", "2001:db8:2::1/64"),
                                (s, sr, f"{L.SERVER4}/24", f"{L.SERVER6}/64")):
            sh("ip", "-n", ns, "addr", "add", v4, "dev", dev)
            sh("ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        for prefix in ("198.18.2.0/24", "198.18.3.0/24", "198.18.7.0/24"):
            sh("ip", "-n", c, "route", "add", prefix, "via", L.ROUTER4)
        sh("ip", "-n", c, "-6", "route", "add", "2001:db8:2::/64", "via", L.ROUTER6)
        sh("ip", "-n", s, "route", "add", "default", "via", "198.18.2.1")
        sh("ip", "-n", s, "-6", "route", "add", "default", "via", "2001:db8:2::1")
        # Per-namespace sysctls: forwarding, and no ICMP rate limit, so every
        # attempt of every test gets its ICMP error.
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1",
           "net.ipv6.conf.all.forwarding=1", "net.ipv4.icmp_ratelimit=0",
           "net.ipv6.icmp.ratelimit=0")
        for ns in (r, s):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.icmp_msgs_per_sec=100000",
               check=False)
        # A routing loop: the router sends LOOPING4 to the server, whose default
        # route points back at the router.
        sh("ip", "netns", "exec", s, "sysctl", "-qw", "net.ipv4.ip_forward=1",
           "net.ipv4.icmp_ratelimit=0", "net.ipv4.conf.all.send_redirects=0")
        sh("ip", "-n", r, "route", "add", f"{L.LOOPING4}/32", "via", L.SERVER4)
        sh("ip", "-n", r, "route", "add", "198.18.7.0/24", "via", "198.18.2.99")
        proc = subprocess.run(["ip", "netns", "exec", r, "nft", "-f", "-"], input=_ROUTER_NFT,
                              capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            raise RuntimeError(f"nft failed in {r}: {proc.stderr.strip()}")

        _wait_for_ipv6_addresses((c, r, s))

        def spawn(*argv: str, ready: str) -> None:
            p = subprocess.Popen(["ip", "netns", "exec", s, sys.executable, *argv],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            lab.processes.append(p)
            stack.callback(stop_process, p)
            _wait_for_line(p, ready)

        # Bounded lifetimes: the daemons end by themselves even if teardown never runs.
        for addr in (L.SERVER4, L.SERVER6):
            spawn("-m", "netprobe.lab.listeners", "--listen", addr, "--port", str(L.TCP_PORT),
                  "--max-seconds", "600", ready="listening")
            spawn("-m", "netprobe.lab.dns_server", "--listen", addr, "--port", "53",
                  "--record", "www.intra.example=A:203.0.113.10", "--max-seconds", "600",
                  ready="listening")
        # The first IPv6 neighbour exchange on fresh veths can lose a packet (an
        # answer then arrives a retransmit later): settle every path once before
        # any test measures it.
        warmup = [ProbeTask(id=f"warmup-{a}", kind="tcp", target="warmup", address=a,
                            port=L.TCP_PORT, attempts=1, timeout_s=5.0)
                  for a in (L.SERVER4, L.SERVER6)]
        for result in lab.run(warmup):
            if result.error is not None:
                raise RuntimeError(f"routed lab not ready: {result.address}: {result.message}")
        yield lab


def _wait_for_ipv6_addresses(namespaces: tuple[str, ...], timeout_s: float = 5.0) -> None:
    """Until no address is still tentative: before that, IPv6 packets are lost."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(sh("ip", "-n", ns, "-6", "addr", "show", "tentative").stdout.strip()
                   for ns in namespaces):
            return
        time.sleep(0.05)
    raise RuntimeError(f"IPv6 addresses still tentative after {timeout_s} s in {namespaces}")


def stop_process(p: subprocess.Popen) -> None:
    """End a test's child process (politely, then not) and close its pipes."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    for stream in (p.stdout, p.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture()
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (root): a real full disk, for ENOSPC. Unmounted after."""
    if shutil.which("mount") is None:
        pytest.skip("needs the `mount` command")
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield small
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
