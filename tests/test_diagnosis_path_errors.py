"""ICMP errors as path evidence: which line is active, and where the fault is.

Synthetic evidence (the diagnosis is pure): the situations real routers make,
where traces alone leave the group `unknown` — a carrier router that spent its
ICMP budget on late "host unreachable" answers, a line router that forwards but
never sends time-exceeded, traces and errors that disagree.
"""

from __future__ import annotations

import sys

import pytest
from builders import make_evidence, make_result, make_topology, with_results

from netprobe.diagnosis import diagnose
from netprobe.diagnosis.localize import icmp_errors, read_traces
from netprobe.diagnosis.model import FindingKind, Severity, State, Verdict
from netprobe.evidence import Evidence

BEHIND_ICMP = ["dc-edge/icmp", "dc-app/icmp", "intra-dns/icmp"]
PE_A, PE_B = "198.51.100.1", "198.51.100.5"


@pytest.fixture(autouse=True)
def _without_audit(monkeypatch):
    monkeypatch.setitem(sys.modules, "netprobe.diagnosis.audit", None)


@pytest.fixture
def topo():
    return make_topology()


def late(probe_id: str, source: str, *, sent: int = 3):
    """Silent in time; a router's 'host unreachable' came ~3 s later."""
    return make_result(probe_id, ok=False, sent=sent, detail={"late_errors": [
        {"source": source, "type": 3, "code": 1, "description": "ICMP host-unreachable",
         "after_ms": 3010.0}]})


def silent_traces(hops, reached=False):
    return [make_result("dc-app/trace", hops=hops, reached=reached),
            make_result("intra-dns/trace", hops=hops, reached=reached)]


def component(d, name):
    return next(c for c in d.components if c.name == name)


def test_icmp_errors_reads_notices_and_late_errors():
    r = make_result("dc-app/icmp", ok=False, notices=[(PE_A, "ICMP host-unreachable")],
                    detail={"late_errors": [{"source": PE_B, "type": 3, "code": 1,
                                             "description": "ICMP host-unreachable"}]})
    assert icmp_errors(r) == [(PE_A, "ICMP host-unreachable"),
                              (PE_B, "ICMP host-unreachable (late)")]
    assert icmp_errors(make_result("dc-app/icmp")) == []


def test_late_errors_from_the_line_hop_name_the_active_line_when_traces_are_silent(topo):
    # dc-edge is powered off; carrier A's router answers the measuring probes
    # with late 'host unreachable' and has no ICMP budget left for the traces
    results = [*(late(i, PE_A) for i in BEHIND_ICMP),
               make_result("dc-app/tcp/443", ok=False),
               make_result("intra-dns/dns", ok=False),
               *silent_traces(["192.0.2.254", None])]
    d = diagnose(topo, with_results(topo, results))
    g = d.group("dc-wan")
    assert g.active == "leased-a"
    assert g.active_by == "icmp_error"
    assert g.verdict == Verdict.NOMINAL
    # the error came from behind leased-a: dc-edge is the one explanation
    assert d.explanations == (("dc-edge",),)
    assert component(d, "dc-edge").state == State.DOWN
    assert component(d, "leased-a").state == State.UP
    votes = read_traces(topo, with_results(topo, results))["dc-wan"].votes
    assert {v.probe_id for v in votes if v.by == "icmp_error"} == set(BEHIND_ICMP)
    assert all(v.addresses == (PE_A,) for v in votes if v.by == "icmp_error")


def test_without_the_late_errors_the_same_silence_is_not_localised(topo):
    # the control: the same run with the late errors discarded, as before
    results = [*(make_result(i, ok=False) for i in BEHIND_ICMP),
               make_result("dc-app/tcp/443", ok=False), make_result("intra-dns/dns", ok=False),
               *silent_traces(["192.0.2.254", None])]
    d = diagnose(topo, with_results(topo, results))
    assert d.group("dc-wan").active is None
    assert d.explanations != (("dc-edge",),)


