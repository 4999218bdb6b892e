"""Config (version 1): YAML -> validated, frozen models.

The models here define the shape; `load_config` reads a file and reports
every problem with file, line, column, field path and a hint.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import gc
import ipaddress
import os
import re
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

# (the cap on a config's size is re-exported: it is part of what the loader promises)
from netprobe.configtext import MAX_CONFIG_BYTES as MAX_CONFIG_BYTES
from netprobe.configtext import read_text

if typing.TYPE_CHECKING:
    from netprobe.topology import Topology

# Names: letters of any script, digits, then also _ . -. Written as explicit
# ranges, not \\w: JSON Schema patterns are ECMA-262, whose \\w is ASCII-only,
# so editors would refuse `café-süd` that Python's \\w accepts. The same
# pattern string checks names in the loader (pydantic) and in `netprobe schema`.
# The ranges take the letter blocks of the Basic Multilingual Plane (Latin,
# Greek, Cyrillic, ... CJK, kana, Hangul, full-width letters and digits) and
# leave out punctuation, symbols, spaces and characters beyond U+FFFF (emoji).
_LETTERS = ("0-9A-Za-z\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u1FFF\\u2C00-\\u2DFF"
            "\\u2E80-\\u2FDF\\u3005-\\u3007\\u3041-\\u3096\\u3099-\\u30FF\\u3105-\\uD7FF"
            "\\uF900-\\uFAFF\\uFF10-\\uFF19\\uFF21-\\uFF3A\\uFF41-\\uFF5A\\uFF66-\\uFFDC")
NAME_PATTERN = f"^[{_LETTERS}][{_LETTERS}_.-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
# Lists in a config are short (a path crosses a handful of hops); a cap keeps
# a hostile list of 200,000 wrong items one problem, not 200,000.
MAX_LIST = 64

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _short(value: Any, limit: int = 40) -> str:
    """A value as it goes into a one-line message: repr, newlines escaped, cut."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def parse_duration(value: Any) -> float:
    """'150ms', '1s', '2m', or a bare number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 1s or 150ms, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError(f"expected a duration like 1s or 150ms, got {_short(value)}")
    if not 0 <= seconds <= 86400:
        raise ValueError(f"duration {_short(value)} is out of range (0 to 24h)")
    return seconds


def parse_ratio(value: Any) -> float:
    """'10%' or a fraction 0.1 -> 0.1."""
    if isinstance(value, bool):
        raise ValueError("expected a percentage like 10%, not a boolean")
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            ratio = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"expected a percentage like 10%, got {_short(value)}") from None
    elif isinstance(value, int | float):
        ratio = float(value)
    else:
        raise ValueError(f"expected a percentage like 10%, got {_short(value)}")
    if not 0 <= ratio <= 1:
        if isinstance(value, int | float) and 1 < value <= 100:
            raise ValueError(f"{_short(value)} is read as a fraction of 1; write {value:g}% for a percentage")
        raise ValueError(f"percentage {_short(value)} is out of range (0% to 100%)")
    return ratio


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # [0-9]: \d takes any script's digits
IPV4_PATTERN = f"{_OCTET}(?:\\.{_OCTET}){{3}}"
_CANONICAL_IPV4 = re.compile(IPV4_PATTERN)  # fullmatch: no leading zeros, no spaces


def parse_address(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address, got {_short(value)}")
    if _CANONICAL_IPV4.fullmatch(value):  # already as ipaddress writes it: 1 µs, not 15
        return value
    text = value.strip()
    try:
        if "." not in text and ":" not in text:  # not worth two parsers' exceptions
            raise ValueError(text)
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{_short(value)} is not an IPv4 or IPv6 address") from None


def _tag_values(value: Any) -> Any:
    """Tags are text; a bare number (`floor: 3`) is read as its text."""
    if isinstance(value, dict):
        return {k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
                for k, v in value.items()}
    return value


# The JSON Schema says what the YAML may hold (strings like "150ms"), not the
# float the loader turns it into, and bounds it as the loader does: the value
# ranges of durations, percentages, ports and addresses are spelt out as
# patterns, since `format` is only an annotation to most validators.

def _int_at_most(limit: int) -> str:
    """A regex for the decimal integers 0..limit (leading zeros left to the caller)."""
    digits = str(limit)
    alts = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    for i, d in enumerate(digits):
        if d != "0":
            low = "0" if i else "1"
            if int(d) - 1 >= int(low) or (i and d != "0"):
                rest = len(digits) - i - 1
                alts.append(digits[:i] + f"[{low}-{int(d) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    alts.append(digits)
    return "(?:" + "|".join(alts) + ")"


def _decimal_at_most(limit: int) -> str:
    """A decimal (digits, an optional fraction) whose value is at most `limit`."""
    return f"0*(?:{_int_at_most(limit - 1)}(?:\\.[0-9]+)?|{limit}(?:\\.0+)?)"


# Durations are 0 to 24 h in any unit; a timeout is at least 1 ms (the lower
# bound is exact for ms and s, to 0.1 ms for m and h, which nobody writes).
_UNIT_LIMITS = (("ms", 86_400_000), ("s", 86_400), ("m", 1_440), ("h", 24))
_AT_LEAST_1MS = {"ms": "(?=0*[1-9])", "s": "(?=0*[1-9]|0*\\.0{0,2}[1-9])",
                 "m": "(?=0*[1-9]|0*\\.0{0,3}[1-9])", "h": "(?=0*[1-9]|0*\\.0{0,5}[1-9])"}


def _duration_pattern(min_1ms: bool) -> str:
    alts = []
    for unit, limit in _UNIT_LIMITS:
        low = _AT_LEAST_1MS[unit] if min_1ms else ""
        suffix = "[ \\t]*s?" if unit == "s" else f"[ \\t]*{unit}"  # a bare number is seconds
        alts.append(f"{low}{_decimal_at_most(limit)}{suffix}")
    return "^[ \\t]*(?:" + "|".join(alts) + ")[ \\t]*$"


_DURATION_SCHEMA = {
    "anyOf": [{"type": "number", "minimum": 0, "maximum": 86400},
              {"type": "string", "pattern": _duration_pattern(False)}],
    "description": "seconds, or a duration like 150ms, 1s, 2m (at most 24h)",
}
_TIMEOUT_SCHEMA = {
    "anyOf": [{"type": "number", "minimum": 0.001, "maximum": 86400},
              {"type": "string", "pattern": _duration_pattern(True)}],
    "description": "seconds, or a duration like 150ms, 1s (at least 1ms, at most 24h)",
}
_RATIO_SCHEMA = {
    "anyOf": [{"type": "number", "minimum": 0, "maximum": 1},
              {"type": "string", "pattern": f"^[ \\t]*{_decimal_at_most(100)}[ \\t]*%[ \\t]*$"}],
    "description": "a percentage like 10% (0% to 100%), or a fraction 0.1",
}


def _ipv6_pattern() -> str:
    """Every textual IPv6 form Python's ipaddress reads: eight groups, or fewer
    around one '::' (which stands for at least one), an IPv4 tail counting as
    two groups, and a %scope."""
    h = "[0-9A-Fa-f]{1,4}"
    alts = [f"(?:{h}:){{7}}{h}", f"(?:{h}:){{6}}{IPV4_PATTERN}"]
    for left_n in range(8):
        left = f"(?:{h}:){{{left_n - 1}}}{h}" if left_n else ""
        room = 7 - left_n  # groups the right side may still have
        right = f"(?:{h}(?::{h}){{0,{room - 1}}})?" if room else ""
        alts.append(f"{left}::{right}")
        if left_n <= 5:
            alts.append(f"{left}::(?:{h}:){{0,{5 - left_n}}}{IPV4_PATTERN}")
    return f"(?:{'|'.join(alts)})(?:%[^%]+)?"


IPV6_PATTERN = _ipv6_pattern()
_ADDRESS_SCHEMA = {"type": "string", "description": "an IPv4 or IPv6 address",
                   "pattern": f"^[ \\t\\n\\r]*(?:{IPV4_PATTERN}|{IPV6_PATTERN})[ \\t\\n\\r]*$"}
_TAGS_SCHEMA = {"type": "object", "description": "free-form facts, e.g. conduit: river-bridge",
                "propertyNames": {"maxLength": 64},
                "additionalProperties": {"type": ["string", "number"]}}

def _whole(value: Any) -> Any:
    """3.0 is the whole number 3 (JSON Schema's `integer` and YAML editors agree);
    booleans and 3.5 stay what they are, for the strict int check to refuse."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


# a whole number: strict (no booleans, no text), but 3.0 reads as 3. Where it is
# optional, the bounds go inside the Annotated, before the validator
# (`Annotated[int, Field(ge=1), BeforeValidator(_whole)] | None`): elsewhere
# pydantic writes them to the schema as `ge`/`le`, keywords no validator knows.
Whole = Annotated[int, BeforeValidator(_whole)]
Seconds = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]


