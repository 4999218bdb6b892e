"""The failover verdict of each redundancy group.

Line health comes from the lines' component states (their far-end probes,
seen through the localisation, so a line behind a dead CE is unknown, not
down). The active line comes from the traces of the endpoints behind the
group, and from ICMP errors (in time or late) sent by a line's own hop to any
probe of something behind the group. When the evidence names more than one
line (traces that disagree), or traces ran but a line's router stayed silent
(one that never sends time-exceeded) while traffic flows and more than one
line is up, the verdict is `ambiguous`, naming the candidates and what was
seen. When nothing shows it, the traffic itself still speaks: if the
preferred line is down and endpoints behind the group answer, traffic must be
on a standby line; if they do not answer while a standby is up, the traffic
did not move.

Pure code: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from netprobe.diagnosis.findings import describe, either, names, observed
from netprobe.diagnosis.localize import ActiveLine, Localization, ProbePath
from netprobe.diagnosis.model import (
    ComponentState,
    Finding,
    FindingKind,
    GroupVerdict,
    Severity,
    State,
    Verdict,
)
from netprobe.evidence import Evidence, ProbeResult
from netprobe.topology import RedundancyGroup, Topology

_HEALTHY = (State.UP, State.DEGRADED)
# Verdicts under which a down line costs redundancy but not traffic.
_ABSORBING = (Verdict.FAILED_OVER, Verdict.REDUNDANCY_LOST, Verdict.FAILBACK_PENDING)


@dataclass(frozen=True)
class GroupAssessment:
    verdict: GroupVerdict
    findings: tuple[Finding, ...]
    absorbed: frozenset[str]  # lines that are down while the group still carries traffic


class _Group:
    """Everything one group's verdict needs, with the sentences built from it."""

    def __init__(self, topology: Topology, evidence: Evidence, loc: Localization,
                 states: dict[str, ComponentState], group: RedundancyGroup) -> None:
        self.t = topology
        self.g = group
        self.loc = loc
        self.states = states
        self.act: ActiveLine = loc.active.get(group.name) or ActiveLine(group.name, None)
        self.line_probe: dict[str, ProbeResult] = {}
        for r in evidence.results:
            if r.target in group.lines and r.kind == "icmp" and r.target not in self.line_probe:
                self.line_probe[r.target] = r
        crossing = [p for p in loc.probes if group.name in p.groups]
        self.traffic_ok: list[ProbePath] = [p for p in crossing if p.through]
        # a failure counts against the group only when its host is not otherwise known up
        self.traffic_failed: list[ProbePath] = [
            p for p in crossing if p.through is False and p.path and p.path[-1] not in loc.proven_up]

    def state(self, line: str) -> State:
        st = self.states.get(line)
        return st.state if st else State.UNKNOWN

    def line_text(self, line: str, verb: str = "") -> str:
        """'leased-a (carrier-a) far end 198.51.100.1: 0/3 replies' ('... is up (3/3, 1.0 ms)')."""
        comp = self.t.components[line]
        r = self.line_probe.get(line)
        if r is not None and verb:
            return f"{describe(comp)} {verb} ({observed(r)})"
        if r is not None:
            return f"{describe(comp)}: {observed(r)}"
        if verb:
            return f"{describe(comp)} {verb}"
        return f"{describe(comp)}: {self.states[line].reason}" if line in self.states else line

    def lines_text(self, first: str, others: list[str]) -> str:
        """Each line's observed state, first the given one, as a summary's opening."""
        return "".join(f"{self.line_text(line)}; " for line in (first, *others))

    def voters(self, line: str) -> list[str]:
        return list(dict.fromkeys(v.endpoint for v in self.act.votes if v.line == line))

    def targets(self, probes: list[ProbePath]) -> list[str]:
        return list(dict.fromkeys(p.path[-1] for p in probes if p.path))

    def why_active_unknown(self) -> str:
        act = self.act
        if act.disagree:
            said = [f"{v.endpoint} via {either(v.lines)}" for v in act.votes if v.lines]
            return f"the traces disagree ({', '.join(said)})"
        if act.votes:
            last = []
            for v in act.votes:
                hops = [h.get("address") for h in (self._detail(v.probe_id).get("hops") or [])
                        if isinstance(h, dict) and h.get("address")]
                if hops:
                    last.append(hops[-1])
            if last:
                return (f"no trace reached past {either(dict.fromkeys(last))} "
                        f"({names(v.probe_id for v in act.votes)})")
            return f"no trace showed any line's hops ({names(v.probe_id for v in act.votes)})"
        if act.unmeasured:
            r = act.unmeasured[0]
            return f"the traces could not be measured ({r.message or r.error})"
        return "no trace of an endpoint behind it"

    def seen(self, line: str) -> str:
        """How the evidence shows `line` active: 'trace shows 198.51.100.1' or
        'ICMP errors from 198.51.100.1'."""
        votes = [v for v in self.act.votes if line in v.lines]
        if not votes or any(v.by == "trace" for v in votes):
            return f"trace shows {either(self.t.line_hops(line))}"
        return f"ICMP errors from {either(dict.fromkeys(a for v in votes for a in v.addresses))}"

    @property
    def active_by(self) -> str | None:
        line = self.act.line
        votes = [v for v in self.act.votes if line is not None and line in v.lines]
        if not votes:
            return None
        return "trace" if any(v.by == "trace" for v in votes) else "icmp_error"

    def silent_text(self) -> str:
        """Routers that forwarded the traces but did not answer them (a silent hop
        before one that answered): 'dc-app/trace silent at hop 2 after retries'.
        A trace that stops dead is not this: nothing after it says it forwarded."""
        by_gap: dict[str, list[str]] = {}  # the same gap in several traces: said once
        for v in self.act.votes:
            if v.by != "trace":
                continue
            detail = self._detail(v.probe_id)
            hops = [h for h in detail.get("hops") or [] if isinstance(h, dict)]
            last = max((h.get("ttl") or 0 for h in hops if h.get("address")), default=0)
            silent = [h.get("ttl") for h in hops if not h.get("address")
                      and (h.get("ttl") or 0) < last]
            if silent:
                again = " after retries" if detail.get("retried") else ""
                gap = f"silent at hop {either(str(t) for t in silent)}{again}"
                by_gap.setdefault(gap, []).append(v.probe_id)
        return "; ".join(f"{names(dict.fromkeys(ids))} {gap}" for gap, ids in by_gap.items())

    def _detail(self, probe_id: str) -> dict:
        for p in self.loc.probes:
            if p.result.id == probe_id:
                return p.result.detail
        return {}

    @property
    def evidence(self) -> tuple[str, ...]:
        ids = [self.line_probe[line].id for line in self.g.lines if line in self.line_probe]
        return tuple(dict.fromkeys(ids + list(self.act.evidence)))


