"""Localisation: minimum hitting sets, paths through groups, ambiguity, unobservable parts."""

from __future__ import annotations

import sys
from itertools import combinations

import pytest
from builders import make_result, make_topology, with_results
from hypothesis import given, settings
from hypothesis import strategies as st

from netprobe.diagnosis import diagnose
from netprobe.diagnosis.localize import (
    got_through,
    localize,
    minimum_hitting_sets,
    read_traces,
)
from netprobe.diagnosis.model import FindingKind, Severity, State
from netprobe.plan import build_plan


@pytest.fixture(autouse=True)
def _without_audit(monkeypatch):
    """These tests are about the live diagnosis; the static audit has its own tests."""
    monkeypatch.setitem(sys.modules, "netprobe.diagnosis.audit", None)


def fail(probe_id: str, **kw):
    return make_result(probe_id, ok=False, **kw)


def single(*names: str) -> tuple[frozenset[str], ...]:
    return tuple(frozenset({n}) for n in names)


# -- the solver -----------------------------------------------------------------------


def test_forced_and_ambiguous_parts_are_factored():
    hs = minimum_hitting_sets([single("ce"), single("ce", "line", "edge"), single("x", "y")])
    assert hs.forced == {"ce"}
    assert hs.down == {"ce"}
    assert hs.ambiguous == {"x", "y"}
    assert sorted(map(sorted, hs.explanations())) == [["ce", "x"], ["ce", "y"]]


def test_prefers_one_shared_cause_over_two_separate_ones():
    # a and b both fail through "core": one fault explains both
    hs = minimum_hitting_sets([single("core", "a"), single("core", "b")])
    assert hs.explanations() == [frozenset({"core"})]
    assert hs.down == {"core"}


def test_no_failures_means_no_explanation():
    hs = minimum_hitting_sets([])
    assert hs.explanations() == []
    assert hs.down == frozenset()


def test_too_many_simultaneous_faults_are_left_unsolved_not_guessed():
    # a chain a-b, b-c, ... needs about half its elements: more than the bound of 2
    chain = [single(f"n{i}", f"n{i + 1}") for i in range(8)]
    hs = minimum_hitting_sets(chain, max_size=2)
    assert hs.unsolved == {f"n{i}" for i in range(9)}
    assert hs.explanations() == []
    assert hs.down == frozenset()


def test_node_budget_bounds_the_search():
    chain = [single(f"n{i}", f"n{i + 1}", f"m{i}") for i in range(30)]
    hs = minimum_hitting_sets(chain, max_size=10, max_nodes=500)
    assert hs.unsolved  # gave up within the budget instead of running on


def _brute_force(failures, universe, max_size):
    for k in range(1, max_size + 1):
        found = [frozenset(c) for c in combinations(sorted(universe), k)
                 if all(any(o <= set(c) for o in f) for f in failures)]
        if found:
            return set(found)
    return set()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=4), min_size=1,
                max_size=6))
def test_solver_matches_brute_force(paths):
    failures = [single(*p) for p in paths]
    universe = {e for p in paths for e in p}
    hs = minimum_hitting_sets(failures, max_size=7)
    assert not hs.unsolved
    assert set(hs.explanations(limit=10_000)) == _brute_force(failures, universe, 7)


# -- probes that get through ------------------------------------------------------------


def test_refused_port_and_dns_error_prove_the_path_up():
    assert got_through(fail("dc-app/tcp/443", error="refused")) is True
    assert got_through(fail("intra-dns/dns", error="dns_error", rcode="SERVFAIL")) is True
    assert got_through(fail("dc-app/icmp")) is False
    assert got_through(make_result("dc-app/icmp", loss=2 / 3)) is True  # one reply is enough
    assert got_through(make_result("dc-app/icmp", error="permission")) is None
    # a trace that stops short blames nobody
    assert got_through(make_result("dc-app/trace", hops=["192.0.2.254", None])) is None


# -- traces -------------------------------------------------------------------------------


def test_traces_vote_for_the_line_whose_hops_they_show():
    t = make_topology()
    ev = with_results(t, {}, active={"dc-wan": "broadband-b"})
    active = read_traces(t, ev)["dc-wan"]
    assert active.line == "broadband-b"
    assert not active.disagree
    assert {v.endpoint for v in active.votes} == {"dc-app", "intra-dns"}


