"""Component states and the findings about them, with ticket-ready summaries.

A state is decided from the localisation (down / ambiguous / proven up /
behind something down) and from each probe's own quality (loss and RTT
against the thresholds). Services are judged on their own probe once the host
is known to answer. Every summary quotes the observed values beside the
thresholds, so it can be pasted into a carrier ticket as it is.

Pure code: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from netprobe.config import DnsSpec, Thresholds
from netprobe.diagnosis.degradation import (
    Degradation,
    DelaySegment,
    LossSegment,
    Tally,
    locate_degradation,
)
from netprobe.diagnosis.localize import Localization, ProbePath
from netprobe.diagnosis.model import ComponentState, Finding, FindingKind, Severity, State
from netprobe.evidence import Evidence, Outcome, ProbeError, ProbeResult
from netprobe.topology import Component, Kind, Topology

SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}

_DOWN_KIND = {Kind.DEVICE: FindingKind.DEVICE_DOWN, Kind.LINE: FindingKind.LINE_DOWN,
              Kind.ENDPOINT: FindingKind.ENDPOINT_DOWN, Kind.SERVICE: FindingKind.SERVICE_DOWN}

_ERROR_WORDS = {
    ProbeError.TIMEOUT: "timed out",
    ProbeError.REFUSED: "refused",
    ProbeError.UNREACHABLE: "unreachable",
    ProbeError.NO_ROUTE: "no route from here",
    ProbeError.TTL_EXCEEDED: "TTL exceeded on the way",
}


# -- small text helpers ------------------------------------------------------------


def fmt_ms(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def fmt_pct(ratio: float) -> str:
    return f"{ratio * 100:.0f}%"


def names(items: Iterable[str], limit: int = 5) -> str:
    items = list(items)
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" and {len(items) - limit} more"


def either(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def notices_text(r: ProbeResult) -> str:
    seen: list[str] = []
    for n in r.notices:
        who = "the host" if n.source == r.address else "router"
        text = f"{who} {n.source} answered '{n.description or f'ICMP type {n.type} code {n.code}'}'"
        if text not in seen:
            seen.append(text)
    for late in r.detail.get("late_errors") or ():
        if not isinstance(late, dict) or not late.get("source"):
            continue
        who = "the host" if late["source"] == r.address else "router"
        after = late.get("after_ms")
        when = f" {float(after) / 1000:.1f} s later" if isinstance(after, int | float) else " late"
        text = (f"{who} {late['source']} answered "
                f"'{late.get('description') or 'an ICMP error'}'{when}")
        if text not in seen:
            seen.append(text)
    return "; ".join(seen)


def _dns_answers(r: ProbeResult) -> str:
    answers = r.detail.get("answers")
    if isinstance(answers, list | tuple) and answers:
        return ", ".join(str(a) for a in answers)
    return "nothing"


def observed(r: ProbeResult) -> str:
    """What a probe saw, in a few words with its numbers: '0/3 replies', '3/3, 1.2 ms'."""
    if not r.measured:
        return f"not measured ({r.message or r.error})"
    avg = r.rtt_avg_ms
    counts = f"{r.received}/{r.sent}"
    if r.kind == "dns":
        if r.error is None and r.received:
            text = f"answered {_dns_answers(r)} ({counts}, {fmt_ms(avg or 0.0)})"
        elif r.error == ProbeError.DNS_ERROR:
            rcode = r.detail.get("rcode") or r.message or "an error"
            text = f"answered {rcode}"
        elif r.error == ProbeError.DNS_MISMATCH:
            text = f"answered {_dns_answers(r)}"
        else:
            text = f"{_ERROR_WORDS.get(r.error, str(r.error))} ({counts})"
    elif r.kind == "tcp":
        if r.error is None and r.received:
            text = f"connected ({counts}, {fmt_ms(avg or 0.0)})"
        elif r.error == ProbeError.REFUSED:
            text = "refused"
        else:
            text = f"{_ERROR_WORDS.get(r.error, str(r.error))} ({counts})"
    elif r.kind == "trace":
        hops = [h for h in r.detail.get("hops") or [] if isinstance(h, dict)]
        answered = [h.get("address") for h in hops if h.get("address")]
        if r.host_answered:
            text = f"reached the host in {len(hops)} hops"
        elif answered:
            text = f"stopped after {len(hops)} hops, last answer from {answered[-1]}"
        else:
            text = f"no hop answered ({len(hops)} tried)"
    elif r.received == 0:
        text = f"{counts} replies"
        if r.error not in (None, ProbeError.TIMEOUT):
            text += f" ({_ERROR_WORDS.get(r.error, str(r.error))})"
    else:
        text = f"{counts}, {fmt_ms(avg or 0.0)}"
    extra = notices_text(r)
    return f"{text}; {extra}" if extra else text


def describe(c: Component) -> str:
    """How a person names this component in a ticket."""
    where = c.address or c.host or ""
    if c.kind == Kind.LINE:
        carrier = f" ({c.carrier})" if c.carrier else ""
        return f"{c.name}{carrier} far end {where}".rstrip()
    if c.kind == Kind.SERVICE:
        return f"{c.name} on {where}".rstrip() if where else c.name
    return f"{c.name} {where}".rstrip()


def display(topology: Topology, element: str) -> str:
    """A localisation element for people: a group stands for its unknown active line."""
    if element in topology.groups and element not in topology.components:
        return f"the active line of {element}"
    return element


def problems(r: ProbeResult, th: Thresholds) -> list[tuple[str, Severity, str]]:
    """Loss and RTT of an answered probe against the thresholds: [('loss', severity, 'loss 33% > 10%')]."""
    if r.received == 0 or r.kind == "trace" or not r.measured:
        return []
    out: list[tuple[str, Severity, str]] = []
    loss = r.failure_ratio  # a RST among replies counts against quality too
    if loss is not None and loss > 0:
        if loss >= th.loss.crit:
            # some replies came back: degraded (critically), never down
            out.append(("loss", Severity.CRITICAL, f"loss {fmt_pct(loss)} >= {fmt_pct(th.loss.crit)}"))
        elif loss > th.loss.warn:
            out.append(("loss", Severity.WARNING, f"loss {fmt_pct(loss)} > {fmt_pct(th.loss.warn)}"))
    avg = r.rtt_avg_ms
    if avg is not None:
        if avg > th.rtt.crit * 1000:
            out.append(("rtt", Severity.CRITICAL, f"rtt {fmt_ms(avg)} > {fmt_ms(th.rtt.crit * 1000)}"))
        elif avg > th.rtt.warn * 1000:
            out.append(("rtt", Severity.WARNING, f"rtt {fmt_ms(avg)} > {fmt_ms(th.rtt.warn * 1000)}"))
    return out


def worst(severities: Iterable[Severity | None]) -> Severity | None:
    found = [s for s in severities if s is not None]
    return min(found, key=SEVERITY_ORDER.__getitem__) if found else None


def quality(r: ProbeResult, th: Thresholds) -> tuple[Severity | None, str]:
    """Loss and RTT of an answered probe against the thresholds: (severity, 'loss 33% > 10%')."""
    found = problems(r, th)
    return worst(p[1] for p in found), ", ".join(p[2] for p in found)


# -- assessment ----------------------------------------------------------------------


@dataclass(frozen=True)
class Assessment:
    """A component's state plus what the findings need to explain it."""

    state: ComponentState
    cause: str  # up | degraded | down | service_down | dns_failure | dns_mismatch |
    #             ambiguous | unobservable | not_measured | not_probed | unlocalised | no_evidence |
    #             segment (degradation begins here: one finding for it and what it explains) |
    #             explained (degraded only by what a segment in front explains: no finding)
    severity: Severity | None = None  # of a degraded finding
    text: str = ""  # the observed values for the finding
    blockers: tuple[str, ...] = ()  # down components in front (unobservable)
    explained: tuple[tuple[str, str], ...] = ()  # (loss | rtt, the segment in front explaining it)