def assess_group(topology: Topology, evidence: Evidence, loc: Localization,
                 states: dict[str, ComponentState], group: RedundancyGroup) -> GroupAssessment:
    ctx = _Group(topology, evidence, loc, states, group)
    verdict, reason, active, findings = _decide(ctx)
    absorbed = frozenset(line for line in group.lines if ctx.state(line) == State.DOWN) \
        if verdict in _ABSORBING else frozenset()
    candidates = _candidates(ctx) if verdict == Verdict.AMBIGUOUS else ()
    gv = GroupVerdict(name=group.name, lines=group.lines, preferred=group.preferred, active=active,
                      verdict=verdict, reason=reason, failback=group.failback,
                      evidence=ctx.evidence, candidates=candidates,
                      active_by=ctx.active_by if active else None)
    return GroupAssessment(gv, tuple(findings), absorbed)


def assess_groups(topology: Topology, evidence: Evidence, loc: Localization,
                  states: dict[str, ComponentState]) -> list[GroupAssessment]:
    return [assess_group(topology, evidence, loc, states, g) for g in topology.groups.values()]


def _decide(c: _Group) -> tuple[Verdict, str, str | None, list[Finding]]:
    g = c.g
    lines = list(g.lines)
    if not lines:
        return Verdict.UNKNOWN, "the group has no lines", None, []
    pref = lines[0]
    standbys = lines[1:]
    st = {line: c.state(line) for line in lines}
    healthy = [line for line in lines if st[line] in _HEALTHY]
    down = [line for line in lines if st[line] == State.DOWN]
    comps = tuple(lines)
    ev = c.evidence

    def finding(sev: Severity, kind: FindingKind, summary: str, extra: list[str] = ()) -> Finding:
        return Finding(sev, kind, tuple(dict.fromkeys([*comps, *extra])), summary, ev)

    if len(down) == len(lines):
        texts = "; ".join(c.line_text(line) for line in lines)
        summary = f"every line of {g.name} is down: {texts}."
        return (Verdict.DOWN, f"every line is down ({', '.join(lines)})", c.act.line,
                [finding(Severity.CRITICAL, FindingKind.GROUP_DOWN, summary)])

    active = c.act.line
    if active is not None:
        return _with_trace(c, pref, standbys, st, healthy, active, finding)
    return _without_trace(c, pref, standbys, st, healthy, finding)


