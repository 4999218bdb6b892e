"""The envelope around the probes: concurrency, packet rate, deadlines, errors.

Probes only measure. Here we decide what can be measured at all (privilege
preflight, host-name resolution), bound how much runs at once, enforce the
run's deadline, and turn an unexpected exception into an `internal` result so
one bug never costs the whole run. Progress goes through a callback object, so
this module never imports rich.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import gc
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from netprobe.evidence import Evidence, ProbeError, ProbeResult, not_measured, twin_id
from netprobe.probes import ProbeContext, ProbeTask, RateLimiter, get_probe


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 1000  # TCP/DNS probes in flight at once (they hold a socket each)
    rate_pps: float = 2000.0  # packets per second over the whole run; <= 0: unlimited
    deadline_s: float | None = None  # the whole run; None: derived from the plan
    resolve_timeout_s: float = 2.0
    # A probe whose every attempt timed out is tried again with this many attempts
    # before it counts as failed: at 30% random loss, 3 attempts are all lost 2.7%
    # of the time, and a lossy line must not be called down. 0 disables.
    confirm_attempts: int = 5


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, result: ProbeResult) -> None: ...
    def finish(self) -> None: ...


class NullProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, result: ProbeResult) -> None:
        pass

    def finish(self) -> None:
        pass


class Foresight:
    """Work on the evidence a run will most likely end with (its diagnosis), done
    while the silent probes wait out their timeouts rather than after them.

    Once every probe has been sent and the replies have come in, the probes still
    waiting are taken to stay silent: each gets the result its kind returns for
    silence (`silent_result`, merged with a silent confirmation round when one
    would follow), and `work` runs on that evidence in the executor's side
    thread. At the end the guess is checked against what the probes returned,
    timing aside: `held` says whether `value` stands. When it does not (a late
    reply, an ICMP error, a deadline, a stop), the caller does the work again
    on the real evidence; a wrong guess costs time, never a wrong answer.
    """

    def __init__(self, work: Callable[[Evidence], object]) -> None:
        self.work = work
        self.value: object = None
        self.held = False
        self.guessed: dict[str, ProbeResult] | None = None  # the results taken as silent

    def settle(self, results: dict[str, ProbeResult], interrupted: bool) -> None:
        guessed = self.guessed
        self.held = guessed is not None and not interrupted and all(
            real is not None and real.same_observation(guess)
            for real, guess in ((results.get(i), g) for i, g in guessed.items()))
        if not self.held:
            self.value = None


def silent_outcome(task: ProbeTask, options: RunOptions) -> ProbeResult | None:
    """The result a task ends with if nothing at all comes back, timing aside,
    confirmation round included; None when its kind cannot say."""
    make = getattr(get_probe(task.kind), "silent_result", None)
    first = make(task) if make is not None else None
    if first is None or not (needs_confirmation(first, options) and probe_phase(task.kind) == 0):
        return first
    again = make(dataclasses.replace(task, attempts=options.confirm_attempts, late_grace_s=0.0))
    return None if again is None else merge_confirmation(first, again)


def task_budget_s(task: ProbeTask, attempts: int | None = None) -> float:
    """The longest a well-behaved probe of this task may take, plus slack."""
    n = task.attempts if attempts is None else attempts
    extra = getattr(get_probe(task.kind), "extra_budget_s", None)
    return (n * task.interval_s + task.timeout_s * (2 if task.kind == "trace" else 1) + 1.0
            + task.late_grace_s + (float(extra(task)) if extra else 0.0))


def packets_of(task: ProbeTask) -> int:
    """Packets a task sends through the rate limiter (a trace sends one per hop and query)."""
    counter = getattr(get_probe(task.kind), "packets", None)
    return int(counter(task)) if counter else task.attempts


def needs_confirmation(result: ProbeResult, options: RunOptions) -> bool:
    """Silence is the one answer loss can fake; a RST or an unreachable is definite,
    and so is an ICMP error that came late (it says where the packets died)."""
    return (options.confirm_attempts > 0 and result.measured and result.received == 0
            and result.error == ProbeError.TIMEOUT and result.sent > 0
            and not result.detail.get("late_errors"))


def merge_confirmation(first: ProbeResult, again: ProbeResult) -> ProbeResult:
    """One result from a silent first round and its confirmation round.

    The confirmation round's observations stand (it is the only one that heard
    anything); the first round's silent attempts still count as sent, so loss
    is reported over every attempt.
    """
    if not again.measured:
        return first
    note = f"no reply to the first {first.sent} attempt(s); {again.received}/{again.sent} " \
           "in a confirmation round"
    return dataclasses.replace(
        again,
        sent=first.sent + again.sent,
        notices=first.notices + again.notices,
        message=note if again.message is None else f"{again.message} ({note})",
        detail={**again.detail, **_late_errors(first, again),
                "confirmation": {"first_sent": first.sent,
                                                 "sent": again.sent,
                                                 "received": again.received}},
        started_at=first.started_at,
        duration_s=None if first.duration_s is None or again.duration_s is None
        else first.duration_s + again.duration_s)


def _late_errors(*results: ProbeResult) -> dict:
    late = [e for r in results for e in r.detail.get("late_errors") or ()]
    return {"late_errors": late} if late else {}


def rtt_from_kernel(kind: str) -> bool:
    """Whether a kind's RTTs are kernel timestamps (see Probe.rtt_from_kernel)."""
    return bool(getattr(get_probe(kind), "rtt_from_kernel", False))


