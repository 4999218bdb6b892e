"""The static shared-risk audit: is the redundancy we pay for real?

A pure function of the topology (no I/O, no clock). `netprobe validate`
prints its findings and every `check` report carries them.

What it looks for, and how loud it is:

- Shared risk inside a redundancy group (`shared_risk`):
  * warning: two lines of a group from the same carrier (one carrier outage,
    as when a carrier's building lost power in the 2019 typhoons, takes both);
    two lines ending on the same device; two lines whose own tags name the
    same conduit, building, power feed or SRLG (the user has said they share
    a physical risk);
  * info: lines landing in the same site (often by design: both lines reach
    the one data centre), and facts the lines only inherit from the sites and
    devices at their ends.
- Single points of failure (`single_point_of_failure`):
  * warning: an endpoint and its declared backup in the same site, building
    or power feed (the ward that lost its website and core systems at once);
  * info: a device or a lone line on every path to endpoints that otherwise
    sit behind a redundant group; a group of one line; a backup that shares a
    conduit or SRLG with its primary.
- Identifiability (`unidentifiable`, info): two components that lie on
  exactly the same probes, so no outcome of the configured probes can say
  which of them broke; a component no probe reaches at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from netprobe.diagnosis.model import Finding, FindingKind, Severity
from netprobe.topology import Component, Kind, Topology

# Facts that put things at risk together, read from sites' fields and from
# the free-form tags of lines, devices and sites. `srlg` is the carriers' own
# word: a shared risk link group.
RISK_KEYS = ("conduit", "building", "power", "srlg")
T = TypeVar("T")

_CONSEQUENCE = {
    "conduit": ("both run through conduit {v}", "one cut there (a flood, a digger) takes down"),
    "building": ("both depend on building {v}", "one building outage (fire, flood, power) takes down"),
    "power": ("both depend on power feed {v}", "one power failure (as in the 2019 typhoons) takes down"),
    "srlg": ("are both in shared risk group {v}", "one failure in that group takes down"),
}


def audit(topology: Topology, targets: Iterable[tuple[str, str]] | None = None) -> list[Finding]:
    """Every shared risk, single point of failure and blind spot the config reveals.

    `targets`: (probe id, target) of the topology's default plan
    (`plan_targets(topology)`), if the caller has them.
    """
    findings: list[Finding] = []
    for name in sorted(topology.groups):
        findings += _group_risks(topology, name)
    findings += _single_points(topology)
    findings += _backup_risks(topology)
    findings += _unidentifiable(topology, targets)
    return findings


# -- helpers -------------------------------------------------------------------

def _names(items: Iterable[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _all(n: int) -> str:
    return "both" if n == 2 else f"all {n}"


def _are(lines: list[str]) -> str:
    return f"{_names(lines)} are" if len(lines) > 1 else f"{_names(lines)} is"


@dataclass(frozen=True)
class _Fact:
    key: str
    value: str
    source: str  # "line": the line's own tags; "landing": its site; "device": its device or that one's site
    origin: str  # for the message: "line tags", "site dc-east", "device ce-hq", ...


def _site_facts(topology: Topology, site: str | None) -> dict[str, str]:
    if site is None or site not in topology.config.sites:
        return {}
    s = topology.config.sites[site]
    facts = {k: v for k, v in s.tags.items() if k in RISK_KEYS}
    for key in ("building", "power", "conduit"):
        value = getattr(s, key)
        if value:
            facts[key] = value
    return facts


def _line_facts(topology: Topology, line: Component) -> list[_Fact]:
    facts = [_Fact(k, v, "line", "line tags") for k, v in line.tags.items() if k in RISK_KEYS]
    facts += [_Fact(k, v, "landing", f"site {line.site}")
              for k, v in _site_facts(topology, line.site).items()]
    device = topology.components.get(line.parent or "")
    if device is not None:
        facts += [_Fact(k, v, "device", f"device {device.name}")
                  for k, v in device.tags.items() if k in RISK_KEYS]
        facts += [_Fact(k, v, "device", f"site {device.site} of device {device.name}")
                  for k, v in _site_facts(topology, device.site).items()]
    return facts


# -- shared risk within a group --------------------------------------------------

def _group_risks(topology: Topology, group: str) -> list[Finding]:
    lines = [topology.components[n] for n in topology.groups[group].lines
             if n in topology.components]
    if len(lines) == 1:
        return [Finding(Severity.INFO, FindingKind.SINGLE_POINT, (group, lines[0].name),
                        f"{group} has only one line ({lines[0].name}); there is nothing to fail "
                        "over to.")]
    if len(lines) < 2:
        return []
    findings = []

    def shared(key_of) -> dict[str, list[str]]:
        by_value: dict[str, list[str]] = {}
        for line in lines:
            value = key_of(line)
            if value:
                by_value.setdefault(value, []).append(line.name)
        return {v: names for v, names in by_value.items() if len(names) > 1}

    carriers = shared(lambda c: c.carrier.strip().lower() if c.carrier else None)
    for names in carriers.values():
        shown = next(c.carrier for c in lines if c.name == names[0])
        findings.append(Finding(
            Severity.WARNING, FindingKind.SHARED_RISK, (group, *names),
            f"{group}: {_are(names)} {'both' if len(names) == 2 else 'all'} from {shown}; a single "
            f"carrier outage (as when one carrier's building lost power in the 2019 typhoons) "
            f"takes down {_all(len(names))}."))
    devices = shared(lambda c: c.parent)
    for device, names in devices.items():
        findings.append(Finding(
            Severity.WARNING, FindingKind.SHARED_RISK, (group, *names, device),
            f"{group}: {_names(names)} {'both' if len(names) == 2 else 'all'} end on device "
            f"{device}; if that one router fails, the redundant lines go down with it."))
    sites = shared(lambda c: c.site)
    for site, names in sites.items():
        kind = topology.config.sites[site].kind if site in topology.config.sites else None
        place = "data centre" if kind == "datacenter" else "site"
        findings.append(Finding(
            Severity.INFO, FindingKind.SHARED_RISK, (group, *names),
            f"{group}: {_names(names)} {'both' if len(names) == 2 else 'all'} land in {place} "
            f"{site}; an outage there takes down {_all(len(names))}."))

    # conduit, building, power, srlg: from the lines' tags and from their ends
    holders: dict[tuple[str, str], dict[str, list[_Fact]]] = {}
    for line in lines:
        for fact in _line_facts(topology, line):
            holders.setdefault((fact.key, fact.value), {}).setdefault(line.name, []).append(fact)
    for (key, value), by_line in sorted(holders.items()):
        names = [c.name for c in lines if c.name in by_line]
        if len(names) < 2:
            continue
        facts = [f for n in names for f in by_line[n]]
        comps = [topology.components[n] for n in names]
        sources = {f.source for f in facts}
        if sources == {"device"} and len({c.parent for c in comps}) == 1:
            continue  # one router at the end of them all: already the finding above
        if sources == {"landing"} and len({c.site for c in comps}) == 1:
            continue  # one landing site: already the finding above
        own = all(any(f.source == "line" for f in by_line[n]) for n in names)
        origins = sorted({f.origin for f in facts})
        what, consequence = _CONSEQUENCE[key]
        findings.append(Finding(
            Severity.WARNING if own else Severity.INFO, FindingKind.SHARED_RISK, (group, *names),
            f"{group}: {_names(names)} {what.format(v=value)} (from {_names(origins)}); "
            f"{consequence} {_all(len(names))}."))
    return findings


# -- single points of failure ------------------------------------------------------

def _hops(topology: Topology, element: str) -> tuple[str, ...]:
    """What a path element stands on: a group's lines, a component's path."""
    if element in topology.groups:
        return tuple(m for m in topology.groups[element].lines if m in topology.components)
    if element in topology.components:
        return topology.components[element].path
    return ()


def _bottom_up(topology: Topology, start: str, combine: Callable[[str, list[T]], T],
               memo: dict[str, T], empty: T) -> T:
    """`combine(element, values of its hops)`, memoised, hops first.

    Its own stack, so a chain of thousands of devices cannot reach the
    recursion limit; a loop (which the loader refuses) counts as nothing.
    """
    if start in memo:  # most calls, once the shared paths are done
        return memo[start]
    hops = _hops(topology, start)
    if all(h in memo for h in hops):  # a leaf on a known path (a service): no stack needed
        memo[start] = value = combine(start, [memo[h] for h in hops])
        return value
    stack: list[tuple[str, bool]] = [(start, False)]
    visiting: set[str] = set()
    while stack:
        element, ready = stack.pop()
        if element in memo:
            continue
        if ready:
            visiting.discard(element)
            memo[element] = combine(element, [memo.get(h, empty) for h in _hops(topology, element)])
            continue
        if element in visiting:
            continue
        visiting.add(element)
        stack.append((element, True))
        stack.extend((h, False) for h in _hops(topology, element)
                     if h not in memo and h not in visiting)
    return memo.get(start, empty)


_Crossing = tuple[frozenset[str], frozenset[str]]


class _Routes:
    """What every route to a component must cross, given the redundancy groups."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.memo: dict[str, _Crossing] = {}

    def must_cross(self, element: str) -> _Crossing:
        """(components on every route through `element`, redundant groups on the way)."""
        return _bottom_up(self.topology, element, self._combine, self.memo,
                          (frozenset(), frozenset()))

    def _combine(self, element: str, hops: list[_Crossing]) -> _Crossing:
        if element in self.topology.groups:
            if len(hops) <= 1:  # a group of one line is that line
                return hops[0] if hops else (frozenset(), frozenset())
            common = frozenset.intersection(*(c for c, _ in hops))
            return common, frozenset({element}).union(*(g for _, g in hops))
        if element not in self.topology.components:
            return frozenset(), frozenset()
        return (frozenset({element}).union(*(c for c, _ in hops)),
                frozenset().union(*(g for _, g in hops)))


