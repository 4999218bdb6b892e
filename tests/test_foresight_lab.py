"""The guess `check` diagnoses while silent probes time out, against real probes.

Each probe kind's `silent_result` must be what its `run` really returns for a
target that never answers (timing aside): otherwise the guess never holds and
`check` diagnoses twice. And when it holds, the diagnosis made during the wait
must be the one the real evidence gives. Both are checked through the routed
lab's router, which drops some addresses silently and rejects others.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import RoutedLab

from netprobe.probes import ProbeTask, get_probe

pytestmark = [pytest.mark.root, pytest.mark.icmp]


def _tasks(address: str, late_grace_s: float = 0.0) -> list[ProbeTask]:
    common = dict(target="quiet", address=address, attempts=2, interval_s=0.05, timeout_s=0.3,
                  late_grace_s=late_grace_s)
    return [ProbeTask(id=f"{address}/icmp", kind="icmp", **common),
            ProbeTask(id=f"{address}/tcp", kind="tcp", port=RoutedLab.TCP_PORT, **common),
            ProbeTask(id=f"{address}/dns", kind="dns", port=53,
                      params={"query": "www.intra.example", "type": "A",
                              "expect": ["203.0.113.10"]}, **common)]


def test_silent_result_is_what_a_silently_dropped_target_really_gives(routed_lab: RoutedLab):
    L = routed_lab
    tasks = [*_tasks(L.DROPPED4), *_tasks(L.DROPPED6), *_tasks(L.DROPPED4, late_grace_s=0.3)]
    for t, real in zip(tasks, L.run(tasks), strict=True):
        guess = get_probe(t.kind).silent_result(t)
        assert real.error is not None and real.received == 0, real
        assert real.same_observation(guess), (real, guess)
    # and it is not what an answering or a rejecting target gives
    answering = _tasks(L.SERVER4) + _tasks(L.HOST_UNREACH4)
    for t, real in zip(answering, L.run(answering), strict=True):
        assert not real.same_observation(get_probe(t.kind).silent_result(t)), real


_CHECK = r"""
import json, sys
from netprobe.config import load_topology
from netprobe.diagnosis import diagnose, static_audit
from netprobe.executor import Foresight, RunOptions, run
from netprobe.plan import PlanOptions, build_plan

topology = load_topology(sys.argv[1])
tasks = build_plan(topology, PlanOptions(traces=False, late_grace_s=float(sys.argv[2])))
static = static_audit(topology)
foresight = Foresight(lambda likely: diagnose(topology, likely, static))
evidence = run(tasks, RunOptions(rate_pps=0, confirm_attempts=int(sys.argv[3])),
               foresight=foresight)
print(json.dumps({"held": foresight.held, "guessed": sorted(foresight.guessed or ()),
                  "same": foresight.value == diagnose(topology, evidence, static),
                  "errors": sorted({str(r.error) for r in evidence.results})}))
"""


# every kind the diagnosis may run beside (its RTTs the kernel's): ICMP alone, and
# with a TCP service and a DNS server on each endpoint
_ICMP_TCP_DNS = (f"[icmp, tcp/{RoutedLab.TCP_PORT}, "
                 "dns: {query: www.intra.example, expect: [203.0.113.10]}]")


@pytest.mark.parametrize("probes", ["[icmp]", _ICMP_TCP_DNS])
@pytest.mark.parametrize(("late_grace_s", "confirm"), [(0.0, 0), (0.3, 2)])
def test_the_diagnosis_made_during_the_wait_is_the_real_one(routed_lab: RoutedLab, tmp_path,
                                                               late_grace_s, confirm, probes):
    L = routed_lab
    config = tmp_path / "quiet.yaml"
    config.write_text(
        "version: 1\nvantage: lab\ndefaults: {timeout: 300ms, attempts: 2}\nendpoints:\n"
        f"  app: {{address: {L.SERVER4}, probes: {probes}}}\n"
        f"  app6: {{address: '{L.SERVER6}', probes: {probes}}}\n"
        f"  dropped: {{address: {L.DROPPED4}, probes: {probes}}}\n"
        f"  dropped6: {{address: '{L.DROPPED6}', probes: {probes}}}\n"
        f"  rejected: {{address: {L.HOST_UNREACH4}, probes: {probes}}}\n")
    proc = subprocess.run(["ip", "netns", "exec", L.client, sys.executable, "-c", _CHECK,
                           str(config), str(late_grace_s), str(confirm)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # the dropped targets were still waiting when the guess was made; the rest had answered
    assert {g.split("/")[0] for g in out["guessed"]} == {"dropped", "dropped6"}
    assert out["held"] and out["same"], out
    assert {"timeout", "unreachable", "None"} <= set(out["errors"])
    kinds = {g.split("/", 1)[1].split("/")[0] for g in out["guessed"]}
    assert kinds == ({"icmp", "tcp", "dns"} if "tcp" in probes else {"icmp"}), out["guessed"]