def parse_timeout(value: Any) -> float:
    """A duration that must leave time for an answer: at least 1 ms."""
    seconds = parse_duration(value)
    if seconds < 0.001:
        raise ValueError(f"timeout {value!r} leaves no time for an answer: use at least 1ms")
    return seconds


# A timeout of 0 would discard every reply and call everything down.
Timeout = Annotated[float, BeforeValidator(parse_timeout), WithJsonSchema(_TIMEOUT_SCHEMA)]
Ratio = Annotated[float, BeforeValidator(parse_ratio), WithJsonSchema(_RATIO_SCHEMA)]
Address = Annotated[str, BeforeValidator(parse_address), WithJsonSchema(_ADDRESS_SCHEMA)]
Tags = Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=256)]],
                 Field(max_length=MAX_LIST),
                 BeforeValidator(_tag_values), WithJsonSchema(_TAGS_SCHEMA)]


def _no_tags() -> Any:
    """A tags field's default: a new {} from a factory. A plain `= {}` is deep-copied
    for every entry (validating 10,000 endpoints: 74 ms with it, 65 ms without);
    the schema still says `default: {}`."""
    return Field(default_factory=dict, json_schema_extra={"default": {}})


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LossThreshold(Frozen):
    warn: Ratio = 0.10
    crit: Ratio = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> LossThreshold:
        if self.warn > self.crit:
            raise ValueError(f"warn ({self.warn:.0%}) must not be above crit ({self.crit:.0%})")
        return self


class RttThreshold(Frozen):
    warn: Seconds = 0.150
    crit: Seconds = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> RttThreshold:
        if self.warn > self.crit:
            raise ValueError(f"warn ({self.warn * 1000:g}ms) must not be above crit "
                             f"({self.crit * 1000:g}ms)")
        return self


class Thresholds(Frozen):
    loss: LossThreshold = LossThreshold()
    rtt: RttThreshold = RttThreshold()


class Defaults(Frozen):
    timeout: Timeout = Field(1.0, description="per attempt")
    attempts: Whole = Field(3, strict=True, ge=1, le=100, description="packets or tries per probe")
    interval: Seconds = Field(0.2, description="between the attempts of one probe")
    thresholds: Thresholds = Thresholds()


class Site(Frozen):
    kind: str | None = Field(None, description="datacenter, office, cloud, ...")
    building: str | None = None
    power: str | None = None
    conduit: str | None = None
    tags: Tags = _no_tags()


class Device(Frozen):
    address: Address
    site: Name | None = None
    path: list[Name] = Field(default_factory=list, max_length=MAX_LIST, description="devices, lines or groups crossed to reach it, in order")
    tags: Tags = _no_tags()


class Line(Frozen):
    device: Name = Field(description="the device at our end")
    far_end: Address = Field(description="the carrier's end; probed to test this line alone")
    carrier: str | None = None
    group: Name | None = Field(None, description="redundancy group")
    priority: Whole = Field(1, strict=True, ge=1, le=1000, description="1 = preferred")
    hops: list[Address] | None = Field(None, max_length=MAX_LIST, description="addresses a trace shows when this line carries traffic (default: far_end)")
    site: Name | None = Field(None, description="where the line lands (a data centre, say)")
    tags: Tags = _no_tags()

    @property
    def trace_hops(self) -> list[str]:
        return list(self.hops) if self.hops else [self.far_end]


class Group(Frozen):
    failback: Literal["auto", "manual"] = "auto"


@functools.lru_cache(maxsize=4096)
def _dns_name_problem(query: str) -> str | None:
    """Why `query` is not a DNS name, or None. Cached: a large config asks the
    same few names of thousands of endpoints (dnspython's parser: 16 µs a name)."""
    import dns.exception
    import dns.name

    try:
        dns.name.from_text(query)
    except dns.exception.DNSException as exc:
        return str(exc)
    return None


class DnsCheck(Frozen):
    query: str = Field(min_length=1, max_length=253)

    @field_validator("query")
    @classmethod
    def _a_dns_name(cls, query: str) -> str:
        problem = _dns_name_problem(query)
        if problem is not None:
            raise ValueError(f"{query!r} is not a DNS name ({problem})")
        return query

    type: Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "PTR", "SRV"] = "A"
    expect: list[str] | None = Field(None, max_length=MAX_LIST)
    server: Address | None = Field(None, description="default: the endpoint's address")
    port: Whole = Field(53, strict=True, ge=1, le=65535, description="the server's port")


class TraceCheck(Frozen):
    protocol: Literal["tcp", "udp", "icmp"] = "icmp"
    port: Annotated[int, Field(strict=True, ge=1, le=65535), BeforeValidator(_whole)] | None = None
    max_hops: Whole = Field(16, strict=True, ge=1, le=64)


class IcmpSpec(Frozen):
    kind: Literal["icmp"] = "icmp"

    @property
    def label(self) -> str:
        return "icmp"


class TcpSpec(Frozen):
    kind: Literal["tcp"] = "tcp"
    port: Whole = Field(strict=True, ge=1, le=65535)

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
            port = int(m.group(1))
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} in {text!r} is out of range (1 to 65535)")
            return TcpSpec(port=port)
        if port_match := re.match(r"^tcp\W*(\d{1,5})$", text):
            hint_text = f"did you mean 'tcp/{port_match.group(1)}'?"
        elif text.startswith("tcp"):
            hint_text = "a tcp probe names a port number: tcp/443"
        elif text == "dns":
            hint_text = "dns takes a mapping: dns: {query: NAME}"
        elif close := difflib.get_close_matches(text, ["icmp", "trace"], n=1, cutoff=0.6):
            hint_text = f"did you mean {close[0]!r}?"
        else:
            hint_text = "use icmp, tcp/PORT, trace, or dns: {query: NAME}"
        raise ValueError(f"unknown probe {_short(value)} ({hint_text})")
    if isinstance(value, dict) and len(value) == 1:
        ((kind, body),) = value.items()
        if kind == "dns":
            return DnsSpec(check=DnsCheck.model_validate(body))
        if kind == "trace":
            return TraceSpec(check=TraceCheck.model_validate(body or {}))
        raise ValueError(f"unknown probe kind {kind!r}: use dns or trace as a mapping")
    raise ValueError(f"a probe is icmp, tcp/PORT, trace or a one-key mapping (dns: ...), got {_short(value)}")


_PROBE_KINDS = ("icmp", "tcp", "dns", "trace")


@functools.lru_cache(maxsize=1024)
def _probe_from_text(text: str) -> ProbeSpec:
    """`parse_probe_spec` of a text form, once per distinct text: a large config
    writes the same few (icmp, tcp/443) for thousands of endpoints. The specs
    are frozen, so the endpoints share them. A text that is refused raises
    every time (lru_cache keeps only results)."""
    return parse_probe_spec(text)


