"""The command line: thin. Exit codes and error display live here only.

Exit codes follow the monitoring-plugin convention: 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN (bad input, missing privilege, internal error).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from netprobe.errors import NetprobeError

EXIT_UNKNOWN = 3
# command_ran tells a usage error (exit 2 from the parser) from CRITICAL;
# quick_exit: the command wrote everything and holds nothing that needs closing
_state = {"command_ran": False, "quick_exit": False}

app = typer.Typer(
    name="netprobe",
    help="Network-path health prober: what is broken (our device, the carrier's line, the far "
    "end or the service), whether failover happened, and whether the redundancy is real.\n\n"
    "Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (bad input, missing privilege, or "
    "parts that could not be measured).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)



def _show_version(value: bool) -> None:
    if value:
        from netprobe import __version__

        typer.echo(f"netprobe {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", help="Print netprobe's version and exit.", is_eager=True,
        callback=_show_version)] = False) -> None:
    pass


def _plain_argument_help() -> None:
    """Help shows an argument as its metavar alone (`CONFIG`), not `CONFIG <path>`:
    newer typer appends the Python type to arguments even when a metavar is set."""
    arg_cls = getattr(typer.core, "TyperArgument", None)
    original = getattr(arg_cls, "display_type_rich", None)
    if original is not None:
        def display_type_rich(self: Any, ctx: Any) -> str | None:
            return None if self.metavar else original(self, ctx)

        arg_cls.display_type_rich = display_type_rich
    usage = getattr(arg_cls, "_usage_display_name", None)
    if usage is not None:  # `check CONFIG`, as man pages write it, not `check {CONFIG}`
        def usage_display_name(self: Any) -> str:
            name = usage(self)
            dots = "..." if name.endswith("...") else ""  # a variadic argument: {CMD}...
            core = name.removesuffix(dots)
            if core.startswith("{") and core.endswith("}"):
                return core[1:-1] + dots
            return name

        arg_cls._usage_display_name = usage_display_name


_plain_argument_help()

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(func: F) -> F:
    """Turn the project's own errors into a message and exit 3; never a traceback.

    The stop signals (SIGINT, SIGTERM, SIGHUP) are handled for the command's
    lifetime: before a command has anything to report they end it with one
    line and exit 3; `check` defers them once probing begins (netprobe.signals).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from netprobe.signals import Interrupted, command_guard
        from netprobe.ui import stderr_console

        _state["command_ran"] = True
        try:
            with command_guard():
                return func(*args, **kwargs)
        except NetprobeError as exc:
            _say(stderr_console(), f"netprobe: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except (KeyboardInterrupt, Interrupted) as exc:
            name = exc.signame if isinstance(exc, Interrupted) else "SIGINT"
            _say(stderr_console(), f"netprobe: stopped by {name} before there was anything to report")
            raise typer.Exit(EXIT_UNKNOWN) from None
        except Exception as exc:
            if os.environ.get("NETPROBE_DEBUG"):
                raise
            _say(stderr_console(),
                 f"netprobe: internal error: {exc!r}. This is a bug in netprobe; run again with "
                 "NETPROBE_DEBUG=1 for a traceback and report it.")
            raise typer.Exit(EXIT_UNKNOWN) from None

    return wrapper  # type: ignore[return-value]


def _say(console: Any, text: str) -> None:
    """One message on a console that may be gone (a hung-up terminal, a closed pipe)."""
    with contextlib.suppress(OSError, ValueError):
        console.print(text, markup=False)


# -- shared options, declared once -------------------------------------------
ConfigArg = Annotated[Path, typer.Argument(help="The site's YAML config.", metavar="CONFIG", show_default=False)]
FormatOpt = Annotated[str, typer.Option(
    "--format", "-f", metavar="FORMAT",
    help="What to print on stdout: table, json, prom, junit, nagios, md.")]
OutputOpt = Annotated[list[Path] | None, typer.Option(
    "--output", "-o", metavar="FILE", help="Also write a report file; the format follows the extension "
    "(.json .prom .xml .md .txt). Repeat for several. Written atomically.", show_default=False)]
FailOnOpt = Annotated[str, typer.Option(
    "--fail-on", metavar="LEVEL", help="Lowest severity that makes the exit code non-zero: warning or critical "
    "(CI: critical lets warnings pass).")]
NetnsOpt = Annotated[str | None, typer.Option(
    "--netns", metavar="NAME", help="Run inside this network namespace (root), e.g. nplab-office for the lab.",
    show_default=False)]
TimeoutOpt = Annotated[str | None, typer.Option(
    "--timeout", metavar="DURATION", help="Per-attempt timeout, overriding the config (e.g. 500ms).", show_default=False)]
AttemptsOpt = Annotated[int | None, typer.Option(
    "--attempts", min=1, max=100, metavar="N", help="Attempts per probe, overriding the config.",
    show_default=False)]
ConcurrencyOpt = Annotated[int, typer.Option(
    "--concurrency", min=1, max=100_000, metavar="N",
    help="TCP and DNS probes in flight at once (each holds a socket); ICMP probes share "
    "one socket and are paced by --rate alone.")]
RateOpt = Annotated[float, typer.Option(
    "--rate", metavar="PPS", help="Packet-rate limit per second for the whole run; 0 for no limit.")]
NoTraceOpt = Annotated[bool, typer.Option(
    "--no-trace", help="Do not trace paths (the active line of each group stays unknown).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="List every component, finding and probe in the table (a large site otherwise lists what is not up and counts the rest).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on stdout.")]


def _enter_netns(name: str | None) -> None:
    if name:
        from netprobe.lab.netns import enter_netns

        enter_netns(name)


def _parse_seconds(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    from netprobe.config import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise NetprobeError(f"{option} {value}: {exc}") from None
    if seconds < 0.001:
        raise NetprobeError(f"{option} {value}: must be at least 1ms")
    return seconds


def _parse_window(value: str) -> float:
    """'90m', '24h', '7d', '2w' -> seconds."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
    if not m:
        raise NetprobeError(f"--since {value}: use a number and a unit, e.g. 90m, 24h, 7d, 2w")
    unit_s = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return float(m.group(1)) * unit_s


def _check_fail_on(value: str) -> str:
    if value not in ("warning", "critical"):
        raise NetprobeError(f"--fail-on {value}: use warning or critical")
    return value


def _fail_on(value: str):
    from netprobe.diagnosis.model import Severity

    return Severity(_check_fail_on(value))


def _check_outputs(fmt: str, outputs: list[Path]) -> None:
    """Refuse a bad format or output path before any packet is sent."""
    from netprobe.report import Format, format_for_path

    try:
        Format(fmt)
    except ValueError:
        raise NetprobeError(
            f"--format {fmt}: unknown format; use one of {', '.join(f.value for f in Format)}"
        ) from None
    for path in outputs:
        if path.is_dir():
            raise NetprobeError(f"-o {path}: is a directory; name a file in it, e.g. -o {path / 'report.json'}")
        format_for_path(path)
        parent = path.resolve().parent
        if not parent.is_dir():
            raise NetprobeError(f"-o {path}: directory {parent} does not exist; create it first")
        if not os.access(parent, os.W_OK):
            raise NetprobeError(f"-o {path}: directory {parent} is not writable")


def _read_json(path: Path) -> Any:
    """A saved report's JSON; a clear message (exit 3) when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise NetprobeError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:  # FILE:LINE:COL, like every other position
        raise NetprobeError(f"{path}:{exc.lineno}:{exc.colno}: not a JSON report: "
                            f"{exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise NetprobeError(f"{path}: not a JSON report: not UTF-8 text (byte "
                            f"0x{exc.object[exc.start]:02x} at offset {exc.start})") from None
    except ValueError as exc:
        raise NetprobeError(f"{path}: not a JSON report: {exc}") from None


def _emit(report: Any, fmt: str, outputs: list[Path], quiet: bool, verbose: bool,
          history: Path | None) -> int:
    """Write the files, record the history, print the report; returns the exit code.

    A file or history that cannot be written does not cost the verdict: the
    report is still printed, each failure is named on stderr, and the exit
    code is the worse of the report's and UNKNOWN (a CRITICAL stays 2).
    """
    from netprobe.diagnosis.model import Status
    from netprobe.report import Format, print_table, render, write_outputs
    from netprobe.ui import stderr_console, stdout_console

    failures: list[str] = []
    if outputs:
        try:
            write_outputs(report, outputs)
        except NetprobeError as exc:
            failures.append(str(exc))
    if history:
        from netprobe.history import record_run

        try:
            record_run(history, report)
        except NetprobeError as exc:
            failures.append(f"history not recorded: {exc}")
    if not quiet:
        with contextlib.suppress(OSError, ValueError):  # stdout gone (hang-up, closed pipe)
            if Format(fmt) == Format.TABLE:
                print_table(report, stdout_console(), verbose=verbose)
            elif Format(fmt) == Format.JSON and hasattr(sys.stdout, "buffer"):
                from netprobe.report.json_format import render_json_bytes

                data = render_json_bytes(report)  # already UTF-8: written as it is
                sys.stdout.flush()
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.write(b"\n")
                sys.stdout.buffer.flush()
            else:
                text = render(report, Format(fmt))
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
                sys.stdout.flush()
    if not failures:
        return report.exit_code
    err = stderr_console()
    for failure in failures:
        _say(err, f"netprobe: {failure}")
    worse = max(report.status, Status.UNKNOWN, key=lambda s: s.rank)
    return worse.exit_code


@app.command()
@handles_errors
def check(
    config: ConfigArg,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    fail_on: FailOnOpt = "warning",
    timeout: TimeoutOpt = None,
    attempts: AttemptsOpt = None,
    concurrency: ConcurrencyOpt = 1000,
    rate: RateOpt = 2000.0,
    deadline: Annotated[str | None, typer.Option(
        "--deadline", metavar="DURATION", help="Bound on the whole run (e.g. 30s); probes not done by then are "
        "reported as not measured.", show_default=False)] = None,
    confirm: Annotated[int, typer.Option(
        "--confirm", min=0, max=100, metavar="N",
        help="A probe that heard nothing at all is tried again with N more attempts before "
        "it counts as failed (random loss must not look like a cut line); 0 disables.")] = 5,
    late_grace: Annotated[str, typer.Option(
        "--late-grace", metavar="DURATION",
        help="How long an ICMP, TCP or DNS probe that heard nothing keeps listening for late "
        "ICMP errors (a router gives up on a dead next hop ~3 s later and says so); "
        "0 disables.")] = "3s",
    no_trace: NoTraceOpt = False,
    netns: NetnsOpt = None,
    history: Annotated[Path | None, typer.Option(
        "--history", metavar="DB", help="Append this run to a SQLite history database.",
        show_default=False)] = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Probe once, diagnose, report: the main job.

    SIGTERM, SIGHUP or Ctrl-C once probing has begun: what was measured is
    still reported in every output and the history, marked interrupted. An
    output that cannot be written is named on stderr; the report is still
    printed and the exit code is the worse of the verdict's and 3.
    """
    from netprobe.config import load_topology
    from netprobe.executor import Foresight, RunOptions, run
    from netprobe.plan import PlanOptions, build_plan
    from netprobe.report import Format, format_for_path, renderer
    from netprobe.signals import guard as signal_guard
    from netprobe.ui import RichProgress, stderr_console

    outputs = list(output or [])
    _check_fail_on(fail_on)  # its Severity after the run: the diagnosis model is not needed before
    _check_outputs(fmt, outputs)
    if history:  # open (create, migrate) it now: a bad path must not cost a whole run
        from netprobe.history import connect

        connect(history).close()
    timeout_s = _parse_seconds(timeout, "--timeout")
    deadline_s = _parse_seconds(deadline, "--deadline")
    _enter_netns(netns)
    topology = load_topology(str(config), keep=True)
    late_grace_s = 0.0 if late_grace.strip() in ("0", "0s") else \
        _parse_seconds(late_grace, "--late-grace")
    tasks = build_plan(topology, PlanOptions(traces=not no_trace, attempts=attempts,
                                             timeout_s=timeout_s, late_grace_s=late_grace_s))
    keep_until_exit()

    def on_signal(name: str) -> None:
        stderr_console().print(f"netprobe: interrupted by {name}; reporting what was measured",
                               markup=False)

    prepared: dict[str, Any] = {}
    # JSON to print or write: its final parts serialized while the probes wait
    json_wanted = Format.JSON in {Format(fmt), *map(format_for_path, outputs)}

    def prepare() -> None:
        """What needs no results, done while the probes wait for replies (0.1 s at 10,000)."""
        from netprobe.diagnosis import preload, static_audit  # imports, off the critical path

        preload()
        if not quiet:  # the progress asks for a console 1 s in, just as the timeouts fire
            import rich.console  # noqa: F401
        renderer(Format(fmt))
        prepared["static"] = static_audit(topology)
        prepared["topology"] = topology.to_json()
        if json_wanted:
            from netprobe.report.json_format import Prerendered  # (orjson: 10 ms to import)

            prepared["parts"] = parts = Prerendered()
            parts.add(prepared["topology"], prepared["topology"], depth=1)

    def foresee(likely: Any) -> Any:
        """The diagnosis of the likely outcome, made while the silent probes time
        out; and the JSON of the results in and of that diagnosis's components."""
        from netprobe.diagnosis import diagnose

        likely_diagnosis = diagnose(topology, likely, prepared["static"])
        parts = prepared.get("parts")
        if parts is not None:
            for result in likely.results:  # (a guessed one is not in the report: unused)
                parts.add(result, result.to_json(shared=True), depth=2)
            for component in likely_diagnosis.components:
                parts.add(component, component.to_json(), depth=2)
        return likely_diagnosis

    foresight = Foresight(foresee)
    guard = signal_guard()
    guard.defer(on_signal)  # probing begins: from here on a signal costs no measurement
    evidence = run(tasks, RunOptions(concurrency=concurrency, rate_pps=rate, deadline_s=deadline_s,
                                     confirm_attempts=confirm),
                   progress=None if quiet else RichProgress(stderr_console), stop_source=guard,
                   while_waiting=prepare, foresight=foresight, keep=True)
    keep_until_exit()
    from netprobe.diagnosis import diagnose
    from netprobe.report.model import build_report

    diagnosis = foresight.value if foresight.held else \
        diagnose(topology, evidence, prepared["static"])
    keep_until_exit()
    report = build_report(topology.vantage, str(config), evidence, diagnosis, _fail_on(fail_on),
                          thresholds=topology.thresholds, topology=prepared["topology"],
                          interrupted_by=guard.received, prerendered=prepared.get("parts"))
    code = _emit(report, fmt, outputs, quiet, verbose, history)
    _state["quick_exit"] = True
    raise typer.Exit(code)


@app.command()
@handles_errors
def validate(
    config: ConfigArg,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="table or json.")] = "table",
) -> None:
    """Load and check the config, and audit its redundancy (shared carriers, routers, sites).

    Exit 0 when the config is valid and the audit found nothing above info; 1 or 2 for
    audit warnings or critical findings; 3 when the config is invalid.
    """
    from netprobe.config import load_topology
    from netprobe.diagnosis.audit import audit
    from netprobe.diagnosis.model import Diagnosis
    from netprobe.plan import plan_targets
    from netprobe.ui import stdout_console

    # Everything built here lives until the command exits, and none of it is
    # cyclic: the collector would only walk it (at 10,000 endpoints, again and again)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        topology = load_topology(str(config))
        targets = plan_targets(topology)  # the audit needs ids and targets, not whole tasks
        findings = audit(topology, targets)
        # out of sight before the collector is back: its first pass would walk it all
        keep_until_exit()
    finally:
        if was_enabled:
            gc.enable()
    status = Diagnosis(components=(), groups=(), findings=tuple(findings)).status(static=True)
    cfg = topology.config
    counts = {"devices": len(cfg.devices), "lines": len(cfg.lines), "groups": len(topology.groups),
              "endpoints": len(cfg.endpoints), "probes": len(targets)}
    if fmt == "json":
        print(json.dumps({"config": str(config), "valid": True, "counts": counts,
                          "status": str(status), "findings": [f.to_json() for f in findings]},
                         indent=2))
    elif fmt == "table":
        from netprobe.report.table import audit_table

        con = stdout_console()
        con.print(f"{config}: valid — " + ", ".join(
            f"{n} {k[:-1] if n == 1 else k}" for k, n in counts.items()), markup=False)
        if findings:
            con.print()
            con.print(audit_table(findings))
        else:
            con.print("audit: no shared risk, single point of failure or blind spot found",
                      markup=False)
    else:
        raise NetprobeError(f"--format {fmt}: use table or json")
    _state["quick_exit"] = True  # printed; nothing to close (10,000 endpoints: 0.05 s of teardown)
    raise typer.Exit(status.exit_code)


@app.command()
@handles_errors
def schema(
    report: Annotated[bool, typer.Option(
        "--report", help="The schema of the JSON report (check -f json, -o run.json) instead.")] = False,
    history_: Annotated[bool, typer.Option(
        "--history", help="The schema of `netprobe history DB -f json` instead.")] = False,
) -> None:
    """Print a JSON Schema: of the config (for editor completion), or of the JSON
    report or history summary (for scripts that read them)."""
    if report and history_:
        raise NetprobeError("schema: give --report or --history, not both")
    if report:
        from netprobe.report.schema import REPORT_SCHEMA as chosen
    elif history_:
        from netprobe.report.schema import HISTORY_SCHEMA as chosen
    else:
        from netprobe.config import config_json_schema

        chosen = config_json_schema()
    print(json.dumps(chosen, indent=2, ensure_ascii=False))


@app.command()
@handles_errors
def diagnose(
    run_json: Annotated[Path, typer.Argument(
        help="A JSON report saved by `netprobe check -o run.json`.", metavar="RUN.json",
        show_default=False)],
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", metavar="CONFIG", help="Use this config instead of the one embedded in the report.",
        show_default=False)] = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    fail_on: FailOnOpt = "warning",
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Diagnose saved evidence again, offline (no packet is sent)."""
    from netprobe.config import load_topology
    from netprobe.diagnosis import diagnose as run_diagnosis
    from netprobe.evidence import Evidence
    from netprobe.report.model import build_report
    from netprobe.topology import topology_from_report

    outputs = list(output or [])
    severity = _fail_on(fail_on)
    _check_outputs(fmt, outputs)
    data = _read_json(run_json)
    if not isinstance(data, dict) or data.get("schema") != "netprobe.report/1":
        raise NetprobeError(f"{run_json}: not a netprobe report (schema netprobe.report/1); "
                            "save one with `netprobe check CONFIG -o run.json`")
    topology = load_topology(str(config)) if config else topology_from_report(data, str(run_json))
    try:
        evidence = Evidence.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NetprobeError(f"{run_json}: probes section is damaged: {exc!r}") from None
    from netprobe.plan import build_plan

    seen = evidence.by_id()
    missing = [t.id for t in build_plan(topology) if t.kind != "trace" and t.id not in seen]
    if missing:  # a renamed component would otherwise pass as "unknown" with exit 0
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise NetprobeError(f"{run_json}: the report has no result for {shown}; it was not made "
                            "with this config (pass the one it was made with, or none to use the "
                            "topology embedded in the report)")
    diagnosis = run_diagnosis(topology, evidence)
    report = build_report(topology.vantage, data.get("config", str(run_json)), evidence, diagnosis,
                          severity, thresholds=topology.thresholds, topology=topology.to_json(),
                          rediagnosed_from=str(run_json))
    raise typer.Exit(_emit(report, fmt, outputs, quiet, verbose, None))


MERGE_EXTENSIONS = {".json": "json", ".md": "md", ".txt": "table"}


@app.command()
@handles_errors
def merge(
    reports: Annotated[list[Path], typer.Argument(
        help="JSON reports of one topology from several vantage points (`netprobe check "
        "SITE.yaml -o site.json` at each; each site's config names its own vantage).",
        metavar="REPORT.json", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT",
                                     help="table, json or md.")] = "table",
    output: Annotated[list[Path] | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Also write the merged view: .json, .md or .txt. "
        "Repeat for several. Written atomically.", show_default=False)] = None,
    max_skew: Annotated[str, typer.Option(
        "--max-skew", metavar="DURATION", help="Reports taken further apart than this are "
        "compared with a warning (a failure may have begun or ended between them).")] = "5m",
) -> None:
    """Combine reports of several vantage points and localise across them.

    A carrier's lines down from every site that uses it is a carrier failure; down
    from one site only is that site's line or device. A shared endpoint down from
    one site but up from another is that site's path. Exit codes as for check.
    """
    from netprobe.diagnosis.merge import (
        MergeInputError,
        merge_reports,
        render_merge_markdown,
        render_merge_text,
        site_from_json,
    )
    from netprobe.report.atomic import PendingWrite, write_atomically

    renderers = {"table": render_merge_text, "md": render_merge_markdown,
                 "json": lambda m: json.dumps(m.to_json(), indent=2) + "\n"}
    if fmt not in renderers:
        raise NetprobeError(f"--format {fmt}: use table, json or md")
    outputs = list(output or [])
    for path in outputs:
        if path.suffix.lower() not in MERGE_EXTENSIONS:
            raise NetprobeError(f"-o {path}: use a .json, .md or .txt file name")
    max_skew_s = _parse_seconds(max_skew, "--max-skew")
    sites = []
    for path in reports:
        data = _read_json(path)
        try:
            sites.append(site_from_json(data, str(path)))
        except MergeInputError as exc:
            raise NetprobeError(str(exc)) from None
    try:
        merged = merge_reports(sites, max_skew_s=max_skew_s or 0.0)
    except MergeInputError as exc:
        raise NetprobeError(str(exc)) from None
    if outputs:
        write_atomically([PendingWrite(p, renderers[MERGE_EXTENSIONS[p.suffix.lower()]](merged))
                          for p in outputs])
    sys.stdout.write(renderers[fmt](merged))
    raise typer.Exit(merged.exit_code)


@app.command()
@handles_errors
def history(
    db: Annotated[Path, typer.Argument(help="SQLite database written by `check --history` or `serve --history`.",
                                       metavar="DB", show_default=False)],
    since: Annotated[str | None, typer.Option(
        "--since", metavar="WINDOW", help="Only runs in this window, e.g. 24h or 7d.", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="table, json or md.")] = "table",
    side_by_side: Annotated[bool, typer.Option(
        "--side-by-side", help="Runs of several vantage points (sites) in one database: one "
        "row per component or group, one column per vantage.")] = False,
) -> None:
    """Availability, incidents, time to recover and failovers from stored runs.

    A database may hold the runs of several vantage points (each `check --history`
    or `serve --history` names its own); they are kept apart, shown one after the
    other, or side by side with --side-by-side.
    """
    from netprobe.history import render_history, summarize

    if not db.exists():
        raise NetprobeError(f"{db}: no such history database; create one with "
                            f"`netprobe check CONFIG --history {db}`")
    since_s = _parse_window(since) if since else None
    summary = summarize(db, since_s=since_s)
    text = render_history(summary, fmt, side_by_side=side_by_side)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command()
@handles_errors
def watch(
    config: ConfigArg,
    interval: Annotated[str, typer.Option(
        "--interval", metavar="DURATION", help="Time between probe cycles (e.g. 200ms); each probe's timeout is "
        "at most 0.8 of it, and a slow cycle skips slots rather than queueing.")] = "200ms",
    duration: Annotated[str, typer.Option(
        "--duration", metavar="DURATION", help="Longest the drill runs (e.g. 5m); Ctrl-C ends it sooner.")] = "5m",
    until_stable: Annotated[bool, typer.Option(
        "--until-stable", help="Stop once, after at least one change, nothing has changed "
        "for the settle window (bounded by --duration).")] = False,
    settle: Annotated[str | None, typer.Option(
        "--settle", metavar="DURATION", help="Settle window for --until-stable (default: 5s or ten intervals, "
        "whichever is longer).", show_default=False)] = None,
    failover_window: Annotated[str, typer.Option(
        "--failover-window", metavar="DURATION", help="How long the preferred line may be down before traffic "
        "that has not moved counts as a failed failover.")] = "10s",
    failback_window: Annotated[str, typer.Option(
        "--failback-window", metavar="DURATION", help="How long the preferred line may be back before traffic "
        "not returned counts against an auto failback policy.")] = "60s",
    output: Annotated[list[Path] | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Write the drill: .json (timeline, events, summary), .svg or "
        ".html (the picture). Repeat for several. Written atomically.",
        show_default=False)] = None,
    fail_on: FailOnOpt = "warning",
    rate: RateOpt = 2000.0,
    no_hop_check: Annotated[bool, typer.Option(
        "--no-hop-check", help="Do not send TTL-limited probes (the active line of each "
        "group stays unknown).")] = False,
    netns: NetnsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Probe continuously during a failover drill: switch-over, outage and failback times.

    A live view on a terminal (event lines otherwise); at the end a summary per
    redundancy group judged against its policy. Exit codes as for check: a
    failover that never happened is CRITICAL (2).
    """
    from netprobe.watch import watch_command

    interval_s = _parse_seconds(interval, "--interval")
    duration_s = _parse_seconds(duration, "--duration")
    code = watch_command(
        config, interval_s=interval_s, duration_s=duration_s, until_stable=until_stable,
        outputs=list(output or []), netns=netns, fail_on=fail_on,
        settle_s=_parse_seconds(settle, "--settle"),
        failover_window_s=_parse_seconds(failover_window, "--failover-window"),
        failback_window_s=_parse_seconds(failback_window, "--failback-window"),
        rate_pps=rate, hop_check=not no_hop_check, quiet=quiet)
    raise typer.Exit(code)


@app.command()
@handles_errors
def serve(
    config: ConfigArg,
    listen: Annotated[str, typer.Option(
        "--listen", metavar="HOST:PORT", help="Address to serve /metrics, /report.json, "
        "/-/healthy and /probe on (port 0: any free port; the address is printed).")]
        = "127.0.0.1:9469",
    interval: Annotated[str, typer.Option(
        "--interval", metavar="DURATION", help="Time between probe cycles (the watch engine; "
        "one attempt per probe per cycle).")] = "10s",
    window: Annotated[int | None, typer.Option(
        "--window", min=1, max=100, metavar="N", help="Cycles pooled into each report, like N "
        "attempts spread over N intervals (default: the config's attempts).",
        show_default=False)] = None,
    probe_timeout: Annotated[str, typer.Option(
        "--probe-timeout", metavar="DURATION", help="Bound on a /probe scrape when Prometheus "
        "sends no scrape timeout; with one, the smaller wins, less 0.5 s.")] = "10s",
    fail_on: Annotated[str, typer.Option(
        "--fail-on", metavar="LEVEL", help="Lowest severity that counts in each report's "
        "status (netprobe_run_status): warning or critical.")] = "warning",
    rate: RateOpt = 2000.0,
    no_trace: Annotated[bool, typer.Option(
        "--no-trace", help="No hop check in the cycles and no traces in /probe (the active "
        "line of each group stays unknown).")] = False,
    history: Annotated[Path | None, typer.Option(
        "--history", metavar="DB", help="Append a run to this SQLite history once per window "
        "(windows do not overlap, so every attempt is stored once).", show_default=False)] = None,
    netns: Annotated[str | None, typer.Option(
        "--netns", metavar="NAME", help="Probe from inside this network namespace (root); "
        "--listen stays on this host's address, bound before entering it.",
        show_default=False)] = None,
) -> None:
    """Keep probing and serve the results to Prometheus (an exporter).

    /metrics: the latest report's metrics (as `check -o x.prom`) and the exporter's own;
    /report.json: the latest report; /-/healthy; /probe?group=NAME or ?target=NAME: probe
    that part now, within the scrape's timeout (like blackbox_exporter). Stops cleanly on
    SIGTERM or Ctrl-C (exit 0).
    """
    from netprobe.serve import ServeOptions, serve_command

    interval_s = _parse_seconds(interval, "--interval")
    code = serve_command(str(config), listen, ServeOptions(
        interval_s=interval_s or 10.0, window=window, fail_on=_fail_on(fail_on), rate_pps=rate,
        hop_check=not no_trace, traces=not no_trace,
        probe_timeout_s=_parse_seconds(probe_timeout, "--probe-timeout") or 10.0,
        history=str(history) if history else None), netns=netns)
    raise typer.Exit(code)


@app.command()
@handles_errors
def demo(
    where: Annotated[str, typer.Argument(
        help="lab: the namespace lab (root): healthy, primary cut, failover frozen. "
        "local: loopback listeners, no root.", metavar="lab|local")] = "lab",
    prefix: Annotated[str, typer.Option(
        "--prefix", metavar="PREFIX", help="lab: the demo lab's namespace prefix (PREFIX-office, ...), so two "
        "demos do not tear each other down.")] = "npdemo",
) -> None:
    """Run the main job end to end on targets the demo itself creates, then clean up."""
    from netprobe.demo import run_lab_demo, run_local_demo
    from netprobe.ui import stdout_console

    if where == "lab":
        raise typer.Exit(run_lab_demo(stdout_console(), prefix=prefix))
    if where == "local":
        raise typer.Exit(run_local_demo(stdout_console()))
    raise NetprobeError(f"demo {where}: use `netprobe demo lab` (root) or `netprobe demo local`")


def _mount_subcommands() -> None:
    from netprobe.lab.cli import app as lab_app

    app.add_typer(lab_app, name="lab", help="A network-namespace lab of a city hall, to rehearse "
                  "failures and failover drills (root).")


def collect_less() -> None:
    """Let the garbage collector run every 50,000 allocations instead of every 700.

    A command builds its config, plan, evidence and report once, as tens of
    thousands of objects that live until it exits; with the default threshold
    the collector walks them again and again (measured at 10,000 endpoints: half
    of the config load and of the diagnosis). Cyclic garbage is still collected.
    """
    gc.set_threshold(50_000, 10, 10)


def keep_until_exit() -> None:
    """What exists now lives until the command exits: out of the collector's sight.

    Called between the stages of `check`, so a full collection during a later
    stage walks only that stage's new objects (at 50,000 endpoints the config,
    plan and evidence are millions of objects, and each full walk of them
    cost a few tenths of a second).
    """
    gc.freeze()


def main() -> None:
    """Entry point. Usage errors exit 3 (UNKNOWN), not click's 2, which here means CRITICAL."""
    collect_less()
    _state["quick_exit"] = False
    # the lab's commands cost 11 ms to import: skip them when another command runs
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    every_command = app.registered_commands
    own = {c.name or c.callback.__name__: c for c in every_command if c.callback}
    if not words or words[0] not in own:
        with contextlib.suppress(ImportError):
            _mount_subcommands()
    else:
        # typer builds the options of every command to run one (signatures, type
        # hints, parsers): 7 ms of `check`'s start-up for the eight it does not run
        app.registered_commands = [own[words[0]]]
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_UNKNOWN)
        if not _state["command_ran"] and code not in (0, None):
            code = 0 if len(sys.argv) <= 1 else EXIT_UNKNOWN  # bare `netprobe` shows help
        if _state["quick_exit"]:
            _exit_now(code)
        sys.exit(code)
    finally:
        app.registered_commands = every_command


def _exit_now(code: int) -> None:
    """Exit without tearing down the interpreter's objects.

    A check of 10,000 endpoints ends holding ~100 MB of config, evidence and
    report objects; freeing them one by one takes 0.1 s that nobody waits for.
    Only after a command whose files are written (atomically, fsynced) and whose
    history is committed; stdout and stderr are flushed here. If flushing fails
    (a closed pipe), the ordinary exit reports it.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe or file
        return
    os._exit(code)
