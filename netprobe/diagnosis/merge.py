"""Merge the reports of several vantage points of one topology, and localise across them.

One vantage point cannot tell "our line to carrier A is cut" from "carrier A
is down for everyone". Several can: pure code, no I/O, no clock.

Rules:
- Lines are always a site's own (two sites never share a line), but lines
  share carriers. A carrier whose lines are down from every site that
  measured one, with at least two sites measuring, is a `carrier_down`. Down from some sites and up from others: each down line is that
  site's own fault (its line or its device), a `line_down` naming the sites
  where the carrier answers. Down from the only site that uses the carrier:
  `ambiguous` (the line or the carrier, nothing to compare with).
- Devices and endpoints are the same component across reports when they
  carry the same name and the same address (or host name); services follow
  their endpoint. Each site's own CE may be called `ce`: with different
  addresses they stay apart. A shared component down from every site that
  measured it (two or more) is down itself (`device_down`, `endpoint_down`,
  `service_down`); down from some sites but up from others, it is up, and
  the sites that cannot reach it get a `site_path_down` finding: the fault
  is on their path, not at the far end.
- A component only one site measured keeps that site's verdict.
- Severity follows the sites' own rule: a down line whose group still carries
  traffic (failed over) is a warning; a line whose site lost its traffic, or
  that is in no group, is critical. A carrier finding takes the worst of its
  lines.
- `unknown` is never evidence: a site that could not measure a component is
  left out of the comparison, and said so.
- Reports taken far apart in time (more than `max_skew_s`) are compared
  anyway, with a warning: a carrier may have recovered between them.

The merged status is the worst of the sites' statuses and the merged
findings (same order as a single report: UNKNOWN outranks WARNING).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from netprobe.diagnosis.model import GroupVerdict, Severity, State, Status, Verdict

MERGE_SCHEMA = "netprobe.merge/1"
DEFAULT_MAX_SKEW_S = 300.0


class MergeInputError(ValueError):
    """A report that cannot be merged; the message names it and the fix."""


@dataclass(frozen=True)
class SiteComponent:
    name: str
    kind: str  # device | line | endpoint | service
    state: State
    reason: str
    evidence: tuple[str, ...] = ()
    identity: str | None = None  # address or host name, when the report's topology says
    carrier: str | None = None  # lines only


@dataclass(frozen=True)
class SiteReport:
    """What merge needs of one vantage point's `netprobe.report/1`."""

    vantage: str
    source: str  # the file it came from, for messages
    started_at: float  # seconds since the epoch
    status: Status
    components: tuple[SiteComponent, ...]
    groups: tuple[GroupVerdict, ...] = ()
    has_topology: bool = True

    def component(self, name: str) -> SiteComponent | None:
        return next((c for c in self.components if c.name == name), None)


@dataclass(frozen=True)
class Sighting:
    """One site's view of a merged component."""

    vantage: str
    name: str  # the component's name in that site's report
    state: State
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"vantage": self.vantage, "name": self.name, "state": str(self.state),
                "reason": self.reason}


@dataclass(frozen=True)
class MergedComponent:
    name: str
    kind: str
    scope: str  # "shared", or the vantage that owns it (lines, a site's own devices)
    state: State
    seen_from: tuple[Sighting, ...]
    carrier: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "scope": self.scope,
                "state": str(self.state), "carrier": self.carrier,
                "seen_from": [s.to_json() for s in self.seen_from]}


class CarrierVerdict:
    UP = "up"  # every measured line of it answers
    DOWN = "down"  # down from every site that measured it (two or more)
    PARTIAL = "partial"  # down from some sites, up from others: those sites' lines
    AMBIGUOUS = "ambiguous"  # down, and only one site measured it
    UNKNOWN = "unknown"  # no site could measure a line of it


@dataclass(frozen=True)
class CarrierView:
    name: str
    verdict: str
    lines: tuple[Sighting, ...]  # every site's lines of this carrier
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict, "reason": self.reason,
                "lines": [s.to_json() for s in self.lines]}