def _single_points(topology: Topology) -> list[Finding]:
    if not topology.groups:  # no redundancy anywhere: nothing promised, nothing to flag
        return []
    routes = _Routes(topology)
    # a device or line that every route crosses -> the endpoints it cuts off, and the groups
    # whose redundancy it sidesteps
    cut_off: dict[str, list[str]] = {}
    sidestepped: dict[str, set[str]] = {}
    for endpoint in topology.of_kind(Kind.ENDPOINT):
        mandatory, groups = routes.must_cross(endpoint.name)
        if not groups:
            continue  # no redundancy anywhere on the way: nothing promised, nothing to flag
        for name in sorted(mandatory - {endpoint.name}):
            comp = topology.components[name]
            if comp.kind == Kind.LINE and comp.group in topology.groups and \
                    len(topology.groups[comp.group].lines) > 1:
                continue
            cut_off.setdefault(name, []).append(endpoint.name)
            sidestepped.setdefault(name, set()).update(groups)

    findings = []
    for name in sorted(cut_off, key=lambda n: (topology.components[n].kind != Kind.DEVICE, n)):
        comp, endpoints = topology.components[name], cut_off[name]
        they = "they are" if len(endpoints) > 1 else "it is"
        groups = sorted(sidestepped[name])
        ends_lines_of = [g for g in groups
                         if all(topology.components[ln].parent == name
                                for ln in topology.groups[g].lines if ln in topology.components)]
        if comp.kind == Kind.DEVICE and ends_lines_of:
            summary = (f"{name} is on every path to {_names(endpoints)}: the lines of "
                       f"{_names(ends_lines_of)} all end on it, so the redundant lines do not "
                       f"protect against its failure.")
        elif comp.kind == Kind.DEVICE:
            summary = (f"{name} is on every path to {_names(endpoints)}, even though "
                       f"{_names(groups)} {'is' if len(groups) == 1 else 'are'} redundant; if "
                       f"{name} fails {they} cut off.")
        else:
            summary = (f"{name} is a single line on every path to {_names(endpoints)}, beside the "
                       f"redundant {_names(groups)}; if it fails {they} cut off.")
        findings.append(Finding(Severity.INFO, FindingKind.SINGLE_POINT, (name, *endpoints), summary))
    return findings


