"""The one small interface every probe kind implements.

A probe measures and returns a `ProbeResult`; a network failure is data,
never an exception. The executor owns the envelope (deadline, concurrency,
turning an unexpected exception into an `internal` result), so a probe only
measures. A probe that needs a privilege says so in `preflight`, before any
packet is sent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Protocol

from netprobe.evidence import ProbeResult


@dataclass(frozen=True)
class ProbeTask:
    """One probe to send: what, to where, how hard.

    `target` is the component this probe tests (a device, a line's far end, an
    endpoint, a service); `params` holds kind-specific settings (DNS query and
    expectation, trace protocol).
    """

    id: str
    kind: str
    target: str
    address: str | None  # None until a `host` is resolved
    host: str | None = None
    port: int | None = None
    attempts: int = 3
    timeout_s: float = 1.0
    interval_s: float = 0.2  # between attempts of one probe
    # After the last attempt's timeout, how long an unanswered probe keeps
    # listening for ICMP errors that come late (a router that gives up on
    # address resolution answers "host unreachable" ~3 s later). 0: not at all.
    late_grace_s: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)


# Every field with a plain default (params has a factory: each task gets its own).
_TASK_DEFAULTS = {f.name: f.default for f in fields(ProbeTask) if f.default is not MISSING}


def new_task(**given: Any) -> ProbeTask:
    """`ProbeTask(**given)`, made as `task_of` makes it."""
    return task_of({**_TASK_DEFAULTS, "params": {}, **given})


def task_of(values: dict[str, Any]) -> ProbeTask:
    """A ProbeTask of `values`, which holds every field (start from `task_defaults()`),
    made without the frozen dataclass's one object.__setattr__ per field, nor a
    keyword argument dict: build_plan makes one per probe (10,000 endpoints:
    10-14 ms, 15-17 ms with `new_task`). Equal to `ProbeTask(**values)`, which
    tests/test_plan.py checks. The task takes `values` as its own: pass a dict
    made for it."""
    task = object.__new__(ProbeTask)
    object.__setattr__(task, "__dict__", values)
    return task


def task_defaults() -> dict[str, Any]:
    """Every field of a ProbeTask with a plain default, at that default (not
    `params`, whose default is a new dict: each task needs its own)."""
    return dict(_TASK_DEFAULTS)


class RateLimiter:
    """Token bucket over packets per second, shared by every probe in a run.

    `rate_pps <= 0` means unlimited. A burst of up to one tenth of a second's
    worth of packets may go at once, so a small plan never waits.
    """

    def __init__(self, rate_pps: float) -> None:
        self.rate_pps = rate_pps
        self._burst = max(1.0, rate_pps / 10) if rate_pps > 0 else 0.0
        self._tokens = self._burst
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, packets: int = 1) -> None:
        if self.rate_pps <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self._burst, self._tokens + (now - self._last) * self.rate_pps)
                self._last = now
                if self._tokens >= packets:
                    self._tokens -= packets
                    return
                await asyncio.sleep((packets - self._tokens) / self.rate_pps)


class ProbeContext:
    """Resources shared by the probes of one run.

    Probe modules keep their shared state (the one ICMP socket, say) in
    `resources` under their own kind, and register a closer so the executor
    releases everything at the end of the run.
    """

    def __init__(self, rate: RateLimiter | None = None) -> None:
        self.rate = rate or RateLimiter(0)
        self.resources: dict[str, Any] = {}
        self._closers: list[Any] = []

    def on_close(self, closer: Any) -> None:
        """Register a sync or async callable to run when the run ends."""
        self._closers.append(closer)

    async def aclose(self) -> None:
        for closer in reversed(self._closers):
            out = closer()
            if asyncio.iscoroutine(out):
                await out
        self._closers.clear()
        self.resources.clear()


class Probe(Protocol):
    kind: str
    # The executor runs phase 0 (measuring: icmp, tcp, dns) to completion before
    # phase 1 (path discovery: trace), so building trace packets never inflates
    # a measured RTT. A probe without the attribute is phase 0.
    phase: int
    # True when its RTTs, and whether a reply came in time, come from the kernel's
    # timestamps (ICMP and DNS: SO_TIMESTAMPNS; TCP: TCP_INFO), so other work in
    # this process while it waits cannot inflate them or turn a reply into a
    # timeout (the executor then does its callers' `while_waiting` work
    # meanwhile). Absent: False.
    rtt_from_kernel: bool
    # False when its probes share one socket (ICMP) instead of holding a
    # descriptor each: `--concurrency` then does not bound them. Absent: True.
    holds_descriptor: bool

    def preflight(self, tasks: list[ProbeTask]) -> str | None:
        """Why these tasks cannot be measured here (a missing privilege), or None.

        Called once per kind before any packet is sent; a message names the fix.
        """
        ...

    async def run(self, task: ProbeTask, ctx: ProbeContext) -> ProbeResult:
        """Measure and return; never raise for a network outcome."""
        ...

    async def presend(self, tasks: list[ProbeTask], ctx: ProbeContext) -> None:
        """Send the first attempt of each task now, before `run` is called for any
        of them; `run` then carries on from there. Optional, for kinds that share a
        socket (ICMP): a burst of bare sends ends sooner than a coroutine per task,
        and the last timeout runs from the last send. Called only when the rate is
        unlimited; a task it leaves alone, `run` sends as usual.
        """
        ...

    def silent_result(self, task: ProbeTask) -> ProbeResult | None:
        """What `run` returns when every attempt was sent and nothing at all came
        back (no reply, no error, no late error), timing aside; None when it cannot
        say. Optional: the
        executor uses it to diagnose the likely outcome while the silent probes
        wait out their timeouts, and checks the guess against what `run` returned.
        """
        ...
