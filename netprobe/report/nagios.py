"""Nagios / Icinga plugin output (monitoring-plugins guidelines).

    NETPROBE CRITICAL - 2 critical: line_down leased-a, ... | 'duration'=2.1s;;;0 'dc-app_rtt'=1.2ms;150;1000;0 ...
    [critical] Line leased-a is down: ...        <- long text, one line per finding
    group dc-wan: failed_over, active broadband-b

Every perfdata value is on the first line, after its one `|`: Nagios Core
reads perfdata there and after a `|` in the long text, but Icinga 2 keeps
perfdata only from lines that hold a `|`, so perfdata continued on lines of
their own would be lost there. The text before the `|` (the status line)
stays under `SUMMARY_MAX` characters and holds no `;` (Nagios Core rewrites
it to `:` in the status line) and no `|`.

Perfdata per probe (traces excepted): `LABEL_rtt` in ms and `LABEL_loss` in %
(attempts with no answer at all), warn and crit from the config thresholds;
`U` when the probe could not measure. The loss crit threshold is the range
`@CRIT:` (critical at CRIT% and above), so a crit of 100% can fire: netprobe
calls a probe down at crit, a plain `100` would only fire above 100%. LABEL is
the target for ICMP probes (a device, a line, an endpoint) and the probe id
for the others (`dc-app/tcp/443`).
"""

from __future__ import annotations

from netprobe.config import Thresholds
from netprobe.diagnosis.model import STATIC_KINDS, FindingKind, Severity, State, Status
from netprobe.report.common import active_text, sorted_findings
from netprobe.report.model import Report

SUMMARY_MAX = 120  # of the first line, for the text before the perfdata


