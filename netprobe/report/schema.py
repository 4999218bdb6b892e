"""JSON Schema of the report contract `netprobe.report/1`.

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
                    "sent": {"type": "integer", "minimum": 0},
                    "received": {"type": "integer", "minimum": 0},
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