# Probes in flight at once that share one socket (ICMP): each is a coroutine
# (~2 KB) and an ICMP sequence number (65,536 per family and run).
SHARED_IN_FLIGHT = 20_000


def holds_descriptor(kind: str) -> bool:
    """Whether each probe of a kind holds a descriptor of its own while in flight
    (see Probe.holds_descriptor): those count against `concurrency`."""
    return bool(getattr(get_probe(kind), "holds_descriptor", True))


def probe_phase(kind: str) -> int:
    """Order of a probe kind in the run: measuring probes (0) before path discovery (1)."""
    return int(getattr(get_probe(kind), "phase", 0))


def _budget_kinds(tasks: list[ProbeTask]) -> list[ProbeTask]:
    """One task per distinct budget (kind, attempts, interval, timeout, grace), and
    every task of a kind whose budget depends on more (a trace's hops): the
    budgets of 10,000 alike probes are those of one."""
    alike: dict[tuple, ProbeTask] = {}
    own: list[ProbeTask] = []
    hooked: dict[str, bool] = {}
    for t in tasks:
        if t.kind not in hooked:
            probe = get_probe(t.kind)
            hooked[t.kind] = hasattr(probe, "extra_budget_s") or hasattr(probe, "packets")
        if hooked[t.kind]:
            own.append(t)
        else:
            alike.setdefault((t.kind, t.attempts, t.interval_s, t.timeout_s, t.late_grace_s), t)
    return [*alike.values(), *own]


def phase_budget_s(tasks: list[ProbeTask], options: RunOptions, confirm: bool) -> float:
    """How long one phase's probes may take: the slowest, with its confirmation round,
    times the waves the concurrency limit makes, plus the rate limit's pacing."""
    distinct = _budget_kinds(tasks)
    slowest = max(task_budget_s(t) for t in distinct)
    if confirm and options.confirm_attempts > 0:
        slowest += max(task_budget_s(dataclasses.replace(t, late_grace_s=0.0),
                                     options.confirm_attempts) for t in distinct)
    waves = len(tasks) / max(1, options.concurrency)
    pacing = 0.0
    if options.rate_pps > 0:
        counters = {kind: getattr(get_probe(kind), "packets", None) for kind in {t.kind for t in tasks}}
        pacing = sum(int(counters[t.kind](t)) if counters[t.kind] else t.attempts  # type: ignore[misc]
                     for t in tasks) / options.rate_pps
    return slowest * max(1.0, waves) + pacing


def by_phase(tasks: list[ProbeTask]) -> list[tuple[int, list[ProbeTask]]]:
    phase_of: dict[str, int] = {}
    phases: dict[int, list[ProbeTask]] = {}
    for t in tasks:
        phase = phase_of.get(t.kind)
        if phase is None:
            phase = phase_of[t.kind] = probe_phase(t.kind)
        phases.setdefault(phase, []).append(t)
    return sorted(phases.items())


def default_deadline_s(tasks: list[ProbeTask], options: RunOptions) -> float:
    """Budget for a run: the sum of its phases' budgets, plus slack."""
    return sum(phase_budget_s(batch, options, confirm=phase == 0)
               for phase, batch in by_phase(tasks)) + 2.0