class _Assessor:
    def __init__(self, topology: Topology, evidence: Evidence, loc: Localization) -> None:
        self.t = topology
        self.loc = loc
        self.th = topology.thresholds
        self.own: dict[str, list[ProbeResult]] = {}
        for r in evidence.results:
            self.own.setdefault(r.target, []).append(r)
        self.done: dict[str, Assessment] = {}

    # -- helpers
    def _path(self, name: str) -> tuple[str, ...]:
        return self.loc.paths.get(name, ())

    def _blockers(self, name: str) -> tuple[list[str], list[str]]:
        """Elements in front of `name` that are down, and those that may be."""
        down, maybe = [], []
        for e in self._path(name)[:-1]:
            suspects = [e]
            group = self.t.groups.get(e)
            if group is not None:  # traffic may still be on a line that is down
                suspects += list(group.lines)
            for s in suspects:
                if s in self.loc.down and s not in down:
                    down.append(s)
                elif (s in self.loc.ambiguous or s in self.loc.unsolved) and s not in maybe:
                    maybe.append(s)
        return down, maybe

    def _crossers(self, name: str) -> list[ProbePath]:
        return [p for p in self.loc.probes if p.through and name in p.path]

    def alternatives(self, name: str) -> list[frozenset[str]]:
        for sols in self.loc.solution.parts:
            if any(name in s for s in sols):
                return list(sols)
        return []

    def _ambiguous_reason(self, name: str) -> str:
        alts = self.loc.order_sets(self.alternatives(name))
        text = either(" and ".join(display(self.t, e) for e in s) for s in alts)
        return f"ambiguous: {text} (cannot be told apart from {self.t.vantage})"

    # -- components
    def assess(self) -> dict[str, Assessment]:
        for name, comp in self.t.components.items():
            if comp.kind != Kind.SERVICE:
                self.done[name] = self._node(comp)
        for name, comp in self.t.components.items():
            if comp.kind == Kind.SERVICE:
                self.done[name] = self._service(comp)
        return {name: self.done[name] for name in self.t.components}

    def _state(self, comp: Component, state: State, reason: str, cause: str,
               evidence: Iterable[str] = (), **kw) -> Assessment:
        ids = tuple(dict.fromkeys([r.id for r in self.own.get(comp.name, [])] + list(evidence)))
        return Assessment(ComponentState(comp.name, str(comp.kind), state, reason, ids), cause, **kw)

    def _node(self, comp: Component) -> Assessment:
        name = comp.name
        own = self.own.get(name, [])
        answered = [r for r in own if r.kind != "trace" and r.measured and r.received]
        unmeasured = [r for r in own if not r.measured]
        failed = [r for r in own if r.measured and r.kind != "trace" and not r.received]

        if name in self.loc.down:
            if failed:
                text = "; ".join(f"{r.kind} {observed(r)}" if r.kind != "icmp" else observed(r)
                                 for r in failed)
            else:
                hits = [p.result.id for p in self.loc.failed() if name in p.path]
                text = f"it alone explains the failed probes {names(hits)}"
            return self._state(comp, State.DOWN, f"{describe(comp)}: {text}", "down", text=text)
        if name in self.loc.ambiguous:
            reason = self._ambiguous_reason(name)
            if unmeasured:
                reason += f"; its own {unmeasured[0].kind} probe was not measured"
            return self._state(comp, State.UNKNOWN, reason, "ambiguous")
        if name in self.loc.proven_up:
            return self._up(comp, answered, failed, unmeasured)
        if name in self.loc.unsolved:
            return self._state(comp, State.UNKNOWN,
                               "cannot localise: too many simultaneous failures to tell which are down",
                               "unlocalised")
        down, maybe = self._blockers(name)
        if down:
            which = (f"{down[0]}, which is down" if len(down) == 1
                     else f"{' and '.join(down)}, which are down")
            return self._state(comp, State.UNKNOWN, f"unobservable: behind {which}",
                               "unobservable", blockers=tuple(down))
        if maybe:
            shown = [display(self.t, e) for e in maybe]
            return self._state(comp, State.UNKNOWN,
                               f"unobservable: behind {either(shown)}, one of which may be down",
                               "unobservable", blockers=tuple(maybe))
        if unmeasured:
            return self._state(comp, State.UNKNOWN, f"not measured: {unmeasured[0].message or unmeasured[0].error}",
                               "not_measured")
        if not own:
            return self._state(comp, State.UNKNOWN, "not probed in this run", "not_probed")
        return self._state(comp, State.UNKNOWN, "no conclusive evidence: "
                           + "; ".join(f"{r.id} {observed(r)}" for r in own), "no_evidence")

    def _up(self, comp: Component, answered: list[ProbeResult], failed: list[ProbeResult],
            unmeasured: list[ProbeResult]) -> Assessment:
        worst: Severity | None = None
        problems: list[str] = []
        for r in answered:
            sev, text = quality(r, self.th)
            if sev is not None:
                problems.append(f"{text} ({observed(r)})")
                if worst is None or SEVERITY_ORDER[sev] < SEVERITY_ORDER[worst]:
                    worst = sev
        if worst is not None:
            text = "; ".join(problems)
            return self._state(comp, State.DEGRADED, f"{describe(comp)}: {text}", "degraded",
                               severity=worst, text=text)
        if answered:
            reason = f"{describe(comp)}: " + "; ".join(observed(r) for r in answered)
            return self._state(comp, State.UP, reason, "up")
        crossers = self._crossers(comp.name)
        via = names([p.result.id for p in crossers], limit=3)
        reason = f"answered probes cross it ({via})"
        if failed:
            # our own probe failed while traffic crosses it: ICMP filtered, most likely
            reason += f"; its own {failed[0].kind} probe got {observed(failed[0])}, probably filtered"
        elif unmeasured:
            reason += f"; its own {unmeasured[0].kind} probe was not measured"
        return self._state(comp, State.UP, reason, "up",
                           evidence=[p.result.id for p in crossers[:3]])

    # -- services
    def _service(self, comp: Component) -> Assessment:
        results = [r for r in self.own.get(comp.name, []) if r.kind != "trace"]
        host = self.done.get(comp.parent or "")
        host_state = host.state.state if host else State.UNKNOWN
        what = comp.probe.label if comp.probe else comp.name
        if not results:
            return self._state(comp, State.UNKNOWN, "not probed in this run", "not_probed")
        r = results[0]
        hidden = host is not None and (host_state == State.DOWN or host.cause == "unobservable")
        if not r.measured:
            if hidden:
                return self._behind_host(comp, host)
            return self._state(comp, State.UNKNOWN, f"not measured: {r.message or r.error}",
                               "not_measured")
        if r.error is None and r.received:
            sev, text = quality(r, self.th)
            if sev is not None:
                return self._state(comp, State.DEGRADED, f"{describe(comp)}: {text} ({observed(r)})",
                                   "degraded", severity=sev, text=f"{text} ({observed(r)})")
            return self._state(comp, State.UP, f"{what} {observed(r)}", "up")

        host_up = host_state in (State.UP, State.DEGRADED)
        if r.error == ProbeError.DNS_MISMATCH:
            return self._state(comp, State.DOWN, f"{what} {self._dns_mismatch_text(comp, r)}",
                               "dns_mismatch", text=self._dns_mismatch_text(comp, r))
        if r.error in (ProbeError.REFUSED, ProbeError.DNS_ERROR) or host_up or comp.name in self.loc.down:
            cause = "dns_failure" if r.kind == "dns" else "service_down"
            host_text = self._host_answers(comp, r)
            return self._state(comp, State.DOWN, f"{what} {observed(r)}, {host_text}", cause,
                               text=f"{observed(r)}, {host_text}")
        if comp.name in self.loc.ambiguous:
            return self._state(comp, State.UNKNOWN, self._ambiguous_reason(comp.name), "ambiguous")
        if hidden:
            return self._behind_host(comp, host)
        if comp.name in self.loc.unsolved:
            return self._state(comp, State.UNKNOWN,
                               "cannot localise: too many simultaneous failures to tell which are down",
                               "unlocalised")
        return self._state(comp, State.UNKNOWN,
                           f"{what} {observed(r)}; the host's state is unknown ({host.state.reason if host else 'no host'})",
                           "no_evidence")

    def _behind_host(self, comp: Component, host: Assessment) -> Assessment:
        if host.state.state == State.DOWN:
            reason = f"unobservable: its host {host.state.name} is down"
            blockers = (host.state.name,)
        else:
            reason = f"unobservable: its host {host.state.name} is {host.state.reason.removeprefix('unobservable: ')}"
            blockers = host.blockers
        return self._state(comp, State.UNKNOWN, reason, "unobservable", blockers=blockers)

    def _host_answers(self, comp: Component, r: ProbeResult) -> str:
        if r.error == ProbeError.DNS_ERROR:
            return "so the server answers but does not resolve"
        if r.error == ProbeError.REFUSED:
            return "so the host answers but the service does not"
        host_probes = [x for x in self.own.get(comp.parent or "", [])
                       if x.measured and x.received and x.kind != "trace"]
        if host_probes:
            x = host_probes[0]
            return f"while the host answers ({x.kind} {observed(x)})"
        others = [p.result for p in self.loc.probes if p.through and p.path
                  and p.path[-1] == comp.parent and p.result.id != r.id]
        if others:
            x = others[0]
            return f"while the host answers ({x.id} {observed(x)})"
        return "while the host answers"

    def _dns_mismatch_text(self, comp: Component, r: ProbeResult) -> str:
        spec = comp.probe
        query = ""
        expect = r.detail.get("expect")
        if isinstance(spec, DnsSpec):
            query = f"{spec.check.query} {spec.check.type} "
            expect = expect or spec.check.expect
        expected = ", ".join(str(x) for x in expect) if expect else "something else"
        return f"{query}answered {_dns_answers(r)}, expected {expected}"