def _probe_input(value: Any) -> Any:
    """Turn the YAML forms of a probe into what the tagged union validates.

    The string forms become specs here; the mapping forms become
    `{kind, check}` so pydantic validates the body and reports its errors
    field by field (`...probes[1].dns.query`). `{kind: ...}` (what
    `model_dump` writes) passes through, so a saved topology loads again.
    """
    if isinstance(value, str):
        return _probe_from_text(value)
    if isinstance(value, dict) and "kind" not in value:
        if len(value) != 1:
            keys = ", ".join(repr(k) for k in value) or "none"
            raise ValueError(f"a probe mapping has exactly one key, dns or trace (got {keys})")
        ((kind, body),) = value.items()
        if kind == "dns":
            return {"kind": "dns", "check": body}
        if kind == "trace":
            return {"kind": "trace", "check": {} if body is None else body}
        if kind in ("icmp", "tcp"):
            raise ValueError(f"write {kind} probes as text: icmp, tcp/443")
        raise ValueError(f"unknown probe kind {kind!r}: a probe mapping is dns: {{...}} or trace: {{...}}")
    if isinstance(value, int | float | bool) or value is None:
        raise ValueError(f"a probe is icmp, tcp/PORT, trace or dns: {{query: NAME}}, got {_short(value)}")
    return value


# pydantic resolves "$ref"s in a WithJsonSchema while it builds the schema, and
# these two models are not in it yet; config_json_schema() adds and links them.
_REF_LATER = "x-netprobe-ref"
# the loader strips whitespace around the text forms (Python's str.strip)
_PORT = "(?:0{0,4}[1-9]|0{0,3}[1-9][0-9]|0{0,2}[1-9][0-9]{2}|0?[1-9][0-9]{3}|" \
        "[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_PROBE_TEXT = f"^\\s*(?:icmp|trace|tcp/{_PORT})\\s*$"
_PROBE_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": _PROBE_TEXT, "description": "icmp, trace, or tcp/PORT"},
        {"type": "object", "properties": {"dns": {_REF_LATER: "DnsCheck"}},
         "required": ["dns"], "additionalProperties": False},
        {"type": "object",
         "properties": {"trace": {"anyOf": [{_REF_LATER: "TraceCheck"}, {"type": "null"}]}},
         "required": ["trace"], "additionalProperties": False},
    ],
}

Probe = Annotated[ProbeSpec, Field(discriminator="kind"), BeforeValidator(_probe_input),
                  WithJsonSchema(_PROBE_SCHEMA)]


# The probe of an endpoint that names none; frozen, so one object serves them all.
_DEFAULT_ICMP = IcmpSpec()


class Endpoint(Frozen):
    address: Address | None = None
    host: str | None = Field(None, max_length=253, description="resolved at run time")
    site: Name | None = None
    path: list[Name] = Field(default_factory=list, max_length=MAX_LIST)
    probes: list[Probe] = Field(default_factory=lambda: [_DEFAULT_ICMP], min_length=1,
                                max_length=MAX_LIST)
    backup: Name | None = Field(None, description="another endpoint that serves as this one's backup")
    timeout: Timeout | None = None
    attempts: Annotated[int, Field(strict=True, ge=1, le=100), BeforeValidator(_whole)] | None = None
    tags: Tags = _no_tags()

    @model_validator(mode="after")
    def _address_or_host(self) -> Endpoint:
        if self.address is not None and self.host is not None:
            raise ValueError("give address or host, not both")
        if self.address is None and self.host is None:
            raise ValueError("give an address (an IP) or a host (a name resolved at run time)")
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


# ---------------------------------------------------------------------------
# Loading: YAML text -> Config, with every problem at its line and column.
# ---------------------------------------------------------------------------


# Problems shown at once; a hostile file can hold hundreds of thousands, and
# a person fixes the first ones first.
MAX_PROBLEMS_SHOWN = 50


class _Problem(NamedTuple):  # a tuple: a hostile file makes 100,000s of them
    mark: Any  # netprobe.yamltree.Mark; None for file-level problems
    path: tuple[Any, ...]
    message: str
    # a costly addition (did you mean ...?), worked out only for problems shown
    hint: Callable[[], str] | None = None
    about_name: bool = False  # the entry's name is wrong, not its body


# Sections of named entries, and the model of an entry.
_SECTIONS: dict[str, type[BaseModel]] = {"sites": Site, "devices": Device, "lines": Line,
                                         "groups": Group, "endpoints": Endpoint}


