"""The plan: which probes a topology asks for, with stable ids."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from netprobe.config import Config, load_topology
from netprobe.plan import PlanOptions, build_plan, plan_targets
from netprobe.probes.interface import ProbeTask
from netprobe.topology import Component, Kind, build_topology

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))

CONFIG = {
    "version": 1,
    "vantage": "hq",
    "defaults": {"timeout": "500ms", "attempts": 2},
    "devices": {"ce": {"address": "192.0.2.1"},
                "dc-edge": {"address": "203.0.113.1", "path": ["ce", "wan"]}},
    "lines": {
        "a": {"device": "ce", "far_end": "198.51.100.1", "group": "wan", "priority": 1},
        "b": {"device": "ce", "far_end": "198.51.100.5", "group": "wan", "priority": 2},
    },
    "endpoints": {
        "web": {"address": "203.0.113.10", "path": ["ce", "wan", "dc-edge"],
                "probes": ["icmp", "tcp/443", "tcp/22"]},
        "dns": {"address": "203.0.113.53", "path": ["ce"], "attempts": 1,
                "probes": [{"dns": {"query": "www.intra.example", "expect": ["203.0.113.10"],
                                    "server": "203.0.113.54"}}]},
    },
}


def topo():
    return build_topology(Config.model_validate(CONFIG), "t.yaml")


def test_every_component_gets_its_probe_with_stable_ids():
    tasks = {t.id: t for t in build_plan(topo())}
    assert set(tasks) == {"ce/icmp", "dc-edge/icmp", "a/icmp", "b/icmp", "web/icmp",
                          "web/tcp/443", "web/tcp/22", "dns/dns", "web/trace"}
    assert tasks["a/icmp"].address == "198.51.100.1"
    assert tasks["web/tcp/443"].port == 443 and tasks["web/tcp/443"].target == "web/tcp/443"
    assert tasks["ce/icmp"].timeout_s == 0.5 and tasks["ce/icmp"].attempts == 2


def test_endpoint_behind_a_group_is_traced_over_its_first_tcp_port():
    trace = {t.id: t for t in build_plan(topo())}["web/trace"]
    assert trace.params["protocol"] == "tcp" and trace.port == 443 and trace.attempts == 1


def test_no_trace_option_and_endpoint_not_behind_group():
    ids = {t.id for t in build_plan(topo(), PlanOptions(traces=False))}
    assert "web/trace" not in ids and "dns/trace" not in ids


def test_dns_probe_goes_to_its_server_with_endpoint_overrides():
    dns = {t.id: t for t in build_plan(topo())}["dns/dns"]
    assert dns.address == "203.0.113.54" and dns.attempts == 1
    assert dns.params == {"query": "www.intra.example", "type": "A", "expect": ["203.0.113.10"]}


def test_cli_overrides_beat_config_defaults():
    tasks = build_plan(topo(), PlanOptions(attempts=5, timeout_s=2.0))
    assert {t.attempts for t in tasks if t.kind == "icmp" and t.target != "dns"} == {5}
    assert {t.timeout_s for t in tasks} == {2.0}


def test_topology_paths_and_services():
    t = topo()
    assert t.components["a"].path == ("ce",) and t.components["a"].kind == Kind.LINE
    assert t.components["web/tcp/443"].path == ("ce", "wan", "dc-edge", "web")
    assert t.groups["wan"].lines == ("a", "b") and t.groups["wan"].preferred == "a"
    assert [c.name for c in t.services_of("web")] == ["web/tcp/443", "web/tcp/22"]


# An endpoint with a trace of its own, one behind a group without one, one not
# behind a group, and one that is only a DNS service.
TRACED = {**CONFIG, "endpoints": {
    **CONFIG["endpoints"],
    "app": {"address": "203.0.113.11", "path": ["wan"],
            "probes": ["tcp/8443", {"trace": {"protocol": "udp"}}, "icmp"]},
    "lone": {"address": "203.0.113.12", "path": ["ce"], "probes": ["trace"]},
}}


@pytest.mark.parametrize("options", [
    None, PlanOptions(traces=False), PlanOptions(only=frozenset({"web", "a", "ce", "lone"})),
    PlanOptions(only=frozenset()),
], ids=["default", "no-traces", "only-some", "only-none"])
@pytest.mark.parametrize("source", ["inline", *(p.name for p in CONFIGS)])
def test_plan_targets_are_the_ids_and_targets_of_build_plan(source, options):
    if source == "inline":
        topology = build_topology(Config.model_validate(TRACED), "t.yaml")
    else:
        topology = load_topology(next(p for p in CONFIGS if p.name == source))
    expected = [(t.id, t.target) for t in build_plan(topology, options)]
    assert plan_targets(topology, options) == expected


def test_plan_targets_cover_every_kind_of_task():
    """The comparison above is worth something only if the inline plan has them all."""
    tasks = build_plan(build_topology(Config.model_validate(TRACED), "t.yaml"))
    assert {t.kind for t in tasks} == {"icmp", "tcp", "dns", "trace"}
    assert {"app/trace", "lone/trace", "web/trace"} <= {t.id for t in tasks}


@pytest.mark.parametrize("source", ["inline", *(p.name for p in CONFIGS)])
def test_tasks_are_what_the_dataclass_constructor_makes(source):
    """build_plan makes tasks without ProbeTask's __init__: the same fields, no
    more, no fewer, and a params dict of each one's own."""
    if source == "inline":
        topology = build_topology(Config.model_validate(TRACED), "t.yaml")
    else:
        topology = load_topology(next(p for p in CONFIGS if p.name == source))
    tasks = build_plan(topology)
    names = [f.name for f in dataclasses.fields(ProbeTask)]
    for task in tasks:
        made = ProbeTask(**{n: getattr(task, n) for n in names})
        assert vars(task) == vars(made) and task == made, task.id
    params = [id(t.params) for t in tasks]
    assert len(set(params)) == len(params)


