"""Diagnosis: a pure function of the topology and the evidence.

`diagnose` localises failures (boolean network tomography), judges services,
gives each redundancy group its failover verdict, and adds the static
shared-risk audit. `rediagnose` does the same from a saved report.

Decisions worth knowing:
- `explanations` holds only the minimum-size sets; more than one means the
  evidence cannot tell them apart. A group name in an explanation stands for
  "the line carrying traffic through it" when no trace showed which it is.
- A probe with any reply gets through: a lossy line is degraded, never down.
  Loss at or above `crit` with some replies, or RTT above `crit`, is degraded
  with a critical finding.
- Loss and delay are localised too (degradation.py): the first element where
  the pooled loss of the probes through it rises above `warn` while the probes
  that stop before it stay clean is degraded and gets one finding; what it
  explains behind it stays degraded, says "loss explained by ...", and gets no
  finding of its own unless it is clearly worse. The finding keeps the worst
  severity of what it replaces, so the exit code does not change.
- A trace that stops short blames nobody (firewalls drop what it relies on).
- A failed probe whose whole path other probes prove up (ICMP filtered while
  the TCP port answers) leaves the target up, with the silence in its reason.
- A down line whose group still carries traffic (failed over, redundancy
  lost, failback pending) is a warning, not a critical: the group finding
  says what it costs. Ambiguity about a failure is critical: something is down.
- A host name with both IPv4 and IPv6 addresses is probed over both
  (families.py): the component is judged once, up if either family gets
  through, and a family that fails beside one that works is a `family_down`
  warning.
- Findings that could not be measured are `not_measured` (status UNKNOWN);
  they are raised only for components left unknown, and for groups whose
  traces could not run.
"""

from __future__ import annotations

from typing import Any

from netprobe.diagnosis.model import Diagnosis, Finding
from netprobe.evidence import Evidence
from netprobe.topology import Topology


def diagnose(topology: Topology, evidence: Evidence,
             static_findings: list[Finding] | None = None) -> Diagnosis:
    """Every component's state, every group's verdict, and the findings, worst first.

    `static_findings`: the audit of the topology (`static_audit`), when the
    caller made it already, while the probes ran.
    """
    from netprobe.diagnosis.degradation import locate_degradation
    from netprobe.diagnosis.failover import assess_groups
    from netprobe.diagnosis.families import family_findings, split_families
    from netprobe.diagnosis.findings import assess_components, component_findings, sort_findings
    from netprobe.diagnosis.localize import localize, read_traces

    evidence, pairs = split_families(evidence)
    loc = localize(topology, evidence, read_traces(topology, evidence))
    found = locate_degradation(topology, loc)
    assessed = assess_components(topology, evidence, loc, found)
    states = {name: a.state for name, a in assessed.items()}
    groups = assess_groups(topology, evidence, loc, states)
    absorbed = frozenset().union(*(g.absorbed for g in groups)) if groups else frozenset()
    findings: list[Finding] = component_findings(topology, evidence, loc, assessed, absorbed,
                                                     found)
    for g in groups:
        findings.extend(g.findings)
    findings.extend(family_findings(topology, pairs))
    findings.extend(static_audit(topology) if static_findings is None else static_findings)
    return Diagnosis(
        components=tuple(states[name] for name in topology.components),
        groups=tuple(g.verdict for g in groups),
        findings=sort_findings(findings),
        explanations=loc.explanations,
    )


def rediagnose(topology: Topology, report_json: dict[str, Any]) -> Diagnosis:
    """Diagnose a saved run (a report's top-level JSON with its `probes`) again, offline."""
    return diagnose(topology, Evidence.from_json(report_json))


def preload() -> None:
    """Import the solver now rather than in `diagnose`: `check` does it while its
    probes wait, and importing this package (the report's model does) stays cheap."""
    from netprobe.diagnosis import degradation, failover, families, findings, localize  # noqa: F401


def static_audit(topology: Topology) -> list[Finding]:
    """The shared-risk audit: findings that depend on the topology alone."""
    # The shared-risk audit lives in its own module; tolerate its absence.
    try:
        from netprobe.diagnosis.audit import audit
    except ModuleNotFoundError as exc:
        if exc.name != "netprobe.diagnosis.audit":
            raise
        return []
    return list(audit(topology))


__all__ = ["diagnose", "preload", "rediagnose", "static_audit"]
