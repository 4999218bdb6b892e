"""Small wrappers over iproute2, nftables, sysctl and processes, for the lab.

Every command is an argument list (never a shell string). A failed command
raises `LabCommandError` naming the command and what it printed; the lab is
our own construction, so a failure there is a bug or a missing tool, not a
network outcome.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from netprobe.errors import NetprobeError

T = TypeVar("T")

# Debian packages that provide the tools the lab runs.
TOOL_PACKAGES = {"ip": "iproute2", "nft": "nftables", "sysctl": "procps"}

# Children we started, kept so they can be reaped (no zombies, no warnings).
_CHILDREN: dict[int, subprocess.Popen] = {}


class LabCommandError(NetprobeError):
    def __init__(self, cmd: Sequence[str], returncode: int, output: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.output = output
        super().__init__(f"lab command failed (exit {returncode}): {' '.join(cmd)}: "
                         f"{output.strip() or 'no output'}")


def missing_tools() -> list[str]:
    return [tool for tool in TOOL_PACKAGES if shutil.which(tool) is None]


def run(cmd: Sequence[str], *, input_text: str | None = None, check: bool = True,
        timeout_s: float = 20.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), input=input_text, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if check and proc.returncode != 0:
        raise LabCommandError(cmd, proc.returncode, proc.stderr + proc.stdout)
    return proc


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", *args], check=check)


def ip_batch(netns: str, lines: Sequence[str]) -> None:
    """Many `ip` commands in one process: `ip -n NS -batch -` (one per line).

    Lines are built from the lab's own constants, never from user input.
    """
    if lines:
        run(["ip", "-n", netns, "-batch", "-"], input_text="\n".join(lines) + "\n")


def ns_exec(netns: str, cmd: Sequence[str], *, input_text: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", netns, *cmd], input_text=input_text, check=check)


def nft_apply(netns: str, ruleset: str) -> None:
    ns_exec(netns, ["nft", "-f", "-"], input_text=ruleset)


def nft_tables(netns: str) -> list[tuple[str, str]]:
    """(family, name) of every nftables table in the namespace."""
    out = ns_exec(netns, ["nft", "list", "tables"], check=False).stdout
    tables = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table":
            tables.append((parts[1], parts[2]))
    return tables


def nft_delete_tables(netns: str, name_prefix: str) -> int:
    doomed = [(f, n) for f, n in nft_tables(netns) if n.startswith(name_prefix)]
    if doomed:
        nft_apply(netns, "".join(f"delete table {f} {n}\n" for f, n in doomed))
    return len(doomed)


def set_sysctls(netns: str, pairs: Sequence[tuple[str, str]]) -> None:
    ns_exec(netns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in pairs)])


def netns_pids(netns: str) -> list[int]:
    out = run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]


# -- processes ------------------------------------------------------------
def spawn(netns: str, argv: Sequence[str], log_path: Path) -> int:
    """Start a daemon inside `netns`, detached from our session; returns its pid.

    `ip netns exec` execs the command, so the pid is the daemon's own.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True)
    _CHILDREN[proc.pid] = proc
    return proc.pid


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]


def pid_alive(pid: int) -> bool:
    """Running (not a zombie)."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # the state follows the parenthesised command name
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def pid_start_time(pid: int) -> int:
    """When the process started, in clock ticks since boot (field 22 of
    /proc/PID/stat); -1 when it is gone. A pid plus this names one process:
    a recycled pid has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # fields after the parenthesised command name start at field 3
        return int(stat.rsplit(")", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return -1


def pid_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def kill_pid(pid: int, grace_s: float = 2.0) -> bool:
    """SIGTERM, then SIGKILL after `grace_s`; True when it is gone."""
    if not pid_alive(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


# -- running Python code inside a namespace -------------------------------------
def run_in_netns(netns: str, fn: Callable[..., T], *args: Any, timeout_s: float = 30.0,
                 **kwargs: Any) -> T:
    """Call `fn` in a fresh thread that has entered `netns`; return its result.

    setns(2) moves only the calling thread, so the rest of this process stays
    where it was; sockets made by `fn` belong to the namespace.
    """
    from netprobe.lab.netns import enter_netns

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            enter_netns(netns)
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"{getattr(fn, '__name__', fn)} in {netns} took over {timeout_s} s")
    if "error" in box:
        raise box["error"]
    return box["value"]
