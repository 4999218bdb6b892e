"""Component states and findings: quality, services, DNS, not measured, ordering."""

from __future__ import annotations

import sys
import types

import pytest
from builders import make_result, make_topology, with_results

from netprobe.diagnosis import diagnose
from netprobe.diagnosis.findings import quality
from netprobe.diagnosis.model import STATIC_KINDS as STATIC
from netprobe.diagnosis.model import Finding, FindingKind, Severity, State, Status
from netprobe.plan import build_plan


@pytest.fixture(autouse=True)
def _without_audit(monkeypatch):
    """These tests are about the live diagnosis; the static audit has its own tests."""
    monkeypatch.setitem(sys.modules, "netprobe.diagnosis.audit", None)


def fail(probe_id: str, **kw):
    return make_result(probe_id, ok=False, **kw)


def state(d, name):
    return next(c for c in d.components if c.name == name)


def kinds(d):
    return [f.kind for f in d.findings]


@pytest.fixture
def topo():
    return make_topology()


def test_healthy_network_is_all_up_with_no_findings(topo):
    d = diagnose(topo, with_results(topo, {}))
    assert [c.name for c in d.components] == list(topo.components)  # one each, topology order
    assert {c.state for c in d.components} == {State.UP}
    assert d.findings == ()
    assert d.explanations == ()
    assert d.status() == Status.OK


def test_every_component_gets_exactly_one_state_even_without_evidence(topo):
    d = diagnose(topo, with_results(topo, {}, traces=False,
                                    drop=tuple(t.id for t in build_plan(topo))))
    assert [c.name for c in d.components] == list(topo.components)
    assert {c.state for c in d.components} == {State.UNKNOWN}
    assert all(c.reason == "not probed in this run" for c in d.components)


# -- not measured -------------------------------------------------------------------------


def test_icmp_without_privilege_is_unknown_never_down(topo):
    msg = "ICMP needs root or net.ipv4.ping_group_range"
    nm = [make_result(t.id, error="permission", message=msg)
          for t in build_plan(topo) if t.kind in ("icmp", "trace")]
    d = diagnose(topo, with_results(topo, nm))
    assert all(c.state != State.DOWN for c in d.components)
    # the lines have no other probe: unknown, with the probe's message as the reason
    for line in ("leased-a", "broadband-b"):
        assert d.state_of(line) == State.UNKNOWN
        assert msg in state(d, line).reason
    # TCP and DNS answered through ce-hq and dc-edge: those are decided up
    assert d.state_of("ce-hq") == State.UP
    assert d.state_of("dc-edge") == State.UP
    nm_findings = [f for f in d.findings if f.kind == FindingKind.NOT_MEASURED]
    assert nm_findings
    # one finding carries the fix, for every component whose ICMP probe could not be
    # sent, including those decided up by other probes; no row repeats it
    icmp_findings = [f for f in nm_findings
                     if msg in f.summary and all(e.endswith("/icmp") for e in f.evidence)]
    assert len(icmp_findings) == 1
    icmp_probes = {t.target for t in build_plan(topo) if t.kind == "icmp"}
    assert set(icmp_findings[0].components) == icmp_probes
    assert {"ce-hq", "dc-edge", "leased-a", "broadband-b"} <= icmp_probes
    assert not any(msg in c.reason for c in d.components if c.state == State.UP)
    assert d.status() == Status.UNKNOWN  # exit 3: could not measure, not a failure


def test_not_measured_probe_is_no_evidence_of_failure(topo):
    d = diagnose(topo, with_results(topo, [make_result("leased-a/icmp", error="skipped",
                                                       message="deadline reached")]))
    # the trace shows traffic on leased-a, so it is up even though its own probe did not run
    assert d.state_of("leased-a") == State.UP
    # ... but the run did not do all it was asked: said once, and never a plain OK
    nm = [f for f in d.findings if f.kind == FindingKind.NOT_MEASURED]
    assert [f.evidence for f in nm] == [("leased-a/icmp",)]
    assert d.status() == Status.UNKNOWN


# -- quality --------------------------------------------------------------------------------


def test_lossy_line_is_degraded_not_down(topo):
    d = diagnose(topo, with_results(topo, [make_result("leased-a/icmp", loss=1 / 3, rtt_ms=12.5)]))
    assert d.state_of("leased-a") == State.DEGRADED
    f = next(f for f in d.findings if f.kind == FindingKind.DEGRADED)
    assert f.severity == Severity.WARNING
    assert f.components == ("leased-a",)
    assert "leased-a (carrier-a) far end 198.51.100.1: loss 33% > 10%" in f.summary
    assert d.group("dc-wan").verdict.value == "nominal"  # degraded still carries traffic


def test_loss_at_crit_with_some_replies_is_critically_degraded_never_down():
    base = make_topology().config.model_dump()
    base["defaults"]["thresholds"]["loss"] = {"warn": 0.1, "crit": 0.5}
    t = make_topology(base)
    d = diagnose(t, with_results(t, [make_result("leased-a/icmp", loss=2 / 3)]))
    assert d.state_of("leased-a") == State.DEGRADED
    f = next(f for f in d.findings if f.kind == FindingKind.DEGRADED)
    assert f.severity == Severity.CRITICAL
    assert "loss 67% >= 50%" in f.summary


