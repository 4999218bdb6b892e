"""Build, break, heal and tear down the namespace lab (root).

`Lab(LabSettings(prefix="nplab"))` owns the namespaces `nplab-*` and the state
directory `/run/netprobe-lab/nplab/` (pid files, daemon logs, the controller's
log and state, the current scenario). Tests use another prefix, so they never
touch a user's lab. `down` is idempotent and `up` starts with it, so a stale
lab (a crashed run, a test killed half-way) never gets in the way.

The state directory records what the lab created: `namespaces` (one name a
line, written as each is added) and a pid file per daemon holding its pid, its
module and its start time (field 22 of /proc/PID/stat, so a recycled pid is
never killed). `down` removes only those, never another `nplab-*` namespace,
then deletes the state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netprobe.errors import NetprobeError, PrivilegeError
from netprobe.lab import layout, system
from netprobe.lab.controller import FAILBACK_STUCK_FLAG, FROZEN_FLAG, LOG_NAME, STATE_NAME
from netprobe.lab.netns import list_netns, netns_exists
from netprobe.lab.reach import dns_answers, ping_ok, tcp_connect, wait_until

DEFAULT_PREFIX = "nplab"
STATE_ROOT = Path("/run/netprobe-lab")
SCENARIO_TABLE_PREFIX = "scn_"  # nftables tables a scenario adds; `heal` deletes them
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9]{1,11}$")
SIBLING_MODULES = ("netprobe.lab.listeners", "netprobe.lab.dns_server")

ROOT_MESSAGE = (
    "the lab builds network namespaces, virtual links and firewall rules, which needs root "
    "(CAP_SYS_ADMIN and CAP_NET_ADMIN). Run it with sudo, e.g. `sudo {cmd}` (or "
    "`sudo $(which netprobe) {args}` when netprobe lives in a virtualenv), as root in a VM or "
    "a privileged container. Nothing was changed.")
NAMESPACES_FILE = "namespaces"  # in the state directory: the namespaces this lab created


def lab_command(prefix: str, sub: str) -> str:
    """`netprobe lab SUB`, with `--prefix PREFIX` when it is not the default: the
    command to suggest in a message about the lab `prefix`."""
    return f"netprobe lab {sub}" + (f" --prefix {prefix}" if prefix != DEFAULT_PREFIX else "")


@dataclass(frozen=True)
class ControllerTiming:
    interval_s: float = 0.1
    timeout_s: float = 0.4
    down_after: int = 10
    up_after: int = 5


@dataclass(frozen=True)
class LabSettings:
    prefix: str = DEFAULT_PREFIX
    state_root: Path = STATE_ROOT
    max_seconds: float = 7200.0  # every daemon ends by itself after this
    python: str = field(default_factory=lambda: sys.executable)
    controller: ControllerTiming = ControllerTiming()
    slow_delay_ms: float = 100.0  # each way on the primary: a ping's RTT grows by twice this
    lossy_percent: int = 30  # of the packets the CE sends over the primary


@dataclass(frozen=True)
class LabStatus:
    prefix: str
    state_dir: Path
    namespaces: tuple[str, ...]
    missing: tuple[str, ...]  # roles whose namespace is missing
    scenario: str | None
    active_line: str | None  # from the CE's routing table
    controller: dict[str, Any] | None  # its state file, plus `alive`
    daemons: dict[str, bool]  # name -> running
    info: dict[str, Any]  # lab.json: created, expires

    @property
    def is_up(self) -> bool:
        return bool(self.namespaces) and not self.missing

    def to_json(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "state_dir": str(self.state_dir), "up": self.is_up,
                "namespaces": list(self.namespaces), "missing": list(self.missing),
                "scenario": self.scenario, "active_line": self.active_line,
                "controller": self.controller, "daemons": self.daemons, **self.info}


class Lab:
    def __init__(self, settings: LabSettings | None = None) -> None:
        self.settings = settings or LabSettings()
        if not PREFIX_PATTERN.match(self.settings.prefix):
            raise NetprobeError(f"lab prefix {self.settings.prefix!r}: use 2 to 12 lower-case "
                                "letters or digits, starting with a letter")
        self.prefix = self.settings.prefix
        self.state_dir = self.settings.state_root / self.prefix

    # -- names and paths ------------------------------------------------------
    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    @property
    def office(self) -> str:
        return self.ns("office")

    @property
    def controller_log(self) -> Path:
        return self.state_dir / LOG_NAME

    def _pid_file(self, name: str) -> Path:
        return self.state_dir / "pids" / f"{name}.pid"

    def _log_file(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    # -- preconditions --------------------------------------------------------
    @staticmethod
    def require_root(prefix: str = DEFAULT_PREFIX) -> None:
        if os.geteuid() != 0:
            cmd = lab_command(prefix, "up")
            raise PrivilegeError(ROOT_MESSAGE.format(cmd=cmd, args=cmd.removeprefix("netprobe ")))
        missing = system.missing_tools()
        if missing:
            pkgs = " ".join(sorted({system.TOOL_PACKAGES[t] for t in missing}))
            raise NetprobeError(f"the lab needs {', '.join(missing)}, not found on PATH: "
                                f"install them with `apt-get install -y {pkgs}`")

    def require_up(self) -> None:
        self.require_root(self.prefix)
        missing = [r for r in layout.ROLES if not netns_exists(self.ns(r))]
        if missing:
            raise NetprobeError(f"no complete lab with prefix {self.prefix!r} (missing "
                                f"namespaces: {', '.join(self.ns(r) for r in missing)}); "
                                f"run `{lab_command(self.prefix, 'up')}` first")

    # -- up ---------------------------------------------------------------------
    def up(self) -> LabStatus:
        """Build the lab from scratch (tearing down a stale one first) and wait until
        the office reaches every service over the primary line."""
        self.require_root(self.prefix)
        missing = [m for m in SIBLING_MODULES if not _module_exists(m)]
        if missing:
            raise NetprobeError(f"the lab's daemons are missing: {', '.join(missing)}")
        self.down()  # a stale lab of this prefix: only what it recorded creating
        for sub in ("pids", "logs"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        try:
            self._build()
            self._start_daemons()
            self._start_controller()
            self._wait_ready()
        except BaseException:
            self.down(purge=False)  # the logs stay, for the error message's pointer
            raise
        self._record_lifetime(created=True)
        self._set_scenario("healthy")
        return self.status()

    def _record_lifetime(self, created: bool = False) -> None:
        now = time.time()
        info: dict[str, Any] = {}
        if not created:
            with contextlib.suppress(OSError, ValueError):
                info = json.loads((self.state_dir / "lab.json").read_text(encoding="utf-8"))
        info.setdefault("created_wall_s", round(now, 3))
        info.update(expires_wall_s=round(now + self.settings.max_seconds, 3),
                    max_seconds=self.settings.max_seconds)
        self._write_json("lab.json", info)

    def _build(self) -> None:
        for role in layout.ROLES:
            system.ip("netns", "add", self.ns(role))
            self._record_namespace(self.ns(role))
            system.set_sysctls(self.ns(role), layout.sysctls_for(role))
        for v in layout.VETHS:
            system.ip("link", "add", v.a_if, "netns", self.ns(v.a_role), "type", "veth",
                      "peer", "name", v.b_if, "netns", self.ns(v.b_role))
        for role in layout.ROLES:
            lines = ["link set lo up"]
            for b in layout.BRIDGES:
                if b.role == role:
                    # no STP, no forwarding delay: a port forwards as soon as it is up
                    lines.append(f"link add {b.name} type bridge stp_state 0 forward_delay 0")
                    lines += [f"link set {p} master {b.name}" for p in b.ports]
                    if b.cidr:
                        lines.append(f"address add {b.cidr} dev {b.name}")
            for v in layout.VETHS:
                for r, ifname, cidr in ((v.a_role, v.a_if, v.a_cidr), (v.b_role, v.b_if, v.b_cidr)):
                    if r == role and cidr:
                        lines.append(f"address add {cidr} dev {ifname}")
            lines += [f"link set {name} up" for name in layout.interfaces_of(role)]
            lines += layout.route_commands(role)
            system.ip_batch(self.ns(role), lines)
        system.nft_apply(self.ns("ce"), layout.CE_NAT_RULESET)

    def add_namespace(self, role: str, sysctls: tuple[tuple[str, str], ...] = ()) -> str:
        """An extra namespace `PREFIX-role` attached to this lab (a second site in a
        test, say), recorded like the lab's own so `down` removes it too."""
        self.require_up()
        name = self.ns(role)
        system.ip("netns", "add", name)
        self._record_namespace(name)
        system.set_sysctls(name, layout.COMMON_SYSCTLS + sysctls)
        return name

    def _daemon_argv(self, d: layout.Daemon) -> list[str]:
        return [self.settings.python, "-m", d.module, *d.args,
                "--max-seconds", str(int(self.settings.max_seconds))]

    def _record_namespace(self, name: str) -> None:
        with open(self.state_dir / NAMESPACES_FILE, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")

    def recorded_namespaces(self) -> list[str]:
        """The namespaces this lab recorded creating (and not yet removed)."""
        try:
            text = (self.state_dir / NAMESPACES_FILE).read_text(encoding="utf-8")
        except OSError:
            return []
        prefix = self.prefix + "-"
        return list(dict.fromkeys(n for n in text.split() if n.startswith(prefix)))

    def _spawn(self, name: str, role: str, argv: list[str]) -> int:
        pid = system.spawn(self.ns(role), argv, self._log_file(name))
        started = system.pid_start_time(pid)
        self._pid_file(name).write_text(f"{pid}\n{argv[2]}\n{started}\n", encoding="utf-8")
        return pid

    def _start_daemons(self, only_dead: bool = False) -> int:
        started = 0
        for d in layout.DAEMONS:
            if only_dead and self._daemon_pid(d.name) is not None:
                continue
            self._spawn(d.name, d.role, self._daemon_argv(d))
            started += 1
        return started

    def _start_controller(self) -> None:
        t = self.settings.controller
        p, s = layout.PRIMARY, layout.SECONDARY
        argv = [self.settings.python, "-m", "netprobe.lab.controller",
                "--state-dir", str(self.state_dir),
                "--primary", f"{p.name},{p.ce_if},{p.far_end}",
                "--secondary", f"{s.name},{s.ce_if},{s.far_end}",
                "--interval-ms", str(t.interval_s * 1000), "--timeout-ms", str(t.timeout_s * 1000),
                "--down-after", str(t.down_after), "--up-after", str(t.up_after),
                "--max-seconds", str(int(self.settings.max_seconds))]
        self._spawn("controller", "ce", argv)
        if not wait_until(lambda: (self.controller_state() or {}).get("active"), 10.0):
            raise NetprobeError(f"the lab's failover controller did not start; see "
                                f"{self._log_file('controller')}")

    def _wait_ready(self, timeout_s: float = 15.0) -> None:
        """Every daemon answers in its own namespace, and the office reaches them."""
        checks = [
            ("listener on dc-app 443", lambda: tcp_connect(
                self.ns("srv"), layout.SERVER_ADDR, 443, 0.3) is True),
            ("listener on dc-app 22", lambda: tcp_connect(
                self.ns("srv"), layout.SERVER_ADDR, 22, 0.3) is True),
            ("listener on cloud-app 443", lambda: tcp_connect(
                self.ns("cloud"), layout.CLOUD_ADDR, 443, 0.3) is True),
            ("DNS server", lambda: bool(dns_answers(
                self.ns("dns"), layout.DNS_ADDR, "www.intra.example", 0.3))),
            ("office to dc-app over the primary", lambda: tcp_connect(
                self.office, layout.SERVER_ADDR, 443, 0.5) is True),
            ("office to cloud-app", lambda: tcp_connect(
                self.office, layout.CLOUD_ADDR, 443, 0.5) is True),
            ("office to the secondary's far end", lambda: ping_ok(
                self.office, layout.SECONDARY.far_end, 0.5)),
        ]
        deadline = time.monotonic() + timeout_s
        for what, check in checks:
            if not wait_until(check, max(0.5, deadline - time.monotonic()), 0.1):
                raise NetprobeError(f"the lab did not come up: {what} not reachable within "
                                    f"{timeout_s:.0f} s; daemon logs are in {self.state_dir}/logs")

    # -- down -------------------------------------------------------------------
    def down(self, purge: bool = True) -> list[str]:
        """Kill the daemons and delete the namespaces this lab recorded creating, and
        nothing else (another `PREFIX-*` namespace, a recycled pid survive).
        Idempotent; returns the namespaces removed. Then the state directory goes
        too (and /run/netprobe-lab when it is left empty); with `purge=False` the
        logs stay, for a post-mortem of a failed `up`."""
        self.require_root(self.prefix)
        pid_dir = self.state_dir / "pids"
        if pid_dir.is_dir():
            for pid_file in pid_dir.glob("*.pid"):
                pid = self._verified_pid(pid_file)
                if pid is not None:
                    system.kill_pid(pid)
                pid_file.unlink(missing_ok=True)
        removed = []
        for name in self.recorded_namespaces():
            if netns_exists(name):
                system.ip("netns", "del", name, check=False)
                removed.append(name)
        if purge:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            with contextlib.suppress(OSError):  # not empty: other labs' state
                self.settings.state_root.rmdir()
            return removed
        for leftover in (NAMESPACES_FILE, STATE_NAME, "scenario", "lab.json", FROZEN_FLAG,
                         FAILBACK_STUCK_FLAG):
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / leftover).unlink()
        return removed

    # -- daemons ------------------------------------------------------------------
    def _verified_pid(self, pid_file: Path) -> int | None:
        """The pid in a pid file, if that process is still the daemon we started:
        same start time (a recycled pid has another) and running our module."""
        try:
            pid_text, module, started_text = pid_file.read_text(encoding="utf-8").split()[:3]
            pid, started = int(pid_text), int(started_text)
        except (OSError, ValueError):
            return None
        if (system.pid_alive(pid) and system.pid_start_time(pid) == started
                and module in system.pid_cmdline(pid)):
            return pid
        return None

    def _daemon_pid(self, name: str) -> int | None:
        return self._verified_pid(self._pid_file(name))

    def stop_daemon(self, name: str) -> None:
        pid = self._daemon_pid(name)
        if pid is not None:
            system.kill_pid(pid)
        self._pid_file(name).unlink(missing_ok=True)

    # -- controller -------------------------------------------------------------
    def controller_state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.state_dir / STATE_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def controller_events(self) -> list[dict[str, Any]]:
        try:
            text = self.controller_log.read_text(encoding="utf-8")
        except OSError:
            return []
        events = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    def wait_for_event(self, event: str, after: int, timeout_s: float = 10.0,
                       **match: Any) -> dict[str, Any] | None:
        """The first controller event named `event` (with fields equal to `match`)
        logged after the first `after` events; None when none within `timeout_s`."""
        found: list[dict[str, Any]] = []

        def look() -> bool:
            for e in self.controller_events()[after:]:
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                    found.append(e)
                    return True
            return False

        wait_until(look, timeout_s, 0.05)
        return found[0] if found else None

    def set_flag(self, flag: str, on: bool, timeout_s: float = 5.0) -> None:
        """Set or clear a controller flag and wait until the controller has seen it."""
        path = self.state_dir / flag
        key = "frozen" if flag == FROZEN_FLAG else "failback"
        want: Any = on if flag == FROZEN_FLAG else ("stuck" if on else "auto")
        if on:
            path.write_text("1\n", encoding="utf-8")
        else:
            path.unlink(missing_ok=True)
        if not wait_until(lambda: (self.controller_state() or {}).get(key) == want, timeout_s,
                          0.05):
            raise NetprobeError(f"the lab's controller did not pick up {flag} within "
                                f"{timeout_s:.0f} s; is it running? (`{lab_command(self.prefix, 'status')}`)")

    def active_line(self) -> str | None:
        """The line the CE's default route uses right now (the ground truth)."""
        out = system.run(["ip", "-n", self.ns("ce"), "-j", "route", "show", "default"],
                         check=False).stdout
        try:
            routes = json.loads(out or "[]")
        except ValueError:
            return None
        devs = {r.get("dev") for r in routes}
        for line in layout.LINES:
            if line.ce_if in devs:
                return line.name
        return None

    # -- scenarios --------------------------------------------------------------
    def break_(self, scenario: str) -> None:
        """Heal, then apply `scenario` (scenarios do not stack)."""
        from netprobe.lab.scenarios import get_scenario

        sc = get_scenario(scenario)
        self.require_up()
        self.heal()
        self._set_scenario(sc.name + " (applying)")
        sc.apply(self)
        self._set_scenario(sc.name)

    def heal(self, timeout_s: float = 15.0) -> None:
        """Undo every scenario: firewall drops, the slow wire, ICMP limits, a
        powered-off device, stopped daemons, controller flags; wait until traffic is back on the primary."""
        from netprobe.lab.scenarios import power_on, restore_sysctls, restore_wire

        self.require_up()
        for role in layout.ROLES:
            system.nft_delete_tables(self.ns(role), SCENARIO_TABLE_PREFIX)
        restore_wire(self)
        restore_sysctls(self)
        power_on(self, "dc-edge")
        restarted = self._start_daemons(only_dead=True)
        if self._daemon_pid("controller") is None:
            self._start_controller()
            restarted += 1
        if restarted:  # ended (lifetime reached) or killed: they live on from now
            self._record_lifetime()
        # Let the controller see the primary back before unfreezing it, or it
        # would act on its stale "primary down" and fail over needlessly.
        wait_until(lambda: (self.controller_state() or {}).get("primary_state") == "up",
                   timeout_s, 0.05)
        for flag in (FROZEN_FLAG, FAILBACK_STUCK_FLAG):
            (self.state_dir / flag).unlink(missing_ok=True)
        ok = wait_until(lambda: (self.controller_state() or {}).get("active")
                        == layout.PRIMARY.name and self.active_line() == layout.PRIMARY.name
                        and not (self.controller_state() or {}).get("frozen"), timeout_s, 0.05)
        if not ok:
            raise NetprobeError(f"healing: traffic did not return to {layout.PRIMARY.name} "
                                f"within {timeout_s:.0f} s; see {self.controller_log}")
        self._wait_ready(timeout_s)
        self._set_scenario("healthy")

    def _set_scenario(self, name: str) -> None:
        (self.state_dir / "scenario").write_text(name + "\n", encoding="utf-8")

    def scenario(self) -> str | None:
        try:
            return (self.state_dir / "scenario").read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    # -- status -------------------------------------------------------------------
    def status(self) -> LabStatus:
        self.require_root(self.prefix)
        ours = {self.ns(r) for r in layout.ROLES}
        present = tuple(n for n in list_netns(self.prefix) if n in ours)
        missing = tuple(r for r in layout.ROLES if self.ns(r) not in present)
        controller = self.controller_state()
        if controller is not None:
            controller = {**controller, "alive": self._daemon_pid("controller") is not None}
        daemons = {d.name: self._daemon_pid(d.name) is not None for d in layout.DAEMONS}
        if self._pid_file("delay-a").exists():
            daemons["delay-a"] = self._daemon_pid("delay-a") is not None
        try:
            info = json.loads((self.state_dir / "lab.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
        active = self.active_line() if self.ns("ce") in present else None
        return LabStatus(prefix=self.prefix, state_dir=self.state_dir, namespaces=present,
                         missing=missing if present else tuple(layout.ROLES),
                         scenario=self.scenario() if present else None, active_line=active,
                         controller=controller if present else None, daemons=daemons,
                         info=info)

    # -- helpers ------------------------------------------------------------------
    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        tmp = self.state_dir / (name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, self.state_dir / name)


def _module_exists(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
