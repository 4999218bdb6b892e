"""Values the diagnosis produces: component states, group verdicts, findings.

The vocabulary is the report contract of DESIGN.md; do not rename values.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class State(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class Verdict(StrEnum):
    NOMINAL = "nominal"
    REDUNDANCY_LOST = "redundancy_lost"
    FAILED_OVER = "failed_over"
    FAILOVER_FAILED = "failover_failed"
    FAILBACK_PENDING = "failback_pending"
    DOWN = "down"
    # the evidence fits more than one line as the active one: `candidates`
    # names them, the finding says what was seen (a line router that never
    # sends time-exceeded, traces and ICMP errors that disagree)
    AMBIGUOUS = "ambiguous"
    UNKNOWN = "unknown"


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}[self.value]

    @property
    def rank(self) -> int:
        # Worst-of order used by monitoring aggregators: an unmeasured part may
        # hide a fault, so UNKNOWN outranks WARNING but not CRITICAL.
        return {"ok": 0, "warning": 1, "unknown": 2, "critical": 3}[self.value]


class FindingKind(StrEnum):
    DEVICE_DOWN = "device_down"
    LINE_DOWN = "line_down"
    ENDPOINT_DOWN = "endpoint_down"
    SERVICE_DOWN = "service_down"
    DNS_FAILURE = "dns_failure"
    DNS_MISMATCH = "dns_mismatch"
    DEGRADED = "degraded"
    FAILOVER_FAILED = "failover_failed"
    FAILED_OVER = "failed_over"
    FAILBACK_PENDING = "failback_pending"
    REDUNDANCY_LOST = "redundancy_lost"
    GROUP_DOWN = "group_down"
    SHARED_RISK = "shared_risk"
    SINGLE_POINT = "single_point_of_failure"
    UNIDENTIFIABLE = "unidentifiable"
    AMBIGUOUS = "ambiguous"
    FAMILY_DOWN = "family_down"  # a dual-stack host answers over one address family only
    NOT_MEASURED = "not_measured"


# Findings of the static audit: facts about the design, true whatever the network does.
STATIC_KINDS = frozenset({FindingKind.SHARED_RISK, FindingKind.SINGLE_POINT,
                          FindingKind.UNIDENTIFIABLE})


@dataclass(frozen=True)
class ComponentState:
    name: str
    kind: str  # device | line | endpoint | service
    state: State
    reason: str
    evidence: tuple[str, ...] = ()  # probe ids

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "state": str(self.state),
                "reason": self.reason, "evidence": list(self.evidence)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ComponentState:
        return cls(d["name"], d["kind"], State(d["state"]), d.get("reason", ""),
                   tuple(d.get("evidence", ())))


@dataclass(frozen=True)
class GroupVerdict:
    name: str
    lines: tuple[str, ...]  # priority order
    preferred: str | None
    active: str | None  # the line carrying traffic, None when not known
    verdict: Verdict
    reason: str
    failback: str = "auto"
    evidence: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()  # lines that may be active, when `active` is not known
    active_by: str | None = None  # what showed the active line: "trace" or "icmp_error"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "lines": list(self.lines), "preferred": self.preferred,
                "active": self.active, "verdict": str(self.verdict), "reason": self.reason,
                "failback": self.failback, "evidence": list(self.evidence),
                "candidates": list(self.candidates), "active_by": self.active_by}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GroupVerdict:
        return cls(d["name"], tuple(d.get("lines", ())), d.get("preferred"), d.get("active"),
                   Verdict(d["verdict"]), d.get("reason", ""), d.get("failback", "auto"),
                   tuple(d.get("evidence", ())), tuple(d.get("candidates", ())),
                   d.get("active_by"))


@dataclass(frozen=True)
class Finding:
    severity: Severity
    kind: FindingKind
    components: tuple[str, ...]
    summary: str  # one sentence a person can paste into a ticket, with observed values
    evidence: tuple[str, ...] = ()  # probe ids

    def to_json(self) -> dict[str, Any]:
        return {"severity": str(self.severity), "kind": str(self.kind),
                "components": list(self.components), "summary": self.summary,
                "evidence": list(self.evidence)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Finding:
        return cls(Severity(d["severity"]), FindingKind(d["kind"]), tuple(d.get("components", ())),
                   d["summary"], tuple(d.get("evidence", ())))


@dataclass(frozen=True)
class Diagnosis:
    components: tuple[ComponentState, ...]
    groups: tuple[GroupVerdict, ...]
    findings: tuple[Finding, ...]
    # The smallest sets of components whose failure explains every failed probe,
    # best first; more than one means the evidence cannot tell them apart.
    explanations: tuple[tuple[str, ...], ...] = ()

    def state_of(self, name: str) -> State | None:
        for c in self.components:
            if c.name == name:
                return c.state
        return None

    def group(self, name: str) -> GroupVerdict | None:
        for g in self.groups:
            if g.name == name:
                return g
        return None

    def status(self, fail_on: Severity = Severity.WARNING, static: bool = False) -> Status:
        """Overall status: the worst finding, with unmeasured parts as UNKNOWN.

        `fail_on=critical` lets CI treat warnings as OK. Static audit findings
        (shared risk, single points of failure) describe the design, not the
        moment: they count only with `static=True` (`netprobe validate`), so a
        cron check does not stay at WARNING for a fact nobody can fix tonight.
        """
        worst = Status.OK
        for f in self.findings:
            if f.kind in STATIC_KINDS and not static:
                continue
            if f.kind == FindingKind.NOT_MEASURED:
                s = Status.UNKNOWN
            elif f.severity == Severity.CRITICAL:
                s = Status.CRITICAL
            elif f.severity == Severity.WARNING and fail_on == Severity.WARNING:
                s = Status.WARNING
            else:
                s = Status.OK
            if s.rank > worst.rank:
                worst = s
        return worst