def load_config(path: str | os.PathLike[str], *, keep: bool = False) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem.

    Each problem is one line, `FILE:LINE:COL: field.path: message (hint)`, or
    `FILE: message` when the file itself cannot be read. YAML is read safely
    (no tags beyond plain values, duplicate keys rejected, alias expansion
    capped); the schema and the cross-references are then checked, and every
    problem found at a stage is reported, sorted by position.

    `keep`: the caller holds the config until the process exits (a command, not
    a library caller or a test). What the load built is then frozen out of the
    collector's sight (gc.freeze) before collection resumes: otherwise the next
    collections walk every object just made, only to find them all alive (10,000
    endpoints with three probes each: load, topology and plan in 0.54 s, 0.41 s
    frozen).
    """
    # The loader builds a tree of up to 250,000 nodes and, for a hostile file,
    # as many problems, none of them cyclic: the collector's passes over that
    # growing heap cost more than the work itself (2x on a 2 MB file).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        config = _load_config(path)
        if keep:
            gc.freeze()
        return config
    finally:
        if was_enabled:
            gc.enable()


def _load_config(path: str | os.PathLike[str]) -> Config:
    from netprobe.errors import ConfigError

    source = os.fspath(path)
    text, problem = read_text(source)
    if problem is not None:
        raise ConfigError(source, [f"{source}:{problem}" if problem[:1].isdigit()
                                   else f"{source}: {problem}"])
    config = _load_plain(text)
    if config is not None:
        return config
    from netprobe.yamlpos import YamlError, parse_yaml

    try:
        parsed = parse_yaml(text)
    except YamlError as exc:
        where = f"{source}:{exc.mark}: " if exc.mark else f"{source}: "
        raise ConfigError(source, [f"{where}{exc.message}"]) from None
    except RecursionError:  # the builder has its own stack; this is belt and braces
        raise ConfigError(source, [f"{source}: nested too deeply to read"]) from None

    root = parsed.root
    if root is None:
        raise ConfigError(source, [f"{source}:1:1: the file is empty; a config starts with 'version: 1'"])
    if root.kind != "map":
        raise ConfigError(source, [
            f"{source}:{root.mark}: the top level must be a mapping of settings "
            f"(version: 1, devices: ..., endpoints: ...), got {_describe(parsed.data, root)}"])

    problems = _ProblemSet()
    problems.update(_Problem(p.mark, p.path, p.message) for p in parsed.problems)
    problems.update(_control_characters(parsed.data, root))
    problems.update(_check_version(parsed.data, root))
    problems.update(_check_address_or_host(parsed.data, root))
    config: Config | None = None
    invalid_entries: set[tuple[str, Any]] = set()  # (section, name) the schema refused
    # a value YAML already complained about (a bad tag, a too-long number) is
    # not reported a second time by the schema
    said = {p.path for p in parsed.problems if p.replaced}
    try:
        config = _validate(parsed.data, root, invalid_entries, problems.add if not said else (
            lambda p: None if any(p.path[:n] in said for n in range(len(p.path) + 1))
            else problems.add(p)))
    except (RecursionError, MemoryError):
        problems.add(_Problem(root.mark, (), "the document is too large or too deep to check"))
    # The cross-references are checked even when the schema is not met (on what
    # of it is valid), so one run reports every problem it can find.
    _cross_check(config if config is not None else _lenient_config(parsed.data, invalid_entries),
                 root, problems.add)
    if problems.total:
        raise ConfigError(source, problems.format(source, root), problems.total)
    assert config is not None
    return config


# C0 and C1 controls (ESC starts a terminal escape sequence), and the Unicode
# marks that reorder text on screen (a name that displays as another name).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _texts(data: Any) -> list[str]:
    """Every string key and value under `data` (an aliased container once)."""
    texts: list[str] = []
    seen: set[int] = set()
    stack = [data]
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            texts += [k for k in value if isinstance(k, str)]
            items = value.values()
        elif isinstance(value, list):
            items = value
        else:
            continue
        for item in items:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict | list):
                stack.append(item)
    return texts


def _control_characters(data: Any, root: Any) -> list[_Problem]:
    """Text with control characters, in keys and values: config text reaches
    terminals, mail and tickets, so it must print as what it is."""
    if not _CONTROL.search(" ".join(_texts(data))):
        return []  # the common case: one regex pass, no paths built
    problems: list[_Problem] = []
    seen: set[int] = set()  # an aliased value is checked (and reported) once
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    search = _CONTROL.search
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            if id(value) in seen:
                continue
            seen.add(id(value))
            for key, item in value.items():
                if isinstance(key, str) and (m := search(key)):
                    _matched, key_mark, node, _found = _locate(root, (*path, key))
                    problems.append(_Problem(key_mark or node.mark, (*path, key),
                                             _control_message(m.group())))
                if isinstance(item, str):
                    if m := search(item):
                        problems.append(_Problem(_locate(root, (*path, key))[2].mark,
                                                 (*path, key), _control_message(m.group())))
                elif isinstance(item, dict | list):
                    stack.append((item, (*path, key)))
        elif isinstance(value, list):
            if id(value) in seen:
                continue
            seen.add(id(value))
            for i, item in enumerate(value):
                if isinstance(item, str):
                    if m := search(item):
                        problems.append(_Problem(_locate(root, (*path, i))[2].mark, (*path, i),
                                                 _control_message(m.group())))
                elif isinstance(item, dict | list):
                    stack.append((item, (*path, i)))
    return problems


def _control_message(char: str) -> str:
    what = "a line break" if char in "\r\n" else "a tab" if char == "\t" else \
        f"a control character (U+{ord(char):04X})"
    return (f"contains {what}; names and text in a config are printed in terminals, "
            "reports and tickets, so they must be one line of plain text")


def _lenient_config(data: dict[Any, Any], invalid_entries: set[tuple[str, Any]]) -> Config:
    """The part of a config that is valid, for the cross-checks when the whole
    is not: each entry keeps the fields that validate on their own, and gets
    None (or the default) for the others. Never used to run anything."""
    sections: dict[str, dict[str, Any]] = {}
    for section, model in _SECTIONS.items():
        raw = data.get(section)
        sections[section] = {
            name: _lenient_entry(model, body, (section, name) not in invalid_entries)
            for name, body in raw.items() if isinstance(name, str)} if isinstance(raw, dict) else {}
    return Config.model_construct(version=1, **sections)


_FIELD_ADAPTERS: dict[tuple[type[BaseModel], str], Any] = {}


# The fields the cross-checks read; the others of an invalid entry are not
# worth validating one by one.
_CROSS_CHECKED = frozenset({"device", "group", "priority", "site", "path", "backup", "host",
                            "probes"})


@functools.cache
def _empty_entry(model: type[BaseModel]) -> BaseModel:
    """One shared stand-in for the entries that are not even a mapping."""
    return model.model_construct(_fields_set=set(), **_lenient_defaults(model)[0])


@functools.cache
def _lenient_defaults(model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per field: what an entry gets when the field is missing (its default),
    and when it is invalid (nothing). Worked out once per model: pydantic
    inspects a default factory's signature on every call. Shared, read only."""
    missing, invalid = {}, {}
    for name, info in model.model_fields.items():
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        missing[name] = default
        invalid[name] = type(default)() if isinstance(default, list | dict) else None
    return missing, invalid


def _lenient_entry(model: type[BaseModel], body: Any, valid: bool) -> BaseModel:
    from pydantic import TypeAdapter

    missing, invalid = _lenient_defaults(model)
    if not isinstance(body, dict):
        return _empty_entry(model)
    if valid:
        with contextlib.suppress(ValidationError):
            return model.model_validate(body)
    if _CROSS_CHECKED.isdisjoint(body):
        return _empty_entry(model)
    values: dict[str, Any] = {}
    given: set[str] = set()
    for name, info in model.model_fields.items():
        if name not in body or name not in _CROSS_CHECKED:
            values[name] = missing[name]
            continue
        adapter = _FIELD_ADAPTERS.get((model, name))
        if adapter is None:
            annotation = info.annotation
            if info.metadata:  # the field's own bounds (ge, pattern, strict)
                annotation = Annotated[annotation, *info.metadata]
            adapter = _FIELD_ADAPTERS[(model, name)] = TypeAdapter(annotation)
        try:
            values[name] = adapter.validate_python(body[name])
            given.add(name)
        except (ValidationError, ValueError, TypeError):
            # nothing (an empty list where a list is meant), never the default,
            # which the cross-checks would take for what was written
            values[name] = invalid[name]
    return model.model_construct(_fields_set=given, **values)


def _load_plain(text: str) -> Config | None:
    """The happy path, 3x faster: a config in plain YAML that passes every check.

    Read without positions (`parse_plain`); None when the text is not plain
    YAML or any check finds a problem: the caller then reads it again with
    positions, and every problem is reported from there, as before. A text
    that passed before is not read at all: its data comes from `configcache`;
    a large one that did not may have been read already (`readahead`).
    """
    from netprobe import configcache, readahead

    ahead = readahead.claim(text)  # started before the imports, for this very text
    entry = ahead.entry if ahead is not None else configcache.key(text)
    kept = configcache.get(entry)
    if kept is not None:
        config = _checked(kept)
        if config is not None:
            return config
    got = ahead.result() if ahead is not None else None
    if got is not None:
        data, texts = got  # what parse_plain gave the child for this text
    else:
        from netprobe.yamlpos import parse_plain

        texts = []  # every string key and value, as the reader met them
        data = parse_plain(text, texts)
    if not isinstance(data, dict):
        return None
    version = data.get("version")  # as _check_version: 1 or 1.0, never true
    if type(version) not in (int, float) or version != 1:
        return None
    # one regex pass over all the text; a control character anywhere sends the
    # file down the full path, which says where
    if _CONTROL.search(" ".join(texts)):
        return None
    config = _checked(data)
    if config is not None:  # (a kept entry that failed its checks is replaced)
        configcache.put(entry, data)
    return config


def _checked(data: dict[str, Any]) -> Config | None:
    """The schema and the cross-checks on plain data; None at the first problem."""
    from netprobe.yamltree import Mark, YNode

    # positions are only for messages, and any message sends us down the full path
    nowhere = YNode("map", Mark(1, 1))
    try:
        config = Config.model_validate(data)
    except (ValidationError, RecursionError, MemoryError):
        return None
    found: list[_Problem] = []
    _cross_check(config, nowhere, found.append)
    return None if found else config


def load_topology(path: str | os.PathLike[str], *, keep: bool = False) -> Topology:
    """`load_config` then `build_topology`: the pipeline's first stage. `keep`: as
    for load_config."""
    from netprobe.topology import build_topology

    return build_topology(load_config(path, keep=keep), source=os.fspath(path))