def assess_components(topology: Topology, evidence: Evidence, loc: Localization,
                      found: Degradation | None = None) -> dict[str, Assessment]:
    """One assessment per component, in topology order.

    `found` is where the degradation begins (computed when not given): a loss
    or delay segment becomes degraded, and what it explains behind it says so.
    """
    assessed = _Assessor(topology, evidence, loc).assess()
    found = locate_degradation(topology, loc) if found is None else found
    return _Fold(topology, evidence, loc, found, assessed).fold()


# -- degradation: one finding where the loss (or delay) begins ----------------------------

# A component behind a lossy segment keeps its own finding when it lost more
# packets than would happen, at the segment's loss ratio, once in this many runs.
CLEARLY_WORSE_CHANCE = 0.001

_Segment = LossSegment | DelaySegment


def chance_of_at_least(lost: int, sent: int, ratio: float) -> float:
    """The chance that `lost` or more of `sent` packets are lost, each with probability `ratio`."""
    if lost <= 0 or ratio >= 1:
        return 1.0
    if ratio <= 0 or lost > sent:
        return 0.0
    log_p, log_q = math.log(ratio), math.log1p(-ratio)
    total = 0.0
    for k in range(lost, sent + 1):  # binomial tail, in logs so big counts do not overflow
        total += math.exp(math.lgamma(sent + 1) - math.lgamma(k + 1) - math.lgamma(sent - k + 1)
                          + k * log_p + (sent - k) * log_q)
    return min(total, 1.0)