def test_rtt_warn_and_crit(topo):
    d = diagnose(topo, with_results(topo, [make_result("dc-edge/icmp", rtt_ms=180.0),
                                           make_result("dc-app/icmp", rtt_ms=1500.0)]))
    assert d.state_of("dc-edge") == State.DEGRADED
    assert d.state_of("dc-app") == State.DEGRADED
    by_comp = {f.components[0]: f for f in d.findings if f.kind == FindingKind.DEGRADED}
    assert by_comp["dc-edge"].severity == Severity.WARNING
    assert "rtt 180 ms > 150 ms" in by_comp["dc-edge"].summary
    assert by_comp["dc-app"].severity == Severity.CRITICAL
    assert "rtt 1500 ms > 1000 ms" in by_comp["dc-app"].summary
    assert d.findings[0].severity == Severity.CRITICAL  # worst first


def test_quality_thresholds_are_strict_above_warn(topo):
    th = topo.thresholds
    assert quality(make_result("x/icmp", rtt_ms=150.0), th) == (None, "")
    assert quality(make_result("x/icmp", rtt_ms=150.5), th)[0] == Severity.WARNING
    assert quality(make_result("x/icmp", ok=False), th) == (None, "")  # no replies: not quality


# -- down components ----------------------------------------------------------------------


def test_line_down_alone_carries_the_icmp_notice(topo):
    t = make_topology(lines={"leased-a": {"device": "ce-hq", "far_end": "198.51.100.1",
                                          "carrier": "carrier-a"}},
                      groups={}, endpoints={})
    d = diagnose(t, with_results(t, [fail("leased-a/icmp", error="unreachable",
                                          notices=[("192.0.2.1", "host unreachable")])]))
    f = next(f for f in d.findings if f.kind == FindingKind.LINE_DOWN)
    assert f.severity == Severity.CRITICAL  # no group to carry on
    assert "leased-a (carrier-a) far end 198.51.100.1: 0/3 replies" in f.summary
    assert "router 192.0.2.1 answered 'host unreachable'" in f.summary
    assert "the path up to ce-hq answers" in f.summary
    assert f.evidence == ("leased-a/icmp",)


def test_endpoint_down_hides_its_services(topo):
    d = diagnose(topo, with_results(topo, [fail("dc-app/icmp"), fail("dc-app/tcp/443"),
                                           make_result("dc-app/trace",
                                                       hops=["192.0.2.254", "198.51.100.1", None])]))
    # dc-app or its service: but dc-app's own ICMP failing is explained only by dc-app
    assert d.explanations == (("dc-app",),)
    assert d.state_of("dc-app") == State.DOWN
    assert d.state_of("dc-app/tcp/443") == State.UNKNOWN
    assert "dc-app is down" in state(d, "dc-app/tcp/443").reason
    assert kinds(d) == [FindingKind.ENDPOINT_DOWN]  # no service_down piled on top
    assert "the path up to dc-edge answers" in d.findings[0].summary


def test_device_down_finding(topo):
    # the traces show traffic on leased-a and stop before dc-edge
    stuck = ["192.0.2.254", "198.51.100.1", None]
    ev = with_results(topo, [fail("dc-edge/icmp"), fail("dc-app/icmp"), fail("dc-app/tcp/443"),
                             fail("intra-dns/icmp"), fail("intra-dns/dns"),
                             make_result("dc-app/trace", hops=stuck),
                             make_result("intra-dns/trace", hops=stuck)])
    d = diagnose(topo, ev)
    assert d.explanations == (("dc-edge",),)
    assert d.state_of("dc-edge") == State.DOWN
    assert d.state_of("dc-app") == State.UNKNOWN
    assert d.group("dc-wan").verdict.value == "nominal"  # the group is fine; dc-edge is not
    f = next(f for f in d.findings if f.kind == FindingKind.DEVICE_DOWN)
    assert f.components == ("dc-edge",)
    assert "dc-edge 203.0.113.1: 0/3 replies" in f.summary
    assert "the path up to leased-a answers" in f.summary


# -- services -----------------------------------------------------------------------------------


def test_refused_port_is_service_down_while_host_up(topo):
    d = diagnose(topo, with_results(topo, [fail("dc-app/tcp/443", error="refused")]))
    assert d.state_of("dc-app") == State.UP
    assert d.state_of("dc-app/tcp/443") == State.DOWN
    f = next(f for f in d.findings if f.kind == FindingKind.SERVICE_DOWN)
    assert f.severity == Severity.CRITICAL
    assert set(f.components) == {"dc-app/tcp/443", "dc-app"}
    assert "refused" in f.summary and "203.0.113.10" in f.summary


def test_timed_out_port_with_host_answering_icmp_is_service_down(topo):
    d = diagnose(topo, with_results(topo, [fail("dc-app/tcp/443")]))
    assert d.state_of("dc-app/tcp/443") == State.DOWN
    f = next(f for f in d.findings if f.kind == FindingKind.SERVICE_DOWN)
    assert "timed out (0/3), while the host answers (icmp 3/3, 1.0 ms)" in f.summary
    assert "dc-app/icmp" in f.evidence


