"""Offline re-diagnosis: a saved run diagnoses to the same result as the live one."""

from __future__ import annotations

import json

import pytest
from builders import make_result, make_topology, with_results

from netprobe.diagnosis import diagnose, rediagnose
from netprobe.diagnosis.model import (
    ComponentState,
    Finding,
    FindingKind,
    GroupVerdict,
    Severity,
)
from netprobe.evidence import Evidence
from netprobe.report.model import build_report


def fail(probe_id: str, **kw):
    return make_result(probe_id, ok=False, **kw)


SCENARIOS = {
    "healthy": [],
    "failed over, lossy, service down": [
        fail("leased-a/icmp", error="unreachable", notices=[("192.0.2.1", "host unreachable")]),
        make_result("broadband-b/icmp", loss=1 / 3, rtt_ms=23.456789),
        fail("dc-app/tcp/443", error="refused"),
        fail("intra-dns/dns", error="dns_mismatch", answers=["198.51.100.99"]),
        make_result("dc-app/trace", hops=["192.0.2.254", "198.51.100.5", None, "203.0.113.10"],
                    reached=True),
        make_result("intra-dns/trace", hops=["192.0.2.254", "198.51.100.5", "203.0.113.53"],
                    reached=True),
    ],
    "not measured and ambiguous": [
        make_result("ce-hq/icmp", error="permission", message="ICMP needs privileges"),
        make_result("dc-app/icmp", error="permission", message="ICMP needs privileges"),
        fail("dc-app/tcp/443"),
        make_result("dc-app/trace", error="permission", message="traces need root"),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_evidence_json_round_trip_gives_the_same_diagnosis(name):
    t = make_topology()
    ev = with_results(t, SCENARIOS[name])
    live = diagnose(t, ev)
    saved = json.loads(json.dumps(ev.to_json()))  # through text, as a file would be
    again = diagnose(t, Evidence.from_json(saved))
    assert again == live


def test_rediagnose_from_a_saved_report_gives_the_same_diagnosis():
    t = make_topology()
    ev = with_results(t, SCENARIOS["failed over, lossy, service down"])
    live = diagnose(t, ev)
    report = build_report(t.vantage, "site.yaml", ev, live, Severity.WARNING).to_json()
    again = rediagnose(t, json.loads(json.dumps(report)))
    assert again == live
    # what the report saved reads back to the same values
    assert tuple(tuple(e) for e in report["explanations"]) == again.explanations
    assert tuple(ComponentState.from_json(c) for c in report["components"]) == again.components
    assert tuple(GroupVerdict.from_json(g) for g in report["groups"]) == again.groups
    assert tuple(Finding.from_json(f) for f in report["findings"]) == again.findings
    assert {f.kind for f in again.findings} >= {FindingKind.FAILED_OVER, FindingKind.SERVICE_DOWN,
                                                FindingKind.DNS_MISMATCH, FindingKind.DEGRADED}