def _kinds_text(pairs: Iterable[tuple[str, str]], topology: Topology) -> str:
    """'loss explained by leased-a', 'loss and rtt explained by leased-a'."""
    by_element: dict[str, list[str]] = {}
    for kind, element in pairs:
        by_element.setdefault(element, []).append(kind)
    return "; ".join(f"{' and '.join(kinds)} explained by {display(topology, e)}"
                     for e, kinds in by_element.items())


class _Fold:
    """Folds the loss and delay segments into the assessments, and words their findings.

    The segment becomes degraded with the pooled numbers as its reason. A
    component behind it whose every loss or RTT problem the segment explains
    stays degraded (it does see the loss) but says so and gets no finding of
    its own; one clearly worse than the segment keeps its own finding.
    """

    def __init__(self, topology: Topology, evidence: Evidence, loc: Localization,
                 found: Degradation, assessed: dict[str, Assessment]) -> None:
        self.t = topology
        self.loc = loc
        self.assessed = assessed
        self.own: dict[str, list[ProbeResult]] = {}
        for r in evidence.results:
            self.own.setdefault(r.target, []).append(r)

        def usable(element: str) -> bool:
            # a segment is something answered probes cross: never down; guard all the same
            a = assessed.get(element)
            return a is None or a.state.state in (State.UP, State.DEGRADED)

        self.segments: dict[str, dict[str, _Segment]] = {
            "loss": {s.element: s for s in found.loss if usable(s.element)},
            "rtt": {s.element: s for s in found.delay if usable(s.element)},
        }

    def _here(self, element: str) -> list[_Segment]:
        return [self.segments[k][element] for k in ("loss", "rtt") if element in self.segments[k]]

    def _answered(self, comp: Component) -> list[tuple[ProbeResult, list[tuple[str, Severity, str]]]]:
        """Its own answered probes, each with its problems, as the assessment judged them."""
        results = [r for r in self.own.get(comp.name, []) if r.kind != "trace"]
        if comp.kind == Kind.SERVICE:
            results = results[:1] if results and results[0].error is None else []
        th = self.t.thresholds
        return [(r, problems(r, th)) for r in results if r.measured and r.received]

    def _explainer(self, kind: str, name: str) -> _Segment | None:
        """The first segment of this kind on the component's path, itself included."""
        for e in self.loc.paths.get(name, (name,)):
            seg = self.segments[kind].get(e)
            if seg is not None:
                return seg
        return None

    def _worse(self, kind: str, seg: _Segment, answered: list) -> str:
        """Why this component's problem is more than the segment explains; '' if it is not."""
        label = display(self.t, seg.element)
        if kind == "loss" and isinstance(seg, LossSegment):
            mine = Tally()
            judged = Tally()
            for r, _ in answered:
                if r.outcome != Outcome.OK:
                    continue
                mine += Tally(r.sent, r.received)
                # A confirmation round exists only because the first round was silent:
                # judge its own counts, or every unlucky probe would look clearly worse.
                c = r.detail.get("confirmation")
                if isinstance(c, dict) and isinstance(c.get("sent"), int) and c["sent"] > 0:
                    judged += Tally(c["sent"], min(int(c.get("received") or 0), c["sent"]))
                else:
                    judged += Tally(r.sent, r.received)
            # the segment's loss ratio without this component's own packets
            rest = seg.through - mine if seg.through.sent > mine.sent else seg.through
            ratio = rest.loss_ratio or 0.0
            if chance_of_at_least(judged.lost, judged.sent, ratio) < CLEARLY_WORSE_CHANCE:
                return (f"loss {judged.lost}/{judged.sent} is more than the {fmt_pct(ratio)} "
                        f"of the other probes through {label} explains")
        elif kind == "rtt" and isinstance(seg, DelaySegment):
            slowest = max(r.rtt_avg_ms or 0.0 for r, ps in answered if any(p[0] == "rtt" for p in ps))
            if slowest - seg.added_ms > self.t.thresholds.rtt.warn * 1000:
                return f"rtt {fmt_ms(slowest)} is more than the {fmt_ms(seg.added_ms)} {label} adds"
        return ""

    def fold(self) -> dict[str, Assessment]:
        out = dict(self.assessed)
        for name, a in self.assessed.items():
            here = self._here(name)
            if a.state.state not in (State.UP, State.DEGRADED) or (a.cause != "degraded" and not here):
                continue
            out[name] = self._fold_one(self.t.components[name], a, here)
        return out

    def _fold_one(self, comp: Component, a: Assessment, here: list[_Segment]) -> Assessment:
        answered = self._answered(comp)
        kinds = sorted({p[0] for _, ps in answered for p in ps})
        folded: set[str] = set()
        explained: list[tuple[str, str]] = []
        notes: list[str] = []
        for kind in kinds:
            seg = self._explainer(kind, comp.name)
            if seg is None:
                continue
            if seg.element == comp.name:
                folded.add(kind)
                continue
            why = self._worse(kind, seg, answered)
            if why:
                notes.append(why)
            else:
                explained.append((kind, seg.element))
        said = [t for t in [_kinds_text(explained, self.t), *notes] if t]
        if here:
            return self._segment(comp, a, here, answered, folded, said, tuple(explained))
        if kinds and {k for k, _ in explained} == set(kinds):
            reason = f"{describe(comp)}: {a.text}; {said[0]}"
            return replace(a, state=replace(a.state, reason=reason), cause="explained",
                           explained=tuple(explained))
        if not said:
            return a
        text = "; ".join([a.text, *said])
        return replace(a, state=replace(a.state, reason=f"{describe(comp)}: {text}"), text=text,
                       explained=tuple(explained))

    def _segment(self, comp: Component, a: Assessment, here: list[_Segment], answered: list,
                 folded: set[str], said: list[str], explained: tuple[tuple[str, str], ...]) -> Assessment:
        left = [f"{', '.join(p[2] for p in ps if p[0] not in folded)} ({observed(r)})"
                for r, ps in answered if any(p[0] not in folded for p in ps)]
        leftover = "; ".join(left + said)
        clauses = [self._reason(s) for s in here]
        if leftover:
            clauses.append(f"its own probe: {leftover}")
        ids = [i for s in here for i in s.probes[:5]]
        state = ComponentState(comp.name, str(comp.kind), State.DEGRADED,
                               f"{describe(comp)}: " + "; ".join(clauses),
                               tuple(dict.fromkeys([*a.state.evidence, *ids])))
        severity = worst(p[1] for _, ps in answered for p in ps)
        return Assessment(state, "segment", severity=severity, text=leftover, explained=explained)

    def _reason(self, s: _Segment) -> str:
        name = display(self.t, s.element)
        if isinstance(s, LossSegment):
            t, b = s.through, s.before
            text = f"loss on {t.lost} of {t.sent} packets ({fmt_pct(t.loss_ratio or 0.0)}) through {name}, "
            if b.sent:
                return text + f"{b.lost} of {b.sent} on probes that stop before it ({', '.join(s.front)})"
            return text + f"no probe stops before it, its own lost {s.own.lost} of {s.own.sent}"
        text = f"rtt at least {fmt_ms(s.through_rtt_ms)} on all {len(s.probes)} probes through {name}, "
        if s.before_rtt_ms is not None:
            return text + f"{fmt_ms(s.before_rtt_ms)} on probes that stop before it ({', '.join(s.front)})"
        return text + "no probe stops before it"

    # -- findings
    def findings(self) -> dict[str, Finding]:
        """One finding per segment, by element."""
        elements = dict.fromkeys([*self.segments["loss"], *self.segments["rtt"]])
        return {e: self._finding(e) for e in elements}

    def _who(self, targets: Iterable[str], limit: int = 5) -> str:
        """'dc-app, intra-dns, cloud-app and 3 services'."""
        targets = list(targets)
        services = [n for n in targets if n in self.t.components
                    and self.t.components[n].kind == Kind.SERVICE]
        others = [n for n in targets if n not in services]
        if not others:
            return names(services, limit)
        parts = others[:limit]
        if len(others) > limit:
            parts.append(f"{len(others) - limit} more")
        if services:
            parts.append(f"{len(services)} service{'s' if len(services) > 1 else ''}")
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    def _clause(self, s: _Segment) -> str:
        seen = self._who(s.behind)
        seen = f" ({seen})" if seen else ""
        if isinstance(s, LossSegment):
            t, b = s.through, s.before
            text = (f"is losing packets: {t.lost}/{t.sent} lost ({fmt_pct(t.loss_ratio or 0.0)}) "
                    f"on probes through it{seen}")
            notes = []
            if b.sent:
                text += f", while probes that stop at {either(s.front)} lost {b.lost}/{b.sent}"
            else:  # then its own probes lost packets: they are why it is blamed
                text += ", and no probe stops before it to compare with"
                notes.append(f"its own probe lost {s.own.lost}/{s.own.sent}")
            if s.own.sent and not s.own.lost:
                notes.append(f"its own probe lost 0/{s.own.sent}")
            if s.alike:
                alike = [display(self.t, e) for e in s.alike]
                notes.append(f"the probes cannot tell it apart from {either(alike)} behind it")
            return "; ".join([text, *notes])
        text = f"is slow: every probe through it took at least {fmt_ms(s.through_rtt_ms)}{seen}"
        if s.before_rtt_ms is not None:
            return text + (f", while probes that stop at {either(s.front)} answered in "
                           f"{fmt_ms(s.before_rtt_ms)}")
        return text + ", and no probe stops before it to compare with"

    def _severity(self, s: _Segment) -> Severity:
        th = self.t.thresholds
        if isinstance(s, LossSegment):
            high = (s.through.loss_ratio or 0.0) >= th.loss.crit
        else:
            high = s.through_rtt_ms > th.rtt.crit * 1000
        return Severity.CRITICAL if high else Severity.WARNING

    def _finding(self, element: str) -> Finding:
        here = self._here(element)
        comp = self.t.components.get(element)
        if comp is not None:
            who, comps = describe(comp), (element,)
        else:  # a group whose active line no trace showed
            lines = self.t.groups[element].lines if element in self.t.groups else ()
            who = f"{display(self.t, element)} ({either(lines)})" if lines else display(self.t, element)
            comps = tuple(lines)
        a = self.assessed.get(element)
        summary = f"{who} " + "; it also ".join(self._clause(s) for s in here)
        if a is not None and a.text:
            summary += f"; its own probe: {a.text}"
        members = [x for x in self.assessed.values()
                   if x.cause == "explained" and any(e == element for _, e in x.explained)]
        severity = worst([*(self._severity(s) for s in here), a.severity if a else None,
                          *(x.severity for x in members)]) or Severity.WARNING
        ids = [i for s in here for i in (*s.probes, *s.before_probes)]
        return Finding(severity, FindingKind.DEGRADED, comps, summary + ".", tuple(dict.fromkeys(ids)))


