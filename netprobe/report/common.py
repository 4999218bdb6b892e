"""Helpers shared by the report formats: number formatting, severity of a
verdict, which findings and probes belong to a component.

Pure functions of the `Report`; no format imports another format's module.
"""

from __future__ import annotations

from collections.abc import Iterable

from netprobe.diagnosis.model import Finding, GroupVerdict, Severity, State, Verdict
from netprobe.evidence import ProbeResult
from netprobe.report.model import Report

# How bad each group verdict is, for formats that need a pass/fail per group
# (JUnit, Markdown badges). Traffic still flows in every WARNING verdict; it
# does not in a CRITICAL one. UNKNOWN verdicts map to None: not measured.
VERDICT_SEVERITY: dict[Verdict, Severity | None] = {
    Verdict.NOMINAL: Severity.INFO,
    Verdict.REDUNDANCY_LOST: Severity.WARNING,
    Verdict.FAILED_OVER: Severity.WARNING,
    Verdict.FAILBACK_PENDING: Severity.WARNING,
    Verdict.FAILOVER_FAILED: Severity.CRITICAL,
    Verdict.DOWN: Severity.CRITICAL,
    Verdict.AMBIGUOUS: Severity.WARNING,
    Verdict.UNKNOWN: None,
}

STATE_SEVERITY: dict[State, Severity | None] = {
    State.UP: Severity.INFO,
    State.DEGRADED: Severity.WARNING,
    State.DOWN: Severity.CRITICAL,
    State.UNKNOWN: None,
}

SEVERITY_ORDER: dict[Severity, int] = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


def active_text(g: GroupVerdict) -> str:
    """The active line for a person: its name, the candidates ('a or b?') when
    the evidence fits more than one, else 'not known'."""
    if g.active:
        return g.active
    if g.candidates:
        return f"{' or '.join(g.candidates)}?"
    return "not known"


def counts_as_failure(severity: Severity | None, fail_on: Severity) -> bool:
    """Does a problem of this severity fail the run under `--fail-on`?"""
    if severity == Severity.CRITICAL:
        return True
    return severity == Severity.WARNING and fail_on == Severity.WARNING


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first; stable within a severity so the diagnosis order is kept."""
    return sorted(findings, key=lambda f: SEVERITY_ORDER[f.severity])


def findings_about(report: Report, names: Iterable[str]) -> list[Finding]:
    """Findings that name any of `names` among their components, worst first."""
    wanted = set(names)
    return sorted_findings(f for f in report.findings if wanted.intersection(f.components))


def findings_by_component(report: Report) -> dict[str, list[Finding]]:
    """Component name -> the findings naming it, worst first (one pass, for loops)."""
    out: dict[str, list[Finding]] = {}
    for f in sorted_findings(report.findings):
        for name in dict.fromkeys(f.components):
            out.setdefault(name, []).append(f)
    return out


def group_findings(report: Report, group: GroupVerdict) -> list[Finding]:
    """Findings about a redundancy group: naming the group itself, or naming one
    of its lines with a group-level kind (failover_failed, failed_over, ...)."""
    group_kinds = {"failover_failed", "failed_over", "failback_pending", "redundancy_lost",
                   "group_down"}
    out = [f for f in report.findings
           if group.name in f.components
           or (str(f.kind) in group_kinds and set(group.lines).intersection(f.components))]
    return sorted_findings(out)


def probes_by_id(report: Report) -> dict[str, ProbeResult]:
    return report.evidence.by_id()


def fmt_ms(value_ms: float | None) -> str:
    if value_ms is None:
        return "-"
    if value_ms >= 100:
        return f"{value_ms:.0f} ms"
    if value_ms >= 10:
        return f"{value_ms:.1f} ms"
    return f"{value_ms:.2f} ms"


def fmt_ratio(ratio: float | None) -> str:
    """0.333 -> '33%'; None -> '-'. Whole percents read best; tiny non-zero
    losses still show as '<1%' so they are not mistaken for none."""
    if ratio is None:
        return "-"
    pct = ratio * 100
    if 0 < pct < 1:
        return "<1%"
    return f"{pct:.0f}%"


def fmt_duration_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 120:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def probe_summary(result: ProbeResult) -> str:
    """One line of evidence a person can paste: what was sent, what came back."""
    if not result.measured:
        why = result.message or str(result.error)
        return f"{result.id}: not measured ({why})"
    parts = [f"{result.id}", f"{result.received}/{result.sent} replies"]
    if result.loss_ratio is not None:
        parts.append(f"loss {fmt_ratio(result.loss_ratio)}")
    if result.rtts_ms:
        parts.append(f"rtt {fmt_ms(result.rtt_min_ms)}/{fmt_ms(result.rtt_avg_ms)}/"
                     f"{fmt_ms(result.rtt_max_ms)} min/avg/max")
    if result.error is not None:
        parts.append(f"error {result.error}")
        if result.message:
            parts.append(result.message)
    head, *rest = parts
    return f"{head}: " + ", ".join(rest)


def evidence_lines(report: Report, probe_ids: Iterable[str],
                   results: dict[str, ProbeResult] | None = None) -> list[str]:
    """`probe_summary` for each probe id, in order, once. Pass `results`
    (probes_by_id) when calling this in a loop."""
    results = probes_by_id(report) if results is None else results
    seen: set[str] = set()
    out = []
    for pid in probe_ids:
        if pid in seen:
            continue
        seen.add(pid)
        result = results.get(pid)
        out.append(probe_summary(result) if result else f"{pid}: no result in this run")
    return out


def status_title(report: Report) -> str:
    """'CRITICAL (exit 2)'."""
    return f"{str(report.status).upper()} (exit {report.exit_code})"


def interruption(report: Report) -> str:
    """Why a run is marked interrupted, in words: 'SIGTERM; some probes did not run'."""
    by = f"{report.interrupted_by}; " if report.interrupted_by else ""
    if report.evidence.interrupted:
        return f"{by}some probes did not run"
    return f"{by}after every probe had run"
