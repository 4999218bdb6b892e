"""The `Report` value (schema netprobe.report/1) that every format renders.

The JSON form is a public contract: fields may be added, never renamed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from netprobe import __version__
from netprobe.diagnosis.model import (
    ComponentState,
    Diagnosis,
    Finding,
    GroupVerdict,
    Severity,
    Status,
)
from netprobe.evidence import Evidence

if TYPE_CHECKING:  # config imports pydantic: keep `import netprobe.report` light
    from netprobe.config import Thresholds

SCHEMA = "netprobe.report/1"


@dataclass(frozen=True)
class Report:
    vantage: str
    config: str  # the config file the run used
    evidence: Evidence
    diagnosis: Diagnosis
    status: Status
    fail_on: Severity = Severity.WARNING
    extra: dict[str, Any] = field(default_factory=dict)
    # The config's loss/RTT thresholds, for formats that print them beside the
    # measurements (Nagios perfdata warn;crit). None: taken from the embedded
    # topology in `extra` if there is one, else the config defaults.
    thresholds: Thresholds | None = None
    # The signal (SIGTERM, ...) that stopped the run, if one did: during probing
    # the evidence says what was skipped; after it, every probe had run.
    interrupted_by: str | None = None
    # parts of its JSON made ahead of time (json_format.Prerendered); not part of it
    prerendered: Any = field(default=None, compare=False, repr=False)

    @property
    def interrupted(self) -> bool:
        return self.evidence.interrupted or self.interrupted_by is not None

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    @property
    def started_at_iso(self) -> str:
        return datetime.fromtimestamp(self.evidence.started_at, UTC).isoformat(timespec="milliseconds")

    @property
    def components(self) -> tuple[ComponentState, ...]:
        return self.diagnosis.components

    @property
    def groups(self) -> tuple[GroupVerdict, ...]:
        return self.diagnosis.groups

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.diagnosis.findings

    def to_json(self, part: Callable[[object], Any] | None = None) -> dict[str, Any]:
        """`part(source)`: a stand-in for the JSON of `source` (a component, a
        result, an entry of `extra`) made ahead of time, or None; for the JSON
        renderer only (json_format.Prerendered)."""
        part = part or _no_part
        return {
            "schema": SCHEMA,
            "version": __version__,
            "vantage": self.vantage,
            "config": self.config,
            "started_at": self.started_at_iso,
            "duration_s": round(self.evidence.duration_s, 3),
            "interrupted": self.interrupted,
            "interrupted_by": self.interrupted_by,
            "status": str(self.status),
            "exit_code": self.exit_code,
            "fail_on": str(self.fail_on),
            "components": [c.to_json() if (made := part(c)) is None else made
                           for c in self.diagnosis.components],
            "groups": [g.to_json() for g in self.diagnosis.groups],
            "findings": [f.to_json() for f in self.diagnosis.findings],
            "explanations": [list(e) for e in self.diagnosis.explanations],
            "probes": [r.to_json(shared=True) if (made := part(r)) is None else made  # only serialised
                       for r in self.evidence.results],
            **{k: v if (made := part(v)) is None else made for k, v in self.extra.items()},
        }


def _no_part(source: object) -> None:
    return None


def build_report(vantage: str, config: str, evidence: Evidence, diagnosis: Diagnosis,
                 fail_on: Severity = Severity.WARNING, thresholds: Thresholds | None = None,
                 interrupted_by: str | None = None, prerendered: Any = None,
                 **extra: Any) -> Report:
    status = diagnosis.status(fail_on)
    if evidence.interrupted and status.rank < Status.UNKNOWN.rank:
        status = Status.UNKNOWN  # an interrupted run cannot vouch for what it did not measure
    return Report(vantage=vantage, config=config, evidence=evidence, diagnosis=diagnosis,
                  status=status, fail_on=fail_on, extra=dict(extra), thresholds=thresholds,
                  interrupted_by=interrupted_by, prerendered=prerendered)