@dataclass(frozen=True)
class MergeFinding:
    severity: Severity
    kind: str  # carrier_down, line_down, site_path_down, device_down, ... (see module doc)
    components: tuple[str, ...]
    vantages: tuple[str, ...]  # the sites the finding is about
    summary: str
    evidence: tuple[str, ...] = ()  # "vantage:probe-id"

    def to_json(self) -> dict[str, Any]:
        return {"severity": str(self.severity), "kind": self.kind,
                "components": list(self.components), "vantages": list(self.vantages),
                "summary": self.summary, "evidence": list(self.evidence)}


@dataclass(frozen=True)
class MergedReport:
    sites: tuple[SiteReport, ...]
    components: tuple[MergedComponent, ...]
    carriers: tuple[CarrierView, ...]
    findings: tuple[MergeFinding, ...]
    status: Status
    skew_s: float

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": MERGE_SCHEMA,
            "status": str(self.status),
            "exit_code": self.exit_code,
            "skew_s": round(self.skew_s, 3),
            "vantages": [{"vantage": s.vantage, "report": s.source, "status": str(s.status),
                          "started_at": _iso(s.started_at)} for s in self.sites],
            "carriers": [c.to_json() for c in self.carriers],
            "components": [c.to_json() for c in self.components],
            "groups": [{"vantage": s.vantage, **g.to_json()} for s in self.sites
                       for g in s.groups],
            "findings": [f.to_json() for f in self.findings],
        }


# -- reading reports ------------------------------------------------------------------

def site_from_json(data: Any, source: str) -> SiteReport:
    """A `SiteReport` from a parsed `netprobe.report/1`; MergeInputError naming what is wrong."""
    if not isinstance(data, dict) or data.get("schema") != "netprobe.report/1":
        raise MergeInputError(f"{source}: not a netprobe report (schema netprobe.report/1); "
                              "save one per site with `netprobe check CONFIG -o site.json`")
    try:
        vantage = str(data["vantage"])
        status = Status(data["status"])
        started_at = _epoch(data["started_at"])
        topo = data.get("topology") if isinstance(data.get("topology"), dict) else None
        comps = []
        for c in data.get("components", ()):
            name, kind = str(c["name"]), str(c["kind"])
            comps.append(SiteComponent(
                name=name, kind=kind, state=State(c["state"]), reason=str(c.get("reason", "")),
                evidence=tuple(str(e) for e in c.get("evidence", ())),
                identity=_identity(topo, name, kind), carrier=_carrier(topo, name, kind)))
        groups = tuple(GroupVerdict.from_json(g) for g in data.get("groups", ()))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MergeInputError(f"{source}: the report is damaged ({exc!r}); save it again with "
                              "`netprobe check CONFIG -o site.json`") from None
    return SiteReport(vantage, source, started_at, status, tuple(comps), groups,
                      has_topology=topo is not None)


def _identity(topo: dict[str, Any] | None, name: str, kind: str) -> str | None:
    if topo is None:
        return None
    if kind == "service":  # follows its endpoint: 'dc-app/tcp/443' -> dc-app
        endpoint, _, probe = name.partition("/")
        host = _identity(topo, endpoint, "endpoint")
        return None if host is None else f"{host}/{probe}"
    # Looked up whatever the kind, so a name that is a device in one report and an
    # endpoint in another, at one address, is caught as the same part of two kinds.
    for section in ("devices", "endpoints", "lines"):
        entry = (topo.get(section) or {}).get(name)
        if isinstance(entry, dict):
            return entry.get("address") or entry.get("host") or entry.get("far_end")
    return None


def _carrier(topo: dict[str, Any] | None, name: str, kind: str) -> str | None:
    if topo is None or kind != "line":
        return None
    entry = (topo.get("lines") or {}).get(name)
    return entry.get("carrier") if isinstance(entry, dict) else None


def _epoch(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


# -- merging --------------------------------------------------------------------------

def merge_reports(sites: Sequence[SiteReport], max_skew_s: float = DEFAULT_MAX_SKEW_S
                  ) -> MergedReport:
    """Combine the sites' reports and localise across them (see the module doc)."""
    if len(sites) < 2:
        raise MergeInputError("merge needs the reports of at least two vantage points")
    seen: dict[str, str] = {}
    for s in sites:
        if s.vantage in seen:
            raise MergeInputError(
                f"{seen[s.vantage]} and {s.source} are both from vantage {s.vantage!r}; give "
                "one report per vantage point (each site's config names its own `vantage:`)")
        seen[s.vantage] = s.source
    _check_kinds(sites)

    findings: list[MergeFinding] = []
    starts = [s.started_at for s in sites]
    skew_s = max(starts) - min(starts)
    if skew_s > max_skew_s:
        first = min(sites, key=lambda s: s.started_at)
        last = max(sites, key=lambda s: s.started_at)
        findings.append(MergeFinding(
            Severity.WARNING, "stale_report", (), (first.vantage, last.vantage),
            f"The reports were taken {_dur(skew_s)} apart ({first.vantage} at "
            f"{_iso(first.started_at)}, {last.vantage} at {_iso(last.started_at)}), more than "
            f"{_dur(max_skew_s)}: a failure may have begun or ended between them."))
    for s in sites:
        if not s.has_topology:
            findings.append(MergeFinding(
                Severity.INFO, "no_topology", (), (s.vantage,),
                f"{s.source} has no embedded topology: its lines' carriers and its parts' "
                "addresses are not known, so only components with the same name are compared."))

    carriers, carrier_findings, line_comps = _carriers(sites)
    findings += carrier_findings
    shared, shared_findings = _shared(sites)
    findings += shared_findings

    status = Status.OK
    for s in sites:
        status = _worse(status, s.status)
    for f in findings:
        status = _worse(status, _status_of(f.severity))
    order = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
    findings.sort(key=lambda f: (order[f.severity], f.kind, f.components, f.vantages))
    comps = sorted([*shared, *line_comps], key=lambda c: (_KIND_ORDER.get(c.kind, 9), c.name,
                                                          c.scope))
    return MergedReport(tuple(sites), tuple(comps), tuple(carriers), tuple(findings), status,
                        skew_s)


_KIND_ORDER = {"device": 0, "line": 1, "endpoint": 2, "service": 3}


def _check_kinds(sites: Sequence[SiteReport]) -> None:
    kinds: dict[tuple[str, str | None], tuple[str, str]] = {}
    for s in sites:
        for c in s.components:
            if c.kind == "line":
                continue
            key = (c.name, c.identity)
            if key in kinds and kinds[key][0] != c.kind:
                raise MergeInputError(
                    f"{c.name!r} is a {kinds[key][0]} in {kinds[key][1]} but a {c.kind} in "
                    f"{s.source}: are these reports of one topology? Give the part one kind "
                    "in every site's config, or different names")
            kinds.setdefault(key, (c.kind, s.source))


def _worse(a: Status, b: Status) -> Status:
    return b if b.rank > a.rank else a


def _status_of(sev: Severity) -> Status:
    return {Severity.CRITICAL: Status.CRITICAL, Severity.WARNING: Status.WARNING,
            Severity.INFO: Status.OK}[sev]


def _measured(sightings: Iterable[Sighting]) -> list[Sighting]:
    return [s for s in sightings if s.state != State.UNKNOWN]


def _names(items: Iterable[str]) -> str:
    items = list(items)
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _carriers(sites: Sequence[SiteReport]
              ) -> tuple[list[CarrierView], list[MergeFinding], list[MergedComponent]]:
    by_carrier: dict[str | None, list[tuple[SiteReport, SiteComponent]]] = defaultdict(list)
    for s in sites:
        for c in s.components:
            if c.kind == "line":
                by_carrier[c.carrier].append((s, c))
    views: list[CarrierView] = []
    findings: list[MergeFinding] = []
    comps: list[MergedComponent] = []
    for carrier in sorted(by_carrier, key=lambda c: (c is None, c or "")):
        lines = by_carrier[carrier]
        for s, c in lines:
            comps.append(MergedComponent(c.name, "line", s.vantage, c.state,
                                         (Sighting(s.vantage, c.name, c.state, c.reason),),
                                         carrier))
        if carrier is None:  # no carrier known: each line stands alone
            for s, c in lines:
                if c.state == State.DOWN:
                    findings.append(_line_finding(s, c, _line_severity(s, c.name), "line_down",
                                                  f"{s.vantage}: line {c.name} is down "
                                                  f"({c.reason}); its carrier is not known, so "
                                                  "no other site can be compared."))
            continue
        sightings = tuple(Sighting(s.vantage, c.name, c.state, c.reason) for s, c in lines)
        severity = _worst(_line_severity(s, c.name) for s, c in lines if c.state == State.DOWN)
        measured = _measured(sightings)
        down = [x for x in measured if x.state == State.DOWN]
        alive = [x for x in measured if x.state != State.DOWN]
        down_sites = sorted({x.vantage for x in down})
        alive_sites = sorted({x.vantage for x in alive})
        blind = sorted({x.vantage for x in sightings if x.state == State.UNKNOWN}
                       - set(down_sites) - set(alive_sites))
        blind_note = f" ({_names(blind)} could not measure its line)" if blind else ""
        evidence = tuple(f"{s.vantage}:{e}" for s, c in lines if c.state == State.DOWN
                         for e in c.evidence)
        line_list = _names([f"{x.name} from {x.vantage}" for x in down])
        if not measured:
            verdict = CarrierVerdict.UNKNOWN
            reason = f"no site could measure a line of {carrier}"
        elif not down:
            verdict = CarrierVerdict.UP
            reason = f"every measured line answers ({_names(alive_sites)})"
        elif not alive and len(down_sites) >= 2:
            verdict = CarrierVerdict.DOWN
            reason = f"down from every site that uses it: {line_list}"
            findings.append(MergeFinding(
                severity, "carrier_down", tuple(x.name for x in down),
                tuple(down_sites),
                f"{carrier} is down for every site that uses it: {line_list} answer nothing "
                f"({len(down_sites)} sites){blind_note}; this is the carrier's failure, not a "
                "site's line or device: call the carrier.", evidence))
        elif not alive:
            verdict = CarrierVerdict.AMBIGUOUS
            reason = f"down, and only {down_sites[0]} measured a line of it"
            findings.append(MergeFinding(
                severity, "ambiguous", tuple(x.name for x in down), tuple(down_sites),
                f"{line_list} ({carrier}) is down and no other site measured a line of "
                f"{carrier}{blind_note}: the site's line and the whole carrier cannot be told "
                "apart.", evidence))
        else:
            verdict = CarrierVerdict.PARTIAL
            reason = (f"down from {_names(down_sites)}, up from {_names(alive_sites)}: those "
                      "sites' lines")
            up_from = _names([f"{x.vantage} ({x.name})" for x in alive])
            for s, c in lines:
                if c.state == State.DOWN:
                    findings.append(_line_finding(
                        s, c, _line_severity(s, c.name), "line_down",
                        f"{s.vantage}: line {c.name} ({carrier}) is down ({c.reason}) while "
                        f"{carrier} answers from {up_from}: the fault is {s.vantage}'s own line "
                        "or its device, not the carrier."))
        views.append(CarrierView(carrier, verdict, sightings, reason))
    return views, findings, comps


_CARRYING = frozenset({Verdict.NOMINAL, Verdict.REDUNDANCY_LOST, Verdict.FAILED_OVER,
                       Verdict.FAILBACK_PENDING})


def _line_severity(site: SiteReport, line: str) -> Severity:
    """As in one site's report: a down line whose group still carries traffic is a
    warning (the group's finding says what it costs); otherwise critical."""
    group = next((g for g in site.groups if line in g.lines), None)
    return Severity.WARNING if group is not None and group.verdict in _CARRYING \
        else Severity.CRITICAL


def _worst(sevs: Iterable[Severity]) -> Severity:
    sevs = list(sevs)
    return Severity.CRITICAL if Severity.CRITICAL in sevs else \
        Severity.WARNING if Severity.WARNING in sevs else Severity.INFO


def _line_finding(s: SiteReport, c: SiteComponent, sev: Severity, kind: str,
                  summary: str) -> MergeFinding:
    return MergeFinding(sev, kind, (c.name,), (s.vantage,), summary,
                        tuple(f"{s.vantage}:{e}" for e in c.evidence))


def _shared(sites: Sequence[SiteReport]) -> tuple[list[MergedComponent], list[MergeFinding]]:
    """Devices, endpoints and services: one merged component per (name, identity)."""
    by_key: dict[tuple[str, str | None], list[tuple[SiteReport, SiteComponent]]] = {}
    for s in sites:
        for c in s.components:
            if c.kind != "line":
                by_key.setdefault((c.name, c.identity), []).append((s, c))
    comps: list[MergedComponent] = []
    findings: list[MergeFinding] = []
    for (name, _), seen in by_key.items():
        kind = seen[0][1].kind
        sightings = tuple(Sighting(s.vantage, c.name, c.state, c.reason) for s, c in seen)
        measured = _measured(sightings)
        down = [x for x in measured if x.state == State.DOWN]
        alive = [x for x in measured if x.state != State.DOWN]
        scope = "shared" if len(seen) > 1 else seen[0][0].vantage
        evidence = tuple(f"{s.vantage}:{e}" for s, c in seen if c.state == State.DOWN
                         for e in c.evidence)
        if not measured:
            state = State.UNKNOWN
        elif alive:
            state = State.UP if any(x.state == State.UP for x in alive) else alive[0].state
        else:
            state = State.DOWN
        comps.append(MergedComponent(name, kind, scope, state, sightings))
        if not down:
            continue
        down_sites = tuple(sorted(x.vantage for x in down))
        if alive:
            up_from = _names(sorted(x.vantage for x in alive))
            for x in down:
                findings.append(MergeFinding(
                    Severity.CRITICAL, "site_path_down", (name,), (x.vantage,),
                    f"{name} is down from {x.vantage} ({x.reason}) but answers from {up_from}: "
                    f"the fault is on {x.vantage}'s path to it, not {name} itself.",
                    tuple(e for e in evidence if e.startswith(f"{x.vantage}:"))))
        elif len(down_sites) >= 2:
            findings.append(MergeFinding(
                Severity.CRITICAL, f"{kind}_down", (name,), down_sites,
                f"{name} is down from every site that measured it ({_names(down_sites)}): the "
                f"fault is {name} itself or what all those paths share.", evidence))
        else:
            findings.append(MergeFinding(
                Severity.CRITICAL, f"{kind}_down", (name,), down_sites,
                f"{down_sites[0]}: {name} is down ({down[0].reason}); no other site measured "
                "it.", evidence))
    return comps, findings


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- rendering -------------------------------------------------------------------------

def render_merge_text(m: MergedReport) -> str:
    """Plain text for a person: sites, carriers, findings."""
    out = [f"netprobe merge {str(m.status).upper()} (exit {m.exit_code}) · "
           f"{len(m.sites)} vantage points, taken {_dur(m.skew_s)} apart", ""]
    out.append("Vantage points")
    for s in m.sites:
        out.append(f"  {s.vantage:<20} {str(s.status):<9} {_iso(s.started_at)}  {s.source}")
    if m.carriers:
        out += ["", "Carriers"]
        for c in m.carriers:
            out.append(f"  {c.name:<20} {c.verdict:<9} {c.reason}")
    shared = [c for c in m.components if c.scope == "shared"]
    if shared:
        out += ["", "Shared components (state from each vantage)"]
        for c in shared:
            views = ", ".join(f"{x.vantage} {x.state}" for x in c.seen_from)
            out.append(f"  {c.name:<20} {str(c.state):<9} {views}")
    out += ["", "Findings"]
    if not m.findings:
        out.append("  none: every site agrees that what it measured is up")
    for f in m.findings:
        out.append(f"  {str(f.severity):<9} {f.summary}")
    return "\n".join(out) + "\n"


def render_merge_markdown(m: MergedReport) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out = [f"# netprobe merge: {str(m.status).upper()} (exit {m.exit_code})", "",
           "| vantage | status | started | report |", "| --- | --- | --- | --- |"]
    out += [f"| {cell(s.vantage)} | {s.status} | {_iso(s.started_at)} | {cell(s.source)} |"
            for s in m.sites]
    if m.carriers:
        out += ["", "| carrier | verdict | reason |", "| --- | --- | --- |"]
        out += [f"| {cell(c.name)} | {c.verdict} | {cell(c.reason)} |" for c in m.carriers]
    out += ["", "## Findings", ""]
    out += [f"- **{f.severity}** {cell(f.summary)}" for f in m.findings] or \
        ["- none: every site agrees that what it measured is up"]
    return "\n".join(out) + "\n"


__all__ = ["MERGE_SCHEMA", "CarrierVerdict", "MergeInputError", "MergedReport", "SiteReport",
           "merge_reports", "render_merge_markdown", "render_merge_text", "site_from_json"]
