"""Probe kinds. `PROBES` is the registry: the only list of kinds.

Modules are imported on first use so that `netprobe --help` stays fast and
scapy is loaded only when a trace runs.
"""

from __future__ import annotations

import importlib
import sys

from netprobe.probes.interface import Probe, ProbeContext, ProbeTask, RateLimiter

# kind -> module that defines `PROBE`
PROBE_MODULES: dict[str, str] = {
    "icmp": "netprobe.probes.icmp",
    "tcp": "netprobe.probes.tcp",
    "dns": "netprobe.probes.dns",
    "trace": "netprobe.probes.trace",
}


def get_probe(kind: str) -> Probe:
    try:
        module_name = PROBE_MODULES[kind]
    except KeyError:
        raise KeyError(f"unknown probe kind {kind!r}; known: {', '.join(PROBE_MODULES)}") from None
    # sys.modules first: the executor asks once per probe, 10,000 times a run
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    return module.PROBE


__all__ = ["PROBE_MODULES", "Probe", "ProbeContext", "ProbeTask", "RateLimiter", "get_probe"]
