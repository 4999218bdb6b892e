"""Which probes to send, derived from the topology: a pure function.

Probe ids are stable and readable, and double as evidence references:
  device / line far end / endpoint reachability: `NAME/icmp`
  a service:                                     `ENDPOINT/tcp/PORT`, `ENDPOINT/dns`
  the path to an endpoint behind a group:        `ENDPOINT/trace`
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from netprobe.config import Endpoint, TcpSpec, TraceSpec
from netprobe.topology import Topology, service_name

if TYPE_CHECKING:
    from netprobe.probes.interface import ProbeTask

# How long an ICMP, TCP or DNS probe that heard nothing keeps listening for late ICMP
# errors: Linux gives up resolving a dead next hop after 3 solicitations 1 s
# apart, then its "host unreachable" is on the way (routers are alike).
LATE_ERROR_GRACE_S = 3.0


@dataclass(frozen=True)
class PlanOptions:
    traces: bool = True  # trace endpoints behind a redundancy group, to find the active line
    attempts: int | None = None  # override the config's defaults
    timeout_s: float | None = None
    interval_s: float | None = None
    only: frozenset[str] | None = None  # restrict to these component names
    late_grace_s: float = LATE_ERROR_GRACE_S  # ICMP, TCP, DNS probes: see LATE_ERROR_GRACE_S


def build_plan(topology: Topology, options: PlanOptions | None = None) -> list[ProbeTask]:
    # here, not at the top: the probes' interface imports asyncio (10 ms), which
    # validate, planning with plan_targets, never needs
    from netprobe.probes.interface import task_defaults, task_of

    opts = options or PlanOptions()
    cfg = topology.config
    d = cfg.defaults
    attempts = opts.attempts or d.attempts
    timeout_s = opts.timeout_s if opts.timeout_s is not None else d.timeout
    interval_s = opts.interval_s if opts.interval_s is not None else d.interval
    tasks: list[ProbeTask] = []
    # Each task's fields as one dict display on top of this: no keyword arguments
    # to gather and merge (at 10,000 endpoints, 15-17 ms -> 10-14 ms).
    base = {**task_defaults(), "interval_s": interval_s, "late_grace_s": opts.late_grace_s}

    only = opts.only

    for name, dev in cfg.devices.items():
        if only is None or name in only:
            tasks.append(task_of({**base, "id": f"{name}/icmp", "kind": "icmp", "target": name,
                                  "address": dev.address, "attempts": attempts,
                                  "timeout_s": timeout_s, "params": {}}))
    for name, line in cfg.lines.items():
        if only is None or name in only:
            tasks.append(task_of({**base, "id": f"{name}/icmp", "kind": "icmp", "target": name,
                                  "address": line.far_end, "attempts": attempts,
                                  "timeout_s": timeout_s, "params": {"role": "far_end"}}))
    is_group = topology.groups.__contains__
    for name, ep in cfg.endpoints.items():
        if only is not None and name not in only:
            continue
        # the command line beats the endpoint's own setting, which beats the defaults
        ep_attempts = opts.attempts or ep.attempts or d.attempts
        ep_timeout_s = (opts.timeout_s if opts.timeout_s is not None
                        else ep.timeout if ep.timeout is not None else d.timeout)
        address, host = ep.address, ep.host
        traced = False
        for spec in ep.probes:
            kind = spec.kind
            if kind == "icmp":
                tasks.append(task_of({**base, "id": f"{name}/icmp", "kind": "icmp", "target": name,
                                      "address": address, "host": host, "attempts": ep_attempts,
                                      "timeout_s": ep_timeout_s, "params": {}}))
            elif kind == "tcp":
                svc = service_name(name, spec)
                tasks.append(task_of({**base, "id": svc, "kind": "tcp", "target": svc,
                                      "address": address, "host": host, "port": spec.port,
                                      "attempts": ep_attempts, "timeout_s": ep_timeout_s,
                                      "params": {}}))
            elif kind == "dns":
                svc = service_name(name, spec)
                chk = spec.check
                params = {"query": chk.query, "type": chk.type,
                          "expect": list(chk.expect) if chk.expect is not None else None}
                tasks.append(task_of({**base, "id": svc, "kind": "dns", "target": svc,
                                      "address": chk.server or address,
                                      "host": None if chk.server else host, "port": chk.port,
                                      "attempts": ep_attempts, "timeout_s": ep_timeout_s,
                                      "params": params}))
            elif kind == "trace":
                tasks.append(_trace_task(name, ep, spec, base, ep_timeout_s))
                traced = True
        if opts.traces and not traced and any(map(is_group, ep.path)):  # behind a group
            tasks.append(_trace_task(name, ep, TraceSpec(), base, ep_timeout_s))
    return tasks


def plan_targets(topology: Topology, options: PlanOptions | None = None) -> list[tuple[str, str]]:
    """(probe id, target) of each task `build_plan` makes, in its order, without
    building the tasks: all the audit and `validate` need (at 10,000 endpoints
    with three probes each, 9 ms instead of 78). Kept equal to build_plan by
    tests/test_plan.py."""
    opts = options or PlanOptions()
    cfg = topology.config
    only = opts.only
    targets: list[tuple[str, str]] = []
    for section in (cfg.devices, cfg.lines):
        targets += [(f"{name}/icmp", name) for name in section if only is None or name in only]
    is_group = topology.groups.__contains__
    for name, ep in cfg.endpoints.items():
        if only is not None and name not in only:
            continue
        traced = False
        for spec in ep.probes:
            kind = spec.kind
            if kind == "icmp":
                targets.append((f"{name}/icmp", name))
            elif kind == "trace":
                targets.append((f"{name}/trace", name))
                traced = True
            elif kind in ("tcp", "dns"):  # the service is the target
                svc = service_name(name, spec)
                targets.append((svc, svc))
        if opts.traces and not traced and any(map(is_group, ep.path)):
            targets.append((f"{name}/trace", name))
    return targets


def _trace_task(endpoint: str, ep: Endpoint, spec: TraceSpec, base: dict,
                timeout_s: float) -> ProbeTask:
    """A trace goes where the traffic goes: to the endpoint's first TCP port when
    it has one (firewalls pass it), else ICMP echo. One attempt: a trace's
    rounds are its own; and no late-error window, which is ICMP's, TCP's and
    DNS's (see `PlanOptions.late_grace_s`)."""
    from netprobe.probes.interface import task_of

    chk = spec.check
    protocol, port = chk.protocol, chk.port
    if "protocol" not in chk.model_fields_set:
        tcp_ports = [s.port for s in ep.probes if isinstance(s, TcpSpec)]
        if tcp_ports:
            protocol, port = "tcp", tcp_ports[0]
    return task_of({**base, "id": f"{endpoint}/trace", "kind": "trace", "target": endpoint,
                    "address": ep.address, "host": ep.host, "port": port, "attempts": 1,
                    "timeout_s": timeout_s, "late_grace_s": 0.0,  # (no late-error window)
                    "params": {"protocol": protocol, "max_hops": chk.max_hops}})


__all__ = ["PlanOptions", "build_plan", "plan_targets"]