@pytest.mark.parametrize("source", ["inline", *(p.name for p in CONFIGS)])
def test_components_are_what_the_dataclass_constructor_makes(source):
    """build_topology makes components without Component's __init__: the same
    fields, no more, no fewer, and a tags dict of each one's own."""
    if source == "inline":
        topology = build_topology(Config.model_validate(TRACED), "t.yaml")
    else:
        topology = load_topology(next(p for p in CONFIGS if p.name == source))
    names = [f.name for f in dataclasses.fields(Component)]
    for component in topology.components.values():
        made = Component(**{n: getattr(component, n) for n in names})
        assert vars(component) == vars(made), component.name
    tags = [id(c.tags) for c in topology.components.values()]
    assert len(set(tags)) == len(tags)


def test_the_components_are_made_when_first_asked_for_not_before_the_plan():
    """check sends its probes before it needs the components: loading and
    planning must not make them (10,000 endpoints: 12 ms before the first packet)."""
    topology = load_topology(CONFIGS[0])
    assert build_plan(topology)
    assert "components" not in vars(topology)
    made = topology.components
    assert made is topology.components and made
    assert "components" in vars(topology)


def test_a_saved_topology_naming_what_it_does_not_hold_is_refused_as_damaged():
    from netprobe.errors import NetprobeError
    from netprobe.topology import topology_from_report

    embedded = {"version": 1, "devices": {},
                "lines": {"l1": {"device": "gone", "far_end": "192.0.2.1"}}}
    with pytest.raises(NetprobeError, match="damaged .no component 'gone'"):
        topology_from_report({"topology": embedded}, "saved.json")


def test_only_icmp_tcp_and_dns_tasks_keep_listening_for_late_errors():
    """The late-error window (PlanOptions.late_grace_s) is for the probes that
    heard nothing; a trace has none, so its time budget is its own."""
    topology = build_topology(Config.model_validate(TRACED), "t.yaml")
    tasks = build_plan(topology, PlanOptions(late_grace_s=2.5))
    assert {t.kind for t in tasks} == {"icmp", "tcp", "dns", "trace"}
    for task in tasks:
        assert task.late_grace_s == (0.0 if task.kind == "trace" else 2.5), task.id
