"""Builders of synthetic `Report` values for the report and history tests.

The diagnosis is pure, so a report made of hand-written ProbeResults and
verdicts is a faithful input for the renderers (no network involved).
"""

from __future__ import annotations

from netprobe.config import Thresholds
from netprobe.diagnosis.model import (
    ComponentState,
    Diagnosis,
    Finding,
    FindingKind,
    GroupVerdict,
    Severity,
    State,
    Verdict,
)
from netprobe.evidence import Evidence, ProbeError, ProbeResult
from netprobe.report.model import Report, build_report

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def make_result(id: str, *, kind: str | None = None, target: str | None = None,
                address: str | None = "192.0.2.1", sent: int = 3,
                rtts_ms: tuple[float, ...] = (1.0, 1.2, 1.4), error: ProbeError | None = None,
                message: str | None = None, duration_s: float = 0.5) -> ProbeResult:
    kind = kind or id.split("/")[1]
    if target is None:
        target = id.rsplit("/", 1)[0] if kind in ("icmp", "trace") else id
    if error in (ProbeError.PERMISSION, ProbeError.SKIPPED):
        sent, rtts_ms = 0, ()
    return ProbeResult(id=id, kind=kind, target=target, address=address, sent=sent,
                       rtts_ms=rtts_ms, error=error, message=message, started_at=T0,
                       duration_s=duration_s)


def component(name: str, kind: str, state: State, reason: str = "",
              evidence: tuple[str, ...] | None = None) -> ComponentState:
    ev = evidence if evidence is not None else (f"{name}/icmp",) if kind != "service" else (name,)
    return ComponentState(name, kind, state, reason or f"{name} is {state}", ev)


def sample_report(fail_on: Severity = Severity.WARNING, *, thresholds: Thresholds | None = None,
                  **extra) -> Report:
    """City hall after the preferred line died: traffic failed over, one
    service is slow, a DNS probe could not be measured."""
    results = (
        make_result("ce-hq/icmp", address="192.0.2.1", rtts_ms=(0.4, 0.5, 0.6)),
        make_result("leased-a/icmp", address="198.51.100.1", rtts_ms=(), error=ProbeError.TIMEOUT),
        make_result("broadband-b/icmp", address="198.51.100.5", rtts_ms=(8.0, 9.0, 10.0)),
        make_result("dc-app/icmp", address="203.0.113.10", rtts_ms=(12.0, 14.0)),
        make_result("dc-app/tcp/443", address="203.0.113.10", rtts_ms=(180.0, 200.0, 220.0)),
        make_result("dc-app/trace", address="203.0.113.10", sent=1, rtts_ms=(15.0,)),
        make_result("intra-dns/dns", address="203.0.113.53", error=ProbeError.PERMISSION,
                    message="no raw socket | try root"),
    )
    evidence = Evidence(results=results, started_at=T0, duration_s=2.345)
    components = (
        component("ce-hq", "device", State.UP, "answers ping"),
        component("leased-a", "line", State.DOWN, "far end 198.51.100.1: 3 sent, 0 received"),
        component("broadband-b", "line", State.UP, "far end answers"),
        component("dc-app", "endpoint", State.UP, "answers ping (33% loss)"),
        component("dc-app/tcp/443", "service", State.DEGRADED, "rtt 200 ms > 150 ms"),
        component("intra-dns/dns", "service", State.UNKNOWN, "not measured: no privilege"),
    )
    groups = (
        GroupVerdict("dc-wan", ("leased-a", "broadband-b"), "leased-a", "broadband-b",
                     Verdict.FAILED_OVER, "leased-a is down; trace crosses broadband-b",
                     evidence=("leased-a/icmp", "dc-app/trace")),
    )
    findings = (
        Finding(Severity.WARNING, FindingKind.DEGRADED, ("dc-app/tcp/443",),
                "dc-app/tcp/443 is slow: rtt 200 ms > 150 ms.", ("dc-app/tcp/443",)),
        Finding(Severity.CRITICAL, FindingKind.LINE_DOWN, ("leased-a",),
                "Line leased-a (carrier-a) is down: far end 198.51.100.1 answered 0 of 3 pings.",
                ("leased-a/icmp",)),
        Finding(Severity.WARNING, FindingKind.FAILED_OVER, ("dc-wan",),
                "dc-wan failed over to broadband-b: leased-a is down.",
                ("leased-a/icmp", "dc-app/trace")),
        Finding(Severity.WARNING, FindingKind.NOT_MEASURED, ("intra-dns/dns",),
                "intra-dns/dns was not measured: no raw socket.", ("intra-dns/dns",)),
        Finding(Severity.INFO, FindingKind.SHARED_RISK, ("leased-a", "broadband-b"),
                "leased-a and broadband-b both end on router ce-hq.", ()),
    )
    diagnosis = Diagnosis(components, groups, findings, explanations=(("leased-a",),))
    return build_report("city-hall-lan", "site.yaml", evidence, diagnosis, fail_on,
                        thresholds=thresholds, **extra)


def ok_report() -> Report:
    """Everything up, the preferred line carrying traffic."""
    results = (
        make_result("ce-hq/icmp"),
        make_result("leased-a/icmp", address="198.51.100.1"),
        make_result("broadband-b/icmp", address="198.51.100.5"),
        make_result("dc-app/icmp", address="203.0.113.10"),
    )
    evidence = Evidence(results=results, started_at=T0, duration_s=1.0)
    components = (
        component("ce-hq", "device", State.UP),
        component("leased-a", "line", State.UP),
        component("broadband-b", "line", State.UP),
        component("dc-app", "endpoint", State.UP),
    )
    groups = (GroupVerdict("dc-wan", ("leased-a", "broadband-b"), "leased-a", "leased-a",
                           Verdict.NOMINAL, "preferred line carries traffic; standby up"),)
    return build_report("city-hall-lan", "site.yaml", evidence,
                        Diagnosis(components, groups, ()))


def big_report(n_endpoints: int, *, started_at: float = T0, tag: str = "") -> Report:
    """Many endpoints, for the atomicity test (a file large enough that a
    write takes a while) and for the history benchmark."""
    results = []
    components = []
    for i in range(n_endpoints):
        name = f"ep{i:05d}"
        pad = f" {tag}" * 4
        results.append(make_result(f"{name}/icmp", address="203.0.113.10",
                                   rtts_ms=(1.0 + i % 7, 2.0, 3.0), message=f"run{pad}"))
        components.append(component(name, "endpoint", State.UP, f"answers ping{pad}"))
    evidence = Evidence(results=tuple(results), started_at=started_at, duration_s=1.0)
    return build_report("bench", "site.yaml", evidence,
                        Diagnosis(tuple(components), (), ()), tag=tag)
