"""Report formats: one module per format, one enum that maps to all of them.

    render(report, Format.JSON)            -> str
    format_for_path("out/run.prom")        -> Format.PROM
    write_outputs(report, ["a.json", "b.prom"])   # every file atomically
    print_table(report, console)           # the rich table for a person

Renderers are pure (Report -> str) and imported on first use, so importing
this package stays cheap for `netprobe --help`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from netprobe.report.atomic import (
    OutputError,
    PendingWrite,
    nothing_written,
    writability_problems,
    write_atomically,
)

if TYPE_CHECKING:
    from rich.console import Console

    from netprobe.report.model import Report

# SCHEMA, Report and build_report come from the model on first use: it imports the
# diagnosis's model, and `check` needs only Format and format_for_path before the
# probes are sent (3 ms of its start-up).
_FROM_MODEL = frozenset({"SCHEMA", "Report", "build_report"})


def __getattr__(name: str) -> object:
    if name in _FROM_MODEL:
        from netprobe.report import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    PROM = "prom"
    JUNIT = "junit"
    NAGIOS = "nagios"
    MD = "md"


# Format -> (module, function): the one list of formats and their renderers.
_RENDERERS: dict[Format, tuple[str, str]] = {
    Format.TABLE: ("netprobe.report.table", "render_table"),
    Format.JSON: ("netprobe.report.json_format", "render_json"),
    Format.PROM: ("netprobe.report.prometheus", "render_prometheus"),
    Format.JUNIT: ("netprobe.report.junit", "render_junit"),
    Format.NAGIOS: ("netprobe.report.nagios", "render_nagios"),
    Format.MD: ("netprobe.report.markdown", "render_markdown"),
}
if set(_RENDERERS) != set(Format):  # pragma: no cover - caught at import by any test
    raise RuntimeError(f"formats without a renderer: {set(Format) - set(_RENDERERS)}")

# File extension -> format, for `--output FILE`.
EXTENSIONS: dict[str, Format] = {
    ".json": Format.JSON,
    ".prom": Format.PROM,
    ".xml": Format.JUNIT,
    ".md": Format.MD,
    ".markdown": Format.MD,
    ".txt": Format.TABLE,
    ".nagios": Format.NAGIOS,
}


def renderer(fmt: Format) -> Callable[..., str]:
    module, name = _RENDERERS[parse_format(fmt)]
    return getattr(importlib.import_module(module), name)


def parse_format(name: Format | str) -> Format:
    """A Format from its name; OutputError (exit 3) naming the known ones."""
    try:
        return Format(name)
    except ValueError:
        known = ", ".join(f.value for f in Format)
        raise OutputError(f"unknown format {name!r}; use one of {known}") from None


def render(report: Report, fmt: Format | str, *, verbose: bool = False) -> str:
    """The report as text in `fmt`. `verbose` adds the probe table to `table`
    (the other formats always carry every probe)."""
    fmt = parse_format(fmt)
    if fmt == Format.TABLE:
        return renderer(fmt)(report, verbose=verbose)
    return renderer(fmt)(report)


def _known_extensions() -> str:
    return ", ".join(f"{ext} ({fmt})" for ext, fmt in EXTENSIONS.items())


def format_for_path(path: str | os.PathLike[str]) -> Format:
    """The format a file name asks for, by its extension (case-insensitive)."""
    suffix = Path(path).suffix.lower()
    try:
        return EXTENSIONS[suffix]
    except KeyError:
        what = f"extension {suffix!r}" if suffix else "no extension"
        raise OutputError(f"{path}: {what} does not name a report format; "
                          f"use one of {_known_extensions()}") from None


def write_outputs(report: Report, paths: Iterable[str | os.PathLike[str]], *,
                  verbose: bool = False) -> list[Path]:
    """Render the report once per path (format from the extension) and write
    every file atomically. Any unknown extension or unwritable path raises
    OutputError (a NetprobeError) naming all of them before a file is touched."""
    targets = [Path(p) for p in paths]
    problems: list[str] = []
    formats: list[Format] = []
    for target in targets:
        try:
            formats.append(format_for_path(target))
        except OutputError as exc:
            problems.append(str(exc))
    problems += writability_problems(targets)
    if problems:
        raise OutputError(nothing_written(problems, targets))
    rendered: dict[Format, str] = {}
    writes = []
    for target, fmt in zip(targets, formats, strict=True):
        if fmt not in rendered:
            rendered[fmt] = render(report, fmt, verbose=verbose)
        writes.append(PendingWrite(target, rendered[fmt]))
    return write_atomically(writes)


def print_table(report: Report, console: Console, *, verbose: bool = False) -> None:
    """The rich table for a person; colour only when `console` is a terminal."""
    from netprobe.report.table import print_table as _print_table

    _print_table(report, console, verbose=verbose)


__all__ = [
    "EXTENSIONS",
    "SCHEMA",
    "Format",
    "OutputError",
    "Report",
    "build_report",
    "format_for_path",
    "parse_format",
    "print_table",
    "render",
    "write_outputs",
]