def _backup_risks(topology: Topology) -> list[Finding]:
    findings = []
    for endpoint in topology.of_kind(Kind.ENDPOINT):
        backup = topology.components.get(endpoint.backup or "")
        if backup is None or backup.name == endpoint.name:
            continue
        pair = f"{endpoint.name} and its backup {backup.name}"
        if endpoint.site is None or backup.site is None:
            missing = _names([c.name for c in (endpoint, backup) if c.site is None])
            findings.append(Finding(
                Severity.INFO, FindingKind.SHARED_RISK, (endpoint.name, backup.name),
                f"{pair} cannot be checked for a shared site: {missing} "
                f"{'has' if ' and ' not in missing else 'have'} no site; declare one so the "
                "audit can tell whether they fail together."))
            continue
        if endpoint.site == backup.site:
            findings.append(Finding(
                Severity.WARNING, FindingKind.SINGLE_POINT, (endpoint.name, backup.name),
                f"{pair} are both in site {endpoint.site}; one outage there takes down both (as "
                "when a ward lost its website and core systems in one data centre)."))
            continue
        primary = _site_facts(topology, endpoint.site) | {
            k: v for k, v in endpoint.tags.items() if k in RISK_KEYS}
        standby = _site_facts(topology, backup.site) | {
            k: v for k, v in backup.tags.items() if k in RISK_KEYS}
        for key in RISK_KEYS:
            if key in primary and primary[key] == standby.get(key):
                what, consequence = _CONSEQUENCE[key]
                loud = key in ("building", "power")
                findings.append(Finding(
                    Severity.WARNING if loud else Severity.INFO, FindingKind.SINGLE_POINT,
                    (endpoint.name, backup.name),
                    f"{pair} {what.format(v=primary[key])} (sites {endpoint.site} and "
                    f"{backup.site}); {consequence} both."))
    return findings


