"""JSON Schemas of the report contract `netprobe.report/1` (`netprobe schema
--report`) and of the history summary `netprobe.history/1` (`--history`).

The fields DESIGN.md promises are required and typed; every object allows
additional properties, because the contract lets fields be added. Kept as a
dict in code (not a data file) so it ships with the package as it is.
"""

from __future__ import annotations

from typing import Any

from netprobe.diagnosis.model import FindingKind, Severity, State, Status, Verdict

_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}
_STR_LIST = {"type": "array", "items": {"type": "string"}}

_RTT = {
    "oneOf": [
        {"type": "null"},
        {
            "type": "object",
            "required": ["min", "avg", "max"],
            "properties": {k: {"type": "number", "minimum": 0} for k in ("min", "avg", "max")},
        },
    ]
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://netprobe.example/schema/netprobe.report-1.json",
    "title": "netprobe report (netprobe.report/1)",
    "type": "object",
    "required": ["schema", "version", "vantage", "started_at", "duration_s", "status",
                 "exit_code", "components", "groups", "findings", "probes"],
    "properties": {
        "schema": {"const": "netprobe.report/1"},
        "version": {"type": "string"},
        "vantage": {"type": "string"},
        "config": {"type": "string"},
        "started_at": {"type": "string", "format": "date-time"},
        "duration_s": {"type": "number", "minimum": 0},
        "interrupted": {"type": "boolean"},
        "interrupted_by": {"type": ["string", "null"],
                           "description": "the signal that stopped the run (SIGTERM, ...)"},
        "status": {"enum": [str(s) for s in Status]},
        "exit_code": {"enum": [0, 1, 2, 3]},
        "fail_on": {"enum": [str(s) for s in Severity]},
        "components": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "kind", "state", "reason", "evidence"],
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"enum": ["device", "line", "endpoint", "service"]},
                    "state": {"enum": [str(s) for s in State]},
                    "reason": {"type": "string"},
                    "evidence": _STR_LIST,
                },
            },
        },
        "groups": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "lines", "preferred", "active", "verdict"],
                "properties": {
                    "name": {"type": "string"},
                    "lines": _STR_LIST,
                    "preferred": _STR_OR_NULL,
                    "active": _STR_OR_NULL,
                    "verdict": {"enum": [str(v) for v in Verdict]},
                    "reason": {"type": "string"},
                    "failback": {"enum": ["auto", "manual"]},
                    "evidence": _STR_LIST,
                    # verdict ambiguous: the lines that may carry the traffic
                    "candidates": _STR_LIST,
                    "active_by": {"enum": ["trace", "icmp_error", None]},
                },
            },
        },
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["severity", "kind", "components", "summary", "evidence"],
                "properties": {
                    "severity": {"enum": [str(s) for s in Severity]},
                    "kind": {"enum": [str(k) for k in FindingKind]},
                    "components": _STR_LIST,
                    "summary": {"type": "string", "minLength": 1},
                    "evidence": _STR_LIST,
                },
            },
        },
        "explanations": {"type": "array", "items": _STR_LIST},
        "probes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "kind", "target", "address", "sent", "received", "loss",
                             "rtt_ms", "error"],
                "properties": {
                    "id": {"type": "string"},
                    "kind": {"type": "string"},
                    "target": {"type": "string"},
                    "address": _STR_OR_NULL,
                    # the address family probed; a dual-stack host's IPv6 probe is `ID@ipv6`
                    "family": {"enum": ["ipv4", "ipv6", None]},
                    "sent": {"type": "integer", "minimum": 0},
                    "received": {"type": "integer", "minimum": 0},
                    # attempts the target answered at all (a RST, a wrong answer too)
                    "answered": {"type": "integer", "minimum": 0},
                    "outcome": {"enum": ["ok", "failed", "not_measured"]},
                    # attempts with no answer at all, over those sent
                    "loss": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                    "rtt_ms": _RTT,
                    "error": _STR_OR_NULL,
                    "message": _STR_OR_NULL,
                    "detail": {"type": "object"},
                    "duration_s": _NUM_OR_NULL,
                },
            },
        },
    },
}


_COUNT = {"type": "integer", "minimum": 0}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_ENTITY_FIELDS: dict[str, Any] = {
    "vantage": {"type": "string"},
    "name": {"type": "string"},
    "kind": {"enum": ["device", "line", "endpoint", "service", "group"]},
    "runs": _COUNT, "measured": _COUNT, "available": _COUNT, "unknown": _COUNT,
    "incidents": _COUNT, "recovered": _COUNT, "flaps": _COUNT,
    "longest_recovery_s": {"type": ["number", "null"], "minimum": 0},
    "mean_recovery_s": {"type": ["number", "null"], "minimum": 0},
    "last_state": _STR_OR_NULL,
    "down_since": _TIME_OR_NULL,
    "availability_ratio": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
}
_ENTITY = {"type": "object", "required": list(_ENTITY_FIELDS), "properties": _ENTITY_FIELDS}

# `netprobe history DB -f json` (schema netprobe.history/1).
HISTORY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://netprobe.example/schema/netprobe.history-1.json",
    "title": "netprobe history summary (netprobe.history/1)",
    "type": "object",
    "required": ["schema", "db", "since", "until", "runs", "first_run_at", "last_run_at",
                 "status_counts", "components", "groups"],
    "properties": {
        "schema": {"const": "netprobe.history/1"},
        "db": {"type": "string"},
        "since": _TIME_OR_NULL,
        "until": _TIME_OR_NULL,
        "runs": _COUNT,
        "first_run_at": _TIME_OR_NULL,
        "last_run_at": _TIME_OR_NULL,
        "status_counts": {"type": "object",
                          "propertyNames": {"enum": [str(s) for s in Status]},
                          "additionalProperties": _COUNT},
        "components": {"type": "array", "items": _ENTITY},
        "groups": {"type": "array", "items": {
            "allOf": [_ENTITY],
            "required": ["failovers", "failbacks", "events"],
            "properties": {
                "failovers": _COUNT, "failbacks": _COUNT,
                "events": {"type": "array", "items": {
                    "type": "object",
                    "required": ["at", "kind", "from_line", "to_line", "verdict"],
                    "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "kind": {"enum": ["failover", "failback"]},
                        "from_line": _STR_OR_NULL,
                        "to_line": _STR_OR_NULL,
                        "verdict": {"enum": [str(v) for v in Verdict]},
                    }}},
            }}},
    },
}