# -- findings -------------------------------------------------------------------------


def component_findings(topology: Topology, evidence: Evidence, loc: Localization,
                       assessed: dict[str, Assessment],
                       absorbed: frozenset[str] = frozenset(),
                       found: Degradation | None = None) -> list[Finding]:
    """Findings about components; `absorbed` lines are down but their group carries on.

    Where the degradation begins (`found`, computed when not given) gets one
    finding; components whose problems it explains get none of their own.
    """
    out: list[Finding] = []
    found = locate_degradation(topology, loc) if found is None else found
    segment_findings = _Fold(topology, evidence, loc, found, assessed).findings()
    behind: dict[str, list[str]] = {}
    for name, a in assessed.items():
        for b in a.blockers:
            behind.setdefault(b, []).append(name)

    for name, a in assessed.items():
        comp = topology.components[name]
        st = a.state
        if a.cause == "down":
            severity = Severity.WARNING if name in absorbed else Severity.CRITICAL
            summary = f"{describe(comp)}: {a.text}"
            in_front = _answering_front(topology, loc, name)
            if in_front:
                summary += f"; the path up to {in_front} answers"
            if behind.get(name):
                summary += f"; behind it {names(behind[name])} cannot be checked"
            if name in absorbed:
                summary += f"; its group {comp.group} carries the traffic on another line"
            out.append(Finding(severity, _DOWN_KIND[comp.kind], (name,), summary + ".", st.evidence))
        elif a.cause == "service_down":
            out.append(Finding(Severity.CRITICAL, FindingKind.SERVICE_DOWN, (name, comp.parent or name),
                               f"{describe(comp)}: {a.text}.", _with_host(assessed, comp, st)))
        elif a.cause == "dns_failure":
            out.append(Finding(Severity.CRITICAL, FindingKind.DNS_FAILURE, (name, comp.parent or name),
                               f"{describe(comp)}: {_query(comp)}{a.text}.",
                               _with_host(assessed, comp, st)))
        elif a.cause == "dns_mismatch":
            out.append(Finding(Severity.CRITICAL, FindingKind.DNS_MISMATCH, (name,),
                               f"{describe(comp)}: {a.text}.", st.evidence))
        elif a.cause == "degraded" and a.severity is not None:
            out.append(Finding(a.severity, FindingKind.DEGRADED, (name,),
                               f"{describe(comp)}: {a.text}.", st.evidence))
        elif a.cause == "segment" and name in segment_findings:
            out.append(segment_findings.pop(name))
    # groups whose unknown active line is where the degradation begins
    out.extend(f for e, f in segment_findings.items() if e not in topology.components)

    out.extend(_ambiguity_findings(topology, evidence, loc, assessed))
    out.extend(_not_measured_findings(topology, assessed, evidence))
    return out