def test_dns_error_rcode_is_dns_failure(topo):
    d = diagnose(topo, with_results(topo, [fail("intra-dns/dns", error="dns_error",
                                                rcode="SERVFAIL")]))
    assert d.state_of("intra-dns/dns") == State.DOWN
    assert d.state_of("intra-dns") == State.UP
    f = next(f for f in d.findings if f.kind == FindingKind.DNS_FAILURE)
    assert f.severity == Severity.CRITICAL
    assert "www.intra.example A answered SERVFAIL" in f.summary


def test_dns_timeout_while_server_answers_icmp_is_dns_failure(topo):
    d = diagnose(topo, with_results(topo, [fail("intra-dns/dns")]))
    f = next(f for f in d.findings if f.kind == FindingKind.DNS_FAILURE)
    assert "timed out" in f.summary and "while the host answers (icmp 3/3" in f.summary


def test_dns_wrong_answer_is_mismatch_with_expected_and_observed(topo):
    d = diagnose(topo, with_results(topo, [fail("intra-dns/dns", error="dns_mismatch",
                                                answers=["198.51.100.99"])]))
    assert d.state_of("intra-dns/dns") == State.DOWN
    f = next(f for f in d.findings if f.kind == FindingKind.DNS_MISMATCH)
    assert f.severity == Severity.CRITICAL
    assert "answered 198.51.100.99, expected 203.0.113.10" in f.summary


def test_service_timeout_with_unknown_host_is_ambiguous_not_down(topo):
    d = diagnose(topo, with_results(topo, [make_result("dc-app/icmp", error="permission"),
                                           fail("dc-app/tcp/443")], traces=False))
    assert d.state_of("dc-app") == State.UNKNOWN
    assert d.state_of("dc-app/tcp/443") == State.UNKNOWN
    assert d.explanations == (("dc-app",), ("dc-app/tcp/443",))
    assert FindingKind.AMBIGUOUS in kinds(d)
    assert FindingKind.SERVICE_DOWN not in kinds(d)


# -- ordering and the audit ---------------------------------------------------------------------


def test_findings_are_ordered_by_severity(topo):
    t = make_topology(groups={"dc-wan": {"failback": "manual"}})
    d = diagnose(t, with_results(t, [fail("dc-app/tcp/443", error="refused"),
                                     make_result("dc-edge/icmp", rtt_ms=200.0)],
                                 active={"dc-wan": "broadband-b"}))
    sev = [f.severity for f in d.findings]
    assert sev == [Severity.CRITICAL, Severity.WARNING, Severity.INFO]
    assert kinds(d) == [FindingKind.SERVICE_DOWN, FindingKind.DEGRADED, FindingKind.FAILBACK_PENDING]


def test_audit_findings_are_appended_when_the_module_exists(topo, monkeypatch):
    marker = Finding(Severity.WARNING, FindingKind.SHARED_RISK, ("leased-a", "broadband-b"),
                     "leased-a and broadband-b both end on ce-hq.")
    fake = types.ModuleType("netprobe.diagnosis.audit")
    fake.audit = lambda topology: [marker]
    monkeypatch.setitem(sys.modules, "netprobe.diagnosis.audit", fake)
    d = diagnose(topo, with_results(topo, [fail("dc-app/tcp/443", error="refused")]))
    assert d.findings[-1] == marker  # after the critical one
    assert d.findings[0].kind == FindingKind.SERVICE_DOWN


def test_missing_audit_module_is_skipped(topo):
    # the autouse fixture makes importing the audit fail, as before it existed
    d = diagnose(topo, with_results(topo, {}))
    assert d.findings == ()


def test_real_audit_findings_are_included(topo, monkeypatch):
    monkeypatch.delitem(sys.modules, "netprobe.diagnosis.audit")
    audit_module = pytest.importorskip("netprobe.diagnosis.audit")
    expected = audit_module.audit(topo)
    d = diagnose(topo, with_results(topo, [fail("dc-app/tcp/443", error="refused")]))
    assert all(f in d.findings for f in expected)
    assert d.findings[0].kind == FindingKind.SERVICE_DOWN


def test_no_route_from_this_host_is_one_not_measured_finding_never_down(topo):
    # our own host refused to send: nothing left it, so nothing is known about the path
    dead = {t.id: make_result(t.id, ok=False, error="no_route", address=t.address,
                              message=f"no route to {t.address} from this host")
            for t in build_plan(topo)}
    d = diagnose(topo, with_results(topo, dead))
    assert all(c.state == State.UNKNOWN for c in d.components), d.components
    not_measured = [f for f in d.findings if f.kind == FindingKind.NOT_MEASURED]
    # one finding for every component (plus the group's "active line unknown")
    about_route = [f for f in not_measured if "default route" in f.summary]
    assert len(about_route) == 1
    assert set(about_route[0].components) == set(topo.components)
    assert {f.kind for f in d.findings} - STATIC == {FindingKind.NOT_MEASURED}
    assert d.status() == Status.UNKNOWN