def test_configured_hops_override_the_far_end():
    lines = make_topology().config.model_dump()["lines"]
    lines["leased-a"]["hops"] = ["198.51.100.100"]
    t = make_topology(lines=lines)
    ev = with_results(t, [make_result("dc-app/trace", hops=["192.0.2.254", "198.51.100.100"]),
                          make_result("intra-dns/trace", hops=["192.0.2.254", "198.51.100.1"])])
    # only the configured hop counts; the far end's own address does not
    assert read_traces(t, ev)["dc-wan"].line == "leased-a"
    assert [v.lines for v in read_traces(t, ev)["dc-wan"].votes] == [("leased-a",), ()]


def test_trace_disagreement_leaves_the_active_line_unknown():
    t = make_topology()
    ev = with_results(t, [make_result("dc-app/trace", hops=["192.0.2.254", "198.51.100.5"])])
    active = read_traces(t, ev)["dc-wan"]
    assert active.line is None
    assert active.disagree


def test_success_through_an_unknown_group_does_not_mark_a_specific_line_up():
    t = make_topology()
    # no traces, and no line far-end probes: only the endpoint answers
    ev = with_results(t, {}, traces=False, drop=("leased-a/icmp", "broadband-b/icmp"))
    loc = localize(t, ev)
    assert "dc-wan" in loc.proven_up  # some line works
    assert "leased-a" not in loc.proven_up and "broadband-b" not in loc.proven_up
    d = diagnose(t, ev)
    assert d.state_of("leased-a") == State.UNKNOWN
    assert d.state_of("dc-edge") == State.UP


def test_known_active_line_is_substituted_into_paths():
    t = make_topology()
    ev = with_results(t, {}, active={"dc-wan": "broadband-b"}, drop=("broadband-b/icmp",))
    loc = localize(t, ev)
    assert loc.paths["dc-app"] == ("ce-hq", "broadband-b", "dc-edge", "dc-app")
    assert "broadband-b" in loc.proven_up  # traffic crossed it, though it has no probe here
    assert diagnose(t, ev).state_of("broadband-b") == State.UP


def test_nested_paths_are_expanded():
    base = make_topology().config.model_dump()
    base["endpoints"]["dc-app"]["path"] = ["dc-edge"]  # dc-edge's own path is implied
    t = make_topology(base)
    loc = localize(t, with_results(t, {}))
    assert loc.paths["dc-app"] == ("ce-hq", "leased-a", "dc-edge", "dc-app")


# -- whole diagnoses ------------------------------------------------------------------------


def test_dead_ce_makes_everything_behind_it_unobservable():
    t = make_topology()
    ids = [task.id for task in build_plan(t) if task.kind != "trace"]
    d = diagnose(t, with_results(t, [fail(i) for i in ids], traces=False))
    assert d.explanations == (("ce-hq",),)
    assert d.state_of("ce-hq") == State.DOWN
    for name in t.components:
        if name != "ce-hq":
            state = next(c for c in d.components if c.name == name)
            assert state.state == State.UNKNOWN, name
            assert "ce-hq" in state.reason and "unobservable" in state.reason
    kinds = [f.kind for f in d.findings]
    assert kinds == [FindingKind.DEVICE_DOWN]  # no pile of findings behind it
    assert "192.0.2.1: 0/3 replies" in d.findings[0].summary


def _line_and_pe():
    return make_topology({
        "version": 1, "vantage": "branch",
        "devices": {"ce-hq": {"address": "192.0.2.1"},
                    "pe-a": {"address": "198.51.100.2", "path": ["ce-hq", "leased-a"]}},
        "lines": {"leased-a": {"device": "ce-hq", "far_end": "198.51.100.1",
                               "carrier": "carrier-a"}},
        "endpoints": {"dc-app": {"address": "203.0.113.10", "path": ["ce-hq", "leased-a", "pe-a"]}},
    })


def test_line_and_carrier_pe_with_no_probe_between_them_are_ambiguous():
    t = _line_and_pe()
    ev = with_results(t, [fail("pe-a/icmp"), fail("dc-app/icmp")], drop=("leased-a/icmp",))
    d = diagnose(t, ev)
    assert d.explanations == (("leased-a",), ("pe-a",))
    assert d.state_of("leased-a") == State.UNKNOWN
    assert d.state_of("pe-a") == State.UNKNOWN
    reason = next(c.reason for c in d.components if c.name == "pe-a")
    assert reason.startswith("ambiguous: leased-a or pe-a")
    amb = [f for f in d.findings if f.kind == FindingKind.AMBIGUOUS]
    assert len(amb) == 1
    assert amb[0].severity == Severity.CRITICAL  # something is down, we just can't say which
    assert set(amb[0].components) == {"leased-a", "pe-a"}
    assert "cannot be told apart from branch" in amb[0].summary
    assert "probe leased-a (carrier-a) far end 198.51.100.1 directly" in amb[0].summary
    assert "unobservable" in next(c.reason for c in d.components if c.name == "dc-app")