def _check_version(data: dict[Any, Any], root: Any) -> list[_Problem]:
    if "version" not in data:
        return [_Problem(root.mark, (), "missing 'version: 1' (the config format version) "
                                        "at the top of the file")]
    value = data["version"]
    entry = root.entries["version"]
    if isinstance(value, int) and not isinstance(value, bool) and value == 1:
        return []
    if isinstance(value, float) and value == 1:
        return []
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [_Problem(entry[1].mark, ("version",),
                         f"version {value} is not supported: this netprobe reads version 1 configs")]
    return [_Problem(entry[1].mark, ("version",),
                     f"expected the number 1, got {_describe(value, entry[1])}")]


def _check_address_or_host(data: dict[Any, Any], root: Any) -> list[_Problem]:
    """Endpoint's address-or-host rule on the raw data.

    pydantic runs a model's own check only when all its fields are valid; this
    says it even when other fields of the endpoint are wrong too.
    """
    endpoints = data.get("endpoints")
    if not isinstance(endpoints, dict):
        return []
    problems = []
    for name, body in endpoints.items():
        if not isinstance(body, dict):
            continue
        has_address, has_host = body.get("address") is not None, body.get("host") is not None
        if has_address == has_host:
            key_mark = root.entries["endpoints"][1].entries[name][0]
            message = ("give address or host, not both" if has_address else
                       "give an address (an IP) or a host (a name resolved at run time)")
            problems.append(_Problem(key_mark, ("endpoints", name), message))
    return problems


# -- schema errors, made human ---------------------------------------------

