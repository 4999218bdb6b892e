"""The drill loop: probe every lane once per interval, on a fixed schedule.

Each cycle sends one attempt per probe (far ends, devices, endpoints,
services) through one `ProbeContext` kept for the whole drill (one ICMP
socket, not one per cycle), plus a TTL-limited hop check toward the
endpoints behind each redundancy group to see which line carries them.
Cycles start on a fixed monotonic schedule; a cycle never overlaps the next:
when one overruns, the missed slots are skipped and recorded, never queued.

The loop only measures and records; what the record means is
`netprobe.watch.summary`'s business, and what the operator sees is the
observer's (the core never imports rich).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from netprobe.config import Thresholds
from netprobe.diagnosis.model import State
from netprobe.evidence import Outcome, ProbeError, ProbeResult, not_measured
from netprobe.plan import PlanOptions, build_plan
from netprobe.probes import ProbeContext, ProbeTask, RateLimiter, get_probe
from netprobe.topology import Kind, Topology
from netprobe.watch.hopcheck import HopChecker, pick_line
from netprobe.watch.timeline import (
    Cycle,
    Event,
    EventTracker,
    GroupInfo,
    Lane,
    LaneKind,
    Route,
    Sample,
    Timeline,
)

DEFAULT_HOP_MAX_TTL = 8  # a line's carrier hop sits a few hops from the vantage
RESOLVE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class WatchOptions:
    interval_s: float = 0.2
    duration_s: float = 300.0
    until_stable: bool = False
    settle_s: float | None = None  # None: the larger of 5 s and ten intervals
    probe_timeout_s: float | None = None  # None: the config's timeout, at most 0.8 interval
    rate_pps: float = 2000.0
    concurrency: int = 256
    hop_check: bool = True
    hop_max_ttl: int = DEFAULT_HOP_MAX_TTL
    # None: the timeline keeps every cycle (a drill's record); N: only the last N,
    # so a service that probes for months (`netprobe serve`) holds bounded memory.
    keep_cycles: int | None = None

    @property
    def settle_window_s(self) -> float:
        return self.settle_s if self.settle_s is not None else max(5.0, 10 * self.interval_s)

    def timeout_for(self, config_timeout_s: float) -> float:
        # A lost probe must be decided before the next slot, or every cycle
        # with a loss would overrun and halve the sampling during an outage.
        return min(config_timeout_s, 0.8 * self.interval_s) if self.probe_timeout_s is None \
            else self.probe_timeout_s


class Observer(Protocol):
    def start(self, timeline: Timeline) -> None: ...
    def cycle(self, cycle: Cycle, events: list[Event]) -> None: ...
    def finish(self, timeline: Timeline) -> None: ...


class NullObserver:
    def start(self, timeline: Timeline) -> None:
        pass

    def cycle(self, cycle: Cycle, events: list[Event]) -> None:
        pass

    def finish(self, timeline: Timeline) -> None:
        pass


# -- what to watch ----------------------------------------------------------------

def groups_crossed(topology: Topology, name: str) -> tuple[str, ...]:
    """Redundancy groups a packet to `name` crosses, directly or through the
    path of a device it crosses, in order, once each."""
    out: list[str] = []
    seen: set[str] = set()

    def walk(path: tuple[str, ...]) -> None:
        for hop in path:
            if hop in seen:
                continue
            seen.add(hop)
            if topology.is_group(hop):
                out.append(hop)
            elif (comp := topology.components.get(hop)) is not None:
                walk(comp.path)

    comp = topology.components.get(name)
    if comp is not None:
        walk(comp.path)
    return tuple(out)


_LANE_KIND = {Kind.DEVICE: LaneKind.DEVICE, Kind.LINE: LaneKind.LINE,
              Kind.ENDPOINT: LaneKind.ENDPOINT, Kind.SERVICE: LaneKind.SERVICE}


def watch_plan(topology: Topology, options: WatchOptions) -> tuple[list[ProbeTask], list[Lane],
                                                                     list[GroupInfo]]:
    """The probes of one cycle (one attempt each), a lane per probe, and the groups."""
    timeout_s = options.timeout_for(topology.config.defaults.timeout)
    # no late-error window: the next cycle comes sooner than a late error would
    tasks = build_plan(topology, PlanOptions(traces=False, attempts=1, timeout_s=timeout_s,
                                             interval_s=0.0, late_grace_s=0.0))
    # An endpoint's own `timeout:` may exceed the interval; the schedule wins.
    tasks = [dataclasses.replace(t, attempts=1, timeout_s=min(t.timeout_s, timeout_s))
             for t in tasks if t.kind != "trace"]
    lanes = []
    for t in tasks:
        comp = topology.components[t.target]
        groups = (comp.group,) if comp.kind == Kind.LINE and comp.group else \
            groups_crossed(topology, t.target)
        lanes.append(Lane(t.target, _LANE_KIND[comp.kind], t.id, groups))
    groups = []
    for g in topology.groups.values():
        behind = [c.name for c in topology.of_kind(Kind.ENDPOINT)
                  if g.name in groups_crossed(topology, c.name)]
        if not behind:  # no endpoint: a device behind the group still shows the path
            behind = [c.name for c in topology.of_kind(Kind.DEVICE)
                      if g.name in groups_crossed(topology, c.name)]
        groups.append(GroupInfo(g.name, g.lines, g.failback, tuple(behind)))
    return tasks, lanes, groups


def sample_of(result: ProbeResult, thresholds: Thresholds) -> Sample:
    rtt = result.rtt_avg_ms
    if result.outcome == Outcome.NOT_MEASURED:
        state = State.UNKNOWN
    elif result.outcome == Outcome.OK:
        state = State.DEGRADED if rtt is not None and rtt > thresholds.rtt.warn * 1000 \
            else State.UP
    else:
        state = State.DOWN
    return Sample(result.target, state, rtt, result.sent, result.received,
                  None if result.error is None else str(result.error),
                  result.message if state == State.UNKNOWN else None)


# -- the loop ------------------------------------------------------------------------

@dataclass
class _HopTarget:
    group: GroupInfo
    endpoint: str
    address: str | None
    line_hops: dict[str, list[str]]
    learned_ttl: int | None = None  # where a line hop answered last time


@dataclass
class DrillRunner:
    topology: Topology
    options: WatchOptions
    observer: Observer = field(default_factory=NullObserver)
    stop: asyncio.Event | None = None
    # Called after each cycle with the cycle's raw probe results, for consumers
    # that diagnose them (`netprobe serve`); the timeline keeps only samples.
    on_results: Callable[[Cycle, list[ProbeResult]], None] | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time

    async def run(self) -> Timeline:
        opts = self.options
        tasks, lanes, groups = watch_plan(self.topology, opts)
        notes: list[str] = []
        refused = self._preflight(tasks, notes)
        tasks, unresolved = await self._resolve(tasks, notes)
        hop_targets = self._hop_targets(groups, tasks, unresolved)
        hops = HopChecker() if opts.hop_check and hop_targets else None
        if hops is not None:
            v6 = any(t.address and ":" in t.address for t in hop_targets)
            why = hops.preflight(v6_too=v6)
            if why:
                notes.append(why)
                hops.close()
                hops = None
        elif not opts.hop_check and hop_targets:
            notes.append("hop check off: the active line of each group is not watched")
        for g in groups:
            if not g.endpoints:
                notes.append(f"{g.name}: no endpoint or device behind it, so its active line "
                             "cannot be seen")

        ctx = ProbeContext(RateLimiter(opts.rate_pps))
        semaphore = asyncio.Semaphore(max(1, opts.concurrency))
        thresholds = self.topology.thresholds
        tracker = EventTracker(opts.interval_s, tuple(lanes))
        t0, wall0 = self.clock(), self.wall_clock()
        header = Timeline(opts.interval_s, t0, wall0, tuple(lanes), tuple(groups),
                          notes=tuple(notes))
        self.observer.start(header)
        cycles: collections.deque[Cycle] = collections.deque(maxlen=opts.keep_cycles)
        count = 0
        ended_by = "duration"
        slot = 0
        try:
            while True:
                due = t0 + slot * opts.interval_s
                if due - t0 >= opts.duration_s:
                    break
                if await self._sleep_until(due):
                    ended_by = "interrupted"
                    break
                start = self.clock()
                results, routes = await self._cycle(tasks, refused, unresolved, hop_targets,
                                                    hops, ctx, semaphore, thresholds)
                end = self.clock()
                next_slot = slot + 1
                if end > t0 + next_slot * opts.interval_s:
                    next_slot = math.floor((end - t0) / opts.interval_s) + 1
                cycle = Cycle(count, start - t0, wall0 + (start - t0), end - start,
                              tuple(sample_of(r, thresholds) for r in results), tuple(routes),
                              skipped_slots=next_slot - slot - 1)
                count += 1
                cycles.append(cycle)
                self.observer.cycle(cycle, tracker.feed(cycle))
                if self.on_results is not None:
                    self.on_results(cycle, results)
                slot = next_slot
                if self.stop is not None and self.stop.is_set():
                    ended_by = "interrupted"
                    break
                stable_for = tracker.stable_for_s(end - t0)
                if opts.until_stable and stable_for is not None and \
                        stable_for >= opts.settle_window_s:
                    ended_by = "stable"
                    break
        finally:
            if hops is not None:
                hops.close()
            await ctx.aclose()
        end_s = 0.0
        if cycles:  # the last sample stands for its whole slot, unless the drill was cut short
            last = cycles[-1]
            slot_end = max(last.t_s + opts.interval_s, last.t_s + last.duration_s)
            end_s = min(slot_end, max(opts.duration_s, last.t_s + last.duration_s))
            if ended_by == "interrupted":
                end_s = max(last.t_s + last.duration_s, min(slot_end, self.clock() - t0))
        timeline = dataclasses.replace(header, cycles=tuple(cycles), end_s=end_s,
                                       ended_by=ended_by)
        self.observer.finish(timeline)
        return timeline

    async def _sleep_until(self, due: float) -> bool:
        """Wait for the slot; True when told to stop first."""
        delay = due - self.clock()
        if self.stop is None:
            if delay > 0:
                await asyncio.sleep(delay)
            return False
        if self.stop.is_set():
            return True
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
        return self.stop.is_set()

    def _preflight(self, tasks: list[ProbeTask], notes: list[str]) -> dict[str, str]:
        refused: dict[str, str] = {}
        for kind in sorted({t.kind for t in tasks}):
            why = get_probe(kind).preflight([t for t in tasks if t.kind == kind])
            if why:
                refused[kind] = why
                notes.append(f"{kind} probes not measured: {why}")
        return refused

    async def _resolve(self, tasks: list[ProbeTask], notes: list[str]
                       ) -> tuple[list[ProbeTask], dict[str, str]]:
        """Resolve host names once, at the start: a drill measures the path, and a
        resolver that fails half-way should not look like a failover."""
        loop = asyncio.get_running_loop()
        hosts = sorted({t.host for t in tasks if t.host and not t.address})
        answers: dict[str, str | None] = {}
        for host in hosts:
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S)
                infos.sort(key=lambda i: 0 if i[0] == socket.AF_INET else 1)
                answers[host] = str(infos[0][4][0])
            except (OSError, TimeoutError) as exc:
                answers[host] = None
                notes.append(f"host name {host!r} did not resolve "
                             f"({getattr(exc, 'strerror', None) or 'timed out'}); "
                             "its probes are not measured")
        unresolved: dict[str, str] = {}
        out = []
        for t in tasks:
            if t.host and not t.address:
                address = answers.get(t.host)
                if address is None:
                    unresolved[t.id] = f"host name {t.host!r} did not resolve"
                else:
                    t = dataclasses.replace(t, address=address)
            out.append(t)
        return out, unresolved

    def _hop_targets(self, groups: list[GroupInfo], tasks: list[ProbeTask],
                     unresolved: dict[str, str]) -> list[_HopTarget]:
        address_of = {t.target: t.address for t in tasks if t.id not in unresolved}
        comps = self.topology.components
        targets = []
        for g in groups:
            line_hops = {line: self.topology.line_hops(line) for line in g.lines}
            for name in g.endpoints:
                address = address_of.get(name) or comps[name].address
                targets.append(_HopTarget(g, name, address, line_hops))
        return targets

    async def _cycle(self, tasks: list[ProbeTask], refused: dict[str, str],
                     unresolved: dict[str, str], hop_targets: list[_HopTarget],
                     hops: HopChecker | None, ctx: ProbeContext, semaphore: asyncio.Semaphore,
                     thresholds: Thresholds) -> tuple[list[ProbeResult], list[Route]]:
        timeout_s = self.options.timeout_for(self.topology.config.defaults.timeout)

        async def one(t: ProbeTask) -> ProbeResult:
            if t.kind in refused:
                return not_measured(t.id, t.kind, t.target, t.address, ProbeError.PERMISSION,
                                    refused[t.kind])
            if t.id in unresolved:
                return not_measured(t.id, t.kind, t.target, None, ProbeError.RESOLVE,
                                    unresolved[t.id])
            async with semaphore:
                try:
                    return await asyncio.wait_for(get_probe(t.kind).run(t, ctx),
                                                  t.timeout_s + 0.5 * self.options.interval_s)
                except TimeoutError:
                    return ProbeResult(id=t.id, kind=t.kind, target=t.target,
                                       address=t.address, sent=t.attempts,
                                       error=ProbeError.TIMEOUT,
                                       message="probe exceeded its time budget")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug costs one sample, not the drill
                    return not_measured(t.id, t.kind, t.target, t.address, ProbeError.INTERNAL,
                                        f"internal error in the {t.kind} probe: {exc!r}")

        async def route(h: _HopTarget) -> Route:
            if hops is None or h.address is None:
                return Route(h.group.name, h.endpoint, None)
            ttls = [h.learned_ttl] if h.learned_ttl else \
                list(range(1, self.options.hop_max_ttl + 1))
            answers = await hops.probe(h.address, ttls, timeout_s)
            line, answer = pick_line(answers, h.line_hops)
            # Keep the TTL that found a line hop; lose it and sweep again next cycle.
            h.learned_ttl = answer.ttl if answer is not None else None
            if answer is None:
                return Route(h.group.name, h.endpoint, None)
            return Route(h.group.name, h.endpoint, line, answer.source, answer.ttl)

        results = await asyncio.gather(*(one(t) for t in tasks),
                                       *(route(h) for h in hop_targets))
        probe_results: list[ProbeResult] = results[:len(tasks)]  # type: ignore[assignment]
        routes: list[Route] = results[len(tasks):]  # type: ignore[assignment]
        return probe_results, routes
