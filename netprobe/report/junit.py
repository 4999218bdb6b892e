"""JUnit XML, so CI shows a network check like a test run.

One test case per component (classname `netprobe.component.<kind>`), per
redundancy group (`netprobe.group`) and per audit finding that is about the
design rather than one component (`netprobe.audit`: shared risk, single
point of failure, ambiguous evidence).

Mapping, chosen so the XML agrees with the exit code under `--fail-on`:
- down / failover_failed / group down: `<failure>`;
- degraded and the warning verdicts (redundancy_lost, failed_over,
  failback_pending): `<failure>` with `--fail-on warning`, a pass with a note
  in `<system-out>` with `--fail-on critical`;
- unknown (could not measure): `<skipped>`, never `<error>`: the network was
  not found at fault, the check simply did not run. `<error>` is not used.
A failure's message is the worst finding's summary; its text lists every
finding and the evidence (each probe's replies, loss and RTT).

The file keeps to the strictest reader, Jenkins xUnit's junit-10 schema: no
`skipped` count on `<testsuites>` (only on `<testsuite>`), a timestamp without
fraction or zone (UTC), times in seconds with three decimals. Test case names
are stable across runs and topology changes, so CI keeps each case's history:
a component's or group's name, and for an audit finding its kind and the
first component it is about (`shared_risk dc-wan`), not the whole list.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime

from netprobe.diagnosis.model import Finding, Severity
from netprobe.evidence import ProbeResult
from netprobe.report.common import (
    STATE_SEVERITY,
    VERDICT_SEVERITY,
    active_text,
    counts_as_failure,
    evidence_lines,
    findings_by_component,
    group_findings,
    probes_by_id,
)
from netprobe.report.model import Report

AUDIT_KINDS = frozenset({"shared_risk", "single_point_of_failure", "unidentifiable", "ambiguous"})

# Characters XML 1.0 cannot carry at all, even escaped (a device banner could hold them).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


@dataclass(frozen=True)
class _Case:
    classname: str
    name: str
    severity: Severity | None  # None: not measured
    state: str  # the component's state or the group's verdict
    reason: str
    findings: tuple[Finding, ...]
    evidence: tuple[str, ...]


def _cases(report: Report) -> list[_Case]:
    cases = []
    about = findings_by_component(report)
    for c in report.components:
        found = about.get(c.name, [])
        evidence = (*c.evidence, *(p for f in found for p in f.evidence))
        cases.append(_Case(f"netprobe.component.{c.kind}", c.name, STATE_SEVERITY[c.state],
                           str(c.state), c.reason, tuple(found), evidence))
    for g in report.groups:
        found = group_findings(report, g)
        evidence = (*g.evidence, *(p for f in found for p in f.evidence))
        active = active_text(g)
        cases.append(_Case("netprobe.group", g.name, VERDICT_SEVERITY[g.verdict],
                           f"{g.verdict} (active line {active})", g.reason, tuple(found),
                           evidence))
    seen: dict[str, int] = {}
    for f in report.findings:
        if str(f.kind) in AUDIT_KINDS:
            # not the whole component list: it changes with the topology and would
            # start a new test history; a second finding on one anchor gets '#2'
            base = f"{f.kind} {f.components[0]}" if f.components else str(f.kind)
            n = seen[base] = seen.get(base, 0) + 1
            name = base if n == 1 else f"{base} #{n}"
            # a fact about the design: shown, but never a failure (check's exit code
            # ignores it too, and CI would otherwise stay red on every run)
            cases.append(_Case("netprobe.audit", name, Severity.INFO, str(f.severity), f.summary,
                               (f,), f.evidence))
    return cases


def _details(report: Report, case: _Case, results: dict[str, ProbeResult]) -> str:
    lines = [f"{case.state}: {case.reason}"]
    lines += [f"[{f.severity}] {f.summary}" for f in case.findings if f.summary != case.reason]
    ev = evidence_lines(report, case.evidence, results)
    if ev:
        lines.append("evidence:")
        lines += [f"  {e}" for e in ev]
    return "\n".join(lines)


def render_junit(report: Report) -> str:
    results = probes_by_id(report)
    cases = _cases(report)
    suite_time_s = f"{report.evidence.duration_s:.3f}"
    root = ET.Element("testsuites", name="netprobe", time=suite_time_s)
    started = datetime.fromtimestamp(report.evidence.started_at, UTC)
    suite = ET.SubElement(root, "testsuite", name=_x(f"netprobe.{report.vantage}"),
                          timestamp=started.strftime("%Y-%m-%dT%H:%M:%S"),
                          hostname=_x(report.vantage), time=suite_time_s)
    props = ET.SubElement(suite, "properties")
    for key, value in (("vantage", report.vantage), ("config", report.config),
                       ("status", str(report.status)), ("exit_code", str(report.exit_code)),
                       ("fail_on", str(report.fail_on))):
        ET.SubElement(props, "property", name=key, value=_x(value))

    failures = skipped = 0
    for case in cases:
        durations = [d for pid in case.evidence
                     if (res := results.get(pid)) and (d := res.duration_s) is not None]
        tc = ET.SubElement(suite, "testcase", classname=_x(case.classname), name=_x(case.name),
                           time=f"{max(durations, default=0.0):.3f}")
        text = _x(_details(report, case, results))
        if case.severity is None:
            skipped += 1
            ET.SubElement(tc, "skipped", message=_x(case.reason or "not measured"))
        elif counts_as_failure(case.severity, report.fail_on):
            failures += 1
            message = case.findings[0].summary if case.findings else case.reason
            failure = ET.SubElement(tc, "failure", type=str(case.severity),
                                    message=_x(message))
            failure.text = text
        elif case.severity != Severity.INFO or case.findings:
            # a warning tolerated by --fail-on critical, or an info finding: keep it visible
            ET.SubElement(tc, "system-out").text = text

    for element in (root, suite):
        element.set("tests", str(len(cases)))
        element.set("failures", str(failures))
        element.set("errors", "0")
    suite.set("skipped", str(skipped))  # junit-10 allows the count on <testsuite> only
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
