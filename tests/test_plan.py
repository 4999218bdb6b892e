"""The plan: which probes a topology asks for, with stable ids."""

from __future__ import annotations

from netprobe.config import Config
from netprobe.plan import PlanOptions, build_plan
from netprobe.topology import Kind, build_topology

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
