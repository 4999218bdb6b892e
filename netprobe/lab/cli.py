"""`netprobe lab ...`: build, break, heal and tear down the namespace lab (root).

The main CLI mounts `app` as `lab`; standalone:
    python -c 'from netprobe.lab.cli import app; app()' up
"""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from netprobe.cli import handles_errors
from netprobe.errors import NetprobeError

app = typer.Typer(
    name="lab",
    help="A network-namespace lab of a city hall (office, CE router with a leased line and a "
    "broadband backup, carrier routers, data-centre edge, server, DNS, cloud), to rehearse "
    "failures and failover drills. Needs root. Addresses are documentation ranges only.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

PrefixOpt = Annotated[str, typer.Option(
    "--prefix", metavar="PREFIX", help="Namespace name prefix: the lab's namespaces are PREFIX-office, "
    "PREFIX-ce, ... and its state is in /run/netprobe-lab/PREFIX.")]
DEFAULT_PREFIX = "nplab"


def _lab(prefix: str, max_seconds: float | None = None):
    from netprobe.lab.lab import Lab, LabSettings

    if max_seconds is None:
        return Lab(LabSettings(prefix=prefix))
    return Lab(LabSettings(prefix=prefix, max_seconds=max_seconds))


def _cmd(prefix: str, sub: str) -> str:
    from netprobe.lab.lab import lab_command

    return lab_command(prefix, sub)


def _out(text: str) -> None:
    print(text, flush=True)  # plain lines: no wrapping when piped


@app.command()
@handles_errors
def up(
    prefix: PrefixOpt = DEFAULT_PREFIX,
    max_seconds: Annotated[float, typer.Option(
        "--max-seconds", min=10, max=7 * 86400, metavar="SECONDS",
        help="Every daemon of the lab (controller, listeners, DNS) ends by itself after this "
        "many seconds.")] = 7200.0,
) -> None:
    """Build the lab (a stale one with the same prefix is removed first)."""
    lab = _lab(prefix, max_seconds)
    status = lab.up()
    _out(f"lab {prefix} is up: {len(status.namespaces)} namespaces, traffic on "
         f"{status.active_line}; daemons end by themselves in {max_seconds:.0f} s.")
    _out(f"  check it:   netprobe check configs/lab.yaml --netns {lab.office}")
    _out(f"  break it:   {_cmd(prefix, 'break primary-cut')}    (see `netprobe lab break "
         "--help`)")
    _out(f"  a shell:    {_cmd(prefix, 'exec')} -- bash          (in {lab.office})")
    _out(f"  remove it:  {_cmd(prefix, 'down')}")


@app.command()
@handles_errors
def down(
    prefix: PrefixOpt = DEFAULT_PREFIX,
    purge: Annotated[bool, typer.Option(
        "--purge", hidden=True, help="Accepted for compatibility: `down` always deletes "
        "the state directory.")] = False,
) -> None:
    """Kill the daemons and delete the namespaces the lab recorded creating (nothing
    else), then its state directory. Safe to run any time."""
    removed = _lab(prefix).down()
    _out(f"lab {prefix}: removed {len(removed)} namespaces" if removed
         else f"lab {prefix}: nothing to remove")


@app.command()
@handles_errors
def status(
    prefix: PrefixOpt = DEFAULT_PREFIX,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Namespaces, the active line, the controller's state, the current scenario.

    Exit 0 when the lab is up, 1 when it is not (or only partly)."""
    st = _lab(prefix).status()
    if as_json:
        print(json.dumps(st.to_json(), indent=2))
        raise typer.Exit(0 if st.is_up else 1)
    if not st.namespaces:
        _out(f"lab {prefix}: down (no namespaces {prefix}-*); build it with `{_cmd(prefix, 'up')}`")
        raise typer.Exit(1)
    state = "up" if st.is_up else "broken (missing: " + ", ".join(st.missing) + ")"
    _out(f"lab {prefix}: {state}; scenario: {st.scenario or 'unknown'}")
    _out(f"  namespaces:  {' '.join(st.namespaces)}")
    _out(f"  active line: {st.active_line or 'none (no default route on the CE)'}")
    c = st.controller
    if c:
        flags = [f for f, on in (("FROZEN", c.get("frozen")),
                                 ("FAILBACK STUCK", c.get("failback") == "stuck")) if on]
        _out(f"  controller:  {'running' if c.get('alive') else 'NOT RUNNING'}, active "
             f"{c.get('active')}, primary {c.get('primary_state')}, switches: "
             f"{c.get('switches')}, since {c.get('since')}" + (f"; {', '.join(flags)}" if flags else ""))
    else:
        _out("  controller:  no state")
    daemons = ", ".join(f"{n} {'up' if ok else 'DOWN'}" for n, ok in st.daemons.items())
    _out(f"  daemons:     {daemons}")
    expires = st.info.get("expires_wall_s")
    if expires:
        from datetime import datetime

        when = datetime.fromtimestamp(expires).astimezone().isoformat(timespec="seconds")
        _out(f"  lifetime:    daemons end by themselves at {when} (`{_cmd(prefix, 'heal')}` restarts them)")
    _out(f"  state:       {st.state_dir} (controller.log: the controller's decisions)")
    raise typer.Exit(0 if st.is_up else 1)


def _scenario_help() -> str:
    from netprobe.lab.scenarios import SCENARIOS

    return "Scenarios:\n\n" + "\n\n".join(f"{s.name}: {s.summary}" for s in SCENARIOS.values())


@app.command("break", help="Heal, then break the lab in one way (scenarios do not stack).\n\n"
             + _scenario_help())
@handles_errors
def break_(
    scenario: Annotated[str, typer.Argument(help="What to break (see above).",
                                            metavar="SCENARIO", show_default=False)],
    prefix: PrefixOpt = DEFAULT_PREFIX,
) -> None:
    lab = _lab(prefix)
    lab.break_(scenario)
    _out(f"lab {prefix}: scenario {scenario} applied; traffic on {lab.active_line()}")


@app.command()
@handles_errors
def heal(prefix: PrefixOpt = DEFAULT_PREFIX) -> None:
    """Undo every scenario and wait until traffic is back on the primary line."""
    lab = _lab(prefix)
    lab.heal()
    _out(f"lab {prefix}: healthy; traffic on {lab.active_line()}")


@app.command("exec", context_settings={"ignore_unknown_options": True})
@handles_errors
def exec_(
    command: Annotated[list[str], typer.Argument(
        help="The command and its arguments, after `--` (run directly, no shell).",
        metavar="COMMAND", show_default=False)],
    prefix: PrefixOpt = DEFAULT_PREFIX,
    node: Annotated[str, typer.Option(
        "--node", metavar="NODE", help="Which lab host: office, ce, pe-a, pe-b, dc-edge, srv, dns, cloud, "
        "wire-a.")] = "office",
) -> None:
    """Run a command inside a lab namespace (the office by default): netprobe lab exec -- CMD..."""
    from netprobe.lab import layout
    from netprobe.lab.lab import Lab

    if node not in layout.ROLES:
        raise NetprobeError(f"--node {node}: use one of {', '.join(layout.ROLES)}")
    lab = _lab(prefix)
    Lab.require_root(prefix)
    from netprobe.lab.netns import netns_exists

    if not netns_exists(lab.ns(node)):
        raise NetprobeError(f"namespace {lab.ns(node)} does not exist; run "
                             f"`{_cmd(prefix, 'up')}`")
    argv = ["ip", "netns", "exec", lab.ns(node), *command]
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise NetprobeError(f"cannot run {command[0]!r}: {exc.strerror}") from None
