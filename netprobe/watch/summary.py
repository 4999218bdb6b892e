"""What a drill timeline means: switch-over, outage, failback, and the verdict
against each group's policy. Pure functions of a `Timeline`.

Definitions (all times on the drill's monotonic clock, seconds since start):
- an *episode* starts at the first lost probe on a group's preferred line (a
  run of at least `MIN_DOWN_SAMPLES` lost probes, or any run during which the
  traffic moved) and lasts until the next episode or the end of the drill;
- *switch-over* = first cycle whose hop check shows a standby line carrying
  the traffic − first lost probe on the preferred line;
- *failback* = first cycle showing the preferred line carrying traffic again −
  first cycle its far end answered again;
- an endpoint's or service's *outage* in an episode runs from its first
  failure to its first answer after the last failure (or the end of the
  window when it never answered again), with the probes lost in between.

Each of these is observed at cycle starts, so each instant is late by at most
one probe interval; durations carry that uncertainty and no more.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from netprobe.diagnosis.model import Severity, State, Status
from netprobe.watch.timeline import GroupInfo, LaneKind, Sample, Timeline

MIN_DOWN_SAMPLES = 2  # one lost probe is noise, not a failover trigger
MERGE_UP_SAMPLES = 1  # one probe squeezing through a dying line does not end the outage
STANDBY_DEAD_RATIO = 0.5  # a standby line lost at least this share of its probes: not usable


class DrillVerdict(StrEnum):
    STEADY = "steady"  # the preferred line never failed and carried the traffic
    FAILED_OVER = "failed_over"  # preferred down at the end, traffic on a standby line
    FAILOVER_FAILED = "failover_failed"  # preferred down, traffic never moved, endpoints failing
    FAILBACK_DONE = "failback_done"  # preferred back and carrying the traffic again
    FAILBACK_PENDING = "failback_pending"  # preferred back, traffic still on a standby line
    BRIEF_OUTAGE = "brief_outage"  # preferred came back before a failover was due
    DOWN = "down"  # the preferred line and every standby line down
    INCONCLUSIVE = "inconclusive"  # too little evidence to judge (says why)


@dataclass(frozen=True)
class Outage:
    lane: str
    kind: str  # endpoint | service | line | device
    first_failure_s: float
    last_failure_s: float
    recovered_s: float | None  # first answer after the last failure; None: still failing
    outage_s: float  # first failure to recovery (or to the end of the window)
    lost_probes: int

    def to_json(self) -> dict[str, Any]:
        return {"lane": self.lane, "kind": self.kind,
                "first_failure_s": _r(self.first_failure_s),
                "last_failure_s": _r(self.last_failure_s),
                "recovered_s": _r(self.recovered_s), "outage_s": _r(self.outage_s),
                "lost_probes": self.lost_probes, "ongoing": self.recovered_s is None}


@dataclass(frozen=True)
class PathChange:
    t_s: float  # first cycle that showed the new line
    from_line: str | None
    to_line: str
    last_seen_before_s: float | None  # last cycle that showed the old line: the change lies between

    def to_json(self) -> dict[str, Any]:
        return {"t_s": _r(self.t_s), "from": self.from_line, "to": self.to_line,
                "last_seen_before_s": _r(self.last_seen_before_s)}


@dataclass(frozen=True)
class Episode:
    first_loss_s: float  # first lost probe on the preferred line
    preferred_back_s: float | None  # first answer of its far end after the outage
    switch_at_s: float | None  # traffic seen on a standby line
    switched_to: str | None
    failback_at_s: float | None  # traffic seen on the preferred line again
    restored_s: float | None  # every endpoint behind the group answering again
    window_end_s: float
    verdict: DrillVerdict
    matches_policy: bool | None  # None: cannot tell yet
    reason: str
    outages: tuple[Outage, ...] = ()
    began_before_watch: bool = False  # the preferred line was down at the first probe
    already_off_preferred: bool = False  # traffic was on a standby line before this failure

    @property
    def switch_over_s(self) -> float | None:
        if self.switch_at_s is None or self.began_before_watch or self.already_off_preferred:
            return None
        return self.switch_at_s - self.first_loss_s

    @property
    def failback_s(self) -> float | None:
        if self.failback_at_s is None or self.preferred_back_s is None:
            return None
        return self.failback_at_s - self.preferred_back_s

    @property
    def preferred_down_s(self) -> float:
        end = self.preferred_back_s if self.preferred_back_s is not None else self.window_end_s
        return end - self.first_loss_s

    @property
    def restore_s(self) -> float | None:
        """Time from the first lost probe until every endpoint behind answered again."""
        return None if self.restored_s is None else max(0.0, self.restored_s - self.first_loss_s)

    def to_json(self) -> dict[str, Any]:
        return {"first_loss_s": _r(self.first_loss_s),
                "preferred_back_s": _r(self.preferred_back_s),
                "switch_at_s": _r(self.switch_at_s), "switched_to": self.switched_to,
                "failback_at_s": _r(self.failback_at_s),
                "switch_over_s": _r(self.switch_over_s), "failback_s": _r(self.failback_s),
                "preferred_down_s": _r(self.preferred_down_s),
                "restored_s": _r(self.restored_s), "restore_s": _r(self.restore_s),
                "window_end_s": _r(self.window_end_s), "verdict": str(self.verdict),
                "matches_policy": self.matches_policy, "reason": self.reason,
                "began_before_watch": self.began_before_watch,
                "already_off_preferred": self.already_off_preferred,
                "outages": [o.to_json() for o in self.outages]}


@dataclass(frozen=True)
class DrillSummary:
    """One redundancy group's drill, judged against its policy."""

    group: str
    lines: tuple[str, ...]
    preferred: str | None
    failback_policy: str
    verdict: DrillVerdict
    matches_policy: bool | None
    reason: str
    episodes: tuple[Episode, ...] = ()
    path_changes: tuple[PathChange, ...] = ()
    active_at_end: str | None = None
    status: Status = Status.OK

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "lines": list(self.lines), "preferred": self.preferred,
                "failback_policy": self.failback_policy, "verdict": str(self.verdict),
                "matches_policy": self.matches_policy, "reason": self.reason,
                "status": str(self.status), "active_at_end": self.active_at_end,
                "episodes": [e.to_json() for e in self.episodes],
                "path_changes": [p.to_json() for p in self.path_changes]}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _secs(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


# -- building blocks -----------------------------------------------------------

def measured(series: list[tuple[float, Sample]]) -> list[tuple[float, Sample]]:
    """Drop the cycles that could not measure: they neither prove up nor down."""
    return [(t, s) for t, s in series if s.state != State.UNKNOWN]


def down_runs(series: list[tuple[float, Sample]], merge_up: int = MERGE_UP_SAMPLES
              ) -> list[tuple[int, int]]:
    """Index ranges [first, last] of lost probes, merging runs split by at most
    `merge_up` answered probes. `series` must hold measured samples only."""
    raw: list[list[int]] = []
    for i, (_, s) in enumerate(series):
        if s.state != State.DOWN:
            continue
        if raw and i - raw[-1][1] - 1 <= merge_up:
            raw[-1][1] = i
        else:
            raw.append([i, i])
    return [(a, b) for a, b in raw]


def outage_in(series: list[tuple[float, Sample]], lane: str, kind: str, start_s: float,
              end_s: float) -> Outage | None:
    """A lane's outage in [start_s, end_s): first failure to last, merged."""
    window = [(t, s) for t, s in measured(series) if start_s <= t < end_s]
    failed = [(t, s) for t, s in window if s.state == State.DOWN]
    if not failed:
        return None
    first_s, last_s = failed[0][0], failed[-1][0]
    recovered = next((t for t, s in window if t > last_s and s.state != State.DOWN), None)
    lost = sum(s.lost for _, s in failed)
    outage_s = (recovered if recovered is not None else end_s) - first_s
    return Outage(lane, kind, first_s, last_s, recovered, outage_s, lost)


def outages(series: list[tuple[float, Sample]], lane: str, kind: str, end_s: float
            ) -> list[Outage]:
    """Every separate outage of a lane over the whole drill."""
    ms = measured(series)
    out = []
    for a, b in down_runs(ms, merge_up=0):
        first_s, last_s = ms[a][0], ms[b][0]
        recovered = ms[b + 1][0] if b + 1 < len(ms) else None
        lost = sum(s.lost for _, s in ms[a:b + 1])
        out.append(Outage(lane, kind, first_s, last_s, recovered,
                          (recovered if recovered is not None else end_s) - first_s, lost))
    return out


def active_series(timeline: Timeline, group: str) -> list[tuple[float, str | None]]:
    return [(c.t_s, c.active_line(group)) for c in timeline.cycles]


def path_changes(active: list[tuple[float, str | None]]) -> list[PathChange]:
    changes: list[PathChange] = []
    last: str | None = None
    last_seen: float | None = None
    for t, line in active:
        if line is None:
            continue
        if line != last:
            changes.append(PathChange(t, last, line, last_seen))
            last = line
        last_seen = t
    return changes


# -- the judgement --------------------------------------------------------------

def _behind(timeline: Timeline, group: GroupInfo) -> list[tuple[str, str]]:
    """(lane, kind) of the endpoints and services whose path crosses the group."""
    return [(lane.name, str(lane.kind)) for lane in timeline.lanes
            if lane.kind in (LaneKind.ENDPOINT, LaneKind.SERVICE) and group.name in lane.groups]


def _dead_share(series: list[tuple[float, Sample]], start_s: float, end_s: float) -> float | None:
    window = [s for t, s in measured(series) if start_s <= t < end_s]
    if not window:
        return None
    return sum(1 for s in window if s.state == State.DOWN) / len(window)


def summarize_group(timeline: Timeline, group: GroupInfo, failover_window_s: float,
                    failback_window_s: float) -> DrillSummary:
    preferred = group.preferred
    active = active_series(timeline, group.name)
    changes = path_changes(active)
    active_at_end = next((line for _, line in reversed(active) if line is not None), None)
    end_s = timeline.t_end_s
    base = dict(group=group.name, lines=group.lines, preferred=preferred,
                failback_policy=group.failback, path_changes=tuple(changes),
                active_at_end=active_at_end)
    if preferred is None:
        return DrillSummary(**base, verdict=DrillVerdict.INCONCLUSIVE, matches_policy=None,
                            reason="the group has no lines", status=Status.UNKNOWN)

    pref = measured(timeline.series(preferred))
    moved_at = [p.t_s for p in changes if p.from_line == preferred]
    runs = [(a, b) for a, b in down_runs(pref)
            if b - a + 1 >= MIN_DOWN_SAMPLES
            or any(pref[a][0] - 2 * timeline.interval_s <= t
                   <= (pref[b + 1][0] if b + 1 < len(pref) else end_s) for t in moved_at)]
    episodes = []
    for i, (a, b) in enumerate(runs):
        window_end = pref[runs[i + 1][0]][0] if i + 1 < len(runs) else end_s
        back = pref[b + 1][0] if b + 1 < len(pref) and pref[b + 1][0] < window_end else None
        episodes.append(_episode(timeline, group, active, pref[a][0], back, window_end,
                                 began_before_watch=(a == 0 and pref[0][0] <= timeline.interval_s),
                                 failover_window_s=failover_window_s,
                                 failback_window_s=failback_window_s))

    if not episodes:
        pref_up_at_end = bool(pref) and pref[-1][1].state != State.DOWN
        if active_at_end is not None and active_at_end != preferred and pref_up_at_end:
            manual = group.failback == "manual"
            verdict, matches = DrillVerdict.FAILBACK_PENDING, manual
            reason = (f"{preferred} answered throughout, but traffic is on {active_at_end}"
                      + (" (policy: manual failback)" if manual else " (policy: auto failback)"))
        else:
            verdict, matches = DrillVerdict.STEADY, True
            where = (f"; traffic stayed on {active_at_end}" if active_at_end
                     else "; the active line was never seen (no hop of its lines answered)")
            reason = f"{preferred} did not fail during the drill{where}"
        return DrillSummary(**base, verdict=verdict, matches_policy=matches, reason=reason,
                            status=verdict_status(verdict, matches))

    # The group's verdict is its worst episode's (the last among equals).
    worst = max(reversed(episodes),
                key=lambda e: verdict_status(e.verdict, e.matches_policy).rank)
    return DrillSummary(**base, verdict=worst.verdict, matches_policy=worst.matches_policy,
                        reason=worst.reason, episodes=tuple(episodes),
                        status=verdict_status(worst.verdict, worst.matches_policy))


def _episode(timeline: Timeline, group: GroupInfo, active: list[tuple[float, str | None]],
             first_loss_s: float, back_s: float | None, window_end_s: float, *,
             began_before_watch: bool, failover_window_s: float,
             failback_window_s: float) -> Episode:
    preferred = group.preferred
    assert preferred is not None
    interval_s = timeline.interval_s
    # Where the traffic went. A move seen up to two intervals before the first
    # lost probe belongs to this failure: the controller can be quicker than us.
    before = [(t, line) for t, line in active if line is not None and t < first_loss_s]
    prior = before[-1][1] if before else None
    switch_at: float | None = None
    switched_to: str | None = None
    already_off = False
    if prior is not None and prior != preferred:
        on_pref = [t for t, line in before if line == preferred]
        moved = next((t for t, line in before if on_pref and t > on_pref[-1]), None)
        if moved is not None and moved >= first_loss_s - 2 * interval_s:
            switch_at, switched_to = moved, prior
        else:  # it was off the preferred line already when this failure began
            switch_at, switched_to, already_off = before[0][0], prior, True
    else:
        for t, line in active:
            if first_loss_s <= t < window_end_s and line not in (None, preferred):
                switch_at, switched_to = t, line
                break
    failback_at = None
    if switch_at is not None and back_s is not None:
        failback_at = next((t for t, line in active
                            if max(switch_at, back_s) <= t < window_end_s and line == preferred),
                           None)

    lanes_behind = _behind(timeline, group)
    outs = [o for lane, kind in lanes_behind
            if (o := outage_in(timeline.series(lane), lane, kind, first_loss_s, window_end_s))]
    restored = None
    if lanes_behind and all(o.recovered_s is not None for o in outs):
        restored = max((o.recovered_s for o in outs if o.recovered_s is not None),
                       default=first_loss_s)

    down_s = (back_s if back_s is not None else window_end_s) - first_loss_s
    policy_manual = group.failback == "manual"
    standbys = group.lines[1:]

    if switch_at is not None:
        took = "" if began_before_watch or already_off else f" after {_secs(switch_at - first_loss_s)}"
        if back_s is None:
            verdict, matches = DrillVerdict.FAILED_OVER, True
            reason = (f"{preferred} down from {first_loss_s:.2f} s; traffic moved to "
                      f"{switched_to}{took}")
        elif failback_at is not None:
            verdict, matches = DrillVerdict.FAILBACK_DONE, True
            reason = (f"traffic moved to {switched_to}{took}; {preferred} back at "
                      f"{back_s:.2f} s and traffic returned {_secs(failback_at - back_s)} later")
            if policy_manual:
                reason += " (policy manual: an operator or the controller moved it)"
        else:
            back_for = window_end_s - back_s
            verdict = DrillVerdict.FAILBACK_PENDING
            if policy_manual:
                matches = True
                reason = (f"traffic moved to {switched_to}{took}; {preferred} back for "
                          f"{_secs(back_for)}, traffic stays on {switched_to} until an operator "
                          "moves it (policy: manual failback)")
            elif back_for > failback_window_s:
                matches = False
                reason = (f"{preferred} back for {_secs(back_for)} but traffic is still on "
                          f"{switched_to}; policy is auto failback "
                          f"(window {_secs(failback_window_s)})")
            else:
                matches = None
                reason = (f"{preferred} back {_secs(back_for)} before the drill ended; failback "
                          f"not seen yet (window {_secs(failback_window_s)})")
    else:
        dead = [ln for ln in standbys
                if (share := _dead_share(timeline.series(ln), first_loss_s, window_end_s))
                is not None and share >= STANDBY_DEAD_RATIO]
        failing_long = [o for o in outs if o.outage_s > failover_window_s]
        if standbys and len(dead) == len(standbys):
            verdict, matches = DrillVerdict.DOWN, False
            reason = (f"{preferred} and every standby line ({', '.join(dead)}) down; "
                      "nowhere to fail over to")
        elif down_s <= failover_window_s:
            if back_s is not None:
                verdict, matches = DrillVerdict.BRIEF_OUTAGE, None
                reason = (f"{preferred} down {_secs(down_s)}, back before a failover was due "
                          f"(window {_secs(failover_window_s)}); traffic did not move")
            else:
                verdict, matches = DrillVerdict.INCONCLUSIVE, None
                reason = (f"the drill ended {_secs(down_s)} after {preferred} failed, within the "
                          f"failover window ({_secs(failover_window_s)})")
        elif failing_long:
            verdict, matches = DrillVerdict.FAILOVER_FAILED, False
            worst = max(failing_long, key=lambda o: o.outage_s)
            target = ", ".join(standbys) or "a standby line"
            reason = (f"{preferred} down {_secs(down_s)} and traffic never moved to {target}; "
                      f"{worst.lane} failing {_secs(worst.outage_s)} "
                      f"({worst.lost_probes} probes lost)")
        elif outs and restored is not None and (back_s is None or restored < back_s):
            verdict, matches = DrillVerdict.FAILED_OVER, True
            reason = (f"endpoints behind {group.name} answer again {_secs(restored - first_loss_s)}"
                      f" after {preferred} failed, so traffic moved, but no hop check saw which "
                      "line carries it")
        else:
            verdict, matches = DrillVerdict.INCONCLUSIVE, None
            reason = (f"{preferred}'s far end silent {_secs(down_s)}, but no endpoint behind "
                      f"{group.name} failed and no path change was seen; is the far-end probe "
                      "filtered?" if lanes_behind else
                      f"{preferred} down {_secs(down_s)}; no endpoint behind {group.name} to "
                      "show where the traffic goes")
    return Episode(first_loss_s, back_s, switch_at, switched_to, failback_at, restored,
                   window_end_s, verdict, matches, reason, tuple(outs), began_before_watch,
                   already_off)


_VERDICT_STATUS = {
    DrillVerdict.STEADY: Status.OK,
    DrillVerdict.FAILBACK_DONE: Status.OK,
    DrillVerdict.FAILED_OVER: Status.WARNING,  # traffic flows; redundancy is gone for now
    DrillVerdict.FAILBACK_PENDING: Status.WARNING,
    DrillVerdict.BRIEF_OUTAGE: Status.WARNING,
    DrillVerdict.FAILOVER_FAILED: Status.CRITICAL,
    DrillVerdict.DOWN: Status.CRITICAL,
    DrillVerdict.INCONCLUSIVE: Status.UNKNOWN,
}


def verdict_status(verdict: DrillVerdict, matches_policy: bool | None) -> Status:
    if verdict == DrillVerdict.FAILBACK_PENDING and matches_policy is True:
        return Status.OK  # manual failback: staying on the standby line is the policy
    return _VERDICT_STATUS[verdict]


def summarize(timeline: Timeline, failover_window_s: float, failback_window_s: float
              ) -> list[DrillSummary]:
    return [summarize_group(timeline, g, failover_window_s, failback_window_s)
            for g in timeline.groups]


def lane_outages(timeline: Timeline) -> list[Outage]:
    end_s = timeline.t_end_s
    out: list[Outage] = []
    for lane in timeline.lanes:
        out.extend(outages(timeline.series(lane.name), lane.name, str(lane.kind), end_s))
    return out


def drill_status(timeline: Timeline, summaries: list[DrillSummary],
                 fail_on: Severity = Severity.WARNING) -> tuple[Status, list[str]]:
    """The drill's status, as `check` would give it, and the reasons for it.

    The worst of the group verdicts and of the state each lane ended in; a
    warning counts only with `fail_on=warning`.
    """
    worst = Status.OK
    reasons: list[str] = []

    def weigh(status: Status, why: str) -> None:
        nonlocal worst
        if status == Status.WARNING and fail_on == Severity.CRITICAL:
            status = Status.OK
        if status != Status.OK:
            reasons.append(f"{status}: {why}")
        if status.rank > worst.rank:
            worst = status

    for s in summaries:
        weigh(s.status, f"{s.group}: {s.verdict} — {s.reason}")
    grouped = {line for g in timeline.groups for line in g.lines}
    for lane in timeline.lanes:
        if lane.kind == LaneKind.LINE and lane.name in grouped:
            continue  # judged with its group
        series = timeline.series(lane.name)
        if not series:
            continue
        last = series[-1][1]
        if last.state == State.DOWN:
            weigh(Status.CRITICAL, f"{lane.label} down at the end of the drill")
        elif last.state == State.DEGRADED:
            weigh(Status.WARNING, f"{lane.label} degraded at the end of the drill")
        elif last.state == State.UNKNOWN:
            weigh(Status.UNKNOWN, f"{lane.label} not measured: {last.message or last.error}")
    if not timeline.cycles:
        weigh(Status.UNKNOWN, "no probe cycle ran")
    return worst, reasons