def test_line_probe_separates_line_from_pe():
    t = _line_and_pe()
    d = diagnose(t, with_results(t, [fail("pe-a/icmp"), fail("dc-app/icmp")]))
    assert d.explanations == (("pe-a",),)
    assert d.state_of("pe-a") == State.DOWN
    assert d.state_of("leased-a") == State.UP
    assert not [f for f in d.findings if f.kind == FindingKind.AMBIGUOUS]


def test_failure_behind_an_unknown_group_blames_the_group_or_the_device_not_a_guess():
    t = make_topology()
    behind = ["dc-edge/icmp", "dc-app/icmp", "dc-app/tcp/443", "intra-dns/icmp", "intra-dns/dns"]
    d = diagnose(t, with_results(t, [fail(i) for i in behind], traces=False))
    # both lines' far ends answer: the virtual "active line of dc-wan" or dc-edge
    assert d.explanations == (("dc-wan",), ("dc-edge",))
    assert d.state_of("dc-edge") == State.UNKNOWN
    assert d.state_of("leased-a") == State.UP
    amb = next(f for f in d.findings if f.kind == FindingKind.AMBIGUOUS)
    assert "the active line of dc-wan or dc-edge" in amb.summary
    assert "trace" in amb.summary  # the advice names what would separate them


def test_filtered_icmp_with_an_open_port_is_up_not_down():
    t = make_topology()
    d = diagnose(t, with_results(t, [fail("dc-app/icmp")]))
    assert d.state_of("dc-app") == State.UP
    assert "probably filtered" in next(c.reason for c in d.components if c.name == "dc-app")
    assert d.explanations == ()
    assert d.status().value == "ok"


def test_unlocalisable_failures_become_unknown_with_a_finding():
    # eleven endpoints chained through devices with no probes of their own: every
    # failure has two suspects and no small set explains them all
    devices = {"ce": {"address": "192.0.2.1"}}
    endpoints = {}
    for i in range(12):
        devices[f"d{i}"] = {"address": f"198.18.0.{i + 1}", "path": ["ce"]}
    for i in range(11):
        endpoints[f"e{i}"] = {"address": f"198.18.1.{i + 1}", "path": ["ce", f"d{i}", f"d{i + 1}"]}
    t = make_topology({"version": 1, "devices": devices, "endpoints": endpoints})
    drop = tuple(f"d{i}/icmp" for i in range(12))
    d = diagnose(t, with_results(t, [fail(f"e{i}/icmp") for i in range(11)], drop=drop))
    assert d.explanations == ()
    assert d.state_of("d3") == State.UNKNOWN
    assert d.state_of("ce") == State.UP
    assert all(c.state != State.DOWN for c in d.components)
    amb = [f for f in d.findings if f.kind == FindingKind.AMBIGUOUS]
    assert amb and "too many simultaneous failures" in amb[0].summary


def test_three_hundred_components_diagnose_correctly():
    devices = {"ce": {"address": "192.0.2.1"}}
    endpoints = {}
    for i in range(100):
        devices[f"edge{i}"] = {"address": f"198.18.0.{i + 1}", "path": ["ce"]}
        endpoints[f"ep{i}"] = {"address": f"198.19.0.{i + 1}", "path": ["ce", f"edge{i}"],
                               "probes": ["icmp", "tcp/443"]}
    t = make_topology({"version": 1, "devices": devices, "endpoints": endpoints})
    assert len(t.components) == 301
    dead_edges = {f"edge{i}" for i in range(0, 100, 9)}
    dead_services = {f"ep{i}/tcp/443" for i in range(4, 100, 9)}
    results = [fail(f"{e}/icmp") for e in dead_edges]
    for i in range(0, 100, 9):  # what lies behind a dead edge does not answer either
        results += [fail(f"ep{i}/icmp"), fail(f"ep{i}/tcp/443")]
    results += [fail(s, error="refused") for s in dead_services]
    d = diagnose(t, with_results(t, results))
    assert len(d.components) == 301
    assert len(d.explanations) == 1
    assert set(d.explanations[0]) == dead_edges | dead_services
    down = {c.name for c in d.components if c.state == State.DOWN}
    assert down == dead_edges | dead_services
    assert d.state_of("ep0") == State.UNKNOWN  # behind dead edge0
    assert d.state_of("ep1") == State.UP
    assert sum(f.kind == FindingKind.DEVICE_DOWN for f in d.findings) == len(dead_edges)
    assert sum(f.kind == FindingKind.SERVICE_DOWN for f in d.findings) == len(dead_services)
