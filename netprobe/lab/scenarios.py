"""The failures the lab rehearses: `netprobe lab break NAME`, undone by `heal`.

Each scenario breaks the healthy lab in one way. Firewall-made failures live
in nftables tables named `scn_*`, which `heal` deletes wholesale, so undoing
never depends on remembering what was done.

A cut line or a dead router drops everything it receives (netdev ingress, at
both ends of a line): taking the link down instead would not do, because Linux
still answers pings to the address of an interface that is down.

Three scenarios rehearse what real routers do to traces: `carrier-a-ratelimit`
(carrier A's router limits its ICMP errors), `dc-edge-off` (dc-edge powered
off: its links are down, so the carriers' routers answer "host unreachable"
only when address resolution gives up, about 3 s later, with the ICMP budget
of a real router), `carrier-a-silent` (carrier A's router forwards but never
sends time-exceeded). `heal` puts links, routes and sysctls back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netprobe.errors import NetprobeError
from netprobe.lab import layout, system
from netprobe.lab.controller import FAILBACK_STUCK_FLAG, FROZEN_FLAG
from netprobe.lab.reach import ping_ok, wait_until

if TYPE_CHECKING:
    from netprobe.lab.lab import Lab

SWITCH_WAIT_S = 10.0


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    apply: Callable[[Lab], None]


# -- building blocks ----------------------------------------------------------------
def _chain_name(ifname: str) -> str:
    return "in_" + ifname.replace("-", "_")


def drop_ingress(lab: Lab, role: str, interfaces: list[str], table: str,
                 rule: str = "drop") -> None:
    """A netdev table in `role`'s namespace applying `rule` to every frame that
    arrives on `interfaces` (before the IP stack or a bridge sees it)."""
    chains = "".join(
        f'    chain {_chain_name(i)} {{\n'
        f'        type filter hook ingress device "{i}" priority -500; policy accept;\n'
        f'        {rule}\n'
        f'    }}\n' for i in interfaces)
    system.nft_apply(lab.ns(role), f"table netdev scn_{table} {{\n{chains}}}\n")


def cut_line(lab: Lab, line: layout.WanLine) -> None:
    drop_ingress(lab, "ce", [line.ce_if], f"cut_{line.ce_if.replace('-', '_')}")
    drop_ingress(lab, line.pe_role, [line.pe_if], "cut_line")


def kill_device(lab: Lab, role: str) -> None:
    ifaces = [v.a_if for v in layout.VETHS if v.a_role == role]
    ifaces += [v.b_if for v in layout.VETHS if v.b_role == role]
    drop_ingress(lab, role, ifaces, "device_down")


def _expect_switch(lab: Lab, after: int, to: str) -> None:
    if lab.wait_for_event("switch", after, SWITCH_WAIT_S, to=to) is None:
        raise NetprobeError(f"the lab's controller did not switch to {to} within "
                            f"{SWITCH_WAIT_S:.0f} s; see {lab.controller_log}")


def _expect_hold(lab: Lab, after: int, want: str) -> None:
    if lab.wait_for_event("hold", after, SWITCH_WAIT_S, want=want) is None:
        raise NetprobeError(f"the lab's controller did not notice the change within "
                            f"{SWITCH_WAIT_S:.0f} s; see {lab.controller_log}")


# Linux's defaults, as a real router has them: per destination a burst of 6
# ICMP errors, then one a second; at most 1000 a second in all.
DEFAULT_ICMP_LIMITS = (("net.ipv4.icmp_ratelimit", "1000"),
                       ("net.ipv4.icmp_msgs_per_sec", "1000"),
                       ("net.ipv4.icmp_msgs_burst", "50"))
# A strict router (like `ip icmp rate-limit` on a busy carrier edge): besides
# the per-destination limit, about one error a second in all.
STRICT_ICMP_LIMITS = (("net.ipv4.icmp_ratelimit", "1000"),
                      ("net.ipv4.icmp_msgs_per_sec", "1"),
                      ("net.ipv4.icmp_msgs_burst", "1"))


def power_off(lab: Lab, role: str) -> None:
    """Every link of `role` down, as if unplugged: its neighbours' address
    resolution for it fails (unlike `kill_device`, which drops in silence)."""
    system.ip_batch(lab.ns(role), [f"link set {name} down"
                                   for name in layout.interfaces_of(role)])


def power_on(lab: Lab, role: str) -> None:
    """Links up again, and the static routes the kernel dropped with them (the
    CE's default route belongs to its controller, which puts it back itself)."""
    lines = [f"link set {name} up" for name in layout.interfaces_of(role)]
    if role != "ce":
        lines += layout.route_commands(role)
    system.ip_batch(lab.ns(role), lines)


def restore_sysctls(lab: Lab) -> None:
    for role in layout.ROLES:
        system.set_sysctls(lab.ns(role), layout.sysctls_for(role))


def restore_wire(lab: Lab) -> None:
    """Stop the delaying forwarder (if any) and put the wire's kernel bridge back."""
    lab.stop_daemon("delay-a")
    ns = lab.ns(layout.WIRE_ROLE)
    system.ip_batch(ns, [f"link set {p} master {layout.WIRE_BRIDGE}" for p in layout.WIRE_PORTS])


# -- the scenarios --------------------------------------------------------------
def healthy(lab: Lab) -> None:
    pass  # `break` heals first; nothing more to do


def primary_cut(lab: Lab) -> None:
    mark = len(lab.controller_events())
    cut_line(lab, layout.PRIMARY)
    _expect_switch(lab, mark, layout.SECONDARY.name)


def primary_cut_frozen(lab: Lab) -> None:
    lab.set_flag(FROZEN_FLAG, True)
    mark = len(lab.controller_events())
    cut_line(lab, layout.PRIMARY)
    _expect_hold(lab, mark, layout.SECONDARY.name)


def ce_down(lab: Lab) -> None:
    mark = len(lab.controller_events())
    kill_device(lab, "ce")
    # the CE's own tracking sees the primary go silent too: let it settle
    _expect_switch(lab, mark, layout.SECONDARY.name)


def carrier_a_down(lab: Lab) -> None:
    mark = len(lab.controller_events())
    kill_device(lab, layout.PRIMARY.pe_role)
    _expect_switch(lab, mark, layout.SECONDARY.name)


def both_lines_down(lab: Lab) -> None:
    mark = len(lab.controller_events())
    cut_line(lab, layout.PRIMARY)
    cut_line(lab, layout.SECONDARY)
    _expect_switch(lab, mark, layout.SECONDARY.name)


def dc_edge_down(lab: Lab) -> None:
    kill_device(lab, "dc-edge")


def service_down(lab: Lab) -> None:
    lab.stop_daemon("listener-srv-443")


def dns_down(lab: Lab) -> None:
    lab.stop_daemon("dns")


def primary_lossy(lab: Lab) -> None:
    pct = lab.settings.lossy_percent
    # one direction only (CE -> carrier A), so a ping loses about `pct` percent
    drop_ingress(lab, layout.PRIMARY.pe_role, [layout.PRIMARY.pe_if], "lossy",
                 f"meta protocol ip numgen random mod 100 < {pct} drop")


def primary_slow(lab: Lab) -> None:
    ns = lab.ns(layout.WIRE_ROLE)
    system.ip_batch(ns, [f"link set {p} nomaster" for p in layout.WIRE_PORTS])
    a, b = layout.WIRE_PORTS
    lab._spawn("delay-a", layout.WIRE_ROLE, [
        lab.settings.python, "-m", "netprobe.lab.delay", "--a", a, "--b", b,
        "--delay-ms", str(lab.settings.slow_delay_ms),
        "--max-seconds", str(int(lab.settings.max_seconds))])
    if not wait_until(lambda: ping_ok(lab.ns("ce"), layout.PRIMARY.far_end, 1.0), 10.0, 0.1):
        raise NetprobeError("the slow primary line does not pass traffic; see "
                            f"{lab.state_dir}/logs/delay-a.log")


def failback_stuck(lab: Lab) -> None:
    lab.set_flag(FAILBACK_STUCK_FLAG, True)
    mark = len(lab.controller_events())
    cut_line(lab, layout.PRIMARY)
    _expect_switch(lab, mark, layout.SECONDARY.name)
    mark = len(lab.controller_events())
    for role in ("ce", layout.PRIMARY.pe_role):  # repair the line
        system.nft_delete_tables(lab.ns(role), "scn_cut")
    # the controller sees the primary back and holds the failback
    _expect_hold(lab, mark, layout.PRIMARY.name)


def standby_dead(lab: Lab) -> None:
    cut_line(lab, layout.SECONDARY)


def carrier_a_ratelimit(lab: Lab) -> None:
    system.set_sysctls(lab.ns(layout.PRIMARY.pe_role), STRICT_ICMP_LIMITS)


def dc_edge_off(lab: Lab) -> None:
    for line in layout.LINES:
        system.set_sysctls(lab.ns(line.pe_role), DEFAULT_ICMP_LIMITS)
    power_off(lab, "dc-edge")


def carrier_a_silent(lab: Lab) -> None:
    system.nft_apply(lab.ns(layout.PRIMARY.pe_role), """table inet scn_silent {
    chain out {
        type filter hook output priority 0; policy accept;
        icmp type time-exceeded drop
    }
}
""")


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("healthy", "everything works; traffic on leased-a", healthy),
    Scenario("primary-cut", "leased-a passes nothing; the CE fails over to broadband-b",
             primary_cut),
    Scenario("primary-cut-frozen", "leased-a passes nothing and the CE's failover is frozen: "
             "traffic stays on the dead line", primary_cut_frozen),
    Scenario("ce-down", "the CE router passes and answers nothing", ce_down),
    Scenario("carrier-a-down", "carrier A's PE router is dead; the CE fails over",
             carrier_a_down),
    Scenario("both-lines-down", "leased-a and broadband-b both pass nothing", both_lines_down),
    Scenario("dc-edge-down", "the data-centre edge router passes and answers nothing",
             dc_edge_down),
    Scenario("service-down", "TCP 443 on dc-app is closed (refused) while the server answers "
             "ping", service_down),
    Scenario("dns-down", "the DNS server is not running while its host answers ping", dns_down),
    Scenario("primary-lossy", "about 30% random loss on leased-a; no failover", primary_lossy),
    Scenario("primary-slow", "about 200 ms more round-trip time on leased-a; no failover",
             primary_slow),
    Scenario("failback-stuck", "leased-a was cut and repaired; the CE failed over but does not "
             "fail back", failback_stuck),
    Scenario("standby-dead", "broadband-b passes nothing while leased-a works", standby_dead),
    Scenario("carrier-a-ratelimit", "carrier A's router sends about one ICMP error a second "
             "(traces lose its time-exceeded)", carrier_a_ratelimit),
    Scenario("dc-edge-off", "dc-edge is powered off (links down): the carriers' routers, with "
             "Linux's default ICMP limits, answer host-unreachable ~3 s late", dc_edge_off),
    Scenario("carrier-a-silent", "carrier A's router forwards but never sends time-exceeded",
             carrier_a_silent),
)}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise NetprobeError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
