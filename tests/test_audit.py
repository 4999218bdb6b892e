"""The static shared-risk audit, on small topologies built in Python."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from netprobe.config import Config, load_topology
from netprobe.diagnosis.audit import audit
from netprobe.diagnosis.model import Finding, FindingKind, Severity
from netprobe.plan import plan_targets
from netprobe.topology import Topology, build_topology

EXAMPLE = Path(__file__).resolve().parent.parent / "configs" / "example.yaml"


def make_topology(*, sites: dict[str, Any] | None = None, devices: dict[str, Any] | None = None,
                  lines: dict[str, Any] | None = None, endpoints: dict[str, Any] | None = None,
                  groups: dict[str, Any] | None = None) -> Topology:
    """A topology from plain dicts, with the defaults of a clean two-carrier setup."""
    config = {
        "version": 1,
        "sites": sites if sites is not None else {
            "dc-east": {"kind": "datacenter", "building": "east-hall", "power": "grid-east"},
            "dc-west": {"kind": "datacenter", "building": "west-hall", "power": "grid-west"},
        },
        "devices": devices if devices is not None else {
            "ce-a": {"address": "192.0.2.1"},
            "ce-b": {"address": "192.0.2.2"},
        },
        "lines": lines if lines is not None else {
            "leased-a": {"device": "ce-a", "far_end": "198.51.100.1", "carrier": "carrier-a",
                         "group": "wan", "priority": 1, "site": "dc-east"},
            "broadband-b": {"device": "ce-b", "far_end": "198.51.100.5", "carrier": "carrier-b",
                            "group": "wan", "priority": 2, "site": "dc-west"},
        },
        "groups": groups or {},
        "endpoints": endpoints if endpoints is not None else {
            "web": {"address": "203.0.113.10", "site": "dc-east", "path": ["wan"],
                    "probes": ["icmp", "tcp/443"], "backup": "web-dr"},
            "web-dr": {"address": "203.0.113.80", "site": "dc-west", "path": ["wan"],
                       "probes": ["icmp", "tcp/443"]},
        },
    }
    return build_topology(Config.model_validate(config), "t.yaml")


def two_lines(**changes: dict[str, Any]) -> dict[str, Any]:
    lines = {
        "leased-a": {"device": "ce-a", "far_end": "198.51.100.1", "carrier": "carrier-a",
                     "group": "wan", "priority": 1, "site": "dc-east"},
        "broadband-b": {"device": "ce-b", "far_end": "198.51.100.5", "carrier": "carrier-b",
                        "group": "wan", "priority": 2, "site": "dc-west"},
    }
    for name, fields in changes.items():
        lines[name.replace("_", "-")] = {**lines[name.replace("_", "-")], **fields}
    return lines


def of_kind(findings: list[Finding], kind: FindingKind) -> list[Finding]:
    return [f for f in findings if f.kind == kind]


def test_a_clean_topology_has_no_findings():
    assert audit(make_topology()) == []


def test_same_carrier_is_a_warning_naming_group_lines_and_carrier():
    topo = make_topology(lines=two_lines(broadband_b={"carrier": "Carrier-A"}))
    assert audit(topo) == [Finding(
        Severity.WARNING, FindingKind.SHARED_RISK, ("wan", "leased-a", "broadband-b"),
        "wan: leased-a and broadband-b are both from carrier-a; a single carrier outage (as when "
        "one carrier's building lost power in the 2019 typhoons) takes down both.")]


def test_three_lines_two_from_one_carrier_names_only_those_two():
    lines = two_lines()
    lines["lte-c"] = {"device": "ce-b", "far_end": "198.51.100.9", "carrier": "carrier-a",
                      "group": "wan", "priority": 3}
    findings = of_kind(audit(make_topology(lines=lines)), FindingKind.SHARED_RISK)
    carrier = [f for f in findings if "carrier-a" in f.summary]
    assert [f.components for f in carrier] == [("wan", "leased-a", "lte-c")]
    device = [f for f in findings if "end on device" in f.summary]
    assert [f.components for f in device] == [("wan", "broadband-b", "lte-c", "ce-b")]


def test_lines_on_one_router_are_a_shared_risk_and_the_router_a_single_point():
    topo = make_topology(lines=two_lines(broadband_b={"device": "ce-a"}))
    findings = audit(topo)
    assert of_kind(findings, FindingKind.SHARED_RISK) == [Finding(
        Severity.WARNING, FindingKind.SHARED_RISK, ("wan", "leased-a", "broadband-b", "ce-a"),
        "wan: leased-a and broadband-b both end on device ce-a; if that one router fails, the "
        "redundant lines go down with it.")]
    assert of_kind(findings, FindingKind.SINGLE_POINT) == [Finding(
        Severity.INFO, FindingKind.SINGLE_POINT, ("ce-a", "web", "web-dr"),
        "ce-a is on every path to web and web-dr: the lines of wan all end on it, so the "
        "redundant lines do not protect against its failure.")]


def test_same_landing_site_is_info():
    topo = make_topology(lines=two_lines(broadband_b={"site": "dc-east"}))
    assert audit(topo) == [Finding(
        Severity.INFO, FindingKind.SHARED_RISK, ("wan", "leased-a", "broadband-b"),
        "wan: leased-a and broadband-b both land in data centre dc-east; an outage there takes "
        "down both.")]


def test_a_conduit_named_on_both_lines_is_a_warning():
    topo = make_topology(lines=two_lines(leased_a={"tags": {"conduit": "river-bridge"}},
                                         broadband_b={"tags": {"conduit": "river-bridge"}}))
    assert audit(topo) == [Finding(
        Severity.WARNING, FindingKind.SHARED_RISK, ("wan", "leased-a", "broadband-b"),
        "wan: leased-a and broadband-b both run through conduit river-bridge (from line tags); "
        "one cut there (a flood, a digger) takes down both.")]


def test_different_conduits_are_fine():
    topo = make_topology(lines=two_lines(leased_a={"tags": {"conduit": "north"}},
                                         broadband_b={"tags": {"conduit": "south"}}))
    assert audit(topo) == []


def test_power_shared_by_two_landing_sites_is_info():
    sites = {"dc-east": {"kind": "datacenter", "power": "substation-2"},
             "dc-west": {"kind": "datacenter", "power": "substation-2"}}
    topo = make_topology(sites=sites)
    risks = of_kind(audit(topo), FindingKind.SHARED_RISK)
    assert risks == [Finding(
        Severity.INFO, FindingKind.SHARED_RISK, ("wan", "leased-a", "broadband-b"),
        "wan: leased-a and broadband-b both depend on power feed substation-2 (from site dc-east "
        "and site dc-west); one power failure (as in the 2019 typhoons) takes down both.")]


def test_facts_of_one_shared_router_are_not_said_twice():
    devices = {"ce-a": {"address": "192.0.2.1", "tags": {"power": "ups-1"}},
               "ce-b": {"address": "192.0.2.2"}}
    topo = make_topology(devices=devices, lines=two_lines(broadband_b={"device": "ce-a"}))
    summaries = [f.summary for f in of_kind(audit(topo), FindingKind.SHARED_RISK)]
    assert len(summaries) == 1 and "end on device ce-a" in summaries[0]


def test_routers_in_one_building_with_an_srlg_tag():
    devices = {"ce-a": {"address": "192.0.2.1", "tags": {"srlg": "hq-riser"}},
               "ce-b": {"address": "192.0.2.2", "tags": {"srlg": "hq-riser"}}}
    [finding] = audit(make_topology(devices=devices))
    assert finding.severity == Severity.INFO and finding.kind == FindingKind.SHARED_RISK
    assert finding.summary == (
        "wan: leased-a and broadband-b are both in shared risk group hq-riser (from device ce-a "
        "and device ce-b); one failure in that group takes down both.")


def test_a_device_after_the_group_and_a_lone_line_are_single_points():
    devices = {"ce-a": {"address": "192.0.2.1"}, "ce-b": {"address": "192.0.2.2"},
               "dc-edge": {"address": "203.0.113.1", "path": ["wan"]}}
    lines = two_lines()
    lines["cloud-link"] = {"device": "dc-edge", "far_end": "198.51.100.9"}
    endpoints = {
        "app": {"address": "203.0.113.10", "path": ["wan", "dc-edge"], "probes": ["icmp"]},
        "mail": {"address": "203.0.113.25", "path": ["wan", "dc-edge", "cloud-link"],
                 "probes": ["icmp"]},
    }
    findings = audit(make_topology(devices=devices, lines=lines, endpoints=endpoints))
    assert of_kind(findings, FindingKind.SINGLE_POINT) == [
        Finding(Severity.INFO, FindingKind.SINGLE_POINT, ("dc-edge", "app", "mail"),
                "dc-edge is on every path to app and mail, even though wan is redundant; if "
                "dc-edge fails they are cut off."),
        Finding(Severity.INFO, FindingKind.SINGLE_POINT, ("cloud-link", "mail"),
                "cloud-link is a single line on every path to mail, beside the redundant wan; if "
                "it fails it is cut off."),
    ]


def test_no_redundancy_on_the_way_means_no_single_point_findings():
    endpoints = {"app": {"address": "203.0.113.10", "path": ["ce-a", "leased-a"],
                         "probes": ["icmp"]}}
    assert of_kind(audit(make_topology(endpoints=endpoints)), FindingKind.SINGLE_POINT) == []


def test_a_group_of_one_line():
    lines = two_lines(broadband_b={"group": None})
    findings = of_kind(audit(make_topology(lines=lines)), FindingKind.SINGLE_POINT)
    assert Finding(Severity.INFO, FindingKind.SINGLE_POINT, ("wan", "leased-a"),
                   "wan has only one line (leased-a); there is nothing to fail over to.") in findings


def test_backup_in_the_same_site_is_a_warning():
    endpoints = {
        "web": {"address": "203.0.113.10", "site": "dc-east", "path": ["wan"],
                "probes": ["icmp"], "backup": "web-dr"},
        "web-dr": {"address": "203.0.113.80", "site": "dc-east", "path": ["wan"],
                   "probes": ["icmp"]},
    }
    assert audit(make_topology(endpoints=endpoints)) == [Finding(
        Severity.WARNING, FindingKind.SINGLE_POINT, ("web", "web-dr"),
        "web and its backup web-dr are both in site dc-east; one outage there takes down both (as "
        "when a ward lost its website and core systems in one data centre).")]


def test_backup_in_another_site_of_the_same_building_or_power():
    sites = {"dc-east": {"kind": "datacenter", "building": "tower", "power": "grid-1",
                         "conduit": "duct-9"},
             "dc-west": {"kind": "datacenter", "building": "tower", "power": "grid-1",
                         "conduit": "duct-9"}}
    findings = of_kind(audit(make_topology(sites=sites)), FindingKind.SINGLE_POINT)
    assert [(f.severity, f.summary) for f in findings] == [
        (Severity.INFO, "web and its backup web-dr both run through conduit duct-9 (sites dc-east "
                        "and dc-west); one cut there (a flood, a digger) takes down both."),
        (Severity.WARNING, "web and its backup web-dr both depend on building tower (sites dc-east "
                           "and dc-west); one building outage (fire, flood, power) takes down both."),
        (Severity.WARNING, "web and its backup web-dr both depend on power feed grid-1 (sites "
                           "dc-east and dc-west); one power failure (as in the 2019 typhoons) takes "
                           "down both."),
    ]


def test_backup_without_a_site_cannot_be_checked():
    endpoints = {
        "web": {"address": "203.0.113.10", "site": "dc-east", "path": ["wan"],
                "probes": ["icmp"], "backup": "web-dr"},
        "web-dr": {"address": "203.0.113.80", "path": ["wan"], "probes": ["icmp"]},
    }
    assert audit(make_topology(endpoints=endpoints)) == [Finding(
        Severity.INFO, FindingKind.SHARED_RISK, ("web", "web-dr"),
        "web and its backup web-dr cannot be checked for a shared site: web-dr has no site; "
        "declare one so the audit can tell whether they fail together.")]


def test_an_endpoint_probed_only_by_its_service_is_unidentifiable():
    endpoints = {"web": {"address": "203.0.113.10", "path": ["ce-a", "leased-a"],
                         "probes": ["tcp/443"]}}
    assert audit(make_topology(endpoints=endpoints)) == [Finding(
        Severity.INFO, FindingKind.UNIDENTIFIABLE, ("web", "web/tcp/443"),
        "web and web/tcp/443 are on exactly the same probes (web/tcp/443), so when those fail "
        "netprobe cannot tell which of them is broken; add icmp to web's probes, so a host that "
        "is down can be told from a service that is down.", evidence=("web/tcp/443",))]


def test_an_endpoint_with_no_probes_never_reaches_the_audit():
    # the loader refuses it (the run would leave it "unknown" forever)
    import pydantic

    endpoints = {"web": {"address": "203.0.113.10", "path": ["ce-a"], "probes": []}}
    with pytest.raises(pydantic.ValidationError, match="too_short|at least 1"):
        make_topology(endpoints=endpoints)


def test_the_example_audit():
    findings = audit(load_topology(EXAMPLE))
    assert findings == audit(load_topology(EXAMPLE))  # pure: same input, same answer
    warnings = [f for f in findings if f.severity == Severity.WARNING]
    assert [(f.kind, f.components) for f in warnings] == [
        (FindingKind.SHARED_RISK, ("dc-wan", "leased-a", "broadband-b", "ce-hq"))]
    single = {f.components[0] for f in of_kind(findings, FindingKind.SINGLE_POINT)}
    assert single == {"ce-hq", "dc-edge", "dc-cloud-gw", "cloud-link"}
    assert all(f.summary.endswith(".") and "\n" not in f.summary for f in findings)


CONFIGS = sorted(EXAMPLE.parent.glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_the_audit_from_plan_targets_is_the_audit_from_the_whole_plan(path):
    from netprobe.plan import build_plan

    topology = load_topology(path)
    from_tasks = audit(topology, [(t.id, t.target) for t in build_plan(topology)])
    assert audit(topology) == from_tasks
    # and the order of the probes does not matter (they are grouped by target)
    assert audit(topology, [(t.id, t.target) for t in reversed(build_plan(topology))]) == from_tasks


def test_probes_that_share_a_target_count_together_for_identifiability():
    # web's icmp and trace both target web: both are on web, not on its service
    endpoints = {"web": {"address": "203.0.113.10", "site": "dc-east", "path": ["wan"],
                         "probes": ["icmp", "trace", "tcp/443"]}}
    findings = of_kind(audit(make_topology(endpoints=endpoints)), FindingKind.UNIDENTIFIABLE)
    assert not [f for f in findings if "web" in f.components]
    # with its service's probe alone, web lies on exactly the same probes as the service
    endpoints = {"web": {**endpoints["web"], "path": ["ce-a"], "probes": ["tcp/443"]}}
    findings = of_kind(audit(make_topology(endpoints=endpoints)), FindingKind.UNIDENTIFIABLE)
    assert [(f.components, f.evidence) for f in findings if "web" in f.components] == [
        (("web", "web/tcp/443"), ("web/tcp/443",))]


def test_without_any_group_no_device_is_flagged_as_a_single_point():
    # one router in front of everything, but nothing redundant was promised
    devices = {"ce": {"address": "192.0.2.1"}}
    lines = {"only": {"device": "ce", "far_end": "198.51.100.1", "carrier": "carrier-a"}}
    endpoints = {"web": {"address": "203.0.113.10", "path": ["ce", "only"]}}
    topology = make_topology(devices=devices, lines=lines, endpoints=endpoints)
    assert topology.groups == {}
    assert of_kind(audit(topology), FindingKind.SINGLE_POINT) == []


def _random_config(rng: random.Random) -> dict[str, Any]:
    """A valid topology without loops: a device's path holds only earlier devices
    and their lines; endpoints cross anything, groups included."""
    devices: dict[str, Any] = {}
    lines: dict[str, Any] = {}
    for i in range(rng.randint(1, 4)):
        earlier = [*devices, *(n for n, ln in lines.items())]
        devices[f"d{i}"] = {"address": f"192.0.2.{i + 1}",
                            "path": rng.sample(earlier, rng.randint(0, min(2, len(earlier))))}
        for j in range(rng.randint(0, 2)):
            lines[f"l{i}{j}"] = {"device": f"d{i}", "far_end": f"198.51.100.{10 * i + j + 1}",
                                 "group": rng.choice([None, "g1", "g2"]), "priority": 10 * i + j + 1}
    hops = [*devices, *lines, *{ln["group"] for ln in lines.values() if ln["group"]}]
    kinds = ["icmp", "tcp/443", "tcp/22", {"dns": {"query": "www.example"}}, "trace"]
    endpoints = {
        f"e{k}": {"address": f"203.0.113.{k + 1}",
                  "path": rng.sample(hops, rng.randint(0, min(3, len(hops)))),
                  "probes": rng.sample(kinds, rng.randint(1, 3))}
        for k in range(rng.randint(1, 4))}
    return {"version": 1, "devices": devices,
            "lines": {n: {k: v for k, v in ln.items() if v is not None} for n, ln in lines.items()},
            "endpoints": endpoints}


def _unidentifiable_by_brute_force(topology: Topology) -> set[tuple[str, ...]]:
    """Each component's probes worked out one by one, straight from the definition."""
    from netprobe.plan import build_plan

    def crossed(element: str) -> set[str]:
        if element in topology.groups:
            return set().union(*(crossed(ln) for ln in topology.groups[element].lines))
        component = topology.components[element]
        return {element}.union(*(crossed(h) for h in component.path))

    on: dict[str, set[str]] = {name: set() for name in topology.components}
    for task in build_plan(topology):
        for name in crossed(task.target):
            on[name].add(task.id)
    alike: dict[frozenset[str], list[str]] = {}
    for name, ids in on.items():
        alike.setdefault(frozenset(ids), []).append(name)
    return {tuple(names) for ids, names in alike.items() if ids and len(names) > 1} | {
        (name,) for name, ids in on.items() if not ids}


def test_identifiability_agrees_with_a_brute_force_count_on_random_topologies():
    rng = random.Random(7)
    shortcut = flagged = 0
    for _ in range(400):
        topology = build_topology(Config.model_validate(_random_config(rng)), "t.yaml")
        found = {f.components for f in of_kind(audit(topology), FindingKind.UNIDENTIFIABLE)}
        expected = _unidentifiable_by_brute_force(topology)
        assert found == expected, topology.config.model_dump()
        flagged += bool(found)
        targets = {t for _, t in plan_targets(topology)}
        shortcut += all(name in targets for name in topology.components)
    # both ways through the audit were taken, and findings were made
    assert shortcut > 20 and 400 - shortcut > 20 and flagged > 20, (shortcut, flagged)
