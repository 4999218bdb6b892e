"""Where degradation begins: loss (and delay) localised along the paths.

The boolean localisation (localize.py) says what is down. This says where the
loss starts while everything still answers, so one lossy line gives one
finding naming the line instead of one per endpoint behind it.

For each element on the paths (devices, lines resolved to the active line
when the traces tell it, endpoints; a group when no trace shows its line) it
pools the answered probes, each with its path, the target and then the service
last:

- through: the probes whose path crosses the element: packets sent and
  received, so the loss ratio of all the traffic that went through it;
- before: the probes that do not cross it but whose whole path lies in front
  of it (they cross only elements the traffic to it crosses first).

An element is where the loss begins (a loss segment) when:

1. the loss through it is above `loss.warn`, over at least MIN_LOSS_PACKETS;
2. the loss is seen on more than one host (a host with its services), or on
   the element itself and its services: the loss of a single host behind it
   cannot tell the path from the host, so it stays that host's;
3. some of that loss is on probes to things behind it, and those probes are
   not clean on their own (a far end that drops pings addressed to itself
   while forwarding the rest is a lossy host, judged on its own probe);
4. the probes that stop before it lost at most `loss.warn` and at most half
   the ratio through it. When none do (the first device), its own probes
   must lose more than `loss.warn`: they are all that can say the loss begins
   there rather than behind it;
5. the loss is not confined behind it: for each lossy element D behind it,
   the probes through it that avoid D are not clean (at most `warn` over at
   least MIN_LOSS_PACKETS). If they are clean, the loss lives at D or beyond;
6. nothing in front of it passes 1-5: the first place the loss appears wins.
   Then it moves toward the vantage past any element that passes 1-4 and
   that fewer than MIN_LOSS_PACKETS separate from it: a line and the device
   behind it, when only the line's own ping stops between them, cannot be
   told apart, and the nearer one is named, with the other in `alike`.

Delay the same way, on each probe's fastest reply (its minimum RTT: what the
path adds, free of queueing spikes): an element is where the delay begins
when every probe through it (at least MIN_DELAY_PROBES) has its fastest reply
above `rtt.warn`, some of them reach behind it, they reach more than one host
(or the element and its services), most probes that stop before it answer
within `rtt.warn`, and nothing in front of it qualifies.

Only probes that got an answer count (outcome ok). A probe with no reply at
all is the boolean localisation's evidence (down, or ICMP filtered while TCP
answers): counting it as 100 % loss would invent a lossy segment in front of
every firewall. Nothing here ever makes a component down.

Pure code: no I/O, no clock.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from netprobe.diagnosis.localize import Localization
from netprobe.evidence import Outcome
from netprobe.topology import Kind, Topology

# Packets through an element before its loss ratio counts (two probes of 3
# attempts); below it, one unlucky packet would be a 33 % "segment".
MIN_LOSS_PACKETS = 6
# Probes through an element before their common delay counts.
MIN_DELAY_PROBES = 2


@dataclass(frozen=True)
class Tally:
    """Packets sent and received by a set of probes."""

    sent: int = 0
    received: int = 0

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def loss_ratio(self) -> float | None:
        return None if self.sent == 0 else self.lost / self.sent

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.sent + other.sent, self.received + other.received)

    def __sub__(self, other: Tally) -> Tally:
        return Tally(self.sent - other.sent, self.received - other.received)


@dataclass(frozen=True)
class LossSegment:
    """The first element on some paths where the loss appears."""

    element: str  # a component, or a group standing for its unknown active line
    through: Tally  # every answered probe crossing it, its own included
    before: Tally  # answered probes that stop in front of it
    own: Tally  # its own probes (a line's far-end ping), part of `through`
    front: tuple[str, ...]  # targets of the probes that stop in front of it, nearest first
    behind: tuple[str, ...]  # targets behind it whose probes lost packets, nearest first
    alike: tuple[str, ...]  # lossy elements behind it that too few packets separate from it
    probes: tuple[str, ...]  # ids of the probes through it, lossy ones first
    before_probes: tuple[str, ...]


@dataclass(frozen=True)
class DelaySegment:
    """The first element on some paths where every probe through it is slow."""

    element: str
    through_rtt_ms: float  # the lowest fastest-reply among the probes through it
    before_rtt_ms: float | None  # the median fastest reply of those that stop in front of it
    front: tuple[str, ...]
    behind: tuple[str, ...]  # targets behind it
    probes: tuple[str, ...]
    before_probes: tuple[str, ...]

    @property
    def added_ms(self) -> float:
        """The delay the segment adds, as far as the probes show it."""
        return self.through_rtt_ms - (self.before_rtt_ms or 0.0)


@dataclass(frozen=True)
class Degradation:
    loss: tuple[LossSegment, ...] = ()
    delay: tuple[DelaySegment, ...] = ()


_Segment = TypeVar("_Segment", LossSegment, DelaySegment)


@dataclass(frozen=True)
class _Sample:
    id: str
    elements: tuple[str, ...]  # crossed in order, the probe's target last
    host: str  # the target, or a service's endpoint
    tally: Tally
    rtt_min_ms: float


class _Index:
    def __init__(self, loc: Localization) -> None:
        self.samples: list[_Sample] = []
        for p in loc.probes:
            r = p.result
            if r.kind == "trace" or r.sent <= 0 or r.outcome != Outcome.OK or not p.path:
                continue
            elements = (*p.path, p.service) if p.service else p.path
            self.samples.append(_Sample(r.id, elements, p.path[-1],
                                        Tally(r.sent, min(r.received, r.sent)), r.rtt_min_ms or 0.0))
        self.through: dict[str, list[int]] = {}
        self.by_target: dict[str, list[int]] = {}
        for i, s in enumerate(self.samples):
            for e in s.elements:
                self.through.setdefault(e, []).append(i)
            self.by_target.setdefault(s.elements[-1], []).append(i)
        self.rank = loc.rank

    def tally(self, idx: Iterable[int]) -> Tally:
        tallies = [self.samples[i].tally for i in idx]
        return Tally(sum(t.sent for t in tallies), sum(t.received for t in tallies))

    def own(self, e: str) -> list[int]:
        return self.by_target.get(e, [])

    def front(self, e: str) -> set[str]:
        out: set[str] = set()
        for i in self.through[e]:
            els = self.samples[i].elements
            out.update(els[:els.index(e)])
        return out

    def before(self, e: str, front: set[str]) -> list[int]:
        out = []
        for target in front:
            for i in self.by_target.get(target, ()):
                els = self.samples[i].elements
                if e not in els and set(els) <= front:
                    out.append(i)
        return sorted(out)

    def behind(self, e: str) -> dict[str, Tally]:
        """Each element behind `e`, with the tally of the probes crossing both."""
        sent: dict[str, int] = {}
        received: dict[str, int] = {}
        for i in self.through[e]:
            s = self.samples[i]
            for d in s.elements[s.elements.index(e) + 1:]:
                sent[d] = sent.get(d, 0) + s.tally.sent
                received[d] = received.get(d, 0) + s.tally.received
        return {d: Tally(n, received[d]) for d, n in sent.items()}

    def order(self, names: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(set(names), key=lambda n: (self.rank.get(n, 10**6), n)))

    def targets(self, idx: Iterable[int]) -> tuple[str, ...]:
        return self.order(self.samples[i].elements[-1] for i in idx)

    def ids(self, idx: Iterable[int]) -> tuple[str, ...]:
        return tuple(self.samples[i].id for i in idx)

    def predecessor(self, e: str) -> str | None:
        """The one element every probe through `e` crosses just before it, if there is one."""
        found = set()
        for i in self.through[e]:
            els = self.samples[i].elements
            k = els.index(e)
            found.add(els[k - 1] if k else None)
        return found.pop() if len(found) == 1 else None

    def spread(self, e: str, idx: Iterable[int]) -> bool:
        """Do these probes reach more than one host, or only `e` and its services?"""
        hosts = {self.samples[i].host for i in idx}
        return len(hosts) > 1 or hosts == {e}


def locate_degradation(topology: Topology, loc: Localization, *,
                       min_loss_packets: int = MIN_LOSS_PACKETS,
                       min_delay_probes: int = MIN_DELAY_PROBES) -> Degradation:
    """The loss and delay segments: where on the paths the degradation begins."""
    index = _Index(loc)
    elements = index.order(index.through)
    loss = _loss_segments(topology, index, elements, min_loss_packets)
    delay = _delay_segments(topology, index, elements, min_delay_probes)
    return Degradation(loss=loss, delay=delay)


def _first_on_path(found: dict[str, tuple[set[str], _Segment]]) -> tuple[_Segment, ...]:
    # keep an element only when nothing in front of it qualified too
    return tuple(seg for front, seg in found.values() if not front & found.keys())


def _clears(rest: Tally, warn: float, min_packets: int) -> bool:
    """Enough packets, and no more loss than the threshold allows: the loss is not here."""
    return rest.sent >= min_packets and rest.lost / rest.sent <= warn


def _loss_segments(topology: Topology, index: _Index, elements: tuple[str, ...],
                   min_packets: int) -> tuple[LossSegment, ...]:
    warn = topology.thresholds.loss.warn

    def lossy(t: Tally) -> bool:
        return t.sent > 0 and t.lost / t.sent > warn

    def measure(e: str) -> tuple[LossSegment, bool]:
        """The numbers for `e`, and whether its loss is confined behind it (rule 5)."""
        idx = index.through[e]
        through = index.tally(idx)
        front = index.front(e)
        before_idx = index.before(e, front)
        confined = False
        alike: list[str] = []
        for d, joint in index.behind(e).items():
            if not lossy(joint):
                continue
            if _clears(through - joint, warn, min_packets):
                confined = True
            comp = topology.components.get(d)
            if (through - joint).sent < min_packets and (comp is None or comp.kind != Kind.SERVICE):
                alike.append(d)
        lossy_idx = [i for i in idx if index.samples[i].tally.lost]
        clean_idx = [i for i in idx if not index.samples[i].tally.lost]
        return LossSegment(
            element=e, through=through, before=index.tally(before_idx),
            own=index.tally(index.own(e)), front=index.targets(before_idx),
            behind=tuple(t for t in index.targets(lossy_idx) if t != e),
            alike=index.order(alike), probes=index.ids(lossy_idx + clean_idx),
            before_probes=index.ids(before_idx)), confined

    def shows_loss(seg: LossSegment) -> bool:
        """Rules 1-4: the loss shows through it and not in front of it."""
        through, before, own = seg.through, seg.before, seg.own
        if through.sent < min_packets or not lossy(through):  # 1
            return False
        lossy_idx = [i for i in index.through[seg.element] if index.samples[i].tally.lost]
        if not index.spread(seg.element, lossy_idx):  # 2
            return False
        rest = through - own
        if rest.lost == 0 or _clears(rest, warn, min_packets):  # 3
            return False
        if before.sent:  # 4
            ratio = through.lost / through.sent
            return not lossy(before) and before.lost / before.sent <= ratio / 2
        return lossy(own)

    found: dict[str, LossSegment] = {}
    for e in elements:
        through = index.tally(index.through[e])
        if through.sent < min_packets or not lossy(through):  # 1, cheaply first
            continue
        if index.front(e) & found.keys():  # 6: nearest first, so this one would lose anyway
            continue
        seg, confined = measure(e)
        if not confined and shows_loss(seg):
            found[e] = seg
    # The first place wins, and it moves toward the vantage past an element too few
    # packets separate from it (a line in front of the device behind it, when only the
    # line's own ping stops between them): the probes cannot tell the two apart.
    moved: dict[str, LossSegment] = {}
    for seg in _first_on_path({e: (index.front(e), s) for e, s in found.items()}):
        while (p := index.predecessor(seg.element)) is not None:
            ahead, _ = measure(p)
            if (ahead.through - seg.through).sent >= min_packets or not shows_loss(ahead):
                break
            seg = ahead
        moved[seg.element] = seg
    return _first_on_path({e: (index.front(e), s) for e, s in moved.items()})


def _delay_segments(topology: Topology, index: _Index, elements: tuple[str, ...],
                    min_probes: int) -> tuple[DelaySegment, ...]:
    warn_ms = topology.thresholds.rtt.warn * 1000
    found: dict[str, tuple[set[str], DelaySegment]] = {}
    for e in elements:
        idx = index.through[e]
        if len(idx) < min_probes:
            continue
        fastest = min(index.samples[i].rtt_min_ms for i in idx)
        if fastest <= warn_ms:
            continue
        behind_idx = [i for i in idx if index.samples[i].elements[-1] != e]
        if not behind_idx or not index.spread(e, idx):
            continue
        front = index.front(e)
        before_idx = index.before(e, front)
        median = (statistics.median(index.samples[i].rtt_min_ms for i in before_idx)
                  if before_idx else None)
        if median is not None and median > warn_ms:
            continue
        found[e] = (front, DelaySegment(
            element=e, through_rtt_ms=fastest, before_rtt_ms=median,
            front=index.order(index.targets(before_idx)),
            behind=tuple(t for t in index.targets(behind_idx) if t != e),
            probes=index.ids(idx), before_probes=index.ids(before_idx)))
    return _first_on_path(found)


__all__ = ["MIN_DELAY_PROBES", "MIN_LOSS_PACKETS", "Degradation", "DelaySegment", "LossSegment",
           "Tally", "locate_degradation"]
