"""The lab's shape: a city hall's office, its CE router with two WAN lines, the
carriers' PE routers, a data-centre edge with a server, a DNS host and a cloud
region behind it. Pure data; `netprobe.lab.lab` turns it into namespaces.

    office ── ce ══ leased-a ══ [wire-a] ── pe-a ──┐
                 ╲                                   dc-edge ── srv, dns (LAN)
                  ══ broadband-b ══════════ pe-b ──┘        └── cloud

Addresses come only from the documentation ranges. The CE SNATs to the WAN
address of the line a packet leaves on, so return traffic follows the same
line and dc-edge needs no route change when the CE switches. dc-edge's routes
back carry `src 203.0.113.1`, so a trace shows it by its device address
whichever line is active; pe-a and pe-b show as the lines' far ends.

`wire-a` is a transparent middle box on the primary line: a kernel bridge
normally, a userspace forwarder that delays frames in the `primary-slow`
scenario (this kernel has no netem).
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("office", "ce", "wire-a", "pe-a", "pe-b", "dc-edge", "srv", "dns", "cloud")
ROUTERS = ("ce", "pe-a", "pe-b", "dc-edge")


@dataclass(frozen=True)
class Veth:
    """A veth pair; each end is (role, interface name, address/prefix or None)."""

    a_role: str
    a_if: str
    a_cidr: str | None
    b_role: str
    b_if: str
    b_cidr: str | None


@dataclass(frozen=True)
class Bridge:
    role: str
    name: str
    ports: tuple[str, ...]
    cidr: str | None = None


@dataclass(frozen=True)
class Route:
    role: str
    dest: str  # "default" or a prefix
    via: str
    dev: str | None = None
    src: str | None = None


@dataclass(frozen=True)
class WanLine:
    """One of the CE's WAN lines, as the failover controller and the config see it."""

    name: str  # the config's line name
    ce_if: str
    ce_addr: str
    far_end: str  # the PE's address on the line
    pe_role: str
    pe_if: str  # the PE's interface facing the CE


@dataclass(frozen=True)
class Daemon:
    """A long-running helper process of the lab (a listener, the DNS server)."""

    name: str  # also its pid file's name
    role: str
    module: str
    args: tuple[str, ...]


PRIMARY = WanLine("leased-a", "wan-a", "198.51.100.2", "198.51.100.1", "pe-a", "to-ce")
SECONDARY = WanLine("broadband-b", "wan-b", "198.51.100.6", "198.51.100.5", "pe-b", "to-ce")
LINES = (PRIMARY, SECONDARY)

OFFICE_ADDR = "192.0.2.10"
CE_LAN_ADDR = "192.0.2.1"
DC_EDGE_ADDR = "203.0.113.1"
SERVER_ADDR = "203.0.113.10"
DNS_ADDR = "203.0.113.53"
CLOUD_ADDR = "203.0.113.130"
SERVER_PORTS = (443, 22)
CLOUD_PORTS = (443,)
DNS_RECORDS = ("www.intra.example=A:203.0.113.10", "app.intra.example=A:203.0.113.10",
               "cloud.intra.example=A:203.0.113.130")

# The primary line's middle box: frames between these two ports.
WIRE_ROLE = "wire-a"
WIRE_BRIDGE = "br0"
WIRE_PORTS = ("wa-ce", "wa-pe")

VETHS = (
    Veth("office", "eth0", f"{OFFICE_ADDR}/26", "ce", "lan0", f"{CE_LAN_ADDR}/26"),
    Veth("ce", "wan-a", "198.51.100.2/30", "wire-a", "wa-ce", None),
    Veth("wire-a", "wa-pe", None, "pe-a", "to-ce", "198.51.100.1/30"),
    Veth("ce", "wan-b", "198.51.100.6/30", "pe-b", "to-ce", "198.51.100.5/30"),
    Veth("pe-a", "to-dc", "198.51.100.9/30", "dc-edge", "to-pe-a", "198.51.100.10/30"),
    Veth("pe-b", "to-dc", "198.51.100.13/30", "dc-edge", "to-pe-b", "198.51.100.14/30"),
    Veth("dc-edge", "p-srv", None, "srv", "eth0", f"{SERVER_ADDR}/26"),
    Veth("dc-edge", "p-dns", None, "dns", "eth0", f"{DNS_ADDR}/26"),
    Veth("dc-edge", "to-cloud", "203.0.113.129/30", "cloud", "eth0", f"{CLOUD_ADDR}/30"),
)

