"""Prometheus text exposition, for node_exporter's textfile collector.

Every sample carries a `vantage` label, so files from several vantage points
can be scraped side by side. Metrics:

- `netprobe_probe_success{probe,component,kind,outcome}`: 1 when the probe got
  what it asked for, 0 when the network said no. `outcome` says how: `ok`,
  `wrong_answer` (the host answered, but not with what was asked: a TCP RST,
  a DNS error rcode, a DNS answer not in `expect`) or `no_answer`. A probe
  that could not be measured (no privilege, skipped) has no success sample:
  0 would claim "down". It shows in `netprobe_probe_measured` = 0 instead.
  `kind` is the probe kind.
- `netprobe_probe_loss_ratio`: the fraction of attempts that got no answer at
  all (a RST or a wrong DNS answer is an answer: the host is there), and
  `netprobe_probe_rtt_seconds{stat=min|avg|max}`: present only when measured
  (RTT only when something came back).
- `netprobe_component_state{component,kind,state}`: one-hot over up, degraded,
  down, unknown; `kind` is the component kind.
- `netprobe_group_verdict{group,verdict}`: one-hot over the seven verdicts.
- `netprobe_group_active_line{group,line}`: 1 for the line carrying traffic,
  0 for the others; all 0 when the active line is not known.
- `netprobe_findings{severity}`: number of findings of each severity.
- `netprobe_line_info{component,carrier,group}`: 1 for each line of the
  embedded topology (`check` and `serve` embed it). Lines are each site's own,
  carriers are shared: the cross-site recording rules in configs/prometheus
  join sites by carrier through this, whether a site is scraped from `serve`
  or from a textfile that cron writes.
- `netprobe_run_duration_seconds`, `netprobe_run_status` (the exit code:
  0 ok, 1 warning, 2 critical, 3 unknown), `netprobe_last_run_timestamp_seconds`
  (when the run finished, for staleness alerts).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from netprobe.diagnosis.model import STATIC_KINDS, Severity, State, Verdict
from netprobe.evidence import Outcome, ProbeResult
from netprobe.report.model import Report

PREFIX = "netprobe"

# The values of the success metric's `outcome` label: few, so it aggregates.
OUTCOME_OK, OUTCOME_WRONG, OUTCOME_SILENT = "ok", "wrong_answer", "no_answer"


def success_outcome(p: ProbeResult) -> str:
    """How a measured probe ended: what it asked for, another answer, or none."""
    if p.outcome == Outcome.OK:
        return OUTCOME_OK
    return OUTCOME_WRONG if p.answered > 0 else OUTCOME_SILENT


class ReportCollector(Collector):
    """Exposes one finished report; the registry asks it once per render."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        r = self.report
        v = r.vantage

        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["vantage", *labels])

        success = gauge("probe_success", "1 if the probe got what it asked for, 0 if the "
                        "network said no (outcome: ok, wrong_answer, no_answer); absent when "
                        "not measured", ["probe", "component", "kind", "outcome"])
        measured = gauge("probe_measured", "1 if the probe could be run, 0 if netprobe "
                         "could not measure (no privilege, skipped, internal error)",
                         ["probe", "component", "kind"])
        loss = gauge("probe_loss_ratio", "Fraction of attempts that got no answer at all (a "
                     "RST or a wrong DNS answer is an answer)",
                     ["probe", "component", "kind"])
        rtt = gauge("probe_rtt_seconds", "Round-trip time of the answers, by statistic",
                    ["probe", "component", "kind", "stat"])
        for p in r.evidence.results:
            labels = [v, p.id, p.target, p.kind]
            measured.add_metric(labels, 1.0 if p.measured else 0.0)
            if not p.measured:
                continue
            success.add_metric([*labels, success_outcome(p)],
                               1.0 if p.outcome == Outcome.OK else 0.0)
            if p.loss_ratio is not None:
                loss.add_metric(labels, p.loss_ratio)
            for stat, value_ms in (("min", p.rtt_min_ms), ("avg", p.rtt_avg_ms),
                                   ("max", p.rtt_max_ms)):
                if value_ms is not None:
                    rtt.add_metric([*labels, stat], value_ms / 1000.0)
        yield from (success, measured, loss, rtt)

        state = gauge("component_state", "1 for the component's current state, 0 for the "
                      "others", ["component", "kind", "state"])
        for c in r.components:
            for s in State:
                state.add_metric([v, c.name, c.kind, str(s)], 1.0 if c.state == s else 0.0)
        yield state

        verdict = gauge("group_verdict", "1 for the redundancy group's current verdict, 0 for "
                        "the others", ["group", "verdict"])
        active = gauge("group_active_line", "1 for the line carrying the group's traffic",
                       ["group", "line"])
        for g in r.groups:
            for vd in Verdict:
                verdict.add_metric([v, g.name, str(vd)], 1.0 if g.verdict == vd else 0.0)
            for line in g.lines:
                active.add_metric([v, g.name, line], 1.0 if g.active == line else 0.0)
        yield from (verdict, active)

        # static="true": the design audit's facts (shared carrier, ...), which do not
        # change with the network: alert on static="false" only
        findings = gauge("findings", "Number of findings of each severity",
                         ["severity", "static"])
        for sev in Severity:
            for static in (False, True):
                n = sum(f.severity == sev and (f.kind in STATIC_KINDS) == static
                        for f in r.findings)
                findings.add_metric([v, str(sev), str(static).lower()], float(n))
        yield findings

        lines = (r.extra.get("topology") or {}).get("lines") if isinstance(
            r.extra.get("topology"), dict) else None
        if isinstance(lines, dict) and lines:
            info = gauge("line_info", "A line of this vantage, with its carrier and "
                         "redundancy group (always 1)", ["component", "carrier", "group"])
            for name, line in lines.items():
                line = line if isinstance(line, dict) else {}
                info.add_metric([v, name, str(line.get("carrier") or ""),
                                 str(line.get("group") or "")], 1.0)
            yield info

        duration = gauge("run_duration_seconds", "How long the run took", [])
        duration.add_metric([v], r.evidence.duration_s)
        status = gauge("run_status", "Exit code of the run: 0 ok, 1 warning, 2 critical, "
                       "3 unknown", [])
        status.add_metric([v], float(r.exit_code))
        finished = gauge("last_run_timestamp_seconds", "When the run finished, seconds since "
                         "the epoch", [])
        finished.add_metric([v], r.evidence.started_at + r.evidence.duration_s)
        yield from (duration, status, finished)


def render_prometheus(report: Report) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(report))
    return generate_latest(registry).decode("utf-8")
