"""Diagnosis: a pure function of the topology and the evidence.

`diagnose` localises failures (boolean network tomography), judges services,
gives each redundancy group its failover verdict, and adds the static
shared-risk audit. `rediagnose` does the same from a saved report.
"""

from __future__ import annotations

from typing import Any

from netprobe.diagnosis.failover import assess_groups
from netprobe.diagnosis.findings import assess_components, component_findings, sort_findings
from netprobe.diagnosis.localize import localize, read_traces
from netprobe.diagnosis.model import Diagnosis, Finding
from netprobe.evidence import Evidence
from netprobe.topology import Topology


def diagnose(topology: Topology, evidence: Evidence) -> Diagnosis:
    """Every component's state, every group's verdict, and the findings, worst first."""
    loc = localize(topology, evidence, read_traces(topology, evidence))
    assessed = assess_components(topology, evidence, loc)
    states = {name: a.state for name, a in assessed.items()}
    groups = assess_groups(topology, evidence, loc, states)
    absorbed = frozenset().union(*(g.absorbed for g in groups)) if groups else frozenset()
    findings: list[Finding] = component_findings(topology, evidence, loc, assessed, absorbed)
    for g in groups:
        findings.extend(g.findings)
    findings.extend(_audit(topology))
    return Diagnosis(
        components=tuple(states[name] for name in topology.components),
        groups=tuple(g.verdict for g in groups),
        findings=sort_findings(findings),
        explanations=loc.explanations,
    )


def rediagnose(topology: Topology, report_json: dict[str, Any]) -> Diagnosis:
    """Diagnose a saved run (a report's top-level JSON with its `probes`) again, offline."""
    return diagnose(topology, Evidence.from_json(report_json))


def _audit(topology: Topology) -> list[Finding]:
    # The shared-risk audit lives in its own module; tolerate its absence.
    try:
        from netprobe.diagnosis.audit import audit
    except ModuleNotFoundError as exc:
        if exc.name != "netprobe.diagnosis.audit":
            raise
        return []
    return list(audit(topology))


__all__ = ["diagnose", "rediagnose"]