BRIDGES = (
    Bridge(WIRE_ROLE, WIRE_BRIDGE, WIRE_PORTS),
    Bridge("dc-edge", "br-dc", ("p-srv", "p-dns"), f"{DC_EDGE_ADDR}/26"),
)

ROUTES = (
    Route("office", "default", CE_LAN_ADDR),
    Route("ce", "default", PRIMARY.far_end, PRIMARY.ce_if),  # the controller owns it from here
    Route("pe-a", "203.0.113.0/24", "198.51.100.10"),
    Route("pe-b", "203.0.113.0/24", "198.51.100.14"),
    Route("dc-edge", "198.51.100.0/30", "198.51.100.9", src=DC_EDGE_ADDR),
    Route("dc-edge", "198.51.100.4/30", "198.51.100.13", src=DC_EDGE_ADDR),
    Route("srv", "default", DC_EDGE_ADDR),
    Route("dns", "default", DC_EDGE_ADDR),
    Route("cloud", "default", "203.0.113.129"),
)

# The CE's source NAT: each line's own address, so replies come back on it.
CE_NAT_RULESET = f"""
table ip base_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{PRIMARY.ce_if}" snat to {PRIMARY.ce_addr}
        oifname "{SECONDARY.ce_if}" snat to {SECONDARY.ce_addr}
    }}
}}
"""

DAEMONS = (
    *(Daemon(f"listener-srv-{p}", "srv", "netprobe.lab.listeners",
             ("--listen", SERVER_ADDR, "--port", str(p))) for p in SERVER_PORTS),
    *(Daemon(f"listener-cloud-{p}", "cloud", "netprobe.lab.listeners",
             ("--listen", CLOUD_ADDR, "--port", str(p))) for p in CLOUD_PORTS),
    Daemon("dns", "dns", "netprobe.lab.dns_server",
           ("--listen", DNS_ADDR, "--port", "53",
            *(a for r in DNS_RECORDS for a in ("--record", r)))),
)

# Every lab namespace: no ICMP error rate limit (traces without gaps), no
# reverse-path filter (asymmetric paths are the point of the lab).
COMMON_SYSCTLS = (
    ("net.ipv4.icmp_ratelimit", "0"),
    ("net.ipv4.icmp_msgs_per_sec", "100000"),
    ("net.ipv4.icmp_msgs_burst", "100000"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    # No IPv6 on the lab's links (lo keeps ::1): no router solicitations or
    # DAD delays; set before the links are made, so they inherit it.
    ("net.ipv6.conf.default.disable_ipv6", "1"),
)
ROUTER_SYSCTLS = (("net.ipv4.ip_forward", "1"),)
# Unprivileged ICMP echo for any group, so `ping` and icmplib work unprivileged too.
OFFICE_SYSCTLS = (("net.ipv4.ping_group_range", "0 2147483647"),)


def sysctls_for(role: str) -> tuple[tuple[str, str], ...]:
    extra: tuple[tuple[str, str], ...] = ()
    if role in ROUTERS:
        extra += ROUTER_SYSCTLS
    if role == "office":
        extra += OFFICE_SYSCTLS
    return COMMON_SYSCTLS + extra


def interfaces_of(role: str) -> list[str]:
    names = [v.a_if for v in VETHS if v.a_role == role]
    names += [v.b_if for v in VETHS if v.b_role == role]
    names += [b.name for b in BRIDGES if b.role == role]
    return names


def route_commands(role: str) -> list[str]:
    """`ip -batch` lines for the static routes of `role` (idempotent: replace)."""
    lines = []
    for rt in ROUTES:
        if rt.role == role:
            line = f"route replace {rt.dest} via {rt.via}"
            line += f" dev {rt.dev}" if rt.dev else ""
            line += f" src {rt.src}" if rt.src else ""
            lines.append(line)
    return lines
