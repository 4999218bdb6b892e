"""Localisation: which components are down, from which probes got through.

Boolean network tomography. Each probe crosses a path of components (its
target's path, then the target). A probe that got through (the target host
answered anything at all: an echo reply, a TCP RST, a DNS error) proves every
component on its path up. Each failed probe says that at least one component on
its path, not proven up, is down. The explanations are the smallest sets of
components that hit every failed probe (minimum hitting sets); when there is
more than one, the evidence cannot tell them apart and we say so.

An ICMP error that came back (in time or late: a router that gave up on a
dead next hop) proves the path up to the router that sent it, so only what
lies behind that router can explain the failure.

Redundancy groups in a path are replaced by their active line when the traces
show it, or when an ICMP error from a line's own hop address does (any probe's,
late ones included: a rate-limiting router may send no time-exceeded to the
traces, but its "host unreachable" still says the traffic went through it).
When they do not, the group stands for "whichever line carries the
traffic": a success through it proves only that some line works; a failure
through it is explained by the group itself (a virtual element named after the
group) or by any of its lines that is not proven up (the traffic may still be
on it).

Pure code: no I/O, no clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import product

from netprobe.evidence import Evidence, Outcome, ProbeError, ProbeResult
from netprobe.topology import Kind, Topology

# Bounds that keep the search fast on big topologies. A connected set of
# failures needing more than MAX_SIZE simultaneous faults is left unlocalised
# (its components become unknown) rather than guessed at.
MAX_SIZE = 4
MAX_NODES = 50_000
MAX_EXPLANATIONS = 32

# Errors that prove the target host answered even though the probe failed.
_ANSWER_ERRORS = frozenset({ProbeError.REFUSED, ProbeError.DNS_ERROR, ProbeError.DNS_MISMATCH})


def got_through(result: ProbeResult) -> bool | None:
    """Did this probe reach its target host? None: no evidence either way.

    A refused port or a DNS error proves the path up. A trace that stops short
    blames nobody (firewalls drop the TTL-expired replies it relies on), so a
    trace only ever counts as a success.
    """
    if not result.measured:
        return None
    if result.error in _ANSWER_ERRORS:
        return True
    answered = bool(result.host_answered)
    if result.kind == "trace" and not answered:
        return None
    return answered


# -- traces: which line of each group carries the traffic -------------------


@dataclass(frozen=True)
class TraceVote:
    """What one probe says about one group: the lines whose hops it shows.

    `by` is "trace" (the hops of a trace) or "icmp_error" (an ICMP error, in
    time or late, from a line's hop address: `addresses` lists them).
    """

    endpoint: str  # the endpoint (or device) behind the group the probe went to
    probe_id: str
    lines: tuple[str, ...]  # empty: the trace showed no line's hops
    by: str = "trace"
    addresses: tuple[str, ...] = ()

    @property
    def line(self) -> str | None:
        return self.lines[0] if len(self.lines) == 1 else None


@dataclass(frozen=True)
class ActiveLine:
    """The traces' verdict on which line of a group carries traffic."""

    group: str
    line: str | None  # None: not known
    votes: tuple[TraceVote, ...] = ()
    unmeasured: tuple[ProbeResult, ...] = ()  # traces we could not run
    disagree: bool = False  # the traces named different lines

    @property
    def evidence(self) -> tuple[str, ...]:
        return tuple(v.probe_id for v in self.votes) + tuple(r.id for r in self.unmeasured)


def _norm(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def _hop_addresses(result: ProbeResult) -> set[str]:
    hops = result.detail.get("hops") or []
    out = set()
    for hop in hops:
        address = hop.get("address") if isinstance(hop, Mapping) else None
        if address:
            out.add(_norm(str(address)))
    return out


def icmp_errors(result: ProbeResult) -> list[tuple[str, str]]:
    """(source address, description) of every ICMP error a probe heard, in time
    (`notices`) or after its timeout (`detail["late_errors"]`)."""
    out = [(_norm(n.source), n.description) for n in result.notices]
    for late in result.detail.get("late_errors") or ():
        if isinstance(late, Mapping) and late.get("source"):
            out.append((_norm(str(late["source"])),
                        f"{late.get('description') or 'ICMP error'} (late)"))
    return out


def _host_of(topology: Topology, target: str) -> str | None:
    """The device or endpoint a probe's packets went to (a service's host)."""
    comp = topology.components.get(target)
    if comp is None:
        return None
    if comp.kind == Kind.SERVICE and comp.parent:
        return comp.parent
    return comp.name if comp.kind in (Kind.ENDPOINT, Kind.DEVICE) else None


def read_traces(topology: Topology, evidence: Evidence) -> dict[str, ActiveLine]:
    """For each group, the line its endpoints' traces (and ICMP errors) show
    carrying traffic."""
    paths = _Paths(topology, {}, {})
    traces: dict[str, list[ProbeResult]] = {}
    errors: dict[str, list[ProbeResult]] = {}  # host -> its probes that heard ICMP errors
    for r in evidence.results:
        if r.kind == "trace" and r.target in topology.components:
            traces.setdefault(r.target, []).append(r)
        if r.kind != "trace" and r.measured and icmp_errors(r):
            host = _host_of(topology, r.target)
            if host is not None:
                errors.setdefault(host, []).append(r)
    out: dict[str, ActiveLine] = {}
    for gname, group in topology.groups.items():
        all_hops = {line: {_norm(a) for a in topology.line_hops(line)} for line in group.lines}
        # only a hop no other line of the group lists identifies a line (a DC
        # gateway both lines reach is no evidence of which one carries traffic)
        hops = {line: own - set().union(*(h for o, h in all_hops.items() if o != line))
                for line, own in all_hops.items()}
        votes: list[TraceVote] = []
        unmeasured: list[ProbeResult] = []
        for name, comp in topology.components.items():
            if comp.kind != Kind.ENDPOINT or gname not in paths.closure(name):
                continue
            for r in traces.get(name, ()):
                if not r.measured:
                    unmeasured.append(r)
                    continue
                seen = _hop_addresses(r)
                lines = tuple(line for line in group.lines if hops[line] & seen)
                votes.append(TraceVote(endpoint=name, probe_id=r.id, lines=lines))
        for name, results in errors.items():
            if gname not in paths.closure(name):
                continue
            for r in results:
                sources = {a for a, _ in icmp_errors(r)}
                lines = tuple(line for line in group.lines if hops[line] & sources)
                if lines:
                    matched = tuple(sorted(set().union(*(hops[x] for x in lines)) & sources))
                    votes.append(TraceVote(endpoint=name, probe_id=r.id, lines=lines,
                                           by="icmp_error", addresses=matched))
        named = {v.lines[0] for v in votes if len(v.lines) == 1}
        active = next(iter(named)) if len(named) == 1 else None
        if active is None and len(group.lines) == 1 and not named:
            active = group.lines[0]  # a group of one line: traffic has nowhere else to go
        out[gname] = ActiveLine(group=gname, line=active, votes=tuple(votes),
                                unmeasured=tuple(unmeasured), disagree=len(named) > 1)
    return out


# -- paths ---------------------------------------------------------------------


class _Paths:
    """Expands a component's path: nested paths, and groups into active lines."""

    def __init__(self, topology: Topology, consensus: Mapping[str, str | None],
                 per_endpoint: Mapping[tuple[str, str], str]) -> None:
        self.topology = topology
        self.consensus = consensus
        self.per_endpoint = per_endpoint
        self._closure: dict[str, frozenset[str]] = {}

    def closure(self, name: str) -> frozenset[str]:
        """Every component and group crossed to reach `name` (groups not expanded)."""
        if name in self._closure:
            return self._closure[name]
        out: set[str] = set()
        stack = list(self._raw_path(name))
        while stack:
            e = stack.pop()
            if e in out:
                continue
            out.add(e)
            stack.extend(self._raw_path(e))
        self._closure[name] = frozenset(out)
        return self._closure[name]

    def _raw_path(self, name: str) -> tuple[str, ...]:
        comp = self.topology.components.get(name)
        if comp is not None:
            return comp.path
        group = self.topology.groups.get(name)
        if group is not None:
            # crossing a group crosses what all of its lines have in common
            line_paths = [self._line_path(line) for line in group.lines]
            if not line_paths:
                return ()
            rest = [set(p) for p in line_paths[1:]]
            return tuple(e for e in line_paths[0] if all(e in s for s in rest))
        return ()

    def _line_path(self, line: str) -> tuple[str, ...]:
        comp = self.topology.components.get(line)
        return comp.path if comp is not None else ()

    def expand(self, name: str, via: str | None) -> tuple[str, ...]:
        """The elements a packet crosses to reach `name`, then `name`, in order.

        `via` is the endpoint whose own trace may say which line of a group it uses.
        """
        out: list[str] = []
        self._walk(name, via, out, set())
        return tuple(out)

    def _walk(self, name: str, via: str | None, out: list[str], active: set[str]) -> None:
        if name in out or name in active:  # already crossed, or a cycle in a bad config
            return
        active.add(name)
        if name in self.topology.groups:
            line = self.per_endpoint.get((via, name)) if via else None
            line = line or self.consensus.get(name)
            if line:
                self._walk(line, via, out, active)
            else:
                for e in self._raw_path(name):
                    self._walk(e, via, out, active)
                out.append(name)  # virtual: the group's unknown active line
        elif name in self.topology.components:
            for e in self.topology.components[name].path:
                self._walk(e, via, out, active)
            out.append(name)
        active.discard(name)


# -- minimum hitting sets ----------------------------------------------------------

Options = tuple[frozenset[str], ...]  # ways to explain one failure; any one suffices


@dataclass(frozen=True)
class HittingSets:
    """Every minimum-size set of elements explaining every failure, factored.

    `forced` is in every explanation; each part is an independent cluster of
    failures with its own alternative minimum explanations; `unsolved` holds
    the candidates of clusters too big to solve within the bounds.
    """

    forced: frozenset[str]
    parts: tuple[tuple[frozenset[str], ...], ...]
    unsolved: frozenset[str] = frozenset()
    unsolved_failures: tuple[int, ...] = ()  # indexes into the input

    # cached: the assessment asks once per component (50,000 times at 50,000
    # endpoints), and building the set each time made the diagnosis quadratic
    @cached_property
    def down(self) -> frozenset[str]:
        out = set(self.forced)
        for sols in self.parts:
            out |= frozenset.intersection(*sols)
        return frozenset(out)

    @cached_property
    def ambiguous(self) -> frozenset[str]:
        out: set[str] = set()
        for sols in self.parts:
            out |= frozenset.union(*sols) - frozenset.intersection(*sols)
        return frozenset(out)

    def explanations(self, limit: int = MAX_EXPLANATIONS) -> list[frozenset[str]]:
        if self.unsolved or (not self.forced and not self.parts):
            return []  # nothing failed, or not every failure could be explained
        out = []
        for combo in product(*self.parts):
            out.append(self.forced.union(*combo))
            if len(out) >= limit:
                break
        return out


class _Budget(Exception):
    pass


def minimum_hitting_sets(failures: Sequence[Options], max_size: int = MAX_SIZE,
                         max_nodes: int = MAX_NODES) -> HittingSets:
    """The minimum sets S such that every failure has an option contained in S."""
    forced: set[str] = set()
    live = [[frozenset(o) for o in opts] for opts in failures]
    index = list(range(len(live)))
    # Propagate forced choices: a failure with one way to explain it forces it.
    changed = True
    while changed:
        changed = False
        nxt_live, nxt_index = [], []
        for i, opts in zip(index, live, strict=True):
            opts = [o - forced for o in opts]
            if any(not o for o in opts):
                continue  # already explained
            opts = _minimal_options(opts)
            if len(opts) == 1:
                forced |= opts[0]
                changed = True
                continue
            nxt_live.append(opts)
            nxt_index.append(i)
        live, index = nxt_live, nxt_index

    # Independent clusters: failures sharing no candidate are solved apart.
    clusters = _clusters(live)
    parts: list[tuple[frozenset[str], ...]] = []
    unsolved: set[str] = set()
    unsolved_failures: list[int] = []
    nodes = [0]
    for members in clusters:
        sub = [live[k] for k in members]
        sols = None
        try:
            sols = _solve(sub, max_size, max_nodes, nodes)
        except _Budget:
            sols = None
        if sols is None:
            unsolved |= {e for opts in sub for o in opts for e in o}
            unsolved_failures.extend(index[k] for k in members)
        else:
            parts.append(tuple(sorted(sols, key=sorted)))
    return HittingSets(frozenset(forced), tuple(parts), frozenset(unsolved),
                       tuple(sorted(unsolved_failures)))


def _minimal_options(opts: Iterable[frozenset[str]]) -> list[frozenset[str]]:
    """Drop duplicate options and those that contain a smaller one."""
    uniq = sorted(set(opts), key=lambda o: (len(o), sorted(o)))
    out: list[frozenset[str]] = []
    for o in uniq:
        if not any(p <= o for p in out):
            out.append(o)
    return out


def _clusters(failures: list[list[frozenset[str]]]) -> list[list[int]]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for opts in failures:
        elems = [e for o in opts for e in o]
        for e in elems[1:]:
            parent[find(e)] = find(elems[0])
        if elems:
            find(elems[0])
    groups: dict[str, list[int]] = {}
    for k, opts in enumerate(failures):
        root = find(next(e for o in opts for e in o))
        groups.setdefault(root, []).append(k)
    return list(groups.values())


def _solve(failures: list[list[frozenset[str]]], max_size: int, max_nodes: int,
           nodes: list[int]) -> list[frozenset[str]] | None:
    """Iterative deepening over set size; branching on the failure with fewest options
    finds every minimum set (each is reached by choosing, at every step, its own option)."""
    for k in range(1, max_size + 1):
        found: set[frozenset[str]] = set()
        seen: set[frozenset[str]] = set()

        def dfs(chosen: frozenset[str], k: int = k, found: set = found, seen: set = seen) -> None:
            nodes[0] += 1
            if nodes[0] > max_nodes:
                raise _Budget
            best: list[frozenset[str]] | None = None
            for opts in failures:
                if any(o <= chosen for o in opts):
                    continue
                if best is None or len(opts) < len(best):
                    best = opts
            if best is None:
                found.add(chosen)
                return
            for o in best:
                nxt = chosen | o
                if len(nxt) <= k and nxt not in seen:
                    seen.add(nxt)
                    dfs(nxt)

        dfs(frozenset())
        if found:
            size = min(len(s) for s in found)
            return [s for s in found if len(s) == size]
    return None


# -- the localisation itself ---------------------------------------------------------


@dataclass(frozen=True)
class ProbePath:
    """One probe as the tomography sees it."""

    result: ProbeResult
    path: tuple[str, ...]  # elements crossed to reach the host, the host last
    through: bool | None  # got through; None: no evidence
    service: str | None = None  # a service probe's service: a further suspect if it failed
    groups: frozenset[str] = frozenset()  # redundancy groups crossed, whatever line is active


@dataclass(frozen=True)
class Localization:
    active: Mapping[str, ActiveLine]
    probes: tuple[ProbePath, ...]
    proven_up: frozenset[str]  # components (and virtual groups) some answered probe crossed
    solution: HittingSets
    explanations: tuple[tuple[str, ...], ...]  # best first; element order: nearest the vantage first
    unexplained: tuple[str, ...]  # failed probes whose whole path is proven up otherwise
    # every component's path as the localisation sees it, the component last
    paths: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # distance from the vantage, then topology order: for listing nearest first
    rank: Mapping[str, int] = field(default_factory=dict)

    @property
    def down(self) -> frozenset[str]:
        return self.solution.down

    @property
    def ambiguous(self) -> frozenset[str]:
        return self.solution.ambiguous

    @property
    def unsolved(self) -> frozenset[str]:
        return self.solution.unsolved

    def failed(self) -> list[ProbePath]:
        return [p for p in self.probes if p.through is False]

    def crossing(self, element: str) -> list[ProbePath]:
        return [p for p in self.probes if element in p.path]

    def order(self, names: Iterable[str]) -> list[str]:
        """Nearest the vantage first."""
        return sorted(names, key=lambda n: (self.rank.get(n, 10**6), n))

    def order_sets(self, sets: Iterable[frozenset[str]]) -> list[list[str]]:
        """Alternative explanations, smallest and nearest the vantage first."""
        ordered = [self.order(s) for s in sets]
        return sorted(ordered, key=lambda s: (len(s), [self.rank.get(e, 10**6) for e in s], s))


def localize(topology: Topology, evidence: Evidence,
             active: Mapping[str, ActiveLine] | None = None) -> Localization:
    active = dict(active if active is not None else read_traces(topology, evidence))
    consensus = {g: a.line for g, a in active.items()}
    per_endpoint = {(v.endpoint, g): v.line for g, a in active.items() for v in a.votes if v.line}
    paths = _Paths(topology, consensus, per_endpoint)

    probes: list[ProbePath] = []
    for r in evidence.results:
        comp = topology.components.get(r.target)
        if comp is None:
            continue  # evidence from another config (an old run diagnosed again)
        host = comp.parent if comp.kind == Kind.SERVICE and comp.parent else comp.name
        path = paths.expand(host, via=host)
        crossed = frozenset(g for g in paths.closure(host) if g in topology.groups)
        probes.append(ProbePath(result=r, path=path, through=got_through(r),
                                service=comp.name if comp.kind == Kind.SERVICE else None,
                                groups=crossed))

    # An ICMP error from a router on the path proves the path up to that router.
    answered_upto = {p.result.id: _answered_upto(topology, p) for p in probes
                     if p.through is False}
    proven_up = frozenset(
        [e for p in probes if p.through for e in p.path]
        + [e for p in probes if p.through is False
           for e in p.path[:answered_upto[p.result.id]]])

    failures: list[Options] = []
    unexplained: list[str] = []
    for p in probes:
        if p.through and p.service and p.result.outcome == Outcome.FAILED:
            # the host answered, the service did not (refused, DNS error): only it explains this
            failures.append((frozenset({p.service}),))
            continue
        if p.through is not False:
            continue
        opts = _options(topology, p, proven_up, skip=answered_upto.get(p.result.id, 0))
        if not opts:
            unexplained.append(p.result.id)
            continue
        failures.append(opts)
    solution = minimum_hitting_sets(failures)

    rank: dict[str, int] = {}
    for p in probes:
        for i, e in enumerate(p.path):
            rank[e] = min(rank.get(e, i), i)
        if p.service:
            rank[p.service] = min(rank.get(p.service, len(p.path)), len(p.path))
    for g in topology.groups.values():  # a group's lines sit where the group sits
        for line in g.lines:
            if g.name in rank:
                rank[line] = min(rank.get(line, rank[g.name]), rank[g.name])

    # Ties in depth fall back to topology order (a group just before its first line).
    position = {name: 2 * i + 1 for i, name in enumerate(topology.components)}
    for g in topology.groups.values():
        position[g.name] = position.get(g.lines[0], 1) - 1 if g.lines else 0
    rank = {e: depth * 1_000_000 + position.get(e, 999_999) for e, depth in rank.items()}

    def key(s: list[str]) -> tuple:
        return (len(s), [rank.get(e, 10**6) for e in s], s)

    expl = [sorted(s, key=lambda e: (rank.get(e, 10**6), e)) for s in solution.explanations()]
    ordered = tuple(tuple(s) for s in sorted(expl, key=key))
    comp_paths: dict[str, tuple[str, ...]] = {}
    for name, comp in topology.components.items():
        if comp.kind == Kind.SERVICE and comp.parent:
            comp_paths[name] = (*paths.expand(comp.parent, via=comp.parent), name)
        else:
            comp_paths[name] = paths.expand(name, via=name)
    return Localization(active=active, probes=tuple(probes), proven_up=proven_up,
                        solution=solution, explanations=ordered,
                        unexplained=tuple(unexplained), paths=comp_paths, rank=rank)


def _answered_upto(topology: Topology, p: ProbePath) -> int:
    """How many elements of a failed probe's path an ICMP error proves up: those
    up to and including the router that sent it (never the host itself)."""
    sources = {a for a, _ in icmp_errors(p.result)}
    if not sources:
        return 0
    upto = 0
    for i, e in enumerate(p.path[:-1]):
        comp = topology.components.get(e)
        if comp is None:
            continue
        own = {_norm(a) for a in topology.line_hops(e)} if comp.kind == Kind.LINE else set()
        if comp.address:
            own.add(_norm(comp.address))
        if own & sources:
            upto = i + 1
    return upto


def _options(topology: Topology, p: ProbePath, proven_up: frozenset[str],
             skip: int = 0) -> Options:
    opts: list[frozenset[str]] = []
    suspects = [*p.path[skip:], p.service] if p.service else list(p.path[skip:])
    for e in suspects:
        if e in proven_up:
            continue
        opts.append(frozenset({e}))
        group = topology.groups.get(e)
        if group is not None:
            # the traffic may still be on a line that is itself down
            opts.extend(frozenset({line}) for line in group.lines if line not in proven_up)
    return tuple(opts)