def _with_trace(c: _Group, pref: str, standbys: list[str], st: dict[str, State],
                healthy: list[str], active: str, finding) -> tuple:
    g = c.g
    eps = c.voters(active)
    to = f"traffic to {names(eps)}" if eps else "traffic"
    hop = c.seen(active)
    if active == pref:
        if st[pref] == State.DOWN:
            others = [s for s in standbys if s in healthy]
            unmeasured = [s for s in standbys if st[s] not in _HEALTHY and st[s] != State.DOWN]
            moved = (f"it did not move to {either(others)}" if others else
                     f"no standby line is known to be up ({names(unmeasured)} could not be "
                     "checked)" if unmeasured else "no standby line is up")
            summary = (c.lines_text(pref, standbys)
                       + f"{to} still goes via {pref} ({hop}): {moved}.")
            return (Verdict.FAILOVER_FAILED, f"{pref} is down but the evidence still shows it "
                    f"carrying traffic ({hop})",
                    active, [finding(Severity.CRITICAL, FindingKind.FAILOVER_FAILED, summary, eps)])
        if st[pref] not in _HEALTHY:
            return (Verdict.UNKNOWN, f"traffic goes via {pref}, whose state is unknown "
                    f"({c.states[pref].reason})", active, [])
        sb_down = [s for s in standbys if st[s] == State.DOWN]
        sb_unknown = [s for s in standbys if st[s] not in _HEALTHY and st[s] != State.DOWN]
        if sb_down:
            return _redundancy_lost(c, sb_down, standbys, healthy, f"{to} goes via {pref}",
                                    active, finding)
        if sb_unknown:
            why = "; ".join(f"{s}: {c.states[s].reason}" for s in sb_unknown)
            return (Verdict.UNKNOWN, f"traffic goes via {pref} (up), but standby "
                    f"{either(sb_unknown)} could not be checked ({why})", active, [])
        standby_text = ", ".join(f"standby {s} {st[s]}" for s in standbys)
        by = f", {hop}" if c.active_by == "icmp_error" else ""
        reason = (f"traffic goes via {pref} ({st[pref]}{by})"
                  + (f"; {standby_text}" if standby_text else ""))
        return Verdict.NOMINAL, reason, active, []

    # traffic is on a standby line
    if st[pref] == State.DOWN:
        if st[active] == State.DOWN:
            others = [s for s in healthy if s != active]
            summary = (f"{c.line_text(pref)}; {c.line_text(active)}; {to} goes via {active} "
                       f"({hop}), which is down"
                       + (f", while {either(others)} is up." if others else "."))
            return (Verdict.FAILOVER_FAILED, f"traffic moved to {active}, which is down", active,
                    [finding(Severity.CRITICAL, FindingKind.FAILOVER_FAILED, summary, eps)])
        if st[active] in _HEALTHY or c.traffic_ok:
            summary = f"{c.line_text(pref)}; {c.line_text(active)}; {to} now via {active}."
            lost = [s for s in standbys if s != active and st[s] == State.DOWN]
            if lost:
                summary = summary[:-1] + f"; standby {either(lost)} is down too."
            return (Verdict.FAILED_OVER, f"{pref} is down; traffic goes via {active}", active,
                    [finding(Severity.WARNING, FindingKind.FAILED_OVER, summary, eps)])
        return (Verdict.UNKNOWN, f"{pref} is down and the traces show {active}, whose state is "
                f"unknown ({c.states[active].reason})", active, [])
    if st[pref] in _HEALTHY:
        manual = g.failback == "manual"
        tail = ("failback is manual, so this is expected until an operator switches back"
                if manual else "failback is automatic and has not happened")
        summary = f"{c.line_text(pref, 'is up')}, but {to} still goes via {active}; {tail}."
        sev = Severity.INFO if manual else Severity.WARNING
        return (Verdict.FAILBACK_PENDING, f"{pref} is up but traffic still goes via {active} "
                f"(failback {g.failback})", active,
                [finding(sev, FindingKind.FAILBACK_PENDING, summary, eps)])
    return (Verdict.UNKNOWN, f"traffic goes via standby {active}, and the state of {pref} is "
            f"unknown ({c.states[pref].reason})", active, [])


