"""The executor's envelope: preflight, deadline, errors, interruption, order.

The probes here are small in-test probe kinds that misbehave on purpose (raise,
hang, refuse a privilege): the envelope's job is to contain exactly that. They
send no packets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time

import pytest

from netprobe.evidence import Outcome, ProbeError, ProbeResult
from netprobe.executor import (
    Foresight,
    RunOptions,
    default_deadline_s,
    raise_fd_limit,
    run_plan,
)
from netprobe.probes import PROBE_MODULES, ProbeTask, RateLimiter


class _BehaviourProbe:
    """Behaves as `task.params["do"]` says: ok, raise, hang."""

    kind = "behaviour"
    refuse: str | None = None

    def preflight(self, tasks):
        return self.refuse

    graces: list[float] | None = None  # the late-error window of each run, when set

    async def run(self, task, ctx):
        action = task.params.get("do", "ok")
        if self.graces is not None:
            self.graces.append(task.late_grace_s)
        if action == "raise":
            raise RuntimeError("probe bug")
        if action == "hang":
            await asyncio.sleep(3600)
        if action == "silent" or (action == "silent_once" and task.attempts == 2):
            return ProbeResult(id=task.id, kind=task.kind, target=task.target,
                               address=task.address, sent=task.attempts,
                               error=ProbeError.TIMEOUT, message="no reply")
        if action == "late_error":  # silent in time, then a router's late unreachable
            return ProbeResult(id=task.id, kind=task.kind, target=task.target,
                               address=task.address, sent=task.attempts,
                               error=ProbeError.TIMEOUT, message="no reply",
                               detail={"late_errors": [{"source": "198.51.100.1", "type": 3,
                                                        "code": 1, "after_ms": 3001.0}]})
        if action in ("silent_after", "late_error_after"):  # pending a while, then the answer
            await asyncio.sleep(task.params["sleep_s"])
            result = self.silent_result(task)
            return dataclasses.replace(
                result, started_at=time.time(), duration_s=task.params["sleep_s"],
                detail={"late_errors": [{"source": "198.51.100.1", "type": 3, "code": 1,
                                         "after_ms": 3001.0}]} if action == "late_error_after"
                else result.detail)
        if action == "refused":
            return ProbeResult(id=task.id, kind=task.kind, target=task.target,
                               address=task.address, sent=task.attempts,
                               error=ProbeError.REFUSED, reached=True)
        await asyncio.sleep(task.params.get("sleep_s", 0))
        return ProbeResult(id=task.id, kind=task.kind, target=task.target, address=task.address,
                           sent=1, rtts_ms=(1.0,))


    def silent_result(self, task):
        return ProbeResult(id=task.id, kind=task.kind, target=task.target, address=task.address,
                           sent=task.attempts, error=ProbeError.TIMEOUT, message="no reply")


PROBE = _BehaviourProbe()


@pytest.fixture(autouse=True)
def behaviour_kind(monkeypatch):
    monkeypatch.setitem(PROBE_MODULES, "behaviour", __name__)
    PROBE.refuse = None
    PROBE.graces = None
    yield


def task(name: str, **params) -> ProbeTask:
    return ProbeTask(id=f"{name}/b", kind="behaviour", target=name, address="127.0.0.1",
                     attempts=1, timeout_s=0.2, interval_s=0.0, params=params)


def test_results_come_back_in_plan_order_even_when_finishing_out_of_order():
    tasks = [task("a", sleep_s=0.2), task("b", sleep_s=0.0), task("c", sleep_s=0.1)]
    ev = asyncio.run(run_plan(tasks))
    assert [r.id for r in ev.results] == ["a/b", "b/b", "c/b"]
    assert all(r.outcome == Outcome.OK for r in ev.results)
    assert not ev.interrupted


def test_an_exception_costs_one_result_not_the_run():
    ev = asyncio.run(run_plan([task("a"), task("bad", do="raise"), task("c")]))
    by_id = ev.by_id()
    assert by_id["bad/b"].error == ProbeError.INTERNAL
    assert by_id["bad/b"].outcome == Outcome.NOT_MEASURED
    assert "probe bug" in by_id["bad/b"].message
    assert by_id["a/b"].outcome == by_id["c/b"].outcome == Outcome.OK


def test_deadline_marks_unfinished_probes_skipped_not_down():
    t0 = time.monotonic()
    ev = asyncio.run(run_plan([task("fast"), task("stuck", do="hang")],
                              RunOptions(deadline_s=0.5)))
    assert time.monotonic() - t0 < 5
    stuck = ev.by_id()["stuck/b"]
    assert stuck.error == ProbeError.SKIPPED
    assert stuck.outcome == Outcome.NOT_MEASURED
    assert "deadline" in stuck.message
    assert ev.by_id()["fast/b"].outcome == Outcome.OK


def test_stop_event_keeps_what_was_measured_and_marks_interrupted():
    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        return await run_plan([task("done"), task("stuck", do="hang")], stop=stop)

    ev = asyncio.run(main())
    assert ev.interrupted
    assert ev.by_id()["done/b"].outcome == Outcome.OK
    assert ev.by_id()["stuck/b"].error == ProbeError.SKIPPED
    assert "interrupted" in ev.by_id()["stuck/b"].message


def test_preflight_refusal_is_not_measured_with_the_fix_named():
    PROBE.refuse = "needs CAP_NET_RAW: run as root"
    ev = asyncio.run(run_plan([task("a"), task("b")]))
    for r in ev.results:
        assert r.error == ProbeError.PERMISSION
        assert r.outcome == Outcome.NOT_MEASURED
        assert r.sent == 0
        assert "CAP_NET_RAW" in r.message


def test_concurrency_bound_is_respected():
    # 6 probes of 0.2 s with 2 in flight take at least 3 waves.
    tasks = [task(f"t{i}", sleep_s=0.2) for i in range(6)]
    t0 = time.monotonic()
    asyncio.run(run_plan(tasks, RunOptions(concurrency=2)))
    assert time.monotonic() - t0 >= 0.55


def test_probes_sharing_one_socket_are_not_bounded_by_the_descriptor_limit(monkeypatch):
    # ICMP's probes share one socket: 6 of them with `concurrency=2` all go at once,
    # beside 4 probes that hold a descriptor each and still go 2 at a time
    monkeypatch.setattr(_BehaviourProbe, "holds_descriptor", False, raising=False)
    module = type(sys)("own_socket_probe")
    in_flight, most = [0], [0]

    class OwnSocket:
        kind = "own_socket"

        def preflight(self, tasks):
            return None

        async def run(self, task, ctx):
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            await asyncio.sleep(0.2)
            in_flight[0] -= 1
            return ProbeResult(id=task.id, kind=task.kind, target=task.target,
                               address=task.address, sent=1, rtts_ms=(1.0,))

    module.PROBE = OwnSocket()
    monkeypatch.setitem(sys.modules, "own_socket_probe", module)
    monkeypatch.setitem(PROBE_MODULES, "own_socket", "own_socket_probe")
    shared = [task(f"s{i}", sleep_s=0.2) for i in range(6)]
    own = [dataclasses.replace(task(f"o{i}"), kind="own_socket", id=f"o{i}/o") for i in range(4)]
    starts: list[float] = []
    behave = _BehaviourProbe.run

    async def counted(self, task, ctx):
        starts.append(time.monotonic())
        return await behave(self, task, ctx)

    monkeypatch.setattr(_BehaviourProbe, "run", counted)
    ev = asyncio.run(run_plan([*shared, *own], RunOptions(concurrency=2, confirm_attempts=0)))
    assert all(r.outcome == Outcome.OK for r in ev.results)
    assert most[0] == 2  # the descriptor-holding kind: never more than `concurrency`
    assert len(starts) == 6 and max(starts) - min(starts) < 0.15  # one wave, not three of 0.2 s


def test_rate_limiter_paces_packets():
    async def main():
        limiter = RateLimiter(50)  # burst of 5, then 50 per second
        t0 = time.monotonic()
        for _ in range(30):
            await limiter.take()
        return time.monotonic() - t0

    assert asyncio.run(main()) >= 0.4  # 25 packets past the burst at 50/s


def test_default_deadline_covers_the_slowest_probe():
    slow = ProbeTask(id="x", kind="icmp", target="x", address="127.0.0.1", attempts=5,
                     timeout_s=2.0, interval_s=0.5)
    assert default_deadline_s([slow], RunOptions()) >= 5 * 0.5 + 2.0


def test_fd_limit_can_be_raised_towards_hard_limit():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raise_fd_limit(soft) >= soft


class _PathProbe(_BehaviourProbe):
    """A phase-1 probe (like trace) that records when it started."""

    kind = "pathfinder"
    phase = 1
    started: list[float] = []

    async def run(self, task, ctx):
        self.started.append(time.monotonic())
        return await super().run(task, ctx)


def test_path_discovery_runs_after_the_measuring_probes(monkeypatch):
    import types

    module = types.ModuleType("pathfinder_probe")
    module.PROBE = _PathProbe()
    monkeypatch.setitem(__import__("sys").modules, "pathfinder_probe", module)
    monkeypatch.setitem(PROBE_MODULES, "pathfinder", "pathfinder_probe")
    _PathProbe.started = []
    path_task = ProbeTask(id="p/trace", kind="pathfinder", target="p", address="127.0.0.1",
                          attempts=1, timeout_s=0.2, interval_s=0.0)
    t0 = time.monotonic()
    ev = asyncio.run(run_plan([path_task, task("slow", sleep_s=0.3)]))
    assert [r.id for r in ev.results] == ["p/trace", "slow/b"]  # plan order kept
    assert _PathProbe.started and _PathProbe.started[0] - t0 >= 0.28


def test_silence_is_confirmed_with_more_attempts_before_it_counts():
    lossy = dataclasses.replace(task("lossy", do="silent_once"), attempts=2)
    dead = dataclasses.replace(task("dead", do="silent"), attempts=2)
    refused = dataclasses.replace(task("rst", do="refused"), attempts=2)
    ev = asyncio.run(run_plan([lossy, dead, refused], RunOptions(confirm_attempts=4)))
    got = ev.by_id()
    # the second round answered: loss is over all attempts, and the result says so
    assert got["lossy/b"].outcome == Outcome.OK
    assert got["lossy/b"].sent == 3 and got["lossy/b"].received == 1
    assert got["lossy/b"].detail["confirmation"] == {"first_sent": 2, "sent": 1, "received": 1}
    # silence twice: failed over 2 + 4 attempts
    assert got["dead/b"].error == ProbeError.TIMEOUT and got["dead/b"].sent == 6
    assert "confirmation round" in got["dead/b"].message
    # a RST is a definite answer: no second round
    assert got["rst/b"].sent == 2 and "confirmation" not in got["rst/b"].detail


def test_a_late_icmp_error_is_a_definite_answer_not_retried():
    late = dataclasses.replace(task("late", do="late_error"), attempts=2)
    ev = asyncio.run(run_plan([late], RunOptions(confirm_attempts=4)))
    got = ev.results[0]
    assert got.sent == 2 and "confirmation" not in got.detail
    assert got.detail["late_errors"][0]["source"] == "198.51.100.1"


def test_the_budget_of_a_probe_covers_its_late_error_window():
    quick = ProbeTask(id="x", kind="icmp", target="x", address="127.0.0.1", attempts=1,
                      timeout_s=0.5, interval_s=0.0)
    patient = dataclasses.replace(quick, late_grace_s=3.0)
    # the first round's window only: the confirmation round opens none
    assert default_deadline_s([patient], RunOptions()) - \
        default_deadline_s([quick], RunOptions()) == pytest.approx(3.0)


def test_the_confirmation_round_opens_no_second_late_error_window():
    seen: list[float] = []
    PROBE.graces = seen
    silent = dataclasses.replace(task("quiet", do="silent"), attempts=2, late_grace_s=0.2)
    ev = asyncio.run(run_plan([silent], RunOptions(confirm_attempts=3)))
    assert ev.results[0].sent == 5
    assert seen == [0.2, 0.0]


def test_confirmation_can_be_turned_off():
    dead = dataclasses.replace(task("dead", do="silent"), attempts=2)
    ev = asyncio.run(run_plan([dead], RunOptions(confirm_attempts=0)))
    assert ev.results[0].sent == 2


def test_a_probe_that_overruns_its_budget_is_a_bug_not_a_timeout_and_the_run_goes_on():
    t0 = time.monotonic()
    ev = asyncio.run(run_plan([task("stuck", do="hang"), task("fine")],
                              RunOptions(confirm_attempts=0)))
    stuck = ev.by_id()["stuck/b"]
    assert stuck.error == ProbeError.INTERNAL and stuck.outcome == Outcome.NOT_MEASURED
    assert "overran its time budget" in stuck.message
    assert ev.by_id()["fine/b"].outcome == Outcome.OK
    assert time.monotonic() - t0 < 10  # the phase watchdog, not the run deadline


def test_a_hanging_resolver_is_abandoned_at_its_timeout(monkeypatch):
    # a dead name server: getaddrinfo blocks for a long time; the run (and the
    # process) must not wait for it. No lookup leaves this process.
    import subprocess
    import sys

    code = """