def raise_fd_limit(wanted: int) -> int:
    """Lift the soft open-file limit towards the hard one; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
    return soft


def _preflight(tasks: list[ProbeTask]) -> dict[str, str]:
    """kind -> why it cannot be measured here (only kinds that cannot)."""
    by_kind: dict[str, list[ProbeTask]] = {}
    for t in tasks:
        by_kind.setdefault(t.kind, []).append(t)
    refused = {}
    for kind, kind_tasks in by_kind.items():
        message = get_probe(kind).preflight(kind_tasks)
        if message:
            refused[kind] = message
    return refused


async def _resolve_hosts(tasks: list[ProbeTask], timeout_s: float
                         ) -> dict[str, tuple[str, ...] | Exception]:
    """Resolve each host name once, bounded by `timeout_s`: its first IPv4 and
    its first IPv6 address (either may be missing), IPv4 first.

    Each lookup runs in a daemon thread: a resolver that hangs (a dead name
    server during an outage) is abandoned at the timeout, where asyncio's own
    executor would keep the process alive until glibc gives up.
    """
    loop = asyncio.get_running_loop()
    hosts = sorted({t.host for t in tasks if t.host and not t.address})

    def lookup(host: str, answer: asyncio.Future) -> None:
        try:
            result: list | OSError = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            result = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(lambda: answer.done() or answer.set_result(result))

    async def one(host: str) -> tuple[str, ...] | Exception:
        answer: asyncio.Future = loop.create_future()
        threading.Thread(target=lookup, args=(host, answer), daemon=True,
                         name=f"resolve {host}").start()
        try:
            infos = await asyncio.wait_for(answer, timeout_s)
        except TimeoutError as exc:
            return exc
        if isinstance(infos, OSError):
            return infos
        # IPv4 first when both exist: it is what most of these networks still run
        # (its probe keeps the plain id; the IPv6 one is its dual-stack twin).
        by_family: dict[int, str] = {}
        for info in infos:
            by_family.setdefault(info[0], str(info[4][0]))
        found = tuple(by_family[f] for f in (socket.AF_INET, socket.AF_INET6) if f in by_family)
        return found or OSError("no IPv4 or IPv6 address")

    answers = await asyncio.gather(*(one(h) for h in hosts))
    return dict(zip(hosts, answers, strict=True))


async def run_plan(tasks: list[ProbeTask], options: RunOptions | None = None,
                   progress: Progress | None = None,
                   stop: asyncio.Event | None = None,
                   while_waiting: Callable[[], object] | None = None,
                   foresight: Foresight | None = None) -> Evidence:
    """Run every task; always return evidence for every task, in plan order.

    `stop` (set by a Ctrl-C handler) ends the run early: what was measured is
    kept and the rest is marked skipped, and the evidence says `interrupted`.

    `while_waiting` is work that does not depend on the results (the static
    audit, say). It runs once, in a thread, and has finished (or raised) when
    this returns. When every probe of the first phase takes its RTTs from the
    kernel's timestamps (ICMP, TCP and DNS on Linux), it starts as soon as all
    of them have been sent, and fills the time they spend waiting for replies
    and timeouts instead of adding to the run; the replies queue in the socket
    meanwhile, and the thread yields the interpreter every few milliseconds.
    Otherwise (a kind timed when the loop runs a callback, which a busy thread
    would delay) it runs after the probes. The same thread then makes the
    report's JSON of the results already in (`ProbeResult.to_json` keeps it),
    and then `foresight`'s work (see `Foresight`), when the plan is one phase.
    """
    opts = options or RunOptions()
    progress = progress or NullProgress()
    started_at = time.time()
    t0 = time.monotonic()
    results: dict[str, ProbeResult] = {}

    def settle(result: ProbeResult) -> None:
        if result.id in results:  # first word stands (a cancelled straggler's, say)
            return
        results[result.id] = result
        progress.advance(result)

    progress.start(len(tasks))
    refused = _preflight(tasks)
    resolved = await _resolve_hosts(tasks, opts.resolve_timeout_s)

    runnable: list[ProbeTask] = []
    planned: list[ProbeTask] = []  # the tasks, each dual-stack twin after its original
    for t in tasks:
        planned.append(t)
        if t.kind in refused:
            settle(not_measured(t.id, t.kind, t.target, t.address, ProbeError.PERMISSION,
                                refused[t.kind]))
            continue
        if t.host and not t.address:
            answer = resolved[t.host]
            if isinstance(answer, Exception):
                why = getattr(answer, "strerror", None) or str(answer) or "timed out"
                settle(not_measured(
                    t.id, t.kind, t.target, None, ProbeError.RESOLVE,
                    f"host name {t.host!r} did not resolve ({why}); check the name in the "
                    f"config or this machine's resolver, or give `address:` instead"))
                continue
            t = dataclasses.replace(t, address=answer[0])
            if len(answer) > 1:  # both families: probe both, a broken one is a finding
                twin = dataclasses.replace(t, id=twin_id(t.id), address=answer[1])
                planned.append(twin)
                runnable.append(twin)
        runnable.append(t)

    # A TCP or DNS probe holds a descriptor per attempt in flight (its attempts
    # overlap); ICMP shares one socket. Lift the soft limit if we may, else run
    # fewer at once rather than fail with EMFILE half-way through.
    fd_reserve = 64
    # (a confirmation round holds `confirm_attempts`; DNS may add a TCP fallback)
    per_task = max((t.attempts for t in runnable if t.kind in ("tcp", "dns")), default=1)
    if any(t.kind in ("tcp", "dns") for t in runnable):
        per_task = max(per_task, opts.confirm_attempts) + 1
    soft_fds = raise_fd_limit(min(opts.concurrency, len(runnable)) * per_task + fd_reserve)
    concurrency = max(1, min(opts.concurrency, (soft_fds - fd_reserve) // per_task))
    ctx = ProbeContext(RateLimiter(opts.rate_pps))
    in_force = dataclasses.replace(opts, concurrency=concurrency)  # what budgets must assume
    deadline_s = opts.deadline_s or default_deadline_s(runnable, in_force)

    async def measure(t: ProbeTask) -> ProbeResult:
        # No timer per probe (10,000 of them cost 0.2 s): one watchdog per phase
        # below bounds a probe that overruns its budget.
        try:
            return await get_probe(t.kind).run(t, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must cost one result, not the run
            return not_measured(t.id, t.kind, t.target, t.address, ProbeError.INTERNAL,
                                f"internal error in the {t.kind} probe: {exc!r}")

    async def confirm(t: ProbeTask, result: ProbeResult) -> ProbeResult:
        if needs_confirmation(result, opts) and probe_phase(t.kind) == 0:
            # No second late-error window: the first round's has listened already,
            # and the same path would answer the same way.
            again = await measure(dataclasses.replace(t, attempts=opts.confirm_attempts,
                                                      late_grace_s=0.0))
            return merge_confirmation(result, again)
        return result

    loop = asyncio.get_running_loop()
    side_job: list[asyncio.Future] = []
    side_started: list[float] = []  # when it did (monotonic)

    def json_so_far() -> None:
        # the report's JSON of each result in so far: made now, not after the last
        # timeout (kept by the result; one already made costs a dict lookup)
        for result in list(results.values()):
            result.to_json()

    def job(work: Callable[[], object], foresee: bool) -> None:
        work()
        json_so_far()
        if foresee:
            guess()
            # ICMP is not bounded by --concurrency: its burst is all sent before most
            # replies are handled, so most results settled after the pass above
            json_so_far()

    def guess() -> None:
        """Run `foresight`'s work on the evidence as it stands, the probes still
        waiting taken as silent (see Foresight)."""
        assert foresight is not None
        # Guess once every attempt has left (the last probe's first attempt went just
        # before this job started; later attempts follow at their interval, the rate
        # limit permitting) and half the shortest timeout more, for the replies on
        # their way: a reply slower than that only costs the guess.
        last_sent = max(side_started[0] + max((t.attempts - 1) * t.interval_s for t in runnable),
                        t0 + (sum(t.attempts for t in runnable) / opts.rate_pps
                              if opts.rate_pps > 0 else 0.0))
        shortest_s = min(t.timeout_s for t in runnable)
        guess_at, give_up_at = last_sent + shortest_s / 2, last_sent + shortest_s
        # ...and once the loop has caught up: no result settled while this thread
        # slept (and left it the interpreter). Replies already queued in the socket
        # would otherwise be taken as silent: at 50,000 probes the loop is still
        # reading them then, and the guess, taken too early, would not hold.
        while not (stop and stop.is_set()):
            settled = len(results)
            time.sleep(0.05)  # (a whole window each time: a short one proves nothing)
            caught_up = len(results) == settled
            json_so_far()  # the replies settled meanwhile
            now = time.monotonic()
            if (now >= guess_at and caught_up) or now >= give_up_at:
                break
        task_of = {t.id: t for t in runnable}
        guessed: dict[str, ProbeResult] = {}
        likely: list[ProbeResult] = []
        for t in planned:
            result = results.get(t.id)  # (the loop thread may settle one meanwhile: a stale guess fails the check)
            if result is None:
                result = silent_outcome(task_of.get(t.id, t), opts)
                if result is None:
                    return
                guessed[t.id] = result
            likely.append(result)
        try:
            foresight.value = foresight.work(Evidence(results=tuple(likely),
                                                      started_at=started_at, duration_s=0.0))
        except Exception:  # the same work on the real evidence raises it where it belongs
            return
        foresight.guessed = guessed

    phases = by_phase(runnable)
    foresee = foresight is not None and [phase for phase, _ in phases] == [0] and all(
        rtt_from_kernel(kind) for kind in {t.kind for t in runnable})

    def start_side_job() -> None:
        if (while_waiting is not None or foresee) and not side_job:
            side_started.append(time.monotonic())
            side_job.append(loop.run_in_executor(None, job, while_waiting or (lambda: None),
                                                 foresee and not probing_over))

    async def worker(queue: collections.deque[ProbeTask], queues: tuple[collections.deque, ...],
                     batch_done: asyncio.Event, left: list[int], overlap: bool) -> None:
        # `concurrency` workers share one queue, so at most that many probes are in
        # flight; a probe's confirmation round runs in the same slot. (An
        # asyncio.Semaphore with 9,000 waiters costs 0.3 s at 10,000 probes: each
        # release scans the waiters that were already woken.)
        while queue:
            t = queue.popleft()
            if overlap and not any(queues):  # the last probe: after its send (this step), the side job
                loop.call_soon(start_side_job)
            try:
                result = await measure(t)
                if result.error is not None:
                    result = await confirm(t, result)
                settle(result)
            finally:
                left[0] -= 1
                if left[0] == 0:
                    batch_done.set()

    interrupted = probing_over = False
    pending: list[asyncio.Task] = []
    stop_wait = asyncio.ensure_future(stop.wait()) if stop else None
    end = t0 + deadline_s
    try:
        # Phases run one after the other: path discovery (traces) builds packets
        # with scapy, and doing that while RTTs are measured would inflate them.
        for i, (phase, batch) in enumerate(phases):
            batch_done, left = asyncio.Event(), [len(batch)]
            # Probes that hold a descriptor each (TCP, DNS) are bounded by
            # `concurrency`; those that share one socket (ICMP) only by memory,
            # so a burst is all sent before its replies are handled, as fping does.
            shared = {kind: not holds_descriptor(kind) for kind in {t.kind for t in batch}}
            own = collections.deque(t for t in batch if not shared[t.kind])
            common = collections.deque(t for t in batch if shared[t.kind])
            queues = (own, common)
            overlap = i == 0 and all(rtt_from_kernel(kind) for kind in shared)
            if opts.rate_pps <= 0 and common:  # (paced, the sends wait for the rate anyway)
                await _presend(common, ctx)
            batch_tasks = [asyncio.create_task(worker(queue, queues, batch_done, left, overlap))
                           for queue, slots in ((own, concurrency),
                                                (common, max(concurrency, SHARED_IN_FLIGHT)))
                           for _ in range(min(slots, len(queue)))]
            pending += batch_tasks
            # Wait on two futures (all done, or stopped), not on every task:
            # asyncio.wait re-registers on each pending task at every wakeup.
            done_wait = asyncio.ensure_future(batch_done.wait())
            phase_end = min(end, time.monotonic() + 1.0 +
                            phase_budget_s(batch, in_force, confirm=phase == 0))
            try:
                done, _ = await asyncio.wait(
                    {done_wait, *([stop_wait] if stop_wait else [])},
                    timeout=max(0.0, phase_end - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED)
            finally:
                done_wait.cancel()
            interrupted = bool(stop_wait and stop_wait in done)
            if interrupted or time.monotonic() >= end:
                break
            if not batch_done.is_set():  # a probe overran its budget: a bug, not the network
                for task in batch_tasks:  # free their sockets for the next phase
                    task.cancel()
                await asyncio.gather(*batch_tasks, return_exceptions=True)
                for t in batch:
                    if t.id not in results:
                        settle(not_measured(
                            t.id, t.kind, t.target, t.address, ProbeError.INTERNAL,
                            f"the {t.kind} probe overran its time budget; this is a bug in "
                            "netprobe, please report it"))
    finally:
        # Gather only the unfinished: gather schedules a callback per argument,
        # done or not (10,000 finished workers: 10-20 ms after the last timeout).
        unfinished = []
        for task in pending:
            if not task.done():
                task.cancel()
                unfinished.append(task)
            elif not task.cancelled():
                task.exception()  # retrieved, as gather would: not logged at exit
        if stop_wait:
            stop_wait.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if stop_wait:
            await asyncio.gather(stop_wait, return_exceptions=True)
        await ctx.aclose()

    probing_over = True  # no guessing now: the evidence is all in
    start_side_job()  # after the probes, if it could not run while they waited
    if side_job:
        await side_job[0]

    why_skipped = "run interrupted before this probe finished" if interrupted else \
        f"run deadline of {deadline_s:.1f} s reached before this probe finished"
    for t in runnable:
        if t.id not in results:
            settle(not_measured(t.id, t.kind, t.target, t.address, ProbeError.SKIPPED, why_skipped))
    if foresight is not None:
        foresight.settle(results, interrupted)
    progress.finish()
    return Evidence(results=tuple(results[t.id] for t in planned), started_at=started_at,
                    duration_s=time.monotonic() - t0, interrupted=interrupted)


async def _presend(tasks: collections.deque[ProbeTask], ctx: ProbeContext) -> None:
    """Let each kind that can (`Probe.presend`) send its tasks' first attempts in
    one burst, before a coroutine per task is made."""
    for kind in sorted({t.kind for t in tasks}):
        presend = getattr(get_probe(kind), "presend", None)
        if presend is None:
            continue
        try:
            await presend([t for t in tasks if t.kind == kind], ctx)
        except Exception:  # a bug here costs speed, not results: run() sends the rest
            continue


class StopSource(Protocol):
    """Something that may end the probing early (netprobe.signals.SignalGuard)."""

    def attach(self, stop: Callable[[], None]) -> None: ...
    def detach(self) -> None: ...


@contextlib.contextmanager
def _wake_on_signal(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Wake the loop's select when a signal arrives, so the Python-level handler
    runs at once even if the kernel delivered the signal to another thread."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)

    def drain() -> None:
        with contextlib.suppress(OSError):
            while reader.recv(512):
                pass

    loop.add_reader(reader.fileno(), drain)
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main thread: the handler cannot run here anyway
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.set_wakeup_fd(previous)
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()


def run(tasks: list[ProbeTask], options: RunOptions | None = None,
        progress: Progress | None = None,
        on_interrupt: Callable[[], None] | None = None,
        stop_source: StopSource | None = None,
        while_waiting: Callable[[], object] | None = None,
        foresight: Foresight | None = None, keep: bool = False) -> Evidence:
    """The one `asyncio.run`: a stop keeps what was measured.

    With `stop_source` (the CLI's signal guard) the run stops when it says so;
    without, Ctrl-C stops it and `on_interrupt` is told. `while_waiting` and
    `foresight`: see `run_plan`. `keep`: the caller holds what exists now until
    it exits (a command): it stays out of the collector's sight afterwards.
    """

    async def main() -> Evidence:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def interrupted() -> None:
            stop.set()
            if on_interrupt:
                on_interrupt()

        if stop_source is not None:
            with _wake_on_signal(loop):
                # the handler runs between this thread's bytecodes: hand over safely
                stop_source.attach(lambda: loop.call_soon_threadsafe(stop.set))
                try:
                    return await run_plan(tasks, options, progress, stop, while_waiting, foresight)
                finally:
                    stop_source.detach()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, interrupted)
        try:
            return await run_plan(tasks, options, progress, stop, while_waiting, foresight)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)

    # Everything built so far (config, topology, plan) lives for the whole run:
    # move it out of the collector's sight, so collections during the run only
    # walk the probes' own objects (measured: -0.1 s at 10,000 targets).
    # A caller that froze objects itself keeps them frozen. (Counting them walks
    # them all, 7 ms at 10,000 targets: a command says `keep` instead.)
    thaw = not keep and gc.get_freeze_count() == 0
    gc.freeze()
    try:
        return asyncio.run(main())
    finally:
        if thaw:
            gc.unfreeze()
