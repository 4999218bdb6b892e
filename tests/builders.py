"""Builders for topologies and synthetic evidence (the diagnosis is pure by design).

`make_topology(...)` goes through the real config models and `build_topology`;
`make_result(...)` builds a `ProbeResult` from what a probe would have seen;
`healthy_evidence(...)` answers every probe of the real plan, so a test only
states what differs from a healthy network.
"""

from __future__ import annotations

import copy
from typing import Any

from netprobe.config import Config
from netprobe.evidence import NOT_MEASURED_ERRORS, Evidence, IcmpNotice, ProbeError, ProbeResult
from netprobe.plan import build_plan
from netprobe.topology import Topology, build_topology

# The DESIGN.md example: a city hall with two lines to a data centre.
CITY_HALL: dict[str, Any] = {
    "version": 1,
    "vantage": "city-hall-lan",
    "sites": {"city-hall": {"building": "main"}, "dc-east": {"kind": "datacenter"}},
    "devices": {
        "ce-hq": {"address": "192.0.2.1", "site": "city-hall"},
        "dc-edge": {"address": "203.0.113.1", "site": "dc-east", "path": ["ce-hq", "dc-wan"]},
    },
    "lines": {
        "leased-a": {"device": "ce-hq", "far_end": "198.51.100.1", "carrier": "carrier-a",
                     "group": "dc-wan", "priority": 1},
        "broadband-b": {"device": "ce-hq", "far_end": "198.51.100.5", "carrier": "carrier-b",
                        "group": "dc-wan", "priority": 2},
    },
    "groups": {"dc-wan": {"failback": "auto"}},
    "endpoints": {
        "dc-app": {"address": "203.0.113.10", "site": "dc-east",
                   "path": ["ce-hq", "dc-wan", "dc-edge"], "probes": ["icmp", "tcp/443"]},
        "intra-dns": {"address": "203.0.113.53", "path": ["ce-hq", "dc-wan", "dc-edge"],
                      "probes": ["icmp", {"dns": {"query": "www.intra.example", "type": "A",
                                                  "expect": ["203.0.113.10"]}}]},
    },
}


def make_topology(base: dict[str, Any] | None = None, **sections: Any) -> Topology:
    """A topology from a config dict (default: the city hall), with sections replaced.

    `make_topology(groups={"dc-wan": {"failback": "manual"}})` changes one section.
    """
    data = copy.deepcopy(CITY_HALL if base is None else base)
    for key, value in sections.items():
        data[key] = copy.deepcopy(value)
    return build_topology(Config.model_validate(data))


def _kind_and_target(probe_id: str) -> tuple[str, str]:
    parts = probe_id.split("/")
    if parts[-1] == "icmp":
        return "icmp", parts[0]
    if parts[-1] == "trace":
        return "trace", parts[0]
    if parts[-1] == "dns":
        return "dns", probe_id
    if len(parts) >= 2 and parts[-2] == "tcp":
        return "tcp", probe_id
    raise ValueError(f"cannot tell the kind of probe {probe_id!r}; pass kind= and target=")


def make_result(probe_id: str, *, ok: bool = True, sent: int = 3, loss: float | None = None,
                rtt_ms: float = 1.0, error: ProbeError | str | None = None,
                message: str | None = None, kind: str | None = None, target: str | None = None,
                address: str | None = None, reached: bool | None = None,
                notices: list[tuple[str, str]] | None = None, hops: list[str | None] | None = None,
                answers: list[str] | None = None, rcode: str | None = None,
                detail: dict[str, Any] | None = None) -> ProbeResult:
    """A probe result as a probe would have returned it.

    ok=True: every attempt answered (less `loss`); ok=False: nothing came back
    (error defaults to timeout). A not-measured error (permission, ...) sends
    nothing. `hops` builds a trace's detail; `answers` a DNS probe's.
    `notices` are (source, description) ICMP errors.
    """
    guessed_kind, guessed_target = _kind_and_target(probe_id) if kind is None or target is None \
        else (kind, target)
    kind = kind or guessed_kind
    target = target or guessed_target
    err = ProbeError(error) if error is not None else None
    if err is None and not ok:
        err = ProbeError.TIMEOUT
    if err is not None and err in NOT_MEASURED_ERRORS:
        return ProbeResult(id=probe_id, kind=kind, target=target, address=address, sent=0,
                           error=err, message=message or f"{err} (test)")
    received = sent if ok and err is None else 0
    if loss is not None:
        received = round(sent * (1 - loss))
    if err in (ProbeError.REFUSED, ProbeError.DNS_ERROR, ProbeError.DNS_MISMATCH):
        received = 0
        reached = True if reached is None else reached
    out_detail = dict(detail or {})
    if hops is not None:
        out_detail["hops"] = [{"ttl": i + 1, "address": a, "rtt_ms": None if a is None else 1.0}
                              for i, a in enumerate(hops)]
        if reached is None:
            reached = False
    if answers is not None:
        out_detail["answers"] = list(answers)
    if rcode is not None:
        out_detail["rcode"] = rcode
    return ProbeResult(
        id=probe_id, kind=kind, target=target, address=address, sent=sent,
        rtts_ms=tuple(rtt_ms for _ in range(received)), error=err, message=message,
        reached=reached,
        notices=tuple(IcmpNotice(source=s, type=3, code=1, description=d) for s, d in notices or ()),
        detail=out_detail)


def make_evidence(*results: ProbeResult) -> Evidence:
    return Evidence(results=tuple(results), started_at=1_700_000_000.0, duration_s=2.5)


def healthy_evidence(topology: Topology, *, active: dict[str, str] | None = None,
                     traces: bool = True) -> Evidence:
    """Every probe of the real plan answered; traces show the `active` lines' hops
    (default: each group's preferred line)."""
    return with_results(topology, {}, active=active, traces=traces)


def with_results(topology: Topology, results: dict[str, ProbeResult] | list[ProbeResult],
                 *, active: dict[str, str] | None = None, traces: bool = True,
                 drop: tuple[str, ...] = ()) -> Evidence:
    """The real plan's probes, all healthy except `results` (by id), without `drop`."""
    given = {r.id: r for r in results} if isinstance(results, list) else dict(results)
    active = dict(active or {})
    for name, group in topology.groups.items():
        if group.lines:
            active.setdefault(name, group.lines[0])
    out: list[ProbeResult] = []
    for task in build_plan(topology):
        if task.id in drop:
            continue
        if task.id in given:
            out.append(given.pop(task.id))
            continue
        if task.kind == "trace":
            if not traces:
                continue
            comp = topology.components[task.target]
            hops = ["192.0.2.254"]
            for g in (e for e in comp.path if topology.is_group(e)):
                hops += topology.line_hops(active[g])
            hops.append(task.address)
            out.append(make_result(task.id, address=task.address, hops=hops, reached=True))
        elif task.kind == "dns":
            expect = task.params.get("expect") or ["192.0.2.80"]
            out.append(make_result(task.id, address=task.address, answers=expect))
        else:
            out.append(make_result(task.id, address=task.address))
    out.extend(given.values())  # results for probes the plan does not have
    return make_evidence(*out)
