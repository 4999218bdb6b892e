"""Evidence: what the probes observed, kept apart from any verdict.

A `ProbeResult` holds raw facts (packets sent, the RTT of each reply, the
error the network gave) and derives statistics as read-only properties.
`Evidence` is a whole run's results; both round-trip through JSON so a saved
run can be diagnosed again offline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any


class ProbeError(StrEnum):
    """Why a probe did not get what it asked for.

    The first group is the network saying no (a measurement); the second is
    netprobe being unable to measure (never evidence that something is down).
    """

    TIMEOUT = "timeout"  # nothing came back in time
    REFUSED = "refused"  # TCP RST: the host is up, the port is closed
    UNREACHABLE = "unreachable"  # an ICMP destination-unreachable came back
    TTL_EXCEEDED = "ttl_exceeded"  # an ICMP time-exceeded came back
    DNS_ERROR = "dns_error"  # the server answered with an error rcode
    DNS_MISMATCH = "dns_mismatch"  # the server answered, not what `expect` says
    # could not measure:
    # Our own host refused to send (ENETUNREACH from connect/sendto, a local
    # blackhole route): nothing left this machine, so it says nothing about the
    # lines or the far end; the fault to look at is this host's own routing.
    NO_ROUTE = "no_route"
    PERMISSION = "permission"  # no raw socket and no unprivileged ICMP
    RESOLVE = "resolve_error"  # the target's host name did not resolve
    SKIPPED = "skipped"  # not run (deadline reached, interrupted)
    INTERNAL = "internal"  # a bug or unexpected exception in netprobe


NOT_MEASURED_ERRORS = frozenset(
    {ProbeError.NO_ROUTE, ProbeError.PERMISSION, ProbeError.RESOLVE, ProbeError.SKIPPED,
     ProbeError.INTERNAL}
)


# A host name that resolves to both families is probed over both: the IPv4
# probe keeps the plan's id, the IPv6 one gets this suffix (`dc-app/icmp@ipv6`).
TWIN_SUFFIX = "@ipv6"


def twin_id(probe_id: str) -> str:
    return probe_id + TWIN_SUFFIX


def base_id(probe_id: str) -> str:
    """The plan's id of a probe, without a dual-stack twin's suffix."""
    return probe_id[:-len(TWIN_SUFFIX)] if probe_id.endswith(TWIN_SUFFIX) else probe_id


# Attempt outcomes (tcp/dns `detail.outcomes`) in which the target itself answered,
# even if not with what was asked: a TCP RST, a DNS error rcode, a wrong answer.
ANSWERED_OUTCOMES = frozenset({"open", "ok", "refused", "dns_error", "dns_mismatch"})


class Outcome(StrEnum):
    OK = "ok"  # got what we asked for
    FAILED = "failed"  # the network said no
    NOT_MEASURED = "not_measured"  # we could not ask


@dataclass(frozen=True)
class IcmpNotice:
    """An ICMP error that came back instead of a reply: kept as evidence."""

    source: str  # address of the router (or host) that sent it
    type: int
    code: int
    description: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "type": self.type, "code": self.code,
                "description": self.description}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IcmpNotice:
        return cls(source=data["source"], type=int(data["type"]), code=int(data["code"]),
                   description=data.get("description", ""))


@dataclass(frozen=True)
class ProbeResult:
    """One probe's observations.

    `sent` counts attempts (packets, connects, queries); `rtts_ms` has one entry
    per attempt that got the answer the probe wanted. `reached` says whether the
    target host itself answered at all (a TCP RST or a DNS SERVFAIL prove the
    host and the path to it are up even though the service is not); None when
    the probe could not tell or did not measure.
    """

    id: str
    kind: str
    target: str  # the component this probe tests
    address: str | None
    sent: int
    rtts_ms: tuple[float, ...] = ()
    error: ProbeError | None = None
    message: str | None = None  # human detail of the error
    reached: bool | None = None
    notices: tuple[IcmpNotice, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    started_at: float | None = None  # wall clock, seconds since the epoch
    duration_s: float | None = None

    # -- derived, read-only ------------------------------------------------
    @property
    def received(self) -> int:
        return len(self.rtts_ms)

    @property
    def answered(self) -> int:
        """Attempts the target answered at all: a reply, and also a TCP RST, a DNS
        error rcode or a wrong DNS answer. Attempts beyond the recorded outcomes
        (a silent first round before a confirmation round) had no answer."""
        outcomes = self.detail.get("outcomes")
        if not isinstance(outcomes, list):
            return self.received
        answered = sum(o in ANSWERED_OUTCOMES for o in outcomes)
        return max(self.received, min(answered, self.sent))

    @property
    def loss_ratio(self) -> float | None:
        """Fraction of attempts that got no answer at all. A refused connect or a
        wrong DNS answer is an answer (the host is there): see `failure_ratio`."""
        if self.sent == 0:
            return None
        return 1.0 - self.answered / self.sent

    @property
    def failure_ratio(self) -> float | None:
        """Fraction of attempts that did not get what the probe asked for."""
        if self.sent == 0:
            return None
        return 1.0 - self.received / self.sent

    @property
    def rtt_min_ms(self) -> float | None:
        return min(self.rtts_ms) if self.rtts_ms else None

    @property
    def rtt_avg_ms(self) -> float | None:
        return math.fsum(self.rtts_ms) / len(self.rtts_ms) if self.rtts_ms else None

    @property
    def rtt_max_ms(self) -> float | None:
        return max(self.rtts_ms) if self.rtts_ms else None

    @property
    def measured(self) -> bool:
        return self.error not in NOT_MEASURED_ERRORS

    @property
    def family(self) -> str | None:
        """'ipv4' or 'ipv6' by the address probed; None without one."""
        if not self.address:
            return None
        return "ipv6" if ":" in self.address else "ipv4"

    @property
    def outcome(self) -> Outcome:
        if not self.measured:
            return Outcome.NOT_MEASURED
        if self.received > 0 and self.error is None:
            return Outcome.OK
        return Outcome.FAILED

    @property
    def host_answered(self) -> bool | None:
        """Did the target host answer anything? None when not measured."""
        if not self.measured:
            return None
        if self.reached is not None:
            return self.reached
        return self.received > 0

    def same_observation(self, other: ProbeResult) -> bool:
        """Equal in everything but when it ran and how long it took: what the
        diagnosis reads (it is a pure function of these fields)."""
        return _observed(self) == _observed(other)

    # -- JSON ---------------------------------------------------------------
    def to_json(self, *, shared: bool = False) -> dict[str, Any]:
        """Made once (a result never changes), so the executor can make it while
        the other probes wait for their timeouts. A fresh dict each call, or with
        `shared` the kept one itself, for a caller that only reads it (the report:
        10,000 copies would cost 9 MB)."""
        made = self.__dict__.get("_json")
        if made is None:
            made = self._make_json()
            object.__setattr__(self, "_json", made)
        return made if shared else dict(made)

    def _make_json(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "address": self.address,
            "family": self.family,
            "sent": self.sent,
            "received": self.received,
            "answered": self.answered,
            "loss": r(self.loss_ratio),
            "rtt_ms": None if not self.rtts_ms else {
                "min": r(self.rtt_min_ms), "avg": r(self.rtt_avg_ms), "max": r(self.rtt_max_ms)},
            "rtts_ms": [round(x, 3) for x in self.rtts_ms],
            "error": None if self.error is None else str(self.error),
            "message": self.message,
            "reached": self.reached,
            "outcome": str(self.outcome),
            "notices": [n.to_json() for n in self.notices],
            "detail": self.detail,
            "started_at": self.started_at,
            "duration_s": r(self.duration_s),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProbeResult:
        error = data.get("error")
        rtts = data.get("rtts_ms")
        if rtts is None:  # a report written without raw RTTs: rebuild from stats
            received = int(data.get("received", 0))
            avg = (data.get("rtt_ms") or {}).get("avg")
            rtts = [float(avg)] * received if avg is not None else []
        return cls(
            id=data["id"],
            kind=data["kind"],
            target=data["target"],
            address=data.get("address"),
            sent=int(data["sent"]),
            rtts_ms=tuple(float(x) for x in rtts),
            error=None if error is None else ProbeError(error),
            message=data.get("message"),
            reached=data.get("reached"),
            notices=tuple(IcmpNotice.from_json(n) for n in data.get("notices", ())),
            detail=dict(data.get("detail") or {}),
            started_at=data.get("started_at"),
            duration_s=data.get("duration_s"),
        )


# every field of a result but its timing (see ProbeResult.same_observation), as one
# tuple: the check runs for every probe that was guessed silent, at the run's end
_OBSERVED = tuple(f.name for f in fields(ProbeResult) if f.name not in ("started_at", "duration_s"))
_observed = attrgetter(*_OBSERVED)


def not_measured(task_id: str, kind: str, target: str, address: str | None,
                 error: ProbeError, message: str) -> ProbeResult:
    """A result for a probe we could not run; it says why."""
    return ProbeResult(id=task_id, kind=kind, target=target, address=address, sent=0,
                       error=error, message=message)


@dataclass(frozen=True)
class Evidence:
    """All the results of one run, in plan order."""

    results: tuple[ProbeResult, ...]
    started_at: float  # wall clock, seconds since the epoch
    duration_s: float
    interrupted: bool = False

    def by_id(self) -> dict[str, ProbeResult]:
        return {r.id: r for r in self.results}

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "interrupted": self.interrupted,
            "probes": [r.to_json() for r in self.results],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evidence:
        return cls(
            results=tuple(ProbeResult.from_json(p) for p in data.get("probes", ())),
            started_at=_epoch(data.get("started_at")),
            duration_s=float(data.get("duration_s") or 0.0),
            interrupted=bool(data.get("interrupted", False)),
        )


def _epoch(value: Any) -> float:
    """Seconds since the epoch from a number or an ISO 8601 string (the report's form)."""
    if value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    from datetime import datetime

    return datetime.fromisoformat(str(value)).timestamp()