# -- identifiability ---------------------------------------------------------------

def _unidentifiable(topology: Topology,
                    targets: Iterable[tuple[str, str]] | None) -> list[Finding]:
    from netprobe.plan import plan_targets

    covered: dict[str, frozenset[str]] = {}

    def with_hops(element: str, hops: list[frozenset[str]]) -> frozenset[str]:
        # a group counts as all its lines: conservative, as the trace may show either
        own = {element} if element in topology.components else set()
        return frozenset(own).union(*hops)

    def crossed(name: str) -> frozenset[str]:
        """The component and everything before it."""
        return _bottom_up(topology, name, with_hops, covered, frozenset())

    ids_of: dict[str, list[str]] = {}  # target -> its probes: what it crosses is worked out once
    for probe_id, target in plan_targets(topology) if targets is None else targets:
        ids_of.setdefault(target, []).append(probe_id)
    components = topology.components
    if all(name in ids_of for name in components):
        # Every component is some probe's target, so each is on a probe of its own
        # (nothing here to flag as unreached), and no two are on the same probes:
        # X on Y's own probe and Y on X's would need a loop of paths, which the
        # loader refuses. The common case (every endpoint pinged) ends here.
        return []
    # each id reaches a component once (a target crosses each component once): lists do
    probes_of: dict[str, list[str]] = {}
    for target, ids in ids_of.items():
        component = components.get(target)
        path = component.path if component is not None else None
        if path is not None and target not in topology.groups and all(h in covered for h in path):
            # the common case, a target on paths already worked out: no stack, no call
            names = covered[target] = frozenset((target,)).union(*[covered[h] for h in path])
        else:
            names = crossed(target)
        for name in names:
            found = probes_of.get(name)
            if found is None:
                probes_of[name] = list(ids)
            else:
                found += ids

    findings = []
    by_signature: dict[frozenset[str], list[str]] = {}
    for name in components:
        signature = frozenset(probes_of.get(name, ()))
        if not signature:
            findings.append(Finding(
                Severity.INFO, FindingKind.UNIDENTIFIABLE, (name,),
                f"no probe reaches {name}, so netprobe cannot say whether it works; "
                f"{_probe_hint(topology, [name])}."))
            continue
        by_signature.setdefault(signature, []).append(name)
    for signature, names in by_signature.items():
        if len(names) < 2:
            continue
        ids = tuple(sorted(signature))
        findings.append(Finding(
            Severity.INFO, FindingKind.UNIDENTIFIABLE, tuple(names),
            f"{_names(names)} are on exactly the same probes ({_names(ids)}), so when those "
            f"fail netprobe cannot tell which of them is broken; {_probe_hint(topology, names)}.",
            evidence=ids))
    return findings


def _probe_hint(topology: Topology, names: list[str]) -> str:
    comps = [topology.components[n] for n in names]
    kinds = {c.kind for c in comps}
    if len(comps) == 1 and comps[0].kind == Kind.ENDPOINT:
        return f"give {comps[0].name} a probe (icmp, tcp/PORT or dns)"
    if kinds == {Kind.ENDPOINT, Kind.SERVICE} or kinds == {Kind.SERVICE}:
        endpoint = next((c.name for c in comps if c.kind == Kind.ENDPOINT),
                        comps[0].parent or comps[0].name)
        return (f"add icmp to {endpoint}'s probes, so a host that is down can be told from a "
                "service that is down")
    if Kind.LINE in kinds:
        lines = _names([c.name for c in comps if c.kind == Kind.LINE])
        return (f"probe the far end of {lines} on its own (a far_end address that only that "
                "line reaches)")
    return ("add a device entry with the in-between router's address so it is probed on its "
            "own, or a probe that crosses one of them but not the other")