def _redundancy_lost(c: _Group, sb_down: list[str], standbys: list[str], healthy: list[str],
                     traffic: str, active: str | None, finding) -> tuple:
    still = [s for s in standbys if s in healthy]
    texts = "; ".join(f"standby {c.line_text(s)}" for s in sb_down)
    backup = (f"{c.g.name} has lost a backup line ({either(still)} remains)" if still
              else f"{c.g.name} has no working backup")
    summary = f"{texts}; {traffic} unaffected, but {backup}."
    return (Verdict.REDUNDANCY_LOST, f"standby {names(sb_down)} "
            f"{'is' if len(sb_down) == 1 else 'are'} down; {traffic}", active,
            [finding(Severity.WARNING, FindingKind.REDUNDANCY_LOST, summary)])


def _without_trace(c: _Group, pref: str, standbys: list[str], st: dict[str, State],
                   healthy: list[str], finding) -> tuple:
    g = c.g
    why = c.why_active_unknown()
    extra: list[Finding] = []
    if c.act.disagree:
        said = "; ".join(f"{v.probe_id} shows {either(v.lines)}" for v in c.act.votes if v.lines)
        extra.append(Finding(Severity.WARNING, FindingKind.AMBIGUOUS,
                             tuple(dict.fromkeys([*g.lines, *(v.endpoint for v in c.act.votes)])),
                             f"the traces and ICMP errors disagree on which line of {g.name} "
                             "carries traffic: "
                             f"{said}.", c.evidence))
    ok_targets = c.targets(c.traffic_ok)
    failed_targets = c.targets(c.traffic_failed)
    if st[pref] == State.DOWN:
        healthy_sb = [s for s in standbys if s in healthy]
        alive_sb = [s for s in standbys if st[s] != State.DOWN]
        # Traces that still show the dead preferred line to endpoints that do not
        # answer: those did not fail over, whatever the others did (a partial
        # failover, e.g. a route that moved for some prefixes only).
        stuck = list(dict.fromkeys(v.endpoint for v in c.act.votes
                                   if v.lines == (pref,) and v.endpoint in failed_targets))
        if stuck:
            moved = [t for t in ok_targets if t not in stuck]
            summary = (c.lines_text(pref, standbys)
                       + f"traffic to {names(stuck)} still goes via {pref} and gets no answer"
                       + (f", while {names(moved)} answer{'s' if len(moved) == 1 else ''} "
                          "over a standby line: the failover is partial." if moved else "."))
            return (Verdict.FAILOVER_FAILED, f"{pref} is down and traffic to {names(stuck)} "
                    f"still goes via it", None,
                    [finding(Severity.CRITICAL, FindingKind.FAILOVER_FAILED, summary, stuck)])
        if c.traffic_ok and alive_sb:
            summary = (c.lines_text(pref, standbys)
                       + f"{names(ok_targets)} behind {g.name} still answer{'s' if len(ok_targets) == 1 else ''}, "
                       f"so traffic runs on a standby line ({why}).")
            return (Verdict.FAILED_OVER, f"{pref} is down and traffic behind the group still "
                    f"flows, so it is on a standby line; {why}", None,
                    [finding(Severity.WARNING, FindingKind.FAILED_OVER, summary, ok_targets), *extra])
        if c.traffic_failed and healthy_sb:
            summary = (c.lines_text(pref, standbys)
                       + f"{names(failed_targets)} behind {g.name} do{'es' if len(failed_targets) == 1 else ''} "
                       f"not answer: traffic did not move to {either(healthy_sb)}.")
            return (Verdict.FAILOVER_FAILED, f"{pref} is down, {either(healthy_sb)} is up, and "
                    f"nothing behind the group answers", None,
                    [finding(Severity.CRITICAL, FindingKind.FAILOVER_FAILED, summary,
                             failed_targets), *extra])
        return (Verdict.UNKNOWN, f"{pref} is down, and {why}; cannot tell whether traffic moved",
                None, extra + _trace_not_measured(c))
    if st[pref] in _HEALTHY:
        sb_down = [s for s in standbys if st[s] == State.DOWN]
        if sb_down and not (c.traffic_failed and not c.traffic_ok):
            traffic = (f"traffic to {names(ok_targets)} flows" if ok_targets else "traffic flows")
            verdict, reason, _, findings = _redundancy_lost(c, sb_down, standbys, healthy,
                                                            traffic, None, finding)
            return verdict, f"{reason}; which line carries it is unknown: {why}", None, findings + extra
        cands = _candidates(c)
        if c.act.disagree and len(cands) > 1:
            return (Verdict.AMBIGUOUS, f"the evidence names {either(cands)}: {why}", None, extra)
        silent = c.silent_text()
        if c.traffic_ok and silent and len(cands) > 1:
            summary = (f"which line of {g.name} carries traffic cannot be told apart: "
                       f"{either(cands)}. A router that forwards but never sends time-exceeded "
                       f"hides it: {silent}, where the active line's router would answer, and "
                       f"no ICMP error came from a line's hop; {names(ok_targets)} behind "
                       f"{g.name} answer{'s' if len(ok_targets) == 1 else ''}.")
            return (Verdict.AMBIGUOUS, f"traffic flows, on {either(cands)}: cannot be told apart "
                    f"({silent})",
                    None, [Finding(Severity.WARNING, FindingKind.AMBIGUOUS,
                                   (g.name, *cands), summary, c.evidence)])
        if c.act.votes and len(cands) > 1:
            # Traces ran but stopped before any line's router, while the lines'
            # own hops answer: not unknown, one of these lines.
            answer = "s" if len(ok_targets) == 1 else ""
            flows = (f"{names(ok_targets)} behind {g.name} answer{answer}" if ok_targets
                     else f"nothing behind {g.name} answers")
            summary = (f"which line of {g.name} carries traffic cannot be told apart: "
                       f"{either(cands)} ({why}, and no ICMP error came from a line's hop); "
                       f"{flows}.")
            return (Verdict.AMBIGUOUS, f"{either(cands)}: cannot be told apart ({why})", None,
                    [Finding(Severity.WARNING, FindingKind.AMBIGUOUS, (g.name, *cands), summary,
                             c.evidence)])
        return (Verdict.UNKNOWN, f"{why}; cannot tell which line carries traffic", None,
                extra + _trace_not_measured(c))
    return (Verdict.UNKNOWN, f"preferred line {pref} is unknown ({c.states[pref].reason})", None,
            extra + _trace_not_measured(c))


def _candidates(c: _Group) -> tuple[str, ...]:
    """Lines that may carry the traffic: those the evidence names, else every
    line not known to be down."""
    named = [line for line in c.g.lines if any(line in v.lines for v in c.act.votes)]
    if named:
        return tuple(named)
    return tuple(line for line in c.g.lines if c.state(line) != State.DOWN)


def _trace_not_measured(c: _Group) -> list[Finding]:
    """An unknown verdict caused by traces we could not run is a could-not-measure."""
    if not c.act.unmeasured or c.act.votes:
        return []
    r = c.act.unmeasured[0]
    eps = tuple(dict.fromkeys(x.target for x in c.act.unmeasured))
    return [Finding(Severity.WARNING, FindingKind.NOT_MEASURED, eps,
                    f"could not trace to {names(eps)} ({r.error}: {r.message or 'no detail'}), "
                    f"so which line of {c.g.name} carries traffic is unknown.",
                    tuple(x.id for x in c.act.unmeasured))]
