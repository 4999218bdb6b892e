"""The drill's record: a `Timeline` of probe cycles, and the events it implies.

Pure values and pure functions: no clock, no I/O. The engine appends a
`Cycle` per probe round; `EventTracker` turns cycles into events one at a time
(the live view uses it as the drill runs, `build_events` replays a whole
timeline), so a saved drill gives the same events offline.

Times: `t_s` is seconds since the drill began on the monotonic clock (all
durations come from it); `wall` is the matching wall-clock time, derived from
one reading at the start so an NTP step during the drill cannot bend it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from netprobe.diagnosis.model import State


class LaneKind(StrEnum):
    DEVICE = "device"
    LINE = "line"
    ENDPOINT = "endpoint"
    SERVICE = "service"


@dataclass(frozen=True)
class Lane:
    """One thing watched by one probe per cycle: a line's far end, an endpoint, a service."""

    name: str  # the component
    kind: LaneKind
    probe_id: str
    groups: tuple[str, ...] = ()  # redundancy groups it belongs to or sits behind

    @property
    def label(self) -> str:
        return f"{self.name} far end" if self.kind == LaneKind.LINE else self.name

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": str(self.kind), "probe_id": self.probe_id,
                "groups": list(self.groups)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Lane:
        return cls(d["name"], LaneKind(d["kind"]), d["probe_id"], tuple(d.get("groups", ())))


@dataclass(frozen=True)
class GroupInfo:
    """A redundancy group as the drill needs it: lines in priority order, policy,
    and the endpoints behind it whose path reveals its active line."""

    name: str
    lines: tuple[str, ...]
    failback: str = "auto"  # auto | manual
    endpoints: tuple[str, ...] = ()

    @property
    def preferred(self) -> str | None:
        return self.lines[0] if self.lines else None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "lines": list(self.lines), "failback": self.failback,
                "endpoints": list(self.endpoints)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GroupInfo:
        return cls(d["name"], tuple(d["lines"]), d.get("failback", "auto"),
                   tuple(d.get("endpoints", ())))


@dataclass(frozen=True)
class Sample:
    """One lane's probe in one cycle."""

    lane: str
    state: State
    rtt_ms: float | None = None
    sent: int = 1
    received: int = 0
    error: str | None = None  # ProbeError value, or None
    message: str | None = None

    @property
    def lost(self) -> int:
        return max(0, self.sent - self.received) if self.state != State.UNKNOWN else 0

    def to_json(self) -> list[Any]:
        # Compact: a drill of minutes holds tens of thousands of samples.
        rtt = None if self.rtt_ms is None else round(self.rtt_ms, 3)
        out: list[Any] = [self.lane, str(self.state), rtt, self.sent, self.received, self.error]
        if self.message:
            out.append(self.message)
        return out

    @classmethod
    def from_json(cls, d: list[Any]) -> Sample:
        return cls(d[0], State(d[1]), d[2], int(d[3]), int(d[4]), d[5],
                   d[6] if len(d) > 6 else None)


@dataclass(frozen=True)
class Route:
    """Which line of `group` carried the packets to `endpoint` in one cycle.

    `line` is None when no hop of any of the group's lines answered (path
    unknown this cycle, which is not evidence that it changed).
    """

    group: str
    endpoint: str
    line: str | None
    hop: str | None = None  # the address that answered
    ttl: int | None = None

    def to_json(self) -> list[Any]:
        return [self.group, self.endpoint, self.line, self.hop, self.ttl]

    @classmethod
    def from_json(cls, d: list[Any]) -> Route:
        return cls(d[0], d[1], d[2], d[3], d[4])


@dataclass(frozen=True)
class Cycle:
    index: int
    t_s: float  # when its probes were sent, monotonic seconds since the drill began
    wall: float  # the same instant, seconds since the epoch
    duration_s: float
    samples: tuple[Sample, ...] = ()
    routes: tuple[Route, ...] = ()
    skipped_slots: int = 0  # schedule slots dropped after this cycle because it overran

    def sample(self, lane: str) -> Sample | None:
        for s in self.samples:
            if s.lane == lane:
                return s
        return None

    def active_line(self, group: str) -> str | None:
        """The group's active line this cycle: what every endpoint that showed a
        line agrees on; None when none showed one or they disagree."""
        seen = {r.line for r in self.routes if r.group == group and r.line is not None}
        return seen.pop() if len(seen) == 1 else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "t_s": round(self.t_s, 4),
                               "wall": round(self.wall, 4),
                               "duration_s": round(self.duration_s, 4),
                               "samples": [s.to_json() for s in self.samples],
                               "routes": [r.to_json() for r in self.routes]}
        if self.skipped_slots:
            out["skipped_slots"] = self.skipped_slots
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Cycle:
        return cls(int(d["index"]), float(d["t_s"]), float(d["wall"]), float(d["duration_s"]),
                   tuple(Sample.from_json(s) for s in d.get("samples", ())),
                   tuple(Route.from_json(r) for r in d.get("routes", ())),
                   int(d.get("skipped_slots", 0)))