def _query(comp: Component) -> str:
    if isinstance(comp.probe, DnsSpec):
        return f"{comp.probe.check.query} {comp.probe.check.type} "
    return ""


def _with_host(assessed: dict[str, Assessment], comp: Component, st: ComponentState) -> tuple[str, ...]:
    host = assessed.get(comp.parent or "")
    ids = list(st.evidence) + (list(host.state.evidence) if host else [])
    return tuple(dict.fromkeys(ids))


def _answering_front(topology: Topology, loc: Localization, name: str) -> str | None:
    """The last element before `name` on its path that answered: where the break starts."""
    path = loc.paths.get(name, ())[:-1]
    for e in reversed(path):
        if e in loc.proven_up and e in topology.components:
            return e
    return None


def _ambiguity_findings(topology: Topology, evidence: Evidence, loc: Localization,
                        assessed: dict[str, Assessment]) -> list[Finding]:
    out: list[Finding] = []
    own: dict[str, list[ProbeResult]] = {}
    for r in evidence.results:
        own.setdefault(r.target, []).append(r)
    for sols in loc.solution.parts:
        if len(sols) < 2:
            continue
        union = frozenset.union(*sols)
        members = loc.order(union)
        failed = [p.result.id for p in loc.failed() if _suspects(topology, p) & union]
        alts = either(" and ".join(display(topology, e) for e in s) for s in loc.order_sets(sols))
        advice = _advice(topology, members, own)
        samples = "; ".join(f"{i} {observed(r)}" for i in failed[:3]
                            for r in [next(x for x in evidence.results if x.id == i)])
        summary = (f"{alts}: one of these is down and they cannot be told apart from "
                   f"{topology.vantage} ({samples}); {advice}.")
        comps: list[str] = []
        for m in members:  # a virtual group stands for its lines
            comps.extend(topology.groups[m].lines if m in topology.groups else [m])
        comps = [c for c in dict.fromkeys(comps) if c in topology.components]
        out.append(Finding(Severity.CRITICAL, FindingKind.AMBIGUOUS, tuple(comps), summary,
                           tuple(failed)))
    if loc.unsolved:
        failed = [p.result.id for p in loc.failed() if _suspects(topology, p) & loc.unsolved]
        comps = tuple(m for m in loc.order(loc.unsolved) if m in topology.components)
        out.append(Finding(
            Severity.CRITICAL, FindingKind.AMBIGUOUS, comps,
            f"{len(failed)} failed probes ({names(failed)}) need too many simultaneous failures "
            f"to localise from {topology.vantage}; check {names(comps)} one by one.", tuple(failed)))
    return out