import socket, time, asyncio
from netprobe.executor import RunOptions, run
from netprobe.probes import ProbeTask
socket.getaddrinfo = lambda *a, **k: time.sleep(30)
t = ProbeTask(id="w/tcp/1", kind="tcp", target="w/tcp/1", address=None, host="w.example", port=1)
ev = run([t], RunOptions(resolve_timeout_s=0.5))
print(ev.results[0].error)
"""
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=25)
    assert out.stdout.strip() == "resolve_error", out.stderr
    assert time.monotonic() - t0 < 10


def test_work_while_waiting_runs_once_during_the_wait_and_is_done_on_return(monkeypatch):
    # 20 probes that each wait 0.3 s: the side job must start long before they end
    monkeypatch.setattr(_BehaviourProbe, "rtt_from_kernel", True, raising=False)
    tasks = [task(f"w{i}", sleep_s=0.3) for i in range(20)]
    marks: list[tuple[str, float]] = []

    def side_job() -> None:
        marks.append(("start", time.monotonic()))
        time.sleep(0.05)
        marks.append(("end", time.monotonic()))

    t0 = time.monotonic()
    ev = asyncio.run(run_plan(tasks, RunOptions(concurrency=5, confirm_attempts=0),
                              while_waiting=side_job))
    returned = time.monotonic()
    assert [m for m, _ in marks] == ["start", "end"]
    # every probe had started (the queue was empty) but none had finished yet
    assert marks[0][1] - t0 >= 0.85  # three waves of 0.3 s before the last five start
    assert marks[0][1] < returned - 0.2
    assert marks[1][1] <= returned
    assert all(r.outcome == Outcome.OK for r in ev.results)


def test_work_while_waiting_runs_even_without_probes():
    ran = []
    asyncio.run(run_plan([], while_waiting=lambda: ran.append(1)))
    assert ran == [1]


def test_work_while_waiting_waits_for_probes_whose_rtt_a_busy_thread_would_inflate():
    # a kind without kernel timestamps (TCP, DNS): the side job runs after them
    tasks = [task(f"w{i}", sleep_s=0.2) for i in range(5)]
    finished: list[float] = []
    started: list[float] = []

    class Progress:
        def start(self, total):
            pass

        def advance(self, result):
            finished.append(time.monotonic())

        def finish(self):
            pass

    asyncio.run(run_plan(tasks, RunOptions(confirm_attempts=0), Progress(),
                         while_waiting=lambda: started.append(time.monotonic())))
    assert len(started) == 1 and len(finished) == 5
    assert started[0] >= max(finished)


# -- foresight: the work on the likely evidence, done during the wait ------------------

def _foresee(tasks, options, monkeypatch, stop=None):
    """Run with a Foresight that records the evidence it was given and when."""
    monkeypatch.setattr(_BehaviourProbe, "rtt_from_kernel", True, raising=False)
    seen: list = []

    def work(likely):
        seen.append((time.monotonic(), likely))
        return ("diagnosis of", tuple((r.id, r.error) for r in likely.results))

    foresight = Foresight(work)
    ev = asyncio.run(run_plan(tasks, options, stop=stop, foresight=foresight))
    return ev, foresight, seen, time.monotonic()


def test_foresight_works_on_the_silent_guess_during_the_wait_and_holds(monkeypatch):
    tasks = [task(f"ok{i}") for i in range(5)] + [task(f"quiet{i}", do="silent_after",
                                                          sleep_s=0.6) for i in range(3)]
    ev, foresight, seen, returned = _foresee(tasks, RunOptions(confirm_attempts=0), monkeypatch)
    assert len(seen) == 1
    worked_at, likely = seen[0]
    assert worked_at < returned - 0.3  # during the 0.6 s wait, not after it
    assert [r.id for r in likely.results] == [t.id for t in tasks]
    assert set(foresight.guessed) == {t.id for t in tasks[5:]}
    assert foresight.held
    assert foresight.value == ("diagnosis of", tuple((r.id, r.error) for r in ev.results))


def test_the_report_json_of_replies_handled_during_the_wait_is_made_during_it(monkeypatch):
    # every probe is sent at once; the answers are handled only after the side job
    # began (as with an ICMP burst), and before the silent probe's timeout
    tasks = [task(f"ok{i}", sleep_s=0.05) for i in range(3)] + [
        task("quiet", do="silent_after", sleep_s=0.6)]
    ev, foresight, seen, _ = _foresee(tasks, RunOptions(confirm_attempts=0), monkeypatch)
    assert foresight.held
    assert all("_json" in r.__dict__ for r in ev.results[:3])  # kept: not made after the wait


def test_foresight_waits_for_replies_still_being_handled_at_its_usual_time(monkeypatch):
    # timeout 0.6 s: the guess is due 0.3 s after the last send, but answers are
    # still settling every 20 ms until 0.4 s (a loop reading a long queue of
    # replies): taken then, they would be guessed silent and the guess not hold
    tasks = [dataclasses.replace(task(f"ok{i}", sleep_s=0.26 + 0.02 * i), timeout_s=0.6)
             for i in range(8)]
    tasks.append(dataclasses.replace(task("quiet", do="silent_after", sleep_s=0.7), timeout_s=0.6))
    ev, foresight, seen, _ = _foresee(tasks, RunOptions(confirm_attempts=0), monkeypatch)
    assert set(foresight.guessed) == {"quiet/b"}
    assert foresight.held


def test_foresight_does_not_hold_when_a_waiting_probe_ends_otherwise(monkeypatch):
    # silent in time, but a router's late error arrives: not what was guessed
    tasks = [task("ok"), task("quiet", do="silent_after", sleep_s=0.4),
             task("late", do="late_error_after", sleep_s=0.4)]
    ev, foresight, seen, _ = _foresee(tasks, RunOptions(confirm_attempts=0), monkeypatch)
    assert len(seen) == 1 and set(foresight.guessed) == {"quiet/b", "late/b"}
    assert ev.results[2].detail["late_errors"]
    assert not foresight.held and foresight.value is None


def test_foresight_guesses_the_confirmation_round_too(monkeypatch):
    # a silent probe is tried again with 2 attempts: the guess is the merged result
    tasks = [task("ok"), task("quiet", do="silent_after", sleep_s=0.3)]
    ev, foresight, seen, _ = _foresee(tasks, RunOptions(confirm_attempts=2), monkeypatch)
    guessed = foresight.guessed["quiet/b"]
    assert guessed.sent == 3 and guessed.detail["confirmation"] == {
        "first_sent": 1, "sent": 2, "received": 0}
    assert ev.results[1].same_observation(guessed)
    assert foresight.held


def test_foresight_is_not_attempted_when_rtts_would_be_inflated_or_traces_follow(monkeypatch):
    tasks = [task("ok"), task("quiet", do="silent_after", sleep_s=0.2)]
    foresight = Foresight(lambda likely: pytest.fail("no guess without kernel timestamps"))
    asyncio.run(run_plan(tasks, RunOptions(confirm_attempts=0), foresight=foresight))
    assert not foresight.held and foresight.guessed is None

    monkeypatch.setattr(_BehaviourProbe, "rtt_from_kernel", True, raising=False)
    module = type(sys)("pathfinder_probe2")
    module.PROBE = type("P", (), {"kind": "pathfinder", "phase": 1, "preflight": lambda s, t: None,
                                  "run": PROBE.run})()
    monkeypatch.setitem(sys.modules, "pathfinder_probe2", module)
    monkeypatch.setitem(PROBE_MODULES, "pathfinder", "pathfinder_probe2")
    trace = dataclasses.replace(task("path"), kind="pathfinder", id="path/p")
    foresight = Foresight(lambda likely: pytest.fail("no guess while a trace is to come"))
    asyncio.run(run_plan([*tasks, trace], RunOptions(confirm_attempts=0), foresight=foresight))
    assert not foresight.held


def test_foresight_does_not_hold_for_an_interrupted_run(monkeypatch):
    tasks = [task("ok"), task("quiet", do="silent_after", sleep_s=2.0)]

    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        foresight = Foresight(lambda likely: "guess")
        monkeypatch.setattr(_BehaviourProbe, "rtt_from_kernel", True, raising=False)
        ev = await run_plan(tasks, RunOptions(confirm_attempts=0), stop=stop, foresight=foresight)
        return ev, foresight

    ev, foresight = asyncio.run(main())
    assert ev.interrupted and foresight.guessed is not None
    assert not foresight.held and foresight.value is None


def test_same_observation_is_every_field_but_the_timing():
    base = ProbeResult(id="a/icmp", kind="icmp", target="a", address="192.0.2.1", sent=2,
                       rtts_ms=(1.0,), started_at=1.0, duration_s=0.5)
    assert base.same_observation(dataclasses.replace(base, started_at=9.0, duration_s=3.0))
    other_values = {"id": "b/icmp", "kind": "tcp", "target": "b", "address": "192.0.2.2",
                    "sent": 3, "rtts_ms": (2.0,), "error": ProbeError.TIMEOUT,
                    "message": "m", "reached": False, "notices": ("n",),
                    "detail": {"late_errors": []}}
    observed = [f.name for f in dataclasses.fields(ProbeResult)
                if f.name not in ("started_at", "duration_s")]
    assert set(observed) == set(other_values), "a new field needs a case here"
    for name, value in other_values.items():
        assert not base.same_observation(dataclasses.replace(base, **{name: value})), name


def test_a_run_thaws_what_it_froze_unless_the_caller_keeps_it():
    """run() freezes what exists, so the run's collections skip it; it thaws it
    afterwards for a library caller, and leaves it frozen for a command that
    says `keep` (or that froze things itself)."""
    import gc

    from netprobe.executor import run

    gc.unfreeze()
    try:
        assert run([task("a")]).results[0].outcome == Outcome.OK
        assert gc.get_freeze_count() == 0
        assert run([task("b")], keep=True).results[0].outcome == Outcome.OK
        frozen = gc.get_freeze_count()
        assert frozen > 0
        run([task("c")])  # the caller's frozen objects stay frozen
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