@dataclass(frozen=True)
class Timeline:
    interval_s: float
    mono_t0: float  # the monotonic clock at t_s = 0 (to compare with other logs on this host)
    wall_t0: float
    lanes: tuple[Lane, ...]
    groups: tuple[GroupInfo, ...]
    cycles: tuple[Cycle, ...] = ()
    end_s: float | None = None  # when the drill stopped; default: one interval after the last cycle
    ended_by: str = "duration"  # duration | stable | interrupted
    notes: tuple[str, ...] = ()  # what could not be measured, and why

    @property
    def t_end_s(self) -> float:
        if self.end_s is not None:
            return self.end_s
        return self.cycles[-1].t_s + self.interval_s if self.cycles else 0.0

    def wall_at(self, t_s: float) -> float:
        return self.wall_t0 + t_s

    def lane(self, name: str) -> Lane | None:
        for lane in self.lanes:
            if lane.name == name:
                return lane
        return None

    def group(self, name: str) -> GroupInfo | None:
        for g in self.groups:
            if g.name == name:
                return g
        return None

    def series(self, lane: str) -> list[tuple[float, Sample]]:
        return [(c.t_s, s) for c in self.cycles if (s := c.sample(lane)) is not None]

    def to_json(self) -> dict[str, Any]:
        return {"interval_s": self.interval_s, "monotonic_t0": self.mono_t0,
                "wall_t0": self.wall_t0, "end_s": round(self.t_end_s, 4),
                "ended_by": self.ended_by, "notes": list(self.notes),
                "lanes": [lane.to_json() for lane in self.lanes],
                "groups": [g.to_json() for g in self.groups],
                "cycles": [c.to_json() for c in self.cycles]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Timeline:
        return cls(float(d["interval_s"]), float(d["monotonic_t0"]), float(d["wall_t0"]),
                   tuple(Lane.from_json(x) for x in d["lanes"]),
                   tuple(GroupInfo.from_json(x) for x in d["groups"]),
                   tuple(Cycle.from_json(x) for x in d.get("cycles", ())),
                   d.get("end_s"), d.get("ended_by", "duration"), tuple(d.get("notes", ())))


# -- events ------------------------------------------------------------------

class EventKind(StrEnum):
    DOWN = "down"  # stopped answering
    UP = "up"  # answering (again)
    DEGRADED = "degraded"
    NOT_MEASURED = "not_measured"
    PATH = "path"  # traffic to an endpoint moved to another line of a group
    SWITCH_OVER = "switch_over"  # a group's failover, with its measured time
    FAILBACK = "failback"
    SLOW_CYCLE = "slow_cycle"


@dataclass(frozen=True)
class Event:
    t_s: float
    wall: float
    kind: EventKind
    subject: str  # a lane, an endpoint (path) or a group
    text: str
    group: str | None = None
    value_s: float | None = None  # the measured duration it reports, if any

    def clock(self) -> str:
        """'12:00:03.200', local time, for the event log."""
        return datetime.fromtimestamp(self.wall).strftime("%H:%M:%S.%f")[:-3]

    def line(self) -> str:
        return f"{self.clock()} {self.text}"

    def to_json(self) -> dict[str, Any]:
        return {"t_s": round(self.t_s, 4), "wall": round(self.wall, 4),
                "time": datetime.fromtimestamp(self.wall).astimezone().isoformat(
                    timespec="milliseconds"),
                "kind": str(self.kind), "subject": self.subject, "text": self.text,
                "group": self.group,
                "value_s": None if self.value_s is None else round(self.value_s, 4)}


def _duration_text(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


@dataclass
class _LaneTrack:
    state: State | None = None
    since_s: float = 0.0
    lost: int = 0  # probes lost since it went down


@dataclass
class EventTracker:
    """Feeds on cycles in order and says what changed. Deterministic: the same
    cycles give the same events, live or replayed from a saved drill."""

    interval_s: float
    lanes: tuple[Lane, ...]
    _lanes: dict[str, _LaneTrack] = field(default_factory=dict)
    _paths: dict[tuple[str, str], str] = field(default_factory=dict)  # (group, endpoint) -> line
    last_change_s: float | None = None  # the last state or path change after the first cycle
    changes: int = 0

    def feed(self, cycle: Cycle) -> list[Event]:
        events: list[Event] = []
        first = cycle.index == 0 or not self._lanes

        def emit(kind: EventKind, subject: str, text: str, group: str | None = None,
                 value_s: float | None = None) -> None:
            events.append(Event(cycle.t_s, cycle.wall, kind, subject, text, group, value_s))

        if cycle.skipped_slots:
            emit(EventKind.SLOW_CYCLE, "watch",
                 f"slow cycle: took {_duration_text(cycle.duration_s)}, over the "
                 f"{_duration_text(self.interval_s)} interval; {cycle.skipped_slots} slot(s) "
                 "skipped, not queued", value_s=cycle.duration_s)
        labels = {lane.name: lane.label for lane in self.lanes}
        for s in cycle.samples:
            track = self._lanes.setdefault(s.lane, _LaneTrack())
            label = labels.get(s.lane, s.lane)
            if track.state == s.state:
                if s.state == State.DOWN:
                    track.lost += s.lost
                continue
            before, since = track.state, track.since_s
            track.state, track.since_s = s.state, cycle.t_s
            if not first:
                self.changes += 1
                self.last_change_s = cycle.t_s
            if s.state == State.DOWN:
                track.lost = s.lost
                why = f" ({s.error})" if s.error and s.error != "timeout" else ""
                emit(EventKind.DOWN, s.lane, f"{label} stopped answering{why}")
            elif s.state == State.UP:
                if before == State.DOWN:
                    emit(EventKind.UP, s.lane, f"{label} answering again after "
                         f"{_duration_text(cycle.t_s - since)} ({track.lost} lost)",
                         value_s=cycle.t_s - since)
                elif before is not None:
                    emit(EventKind.UP, s.lane, f"{label} back to normal")
            elif s.state == State.DEGRADED:
                rtt = f" (rtt {s.rtt_ms:.0f} ms)" if s.rtt_ms is not None else ""
                emit(EventKind.DEGRADED, s.lane, f"{label} degraded{rtt}")
            else:
                emit(EventKind.NOT_MEASURED, s.lane,
                     f"{label} not measured: {s.message or s.error or 'no result'}")
        for r in cycle.routes:
            if r.line is None:
                continue  # an unanswered hop check is not a path change
            key = (r.group, r.endpoint)
            before_line = self._paths.get(key)
            if before_line == r.line:
                continue
            self._paths[key] = r.line
            if before_line is None:
                emit(EventKind.PATH, r.endpoint, f"traffic to {r.endpoint} goes via {r.line}",
                     group=r.group)
            else:
                if not first:
                    self.changes += 1
                    self.last_change_s = cycle.t_s
                emit(EventKind.PATH, r.endpoint, f"traffic to {r.endpoint} moved to {r.line}",
                     group=r.group)
        return events

    def stable_for_s(self, now_s: float) -> float | None:
        """How long nothing has changed, counted from the last change; None before any."""
        return None if self.last_change_s is None else now_s - self.last_change_s


def build_events(timeline: Timeline) -> list[Event]:
    tracker = EventTracker(timeline.interval_s, timeline.lanes)
    out: list[Event] = []
    for cycle in timeline.cycles:
        out.extend(tracker.feed(cycle))
    return out


def runs(series: Iterable[tuple[float, Sample]]) -> Iterator[tuple[State, float, int, int]]:
    """Consecutive runs of one state: (state, start_s, first index, last index)."""
    current: State | None = None
    start_s, start_i, last_i = 0.0, 0, -1
    for i, (t, s) in enumerate(series):
        if s.state != current:
            if current is not None:
                yield current, start_s, start_i, last_i
            current, start_s, start_i = s.state, t, i
        last_i = i
    if current is not None:
        yield current, start_s, start_i, last_i
