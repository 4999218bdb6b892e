"""Failover verdicts of redundancy groups, and their findings."""

from __future__ import annotations

import sys

import pytest
from builders import make_result, make_topology, with_results

from netprobe.diagnosis import diagnose
from netprobe.diagnosis.model import FindingKind, Severity, State, Status, Verdict

BEHIND = ["dc-edge/icmp", "dc-app/icmp", "dc-app/tcp/443", "intra-dns/icmp", "intra-dns/dns"]
STUCK_ON_A = ["192.0.2.254", "198.51.100.1", None, None]  # traces that stop after leased-a


@pytest.fixture(autouse=True)
def _without_audit(monkeypatch):
    """These tests are about the live diagnosis; the static audit has its own tests."""
    monkeypatch.setitem(sys.modules, "netprobe.diagnosis.audit", None)


def fail(probe_id: str, **kw):
    return make_result(probe_id, ok=False, **kw)


def stuck_traces(hops):
    return [make_result("dc-app/trace", hops=hops), make_result("intra-dns/trace", hops=hops)]


def findings_of(d, kind):
    return [f for f in d.findings if f.kind == kind]


@pytest.fixture
def topo():
    return make_topology()


def test_nominal(topo):
    g = diagnose(topo, with_results(topo, {})).group("dc-wan")
    assert g.verdict == Verdict.NOMINAL
    assert g.active == "leased-a" and g.preferred == "leased-a"
    assert g.lines == ("leased-a", "broadband-b")
    assert set(g.evidence) >= {"leased-a/icmp", "broadband-b/icmp", "dc-app/trace"}


def test_redundancy_lost_when_a_standby_is_down(topo):
    d = diagnose(topo, with_results(topo, [fail("broadband-b/icmp")]))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.REDUNDANCY_LOST
    assert g.active == "leased-a"
    f = findings_of(d, FindingKind.REDUNDANCY_LOST)[0]
    assert f.severity == Severity.WARNING
    assert "standby broadband-b (carrier-b) far end 198.51.100.5: 0/3 replies" in f.summary
    assert "no working backup" in f.summary
    # the dead standby costs redundancy, not traffic: a warning, not a critical
    line = findings_of(d, FindingKind.LINE_DOWN)[0]
    assert line.severity == Severity.WARNING
    assert d.status() == Status.WARNING


def test_failed_over_shown_by_traces(topo):
    d = diagnose(topo, with_results(topo, [fail("leased-a/icmp")],
                                    active={"dc-wan": "broadband-b"}))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.FAILED_OVER
    assert g.active == "broadband-b"
    f = findings_of(d, FindingKind.FAILED_OVER)[0]
    assert f.severity == Severity.WARNING
    assert f.summary == (
        "leased-a (carrier-a) far end 198.51.100.1: 0/3 replies; "
        "broadband-b (carrier-b) far end 198.51.100.5: 3/3, 1.0 ms; "
        "traffic to dc-app, intra-dns now via broadband-b.")
    assert d.state_of("leased-a") == State.DOWN
    assert d.status() == Status.WARNING  # traffic flows: the operator should know, not panic


def test_failed_over_inferred_from_traffic_without_traces(topo):
    d = diagnose(topo, with_results(topo, [fail("leased-a/icmp")], traces=False))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.FAILED_OVER
    assert g.active is None  # no trace says which line
    assert "standby" in g.reason


def test_failover_failed_when_traces_still_show_the_preferred_line(topo):
    results = [fail("leased-a/icmp"), *map(fail, BEHIND), *stuck_traces(STUCK_ON_A)]
    d = diagnose(topo, with_results(topo, results))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.FAILOVER_FAILED
    assert g.active == "leased-a"
    f = findings_of(d, FindingKind.FAILOVER_FAILED)[0]
    assert f.severity == Severity.CRITICAL
    assert "still goes via leased-a (trace shows 198.51.100.1)" in f.summary
    assert "did not move to broadband-b" in f.summary
    assert d.state_of("dc-app") == State.UNKNOWN  # behind the dead line, not down itself


