"""Validate a config document against `netprobe schema` as an editor does.

JSON Schema's `pattern` is an ECMA-262 regular expression (editors run it in
JavaScript; check-jsonschema in `regress`, a Rust ECMA-262 engine). Python's
`re` reads `\\w`, `\\s` and character classes differently, so this validator
checks every pattern with `regress` in Unicode mode, as ajv does.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
import regress
from jsonschema import validators
from jsonschema.exceptions import ValidationError

from netprobe.config import config_json_schema


@functools.cache
def _regex(pattern: str) -> regress.Regex:
    return regress.Regex(pattern, "u")


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any):
    if validator.is_type(instance, "string") and _regex(pattern).find(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern})


@functools.lru_cache(maxsize=1)
def editor_validator() -> jsonschema.Draft202012Validator:
    schema = config_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return EcmaValidator(schema)
