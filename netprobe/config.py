"""Config (version 1): YAML -> validated, frozen models.

The models here define the shape; `load_config` reads a file and reports
every problem with file, line, column, field path and a hint.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """'150ms', '1s', '2m', or a bare number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 1s or 150ms, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError(f"expected a duration like 1s or 150ms, got {value!r}")
    if not 0 <= seconds <= 86400:
        raise ValueError(f"duration {value!r} is out of range (0 to 24h)")
    return seconds


def parse_ratio(value: Any) -> float:
    """'10%' or a fraction 0.1 -> 0.1."""
    if isinstance(value, bool):
        raise ValueError("expected a percentage like 10%, not a boolean")
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            ratio = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"expected a percentage like 10%, got {value!r}") from None
    elif isinstance(value, int | float):
        ratio = float(value)
    else:
        raise ValueError(f"expected a percentage like 10%, got {value!r}")
    if not 0 <= ratio <= 1:
        raise ValueError(f"percentage {value!r} is out of range (0% to 100%)")
    return ratio


def parse_address(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address, got {value!r}")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


Seconds = Annotated[float, BeforeValidator(parse_duration)]
Ratio = Annotated[float, BeforeValidator(parse_ratio)]
Address = Annotated[str, BeforeValidator(parse_address)]
Tags = dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=256)]]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LossThreshold(Frozen):
    warn: Ratio = 0.10
    crit: Ratio = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> LossThreshold:
        if self.warn > self.crit:
            raise ValueError("warn must not be above crit")
        return self


class RttThreshold(Frozen):
    warn: Seconds = 0.150
    crit: Seconds = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> RttThreshold:
        if self.warn > self.crit:
            raise ValueError("warn must not be above crit")
        return self


class Thresholds(Frozen):
    loss: LossThreshold = LossThreshold()
    rtt: RttThreshold = RttThreshold()


class Defaults(Frozen):
    timeout: Seconds = Field(1.0, description="per attempt")
    attempts: int = Field(3, ge=1, le=100, description="packets or tries per probe")
    interval: Seconds = Field(0.2, description="between the attempts of one probe")
    thresholds: Thresholds = Thresholds()


class Site(Frozen):
    kind: str | None = Field(None, description="datacenter, office, cloud, ...")
    building: str | None = None
    power: str | None = None
    conduit: str | None = None
    tags: Tags = {}


class Device(Frozen):
    address: Address
    site: Name | None = None
    path: list[Name] = Field(default_factory=list, description="devices, lines or groups crossed to reach it, in order")
    tags: Tags = {}


class Line(Frozen):
    device: Name = Field(description="the device at our end")
    far_end: Address = Field(description="the carrier's end; probed to test this line alone")
    carrier: str | None = None
    group: Name | None = Field(None, description="redundancy group")
    priority: int = Field(1, ge=1, le=1000, description="1 = preferred")
    hops: list[Address] | None = Field(None, description="addresses a trace shows when this line carries traffic (default: far_end)")
    site: Name | None = Field(None, description="where the line lands (a data centre, say)")
    tags: Tags = {}

    @property
    def trace_hops(self) -> list[str]:
        return list(self.hops) if self.hops else [self.far_end]


class Group(Frozen):
    failback: Literal["auto", "manual"] = "auto"


class DnsCheck(Frozen):
    query: str = Field(min_length=1, max_length=253)
    type: Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "PTR", "SRV"] = "A"
    expect: list[str] | None = None
    server: Address | None = Field(None, description="default: the endpoint's address")


class TraceCheck(Frozen):
    protocol: Literal["tcp", "udp", "icmp"] = "icmp"
    port: int | None = Field(None, ge=1, le=65535)
    max_hops: int = Field(16, ge=1, le=64)


class IcmpSpec(Frozen):
    kind: Literal["icmp"] = "icmp"

    @property
    def label(self) -> str:
        return "icmp"


class TcpSpec(Frozen):
    kind: Literal["tcp"] = "tcp"
    port: int = Field(ge=1, le=65535)

    @property
    def label(self) -> str:
        return f"tcp/{self.port}"


class DnsSpec(Frozen):
    kind: Literal["dns"] = "dns"
    check: DnsCheck

    @property
    def label(self) -> str:
        return "dns"


class TraceSpec(Frozen):
    kind: Literal["trace"] = "trace"
    check: TraceCheck = TraceCheck()

    @property
    def label(self) -> str:
        return "trace"


ProbeSpec = IcmpSpec | TcpSpec | DnsSpec | TraceSpec
_TCP = re.compile(r"^tcp/(\d{1,5})$")


def parse_probe_spec(value: Any) -> ProbeSpec:
    """`icmp`, `tcp/443`, `trace`, `{dns: {...}}`, `{trace: {...}}`."""
    if isinstance(value, IcmpSpec | TcpSpec | DnsSpec | TraceSpec):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text == "icmp":
            return IcmpSpec()
        if text == "trace":
            return TraceSpec()
        if m := _TCP.match(text):
            return TcpSpec(port=int(m.group(1)))
        raise ValueError(f"unknown probe {value!r}: use icmp, tcp/PORT, trace, or dns: {{query: ...}}")
    if isinstance(value, dict) and len(value) == 1:
        ((kind, body),) = value.items()
        if kind == "dns":
            return DnsSpec(check=DnsCheck.model_validate(body))
        if kind == "trace":
            return TraceSpec(check=TraceCheck.model_validate(body or {}))
        raise ValueError(f"unknown probe kind {kind!r}: use dns or trace as a mapping")
    raise ValueError(f"a probe is icmp, tcp/PORT, trace or a one-key mapping (dns: ...), got {value!r}")


Probe = Annotated[ProbeSpec, BeforeValidator(parse_probe_spec)]


class Endpoint(Frozen):
    address: Address | None = None
    host: str | None = Field(None, max_length=253, description="resolved at run time")
    site: Name | None = None
    path: list[Name] = Field(default_factory=list)
    probes: list[Probe] = Field(default_factory=lambda: [IcmpSpec()])
    backup: Name | None = Field(None, description="another endpoint that serves as this one's backup")
    timeout: Seconds | None = None
    attempts: int | None = Field(None, ge=1, le=100)
    tags: Tags = {}

    @model_validator(mode="after")
    def _address_or_host(self) -> Endpoint:
        if (self.address is None) == (self.host is None):
            raise ValueError("give exactly one of address or host")
        return self

    @field_validator("probes")
    @classmethod
    def _unique_probes(cls, probes: list[ProbeSpec]) -> list[ProbeSpec]:
        labels = [p.label for p in probes]
        dups = sorted({x for x in labels if labels.count(x) > 1})
        if dups:
            raise ValueError(f"probe listed twice: {', '.join(dups)}")
        return probes


class Config(Frozen):
    version: Literal[1]
    vantage: str = Field("netprobe", max_length=128, description="where this runs from; shown in reports")
    defaults: Defaults = Defaults()
    sites: dict[Name, Site] = {}
    devices: dict[Name, Device] = {}
    lines: dict[Name, Line] = {}
    groups: dict[Name, Group] = {}
    endpoints: dict[Name, Endpoint] = {}


def load_config(path: str) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem.

    (Minimal version: the full loader maps each problem to its line and column.)
    """
    import yaml

    from netprobe.errors import ConfigError

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(path, [f"{path}: cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"{path}: not valid YAML: {exc}"]) from None
    try:
        return Config.model_validate(data)
    except Exception as exc:  # pydantic.ValidationError
        raise ConfigError(path, [str(exc)]) from None