def test_failover_failed_when_traffic_behind_fails_while_a_standby_is_up(topo):
    d = diagnose(topo, with_results(topo, [fail("leased-a/icmp"), *map(fail, BEHIND)],
                                    traces=False))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.FAILOVER_FAILED
    assert d.explanations == (("leased-a",),)  # one fault: traffic stayed on the dead line
    f = findings_of(d, FindingKind.FAILOVER_FAILED)[0]
    assert "broadband-b (carrier-b) far end 198.51.100.5: 3/3" in f.summary
    assert "traffic did not move to broadband-b" in f.summary
    assert d.status() == Status.CRITICAL


@pytest.mark.parametrize(("failback", "severity", "status"), [
    ("auto", Severity.WARNING, Status.WARNING),
    ("manual", Severity.INFO, Status.OK),
])
def test_failback_pending(failback, severity, status):
    t = make_topology(groups={"dc-wan": {"failback": failback}})
    d = diagnose(t, with_results(t, {}, active={"dc-wan": "broadband-b"}))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.FAILBACK_PENDING
    assert g.failback == failback
    f = findings_of(d, FindingKind.FAILBACK_PENDING)[0]
    assert f.severity == severity
    assert "still goes via broadband-b" in f.summary
    assert ("manual" in f.summary) == (failback == "manual")
    assert d.status() == status


def test_group_down_when_every_line_is_down(topo):
    d = diagnose(topo, with_results(topo, [fail("leased-a/icmp"), fail("broadband-b/icmp"),
                                           *map(fail, BEHIND)], traces=False))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.DOWN
    assert d.explanations == (("leased-a", "broadband-b"),)
    f = findings_of(d, FindingKind.GROUP_DOWN)[0]
    assert f.severity == Severity.CRITICAL
    assert "every line of dc-wan is down" in f.summary
    assert "198.51.100.1: 0/3 replies" in f.summary and "198.51.100.5: 0/3 replies" in f.summary
    assert all(x.severity == Severity.CRITICAL for x in findings_of(d, FindingKind.LINE_DOWN))
    reason = next(c.reason for c in d.components if c.name == "dc-app")
    assert reason == "unobservable: behind leased-a and broadband-b, which are down"


def test_unknown_without_traces_says_why(topo):
    d = diagnose(topo, with_results(topo, {}, traces=False))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.UNKNOWN
    assert "cannot tell which line carries traffic" in g.reason
    assert d.status() == Status.OK  # nothing is wrong; the group is merely unverified


def test_traces_stopping_at_the_ce_while_the_lines_answer_are_ambiguous_not_unknown(topo):
    d = diagnose(topo, with_results(topo, stuck_traces(["192.0.2.1", None, None])))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.AMBIGUOUS
    assert g.candidates == ("leased-a", "broadband-b")
    assert "no trace reached past 192.0.2.1" in g.reason
    f = next(f for f in d.findings if f.kind == FindingKind.AMBIGUOUS)
    assert "leased-a or broadband-b" in f.summary and "dc-app, intra-dns" in f.summary


def test_unknown_when_traces_could_not_be_measured_is_a_not_measured_finding(topo):
    nm = [make_result(i, error="permission", message="traces need raw sockets (root)")
          for i in ("dc-app/trace", "intra-dns/trace")]
    d = diagnose(topo, with_results(topo, nm))
    assert d.group("dc-wan").verdict == Verdict.UNKNOWN
    f = findings_of(d, FindingKind.NOT_MEASURED)[0]
    assert set(f.components) == {"dc-app", "intra-dns"}
    assert "traces need raw sockets (root)" in f.summary
    assert d.status() == Status.UNKNOWN


def test_trace_disagreement_is_ambiguous_and_names_the_candidates(topo):
    d = diagnose(topo, with_results(topo, [make_result("dc-app/trace",
                                                       hops=["192.0.2.254", "198.51.100.5"])]))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.AMBIGUOUS
    assert g.active is None
    assert g.candidates == ("leased-a", "broadband-b")
    assert "traces disagree" in g.reason
    assert "dc-app via broadband-b" in g.reason and "intra-dns via leased-a" in g.reason
    f = findings_of(d, FindingKind.AMBIGUOUS)[0]
    assert f.severity == Severity.WARNING
    assert "dc-app/trace shows broadband-b" in f.summary