def _suspects(topology: Topology, p: ProbePath) -> frozenset[str]:
    out = set(p.path)
    if p.service:
        out.add(p.service)
    for e in p.path:
        if e in topology.groups:
            out |= set(topology.groups[e].lines)
    return frozenset(out)


def _advice(topology: Topology, members: list[str], own: dict[str, list[ProbeResult]]) -> str:
    groups = [m for m in members if m in topology.groups and m not in topology.components]
    if groups:
        return (f"a trace to an endpoint behind {either(groups)} would show which line "
                f"carries the traffic")
    for m in members:
        comp = topology.components.get(m)
        if comp is None:
            continue
        results = [r for r in own.get(m, []) if r.kind != "trace"]
        target = describe(comp)
        if not results:
            return f"probe {target} directly to separate them (it has no probe of its own)"
        if not any(r.measured for r in results):
            r = results[0]
            return (f"probe {target} directly to separate them (its {r.kind} probe was not "
                    f"measured: {r.message or r.error})")
    return "a probe whose path crosses one of them but not the others would separate them"


def _not_measured_findings(topology: Topology, assessed: dict[str, Assessment],
                           evidence: Evidence) -> list[Finding]:
    """One finding per distinct reason, listing the components left unknown by it."""
    by_reason: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    no_route_addresses: dict[str, None] = {}
    for r in evidence.results:
        if r.measured or r.target not in assessed:
            continue
        if r.kind == "trace":
            continue
        # Reported even where other probes showed the component up: the operator
        # asked for this measurement, and a run that skipped part of its job must
        # not read as a plain OK (README, exit codes).
        if r.error == ProbeError.NO_ROUTE:
            # one cause, whatever the address or probe kind: this host's own routing
            key = ("", str(ProbeError.NO_ROUTE))
            no_route_addresses.setdefault(r.address or "?", None)
        else:
            key = (r.kind, f"{r.error}: {r.message}" if r.message else str(r.error))
        comps, ids = by_reason.setdefault(key, ([], []))
        if r.target not in comps:
            comps.append(r.target)
        ids.append(r.id)
    out = []
    for (kind, why), (comps, ids) in by_reason.items():
        if why == str(ProbeError.NO_ROUTE) and not kind:
            summary = (f"could not measure {names(comps)}: this host has no route to "
                       f"{names(list(no_route_addresses))}, so nothing was sent; check this "
                       "machine's own interfaces and default route. Their state is unknown, "
                       "not down.")
        else:
            summary = (f"could not measure {names(comps)} by {kind} ({why}); "
                       f"their state is unknown, not down.")
        out.append(Finding(Severity.WARNING, FindingKind.NOT_MEASURED, tuple(comps), summary,
                           tuple(ids)))
    return out


def sort_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    uniq = list(dict.fromkeys(findings))
    return tuple(sorted(uniq, key=lambda f: SEVERITY_ORDER[f.severity]))


__all__ = ["Assessment", "assess_components", "chance_of_at_least", "component_findings",
           "describe", "observed", "problems", "quality", "sort_findings"]