def _num(value: float) -> str:
    """Plain decimal, no exponent, no trailing zeros: 1.2, 150, 0.035."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _label(name: str) -> str:
    # Quote every label; a quote inside is doubled, '=' cannot appear at all.
    return "'" + name.replace("=", "_").replace("'", "''") + "'"


def _text(value: str) -> str:
    # A '|' in plugin text would start the perfdata; newlines would start long text.
    return " ".join(value.replace("|", "/").split())


def _status_text(value: str) -> str:
    # Nagios Core turns ';' into ':' in the status line (not in the long text).
    return _text(value).replace(";", ",")


def thresholds_of(report: Report) -> Thresholds:
    """The run's thresholds: given to the report, else those of the topology
    embedded in it (`check` embeds it), else the config defaults."""
    if report.thresholds is not None:
        return report.thresholds
    topology = report.extra.get("topology")
    if isinstance(topology, dict):
        embedded = (topology.get("defaults") or {}).get("thresholds")
        if isinstance(embedded, dict):
            try:
                return Thresholds.model_validate(embedded)
            except ValueError:  # pydantic.ValidationError; a damaged copy is not fatal here
                pass
    return Thresholds()


def perfdata(report: Report) -> list[str]:
    th = thresholds_of(report)
    rtt_w, rtt_c = _num(th.rtt.warn * 1000), _num(th.rtt.crit * 1000)
    # warn: degraded above it (a plain threshold); crit: down at it (an inclusive range)
    loss_w, loss_c = _num(th.loss.warn * 100), f"@{_num(th.loss.crit * 100)}:"
    items = [f"'duration'={_num(report.evidence.duration_s)}s;;;0"]
    for p in report.evidence.results:
        if p.kind == "trace":  # a trace's RTTs are per hop, not a health figure
            continue
        base = p.target if p.kind == "icmp" else p.id
        if not p.measured:
            items += [f"{_label(base + '_rtt')}=U", f"{_label(base + '_loss')}=U"]
            continue
        rtt = "U" if p.rtt_avg_ms is None else f"{_num(p.rtt_avg_ms)}ms"
        items.append(f"{_label(base + '_rtt')}={rtt};{rtt_w};{rtt_c};0")
        if p.loss_ratio is not None:
            items.append(f"{_label(base + '_loss')}={_num(p.loss_ratio * 100)}%;"
                         f"{loss_w};{loss_c};0;100")
    return items


def summary(report: Report) -> str:
    """'2 critical, 1 warning: line_down leased-a, failover_failed dc-wan, +1 more'."""
    # static audit facts do not move the status, so they are not news on a pager
    findings = [f for f in sorted_findings(report.findings) if f.kind not in STATIC_KINDS]
    counts = [f"{n} {sev}" for sev in Severity
              if sev != Severity.INFO and (n := sum(f.severity == sev for f in findings))]
    not_measured = sum(f.kind == FindingKind.NOT_MEASURED for f in findings)
    interrupted = (f"run interrupted by {report.interrupted_by}" if report.interrupted_by
                   else "run interrupted") if report.interrupted else None
    if report.status == Status.UNKNOWN:
        worst = [f for f in findings if f.kind == FindingKind.NOT_MEASURED] or findings
        if not_measured:
            counts.insert(0, f"{not_measured} not measured")
    if interrupted and report.status != Status.OK:  # a pager says so at any level
        counts.insert(0, interrupted)
    if report.status == Status.OK:
        up = sum(c.state in (State.UP, State.DEGRADED) for c in report.components)
        text = f"{up}/{len(report.components)} components up"
        if report.groups:
            nominal = sum(str(g.verdict) == "nominal" for g in report.groups)
            text += f", {nominal}/{len(report.groups)} groups nominal"
        unmeasured = sum(not p.measured for p in report.evidence.results)
        if unmeasured:  # never a plain OK when part of the run was not measured
            text += f", {unmeasured} probe{'s' if unmeasured != 1 else ''} not measured"
        if counts:
            text += f" ({', '.join(counts)} tolerated)"
        if interrupted:
            text += f" ({interrupted} after every probe had run)"
        return _status_text(text)[:SUMMARY_MAX]
    if report.status != Status.UNKNOWN:
        worst_sev = Severity.CRITICAL if report.status == Status.CRITICAL else Severity.WARNING
        worst = [f for f in findings if f.severity == worst_sev]
    head = ", ".join(counts) or "no findings"
    items = list(dict.fromkeys(_item(report, f) for f in worst))
    text = _status_text(head) + ": " if items else _status_text(head)
    for shown, item in enumerate(items):
        more = len(items) - shown - 1
        tail = f", +{more} more" if more else ""
        piece = (", " if shown else "") + _status_text(item)
        if shown and len(text) + len(piece) + len(tail) > SUMMARY_MAX:
            return text + f", +{len(items) - shown} more"
        text += piece
    return text[:SUMMARY_MAX]


# group findings name the group and where its traffic goes, not every line and endpoint
_GROUP_VERDICT = {FindingKind.FAILED_OVER: "failed_over", FindingKind.FAILOVER_FAILED:
                  "failover_failed", FindingKind.GROUP_DOWN: "down", FindingKind.FAILBACK_PENDING:
                  "failback_pending", FindingKind.REDUNDANCY_LOST: "redundancy_lost"}


def _item(report: Report, finding) -> str:
    verdict = _GROUP_VERDICT.get(finding.kind)
    for g in report.groups if verdict else ():
        if str(g.verdict) == verdict and set(g.lines) & set(finding.components):
            via = f" via {g.active}" if g.active and g.active != g.preferred else ""
            return f"{g.name} {g.verdict}{via}"
    if not finding.components:
        return str(finding.kind)
    more = len(finding.components) - 1
    return f"{finding.kind} {finding.components[0]}" + (f" (+{more})" if more else "")


def long_text(report: Report) -> list[str]:
    lines = [_text(f"[{f.severity}] {f.summary}") for f in sorted_findings(report.findings)]
    for g in report.groups:
        lines.append(_text(f"group {g.name}: {g.verdict}, active {active_text(g)}"))
    if not lines:
        lines.append(f"{len(report.components)} components checked, no findings")
    return lines


def status_line(report: Report) -> str:
    """The first line's text before the perfdata, as both daemons will show it."""
    return f"NETPROBE {str(report.status).upper()} - {summary(report)}"


def render_nagios(report: Report) -> str:
    first = f"{status_line(report)} | {' '.join(perfdata(report))}"
    return "\n".join([first, *long_text(report)]) + "\n"