def _describe(value: Any, node: Any = None) -> str:
    """What the user wrote, for `got ...`: their spelling where YAML changed it."""
    if node is not None and getattr(node, "source", None) is not None and not isinstance(value, str):
        shown = " ".join(node.source.split())  # as written, unquoted: yes, 1e999, ~
        return shown if len(shown) <= 30 else shown[:26] + "..."
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        digits = len(str(abs(value)))
        return str(value) if digits <= 20 else f"a {digits}-digit number"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _short(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _type_at(loc: tuple[Any, ...]) -> Any:
    """The model class (or type) that pydantic's `loc` points into, or None."""
    tp: Any = Config
    for element in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(element) if isinstance(element, str) else None
            if field is None:
                return None
            tp = field.annotation
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin is list:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            members = [_unwrap(m) for m in typing.get_args(tp)]
            by_kind = {m.model_fields["kind"].default: m for m in members
                       if isinstance(m, type) and issubclass(m, BaseModel) and "kind" in m.model_fields}
            if element in by_kind:  # a tagged-union branch (the probes)
                tp = by_kind[element]
                continue
            models = [m for m in members if m is not type(None)]
            if len(models) != 1:
                return None
            tp = models[0]
            field = tp.model_fields.get(element) if isinstance(tp, type) and issubclass(tp, BaseModel) else None
            if field is None:
                return None
            tp = field.annotation
        else:
            return None
    return _unwrap(tp)


def _probe_loc_candidates(loc: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """pydantic says `probes.1.dns.check.query`; the YAML says `probes[1].dns.query`."""
    for i in range(len(loc) - 2):
        if loc[i] == "probes" and isinstance(loc[i + 1], int) and loc[i + 2] in _PROBE_KINDS:
            head, tag, rest = loc[: i + 2], loc[i + 2], loc[i + 3:]
            inner = rest[1:] if rest[:1] == ("check",) else rest
            return [(*head, tag, *inner), (*head, *rest), (*head, *inner)]
    return [loc]


def _locate(root: Any, loc: tuple[Any, ...]) -> tuple[int, Any, Any, tuple[Any, ...]]:
    """Walk the YAML nodes along loc: (how many elements matched, key mark, node, yaml path)."""
    node, key_mark, path = root, None, ()
    for depth, element in enumerate(loc):
        found = node.child(element)
        if found is None:
            return depth, key_mark, node, path
        key_mark, node = found
        path = (*path, element)
    return len(loc), key_mark, node, path


# Entries of a section validated at once (see _validate).
_VALIDATION_PART = 2000


def _validate(data: dict[Any, Any], root: Any, invalid_entries: set[tuple[str, Any]],
              add: Callable[[_Problem], None]) -> Config | None:
    """The Config, or None with each schema problem given to `add`.

    Validated a part at a time: the top level (sections left empty), then each
    section's entries, _VALIDATION_PART at once. pydantic lists every error of
    a validation at once, and 100,000 invalid entries would hold hundreds of
    MB of error records; a part at a time holds a few. The (section, name) of
    each refused entry goes into `invalid_entries`.
    """
    # One value reached through 1,000 aliases fails 1,000 times, alike: its
    # message is worked out once (difflib hints are costly).
    said: dict[tuple[Any, ...], str] = {}
    top = {k: ({} if k in _SECTIONS and isinstance(v, dict) else v) for k, v in data.items()}
    config: Config | None = None
    try:
        config = Config.model_validate(top)
    except ValidationError as exc:
        for problem in _problems_of(exc, (), root, said, invalid_entries):
            add(problem)
    sections: dict[str, dict[str, Any]] = {}
    for section, model in _SECTIONS.items():
        entries = data.get(section)
        if not isinstance(entries, dict):
            continue
        adapter = _section_adapter(section, model)
        items = []
        first_of: dict[int, str] = {}  # id of a body -> the first entry that has it
        copies: dict[str, str] = {}  # an entry whose body is an alias -> the first entry
        for name, body in entries.items():
            if isinstance(body, dict):
                if id(body) in first_of:  # `name: *anchor`: the same body, validated once
                    copies[name] = first_of[id(body)]
                    continue
                first_of[id(body)] = name
            if isinstance(body, dict) or body is None:
                items.append((name, body))
                continue
            # not even a mapping: said here, cheaply (a hostile file has 100,000s)
            invalid_entries.add((section, name))
            add(_Problem(_locate(root, (section, name))[2].mark, (section, name),
                         f"expected a mapping (key: value), got "
                         f"{_describe(body, _locate(root, (section, name))[2])}"))
        aliased = set(copies.values())
        replay: dict[str, list[_Problem]] = {}

        def add_noting(problem: _Problem, aliased: set[str] = aliased,
                       replay: dict[str, list[_Problem]] = replay) -> None:
            if problem.path[1:2] and problem.path[1] in aliased and not problem.about_name:
                replay.setdefault(problem.path[1], []).append(problem)
            add(problem)

        validated: dict[str, Any] = {}
        for start in range(0, len(items), _VALIDATION_PART):
            try:
                validated.update(adapter.validate_python(
                    dict(items[start:start + _VALIDATION_PART])))
            except ValidationError as exc:
                for problem in _problems_of(exc, (section,), root, said, invalid_entries):
                    add_noting(problem)
        if copies:  # their names are checked; their bodies' problems are the first's
            try:
                _names_adapter().validate_python(dict.fromkeys(copies))
            except ValidationError as exc:
                for problem in _problems_of(exc, (section,), root, said, invalid_entries):
                    add(problem)
            for name, first in copies.items():
                for problem in replay.get(first, ()):
                    add(problem._replace(path=(section, name, *problem.path[2:])))
                if (section, first) in invalid_entries:
                    invalid_entries.add((section, name))
        sections[section] = {name: validated[copies.get(name, name)] for name in entries
                             if copies.get(name, name) in validated}
    if config is None or invalid_entries:
        return None
    # every part is valid: the whole is (Config has no check across sections)
    return config.model_copy(update=sections)


@functools.cache
def _names_adapter() -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(dict[Name, Any])


@functools.cache
def _section_adapter(section: str, model: type[BaseModel]) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(dict[Name, model])  # type: ignore[valid-type]


def _problems_of(exc: ValidationError, prefix: tuple[Any, ...], root: Any,
                 said: dict[tuple[Any, ...], str],
                 invalid_entries: set[tuple[str, Any]]) -> Iterator[_Problem]:
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        invalid_entries.add(loc[:2])
        if loc[:1] == ("version",):
            continue  # _check_version said it better
        kind = err["type"]
        target = loc[:-1] if kind in ("missing", "extra_forbidden", "invalid_key") else loc
        if target and target[-1] == "[key]":
            target = target[:-1]
        candidates = [(_locate(root, c), len(c)) for c in _probe_loc_candidates(target)]
        whole = [r for r, n in candidates if r[0] == n]
        matched, key_mark, node, path = whole[0] if whole else max(candidates, key=lambda r: r[0][0])[0]
        complete = bool(whole)
        if kind == "extra_forbidden" or kind == "invalid_key":
            found = node.child(loc[-1]) if complete else None
            mark = found[0] if found and found[0] else node.mark
            path = (*path, loc[-1])
        elif loc and loc[-1] == "[key]":
            mark = key_mark or node.mark
        elif kind == "missing":
            mark = node.mark
            path = (*path, loc[-1])
        elif node.kind == "map" and key_mark is not None and kind in ("value_error", "assertion_error"):
            mark = key_mark  # a check of the whole entry: point at its name
        else:
            mark = node.mark
        value = err.get("input")
        # the same mistake repeated (through aliases, or 60,000 times by hand) is
        # the same message: a scalar by its value and spelling, else by its node
        same = (type(value), value, node.source) if isinstance(
            value, str | int | float | bool | None) and node.kind == "scalar" else id(node)
        memo = (same, complete, kind, str(loc[-1]) if loc else "", loc[:1], len(loc),
                str(err.get("msg")))
        message = said.get(memo)
        if message is None:
            message = said[memo] = _humanize(err, loc, node if complete else None)
        yield _Problem(mark, path, message, about_name=loc[-1:] == ("[key]",))


def _did_you_mean(word: Any, choices: Any) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _quote_hint(value: Any, node: Any) -> str:
    source = getattr(node, "source", None)
    if source is not None and not isinstance(value, str):
        kind = "a boolean" if isinstance(value, bool) else "nothing" if value is None else "a number"
        return f" (YAML reads {source} as {kind}; put it in quotes: '{source}')"
    return ""


def _humanize(err: Any, loc: tuple[Any, ...], node: Any) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    got = _describe(value, node)
    if kind == "missing":
        model = _type_at(loc[:-1])
        field = model.model_fields.get(loc[-1]) if isinstance(model, type) and issubclass(
            model, BaseModel) and isinstance(loc[-1], str) else None
        about = f" ({field.description})" if field is not None and field.description else ""
        return f"missing required key {loc[-1]!r}{about}"
    if kind == "extra_forbidden":
        model = _type_at(loc[:-1])
        fields = list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []
        fields = [f for f in fields if f != "kind"]
        hint = _did_you_mean(loc[-1], fields)
        if not hint and fields:
            hint = f" (expected one of: {', '.join(fields)})"
        return f"unknown key {_short(loc[-1])}{hint}"
    if kind == "invalid_key":
        return f"keys must be text, got {_describe(loc[-1])}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"expected a number, got {got}"
    if kind in ("string_type", "string_sub_type"):
        return f"expected text, got {got}{_quote_hint(value, node)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return f"expected a mapping (key: value), got {got}"
    if kind in ("list_type", "tuple_type", "iterable_type"):
        return f"expected a list, got {got} (write [a, b] or one '- item' per line)"
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == NAME_PATTERN:
            return (f"{got} is not a valid name: use letters (any script), digits, '.', '_' "
                    "and '-', "
                    "starting with a letter or digit")
        return f"{got} does not match the pattern {ctx.get('pattern')}"
    if kind == "too_short":
        return (f"needs at least {ctx.get('min_length', 1)} entry; an endpoint without probes "
                "would never be checked")
    if kind == "too_long":
        return (f"at most {ctx.get('max_length')} entries, got {ctx.get('actual_length')}: "
                "is this the list you meant?")
    if kind == "string_too_long":
        return f"text longer than {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": ("at least", "ge"), "greater_than": ("above", "gt"),
                 "less_than_equal": ("at most", "le"), "less_than": ("below", "lt")}[kind]
        return f"must be {bound[0]} {ctx.get(bound[1])}, got {got}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = re.findall(r"'([^']*)'", expected)
        return f"expected {expected}, got {got}{_did_you_mean(value, choices)}"
    if kind == "union_tag_invalid":
        return (f"unknown probe kind {_short(ctx.get('tag'))}: "
                "use icmp, tcp/PORT, trace, or dns: {query: NAME}")
    if kind == "union_tag_not_found":
        return "a probe is icmp, tcp/PORT, trace, or dns: {query: NAME}"
    message = str(err.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return " ".join(message[len(prefix):].split())
    message = " ".join(message.split())
    return f"{message[:1].lower()}{message[1:]}, got {got}"


# -- cross-checks: names that must exist, loops, clashes ----------------------

class _Where:
    """Positions of config paths, for the cross-checks."""

    def __init__(self, root: Any) -> None:
        self.root = root

    def value(self, *path: Any) -> tuple[Any, tuple[Any, ...]]:
        matched, _key, node, found = _locate(self.root, path)
        return node.mark, (found if matched == len(path) else path)

    def key(self, *path: Any) -> tuple[Any, tuple[Any, ...]]:
        matched, key_mark, node, _found = _locate(self.root, path)
        return (key_mark if matched == len(path) and key_mark else node.mark), path


_HOSTNAME = re.compile(r"^(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                       r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$")


def _cross_check(cfg: Config, root: Any, add: Callable[[_Problem], None]) -> None:
    """Names that must exist, clashes, loops, typos: each problem goes to `add`."""
    where = _Where(root)

    def at(position: tuple[Any, tuple[Any, ...]], message: str,
           hint: Callable[[], str] | None = None) -> None:
        add(_Problem(position[0], position[1], message, hint))

    group_users: dict[str, list[str]] = {}
    for name, line in cfg.lines.items():
        if line.group:
            group_users.setdefault(line.group, []).append(name)
    groups = set(cfg.groups) | set(group_users)

    # One namespace: paths name devices, lines and groups, probe ids name endpoints.
    owners: dict[str, tuple[str, tuple[Any, ...]]] = {}
    declared: list[tuple[str, str, tuple[Any, ...]]] = (
        [(n, "device", ("devices", n)) for n in cfg.devices]
        + [(n, "line", ("lines", n)) for n in cfg.lines]
        + [(n, "group", ("groups", n)) for n in cfg.groups]
        + [(ln.group, "group", ("lines", n, "group")) for n, ln in cfg.lines.items()
           if ln.group and ln.group not in cfg.groups]
        + [(n, "endpoint", ("endpoints", n)) for n in cfg.endpoints])
    for name, what, path in declared:
        if name not in owners:
            owners[name] = (what, path)
            continue
        first_what, first_path = owners[name]
        if first_what == what:  # the same group named by several lines
            continue
        position = where.value(*path) if path[-1] == "group" else where.key(*path)
        first_line = where.key(*first_path)[0].line
        at(position, f"{name!r} is already the name of a {first_what} (line {first_line}); devices, "
                     "lines, groups and endpoints share one set of names, as paths and probe ids use them")

    hops = set(cfg.devices) | set(cfg.lines) | groups
    hop_names = sorted(hops)

    def check_path(section: str, owner: str, path_names: list[str]) -> None:
        if not path_names:
            return
        seen: set[str] = set()
        # find the list once, not once per element (a hostile path has 100,000s)
        matched, _key, node, _found = _locate(root, (section, owner, "path"))
        items = node.items if matched == 3 and node.kind == "seq" else []
        for i, element in enumerate(path_names):
            position = ((items[i].mark, (section, owner, "path", i)) if i < len(items)
                        else where.value(section, owner, "path", i))
            if element in seen:
                at(position, f"{element!r} appears twice in this path")
            seen.add(element)
            if element in hops:
                continue
            if element in cfg.endpoints:
                at(position, f"{element!r} is an endpoint; a path lists the devices, lines or "
                             "groups crossed on the way")
            else:
                at(position, f"no device, line or group named {element!r}",
                   functools.partial(_did_you_mean, element, hop_names))

    def check_site(section: str, owner: str, site: str | None) -> None:
        if site is None or site in cfg.sites:
            return
        hint = _did_you_mean(site, sorted(cfg.sites)) or (
            f" (declare it under sites:, e.g. sites: {{{site}: {{kind: datacenter}}}})")
        at(where.value(section, owner, "site"), f"no site named {site!r}{hint}")

    for name, dev in cfg.devices.items():
        check_path("devices", name, dev.path)
        check_site("devices", name, dev.site)
    for name, line in cfg.lines.items():
        check_site("lines", name, line.site)
        if line.device is not None and line.device not in cfg.devices:
            position = where.value("lines", name, "device")
            if line.device in cfg.lines or line.device in cfg.endpoints:
                what = "line" if line.device in cfg.lines else "endpoint"
                at(position, f"{line.device!r} is a {what}, not a device; a line's device is "
                             "the router at our end")
            else:
                hint = _did_you_mean(line.device, sorted(cfg.devices)) or " (declare it under devices:)"
                at(position, f"no device named {line.device!r}{hint}")
    for name, ep in cfg.endpoints.items():
        check_path("endpoints", name, ep.path)
        check_site("endpoints", name, ep.site)
        if ep.backup is not None:
            if ep.backup == name:
                at(where.value("endpoints", name, "backup"), "an endpoint cannot be its own backup")
            elif ep.backup not in cfg.endpoints:
                at(where.value("endpoints", name, "backup"),
                   f"no endpoint named {ep.backup!r}{_did_you_mean(ep.backup, sorted(cfg.endpoints))}")
        if ep.host is not None:
            host_position = where.value("endpoints", name, "host")
            if _is_address(ep.host):
                at(host_position, f"{ep.host!r} is an IP address: write it as address: {ep.host}")
            elif not _HOSTNAME.match(ep.host):
                at(host_position, f"{_short(ep.host)} is not a valid host name")
        for i, spec in enumerate(ep.probes):
            if isinstance(spec, DnsSpec) and spec.check.expect and spec.check.type in ("A", "AAAA"):
                version = 4 if spec.check.type == "A" else 6
                for j, answer in enumerate(spec.check.expect):
                    if not _is_address(answer, version):
                        at(where.value("endpoints", name, "probes", i, "dns", "expect", j),
                           f"a type {spec.check.type} answer is an IPv{version} address, "
                           f"got {_short(answer)}")

    for gname in cfg.groups:
        if gname not in group_users:
            hint = _did_you_mean(gname, sorted(group_users)) or f" (set group: {gname} on its lines)"
            at(where.key("groups", gname), f"group {gname!r} has no lines{hint}")
    for problem in _group_typos(cfg, where, group_users):
        add(problem)
    for gname, members in group_users.items():
        by_priority: dict[int, str] = {}
        for lname in members:
            priority = cfg.lines[lname].priority
            if priority is None:  # not valid: the schema said so
                continue
            if priority in by_priority:
                given = "priority" in cfg.lines[lname].model_fields_set
                position = where.value("lines", lname, "priority") if given else where.key("lines", lname)
                at(position, f"priority {priority} is also {by_priority[priority]}'s in group "
                             f"{gname}; give each line of a group its own priority (1 = preferred)")
            else:
                by_priority[priority] = lname

    for problem in _device_loops(cfg, where, group_users):
        add(problem)


def _one_edit_apart(a: str, b: str) -> bool:
    """One letter changed, added, removed, or two neighbours swapped: a typo.

    Not between names shorter than 3 (g and h), nor a digit for a digit
    (wan1 and wan2 are numbered on purpose)."""
    if a == b or abs(len(a) - len(b)) > 1 or min(len(a), len(b)) < 3:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diff) == 1:
            return not (a[diff[0]].isdigit() and b[diff[0]].isdigit())
        return (len(diff) == 2 and diff[1] == diff[0] + 1
                and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((i for i, (x, y) in enumerate(zip(short, long, strict=False)) if x != y), len(short))
    return short[i:] == long[i + 1:]


def _group_typos(cfg: Config, where: _Where, group_users: dict[str, list[str]]) -> list[_Problem]:
    """A line alone in a group whose name is one edit from another group's: a
    typo that splits a redundancy group in two and makes both verdicts wrong.
    A one-line group declared under groups: is meant, and left alone."""
    problems = []
    names = sorted(set(group_users) | set(cfg.groups))
    for gname, members in group_users.items():
        if len(members) != 1 or gname in cfg.groups:
            continue
        close = [other for other in names if _one_edit_apart(gname, other)]
        if not close:
            continue
        (line,) = members
        others = ", ".join(repr(c) for c in close)
        problems.append(_Problem(*where.value("lines", line, "group"),
            f"group {gname!r} has only this line, and its name is one letter off group "
            f"{others} (did you mean {close[0]!r}?); a typo here splits a redundancy group. "
            f"If {gname!r} is really a group of its own, declare it under groups: "
            f"({gname}: {{failback: auto}})"))
    return problems


def _is_address(text: str, version: int | None = None) -> bool:
    if version != 6 and _CANONICAL_IPV4.fullmatch(text):  # the common case: 0.3 µs, not 1.5
        return True
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version


def _device_loops(cfg: Config, where: _Where, group_users: dict[str, list[str]]) -> list[_Problem]:
    """A device reached through itself: its path, or a path it crosses, leads back to it."""

    def devices_of(element: str) -> list[str]:
        if element in cfg.devices:
            return [element]
        if element in cfg.lines:
            return [cfg.lines[element].device]
        return [cfg.lines[line].device for line in group_users.get(element, [])]

    # edges: device -> (device it depends on, index in its path)
    edges: dict[str, list[tuple[str, int]]] = {
        name: [(d, i) for i, element in enumerate(dev.path) for d in devices_of(element)
               if d in cfg.devices]
        for name, dev in cfg.devices.items()}
    problems = []
    for cycle in _find_loops(list(cfg.devices), edges):
        first, index = cycle[0]
        hops = [first]
        for position, (device, path_index) in enumerate(cycle):
            element = cfg.devices[device].path[path_index]
            reached = cycle[position + 1][0] if position + 1 < len(cycle) else first
            hops += [element] if element == reached else [element, reached]
        chain = " -> ".join(hops)
        mark, path = where.value("devices", first, "path", index)
        problems.append(_Problem(mark, path, f"path loop: {chain} (a device cannot be "
                                             "reached through itself)"))
    return problems


def _find_loops(nodes: list[str],
                edges: dict[str, list[tuple[str, int]]]) -> list[list[tuple[str, int]]]:
    """Loops among devices, each as [(device, index in its path of the hop to the next)].

    One depth-first search over everything (linear in devices and path
    entries, with its own stack so a long chain cannot reach the recursion
    limit); a loop is reported when the search meets a device still on its
    trail, unless that loop shares a device with one already reported.
    """
    done: set[str] = set()
    loops: list[list[tuple[str, int]]] = []
    in_a_loop: set[str] = set()
    for root in nodes:
        if root in done:
            continue
        trail: list[list[Any]] = [[root, 0]]  # [device, next edge to try]
        position = {root: 0}
        while trail:
            frame = trail[-1]
            out = edges.get(frame[0], [])
            if frame[1] >= len(out):
                done.add(frame[0])
                del position[frame[0]]
                trail.pop()
                continue
            nxt, _ = out[frame[1]]
            frame[1] += 1
            if nxt in position:  # back to a device on the trail: a loop
                loop = [(device, edges[device][taken - 1][1])
                        for device, taken in trail[position[nxt]:]]
                if not in_a_loop.intersection(d for d, _ in loop):
                    loops.append(loop)
                    in_a_loop.update(d for d, _ in loop)
            elif nxt not in done:
                position[nxt] = len(trail)
                trail.append([nxt, 0])
    return loops


class _ProblemSet:
    """Every problem found, kept small: a hostile file yields 100,000s.

    A value reached through aliases is validated once per use, so it fails
    once per use: problems alike (same place, same message) count once, at
    the first path (the anchor), with how many other paths lead there. Only
    the first MAX_PROBLEMS_SHOWN by position are kept whole; of the rest,
    a hash each.
    """

    def __init__(self) -> None:
        self.first_path: dict[int, int] = {}  # hash of (place, message) -> hash of its path
        # the same problem reached by more paths: [how many more, the first few of them]
        self.other_paths: dict[int, list[Any]] = {}
        self.best: list[tuple[tuple[Any, str], int, _Problem]] = []

    @property
    def total(self) -> int:
        return len(self.first_path)

    def add(self, p: _Problem) -> None:
        key = hash((p.mark, p.message))
        seen = self.first_path.get(key)
        if seen is not None:
            if seen != hash(p.path):
                others = self.other_paths.setdefault(key, [0])
                others[0] += 1
                if len(others) <= 3:
                    others.append(p.path)
            return
        self.first_path[key] = hash(p.path)
        self.best.append(((p.mark or (0, 0), p.message), key, p))
        if len(self.best) >= 4 * MAX_PROBLEMS_SHOWN:
            self.best.sort()
            del self.best[MAX_PROBLEMS_SHOWN:]

    def update(self, problems: Iterable[_Problem]) -> None:
        for p in problems:
            self.add(p)

    def format(self, source: str, root: Any) -> list[str]:
        """The first problems by position as `FILE:LINE:COL: field.path: message` lines."""
        lines = []
        for _order, key, p in sorted(self.best)[:MAX_PROBLEMS_SHOWN]:
            field_path = _format_path(p.path, root)
            prefix = f"{source}:{p.mark}: " if p.mark else f"{source}: "
            message = p.message + (p.hint() if p.hint else "")
            if others := self.other_paths.get(key):
                named = [_format_path(path, root) for path in others[1:]]
                if others[0] > len(named):
                    named.append(f"{others[0] - len(named)} more")
                where = ", ".join(named[:-1]) + " and " + named[-1] if len(named) > 1 else named[0]
                message += f" (also reached through aliases as {where})"
            lines.append(prefix + (f"{field_path}: " if field_path else "")
                         + " ".join(message.split()))
        return lines


# shown as .key; anything else as ['key']. Matched whole: `$` would let a key
# that ends in a line break through, and break the one-line message.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _format_path(path: tuple[Any, ...], root: Any) -> str:
    """('endpoints', 'dc-app', 'path', 1) -> 'endpoints.dc-app.path[1]'."""
    text, node = "", root
    for element in path:
        found = node.child(element) if node is not None else None
        if node is not None and node.kind == "seq" and isinstance(element, int):
            text += f"[{element}]"
        elif isinstance(element, str) and _PLAIN_KEY.fullmatch(element):
            text += f".{element}" if text else element
        else:
            shown = str(element) if isinstance(element, str) else repr(element)
            text += "[" + _short(shown, 50) + "]"
        node = found[1] if found else None
    return text


def _add_document_rules(defs: dict[str, Any]) -> None:
    """The loader's rules about one object that pydantic's schema does not carry."""
    endpoint = defs["Endpoint"]
    # exactly one of address and host (null counts as not given, as in the loader)
    endpoint["oneOf"] = [
        {"required": ["address"], "properties": {"address": {"type": "string"}}},
        {"required": ["host"], "properties": {"host": {"type": "string"}}}]
    host = endpoint["properties"]["host"]["anyOf"][0]
    host["pattern"] = _HOSTNAME.pattern  # a DNS name ...
    host["not"] = {"pattern": f"^{IPV4_PATTERN}$"}  # ... that is not an IP address
    # each kind once (tcp: each port once); the loader compares labels
    one = {"icmp": {"type": "string", "pattern": "^\\s*icmp\\s*$"},
           "trace": {"anyOf": [{"type": "string", "pattern": "^\\s*trace\\s*$"},
                               {"type": "object", "required": ["trace"]}]},
           "dns": {"type": "object", "required": ["dns"]}}
    probes = endpoint["properties"]["probes"]
    probes["uniqueItems"] = True
    probes["allOf"] = [{"contains": rule, "minContains": 0, "maxContains": 1}
                       for rule in one.values()]
    # a DNS name: no empty label (a..b, .a), none longer than 63 characters (the
    # loader asks dnspython, which also counts IDNA and escapes: a name that differs
    # only there is the loader's to refuse)
    query = defs["DnsCheck"]["properties"]["query"]
    query["pattern"] = "^(?:\\.|(?:[^.]{1,63}\\.)*[^.]{1,63}\\.?)$"
    # an A or AAAA probe expects addresses of its family (no type means A)
    defs["DnsCheck"]["allOf"] = [
        {"if": {"properties": {"type": {"const": "A"}}},
         "then": {"properties": {"expect": {"anyOf": [
             {"type": "array", "items": {"type": "string", "pattern": f"^{IPV4_PATTERN}$"}},
             {"type": "null"}]}}}},
        {"if": {"required": ["type"], "properties": {"type": {"const": "AAAA"}}},
         "then": {"properties": {"expect": {"anyOf": [
             {"type": "array", "items": {"type": "string", "pattern": f"^{IPV6_PATTERN}$"}},
             {"type": "null"}]}}}}]

    def keys_are_text(node: Any) -> None:  # YAML keys may be numbers; JSON's never are
        if isinstance(node, dict):
            names = node.get("propertyNames")
            if isinstance(names, dict):
                names.setdefault("type", "string")
            for value in node.values():
                keys_are_text(value)
        elif isinstance(node, list):
            for value in node:
                keys_are_text(value)

    keys_are_text(defs)


def config_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the YAML config, for editors and CI linters.

    It describes what may be written (durations as "150ms", percentages as
    "10%", probes as `tcp/443` or `dns: {...}`), not the parsed values; the
    cross-references (names in paths exist, no loops) are the loader's.
    """
    schema = Config.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.setdefault("$defs", {})
    for model in (DnsCheck, TraceCheck):
        sub = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[model.__name__] = sub
    for unused in ("IcmpSpec", "TcpSpec", "DnsSpec", "TraceSpec"):
        defs.pop(unused, None)

    def link(node: Any) -> Any:
        if isinstance(node, dict):
            if _REF_LATER in node:
                return {"$ref": f"#/$defs/{node[_REF_LATER]}"}
            node = {k: link(v) for k, v in node.items()}
            patterns = node.get("patternProperties")
            if isinstance(patterns, dict) and len(patterns) == 1:
                # a mapping of names: say that every key must be a name, so an
                # editor flags `core router:` instead of silently allowing it
                ((pattern, value),) = patterns.items()
                del node["patternProperties"]
                node["propertyNames"] = {**node.get("propertyNames", {}), "pattern": pattern}
                node["additionalProperties"] = value
            return node
        if isinstance(node, list):
            return [link(v) for v in node]
        return node

    schema = link(schema)
    _add_document_rules(schema["$defs"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://netprobe.example/schema/config-1.json",
        "title": "netprobe config (version 1)",
        "description": "Devices, lines, redundancy groups and endpoints to probe; "
                       "see `netprobe validate` for the checks a schema cannot express.",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }
