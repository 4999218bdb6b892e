"""Dual-stack hosts: a host name with IPv4 and IPv6 addresses is probed over
both, and the diagnosis judges the component once.

The executor gives the IPv6 probe of such a host the plan's id plus `@ipv6`
(its twin). The localisation and the component states see one result per
planned probe: the IPv4 one, or its twin when only the twin got through (the
host is up; it is one family's path that is broken). Where one family works
and the other does not, a `family_down` finding says so with both observations:
clients that try the broken family first stall or fail.

Pure code: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import replace

from netprobe.diagnosis.findings import describe, observed
from netprobe.diagnosis.localize import got_through
from netprobe.diagnosis.model import Finding, FindingKind, Severity
from netprobe.evidence import TWIN_SUFFIX, Evidence, Outcome, ProbeResult, base_id
from netprobe.topology import Topology

_NAMES = {"ipv4": "IPv4", "ipv6": "IPv6"}


def split_families(evidence: Evidence) -> tuple[Evidence, list[tuple[ProbeResult, ProbeResult]]]:
    """(evidence with one result per planned probe, the (IPv4, IPv6) pairs)."""
    twins = {base_id(r.id): r for r in evidence.results if r.id.endswith(TWIN_SUFFIX)}
    if not twins:
        return evidence, []
    ids = {r.id for r in evidence.results}
    chosen: list[ProbeResult] = []
    pairs: list[tuple[ProbeResult, ProbeResult]] = []
    for r in evidence.results:
        if r.id.endswith(TWIN_SUFFIX):
            if base_id(r.id) not in ids:
                chosen.append(r)  # an orphan (a hand-edited report): keep it
            continue
        twin = twins.get(r.id)
        if twin is None:
            chosen.append(r)
            continue
        pairs.append((r, twin))
        chosen.append(twin if got_through(r) is not True and got_through(twin) is True else r)
    return replace(evidence, results=tuple(chosen)), pairs


def family_findings(topology: Topology, pairs: list[tuple[ProbeResult, ProbeResult]]
                    ) -> list[Finding]:
    out: list[Finding] = []
    for a, b in pairs:
        if a.kind == "trace":  # a trace that stops short blames nobody
            continue
        if not (a.measured and b.measured) or (a.outcome == Outcome.OK) == (b.outcome == Outcome.OK):
            continue
        good, bad = (a, b) if a.outcome == Outcome.OK else (b, a)
        comp = topology.components.get(a.target)
        who = describe(comp) if comp is not None else a.target
        bad_family = _NAMES.get(bad.family or "", "one family")
        summary = (f"{who} works over {_NAMES.get(good.family or '', '?')} ({good.address}: "
                   f"{observed(good)}) but not over {bad_family} ({bad.address}: "
                   f"{observed(bad)}): the {bad_family} path or service is broken, and clients "
                   f"that try {bad_family} first stall or fail.")
        out.append(Finding(Severity.WARNING, FindingKind.FAMILY_DOWN, (a.target,), summary,
                           (a.id, b.id)))
    return out