def test_behind_dead_ce_the_group_is_unknown(topo):
    ids = ["ce-hq/icmp", "leased-a/icmp", "broadband-b/icmp", *BEHIND]
    d = diagnose(topo, with_results(topo, [fail(i) for i in ids], traces=False))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.UNKNOWN
    assert "ce-hq" in g.reason
    assert not findings_of(d, FindingKind.GROUP_DOWN)  # lines unobservable, not down


def test_three_lines_failed_over_to_the_third(topo):
    lines = make_topology().config.model_dump()["lines"]
    lines["mobile-c"] = {"device": "ce-hq", "far_end": "198.51.100.9", "carrier": "carrier-c",
                         "group": "dc-wan", "priority": 3}
    t = make_topology(lines=lines)
    d = diagnose(t, with_results(t, [fail("leased-a/icmp"), fail("broadband-b/icmp")],
                                 active={"dc-wan": "mobile-c"}))
    g = d.group("dc-wan")
    assert g.lines == ("leased-a", "broadband-b", "mobile-c")
    assert g.verdict == Verdict.FAILED_OVER
    f = findings_of(d, FindingKind.FAILED_OVER)[0]
    assert "now via mobile-c" in f.summary and "standby broadband-b is down too" in f.summary


def test_a_hop_both_lines_list_is_no_evidence_and_no_disagreement():
    # a DC gateway on both lines' hop lists: only each line's own carrier hop tells
    import copy

    from builders import CITY_HALL, healthy_evidence, make_topology

    from netprobe.diagnosis import diagnose

    config = copy.deepcopy(CITY_HALL)
    config["lines"]["leased-a"]["hops"] = ["198.51.100.1", "203.0.113.254"]
    config["lines"]["broadband-b"]["hops"] = ["198.51.100.5", "203.0.113.254"]
    topology = make_topology(config)
    d = diagnose(topology, healthy_evidence(topology))
    group = d.group("dc-wan")
    assert (group.verdict.value, group.active) == ("nominal", "leased-a"), group.reason
    assert not [f for f in d.findings if f.kind.value == "ambiguous"]


def test_partial_failover_is_a_failed_failover_naming_the_stuck_endpoints():
    # intra-dns moved to broadband-b and answers; dc-app's trace still shows the
    # dead leased-a and dc-app does not answer: that is not a failover.
    from builders import make_result, make_topology, with_results

    from netprobe.diagnosis import diagnose

    topology = make_topology()
    evidence = with_results(topology, [
        make_result("leased-a/icmp", ok=False, address="198.51.100.1"),
        make_result("dc-app/trace", address="203.0.113.10", hops=["192.0.2.254", "198.51.100.1"],
                    reached=False),
        make_result("dc-app/icmp", ok=False, address="203.0.113.10"),
        make_result("dc-app/tcp/443", ok=False, address="203.0.113.10"),
    ], active={"dc-wan": "broadband-b"})
    d = diagnose(topology, evidence)
    assert d.group("dc-wan").verdict.value == "failover_failed"
    failed = [f for f in d.findings if f.kind.value == "failover_failed"]
    assert failed and failed[0].severity.value == "critical" and "dc-app" in failed[0].components
    assert "partial" in failed[0].summary
    assert d.status().value == "critical"


def test_a_group_of_one_line_needs_no_trace_to_know_its_active_line():
    import copy

    from builders import CITY_HALL, healthy_evidence, make_topology

    from netprobe.diagnosis import diagnose

    config = copy.deepcopy(CITY_HALL)
    del config["lines"]["broadband-b"]
    topology = make_topology(config)
    d = diagnose(topology, healthy_evidence(topology, traces=False))
    group = d.group("dc-wan")
    assert (group.verdict.value, group.active) == ("nominal", "leased-a"), group.reason