def test_an_error_from_a_line_hop_proves_the_line_up_even_if_its_far_end_probe_failed(topo):
    # carrier A's router drops pings to itself but still forwards and answers errors
    results = [make_result("leased-a/icmp", ok=False),
               *(late(i, PE_A) for i in BEHIND_ICMP),
               make_result("dc-app/tcp/443", ok=False), make_result("intra-dns/dns", ok=False),
               *silent_traces(["192.0.2.254", None])]
    d = diagnose(topo, with_results(topo, results))
    assert d.group("dc-wan").active == "leased-a"
    assert d.explanations == (("dc-edge",),)
    assert "leased-a" not in d.explanations[0]
    assert component(d, "leased-a").state != State.DOWN


def test_an_error_on_the_standby_hop_says_traffic_moved(topo):
    # leased-a is cut, the CE failed over; broadband-b's router says where it died
    results = [make_result("leased-a/icmp", ok=False),
               *(late(i, PE_B) for i in BEHIND_ICMP),
               make_result("dc-app/tcp/443", ok=False), make_result("intra-dns/dns", ok=False),
               *silent_traces(["192.0.2.254", None])]
    d = diagnose(topo, with_results(topo, results))
    g = d.group("dc-wan")
    assert g.active == "broadband-b"
    assert g.verdict == Verdict.FAILED_OVER
    f = next(f for f in d.findings if f.kind == FindingKind.FAILED_OVER)
    assert "now via broadband-b" in f.summary


def test_traces_and_errors_that_disagree_are_ambiguous_with_both_candidates(topo):
    results = [late("dc-edge/icmp", PE_B),
               make_result("dc-app/trace", hops=["192.0.2.254", PE_A, "203.0.113.1",
                                                 "203.0.113.10"], reached=True)]
    d = diagnose(topo, with_results(topo, results))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.AMBIGUOUS
    assert g.active is None
    assert g.candidates == ("leased-a", "broadband-b")
    f = next(f for f in d.findings if f.kind == FindingKind.AMBIGUOUS)
    assert "dc-edge/icmp shows broadband-b" in f.summary
    assert "dc-app/trace shows leased-a" in f.summary


def test_a_line_router_that_never_answers_a_trace_is_ambiguous_not_unknown(topo):
    hops = ["192.0.2.254", None, "203.0.113.1", "203.0.113.10"]
    d = diagnose(topo, with_results(topo, silent_traces(hops, reached=True)))
    g = d.group("dc-wan")
    assert g.verdict == Verdict.AMBIGUOUS
    assert g.candidates == ("leased-a", "broadband-b")
    f = next(f for f in d.findings if f.kind == FindingKind.AMBIGUOUS)
    assert f.severity == Severity.WARNING
    assert "dc-app/trace, intra-dns/trace silent at hop 2" in f.summary
    assert "leased-a or broadband-b" in f.summary
    assert set(f.components) == {"dc-wan", "leased-a", "broadband-b"}


def test_a_silent_line_router_with_the_standby_down_is_still_redundancy_lost(topo):
    hops = ["192.0.2.254", None, "203.0.113.1", "203.0.113.10"]
    results = [make_result("broadband-b/icmp", ok=False), *silent_traces(hops, reached=True)]
    d = diagnose(topo, with_results(topo, results))
    assert d.group("dc-wan").verdict == Verdict.REDUNDANCY_LOST


def test_late_errors_survive_the_json_round_trip(topo):
    ev = with_results(topo, [late("dc-app/icmp", PE_A)])
    again = Evidence.from_json(ev.to_json())
    r = again.by_id()["dc-app/icmp"]
    assert r.detail["late_errors"][0]["source"] == PE_A
    assert r.rtts_ms == () and r.sent == 3
    assert read_traces(topo, again)["dc-wan"].votes == read_traces(topo, ev)["dc-wan"].votes


def test_errors_from_a_probe_not_behind_the_group_name_no_line(topo):
    # the CE's own probe is not behind dc-wan: whatever answers it says nothing
    # about which line carries traffic to the data centre
    ev = make_evidence(late("ce-hq/icmp", PE_A))
    assert read_traces(topo, ev)["dc-wan"].votes == ()
