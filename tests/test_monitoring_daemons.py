"""The Nagios plugin output, read by the real daemons: Icinga 2 and Nagios Core 4.

Each test starts the daemon (Debian's `icinga2` / `nagios4` packages) on a
private configuration in a temporary directory, with one service whose check
command is `netprobe check SITE -f nagios` against real listeners on loopback.
A wrapper keeps exactly what netprobe printed; the test then reads back what
the daemon stored (Icinga 2's perfdata writer, Nagios' status.dat) and asserts
every perfdata value survived and the status line arrived unchanged.

Both need root (the daemons switch users; Nagios runs the check as `nagios`,
which on a default Debian system has no ICMP privilege: exactly the case where
a check must not say a plain OK). Every daemon is killed at the end, and every
wait is bounded.
"""

from __future__ import annotations

import contextlib
import grp
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

ICINGA2 = shutil.which("icinga2") or "/usr/sbin/icinga2"
NAGIOS4 = shutil.which("nagios4") or "/usr/sbin/nagios4"
NETPROBE = str(Path(sys.executable).with_name("netprobe"))
WAIT_S = 60.0

# one perfdata item: a label (quoted with '' inside, or bare) = value[UOM][;warn;crit;min;max]
PERF_ITEM = re.compile(r"""('(?:[^']|'')+'|[^'\s=][^\s=]*)=(\S+)""")


def perf_items(text: str) -> dict[str, str]:
    """label -> 'value[UOM];warn;crit;min;max', labels unquoted."""
    out = {}
    for label, rest in PERF_ITEM.findall(text):
        if label.startswith("'"):
            label = label[1:-1].replace("''", "'")
        out[label] = rest
    return out


def site(tmp_path: Path, *, web_port: int, closed_port: int, dns_port: int) -> Path:
    probes = f"[icmp, tcp/{web_port}, tcp/{closed_port}]"
    text = f"""
        version: 1
        vantage: daemon-test
        defaults: {{timeout: 300ms, attempts: 2, interval: 20ms}}
        endpoints:
          web:
            address: 127.0.0.1
            probes: {probes}
          resolver:
            address: 127.0.0.1
            probes:
              - dns: {{query: www.intra.example, expect: [203.0.113.10], port: {dns_port}}}
              - tcp/{closed_port}
          txt:
            address: 127.0.0.1
            probes: [{{dns: {{query: txt.intra.example, type: TXT, port: {dns_port}}}}}]
        """
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def wrapper(tmp_path: Path, config: Path) -> Path:
    """The check command: run netprobe, keep what it printed and its exit code."""
    sent, code = tmp_path / "sent.txt", tmp_path / "sent.rc"
    script = tmp_path / "check_netprobe.sh"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        "{NETPROBE}" check "{config}" -f nagios --confirm 0 --no-trace > "{sent}.tmp" 2>"{sent}.err"
        rc=$?
        mv "{sent}.tmp" "{sent}"
        echo $rc > "{code}"
        cat "{sent}"
        exit $rc
        """))
    script.chmod(0o755)
    return script


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def kill(proc: subprocess.Popen) -> None:
    """The daemons fork workers: end the whole process group the test started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def wait_for(check, what: str, proc: subprocess.Popen, log: Path) -> object:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    pytest.fail(f"{what} within {WAIT_S:g} s (daemon exit {proc.poll()}); log:\n{tail}")


def status_line(sent: str) -> str:
    return sent.splitlines()[0].split(" | ", 1)[0]


def perf_sent(sent: str) -> dict[str, str]:
    return perf_items(sent.splitlines()[0].split(" | ", 1)[1])


# -- Icinga 2 -------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists(ICINGA2), reason="icinga2 (Debian package icinga2-bin) "
                    "not installed")
def test_icinga2_keeps_every_perfdata_value_and_the_status_line(
        tmp_path, tcp_listener, closed_tcp_port, dns_server):
    config = site(tmp_path, web_port=tcp_listener.port, closed_port=closed_tcp_port[1],
                  dns_port=dns_server.port)
    check = wrapper(tmp_path, config)
    for sub in ("run/icinga2", "data", "log", "cache", "spool"):
        (tmp_path / sub).mkdir(parents=True)
    stored = tmp_path / "perfdata"
    (tmp_path / "icinga2.conf").write_text(textwrap.dedent(f"""\
        object CheckCommand "netprobe" {{ command = [ "{check}" ]; timeout = 30s }}
        object CheckCommand "true" {{ command = [ "/bin/true" ] }}
        object Host "vantage" {{ check_command = "true"; check_interval = 1h }}
        object Service "netprobe" {{
          host_name = "vantage"; check_command = "netprobe"
          check_interval = 1s; retry_interval = 1s; max_check_attempts = 1
        }}
        object CheckerComponent "checker" {{ }}
        object PerfdataWriter "perfdata" {{
          service_perfdata_path = "{stored}"
          service_temp_path = "{tmp_path}/perfdata.tmp"
          host_perfdata_path = "{tmp_path}/host-perfdata"
          host_temp_path = "{tmp_path}/host-perfdata.tmp"
          service_format_template = "OUTPUT::$service.output$\\tSTATE::$service.state_id$\\tPERF::$service.perfdata$"
          rotation_interval = 1s
        }}
        """))
    log = tmp_path / "log" / "icinga2.log"
    defines = [f"-D{k}={v}" for k, v in (
        ("RunAsUser", "root"), ("RunAsGroup", "root"), ("InitRunDir", tmp_path / "run"),
        ("DataDir", tmp_path / "data"), ("LogDir", tmp_path / "log"),
        ("CacheDir", tmp_path / "cache"), ("SpoolDir", tmp_path / "spool"))]
    proc = start([ICINGA2, "daemon", "-c", str(tmp_path / "icinga2.conf"), *defines,
                  "--log-level", "warning"], tmp_path)
    try:
        def record() -> str | None:
            for f in sorted(tmp_path.glob("perfdata.*")):
                if f.name != "perfdata.tmp" and "OUTPUT::" in (text := f.read_text()):
                    return text
            return None

        text = wait_for(record, "no perfdata written by Icinga 2", proc, log)
    finally:
        kill(proc)
    sent = (tmp_path / "sent.txt").read_text()
    record_line = text.split("OUTPUT::")[1]
    output, state, perf = re.match(r"(.*)\tSTATE::(\d)\tPERF::(.*)", record_line, re.S).groups()
    assert int(state) == int((tmp_path / "sent.rc").read_text()) == 2  # refused port: critical
    assert output.splitlines()[0].rstrip() == status_line(sent)
    # what Icinga 2 keeps is every item netprobe sent, with the same values and thresholds
    kept, given = perf_items(perf.strip().splitlines()[0]), perf_sent(sent)
    assert len(given) >= 10
    assert kept == given
    assert kept[f"web/tcp/{closed_tcp_port[1]}_loss"].startswith("0%")  # a RST is an answer


# -- Nagios Core 4 --------------------------------------------------------------------

NAGIOS_OBJECTS = """\
define timeperiod {{
  timeperiod_name always
  alias always
  sunday 00:00-24:00
  monday 00:00-24:00
  tuesday 00:00-24:00
  wednesday 00:00-24:00
  thursday 00:00-24:00
  friday 00:00-24:00
  saturday 00:00-24:00
}}
define command {{
  command_name netprobe
  command_line {check}
}}
define command {{
  command_name true
  command_line /bin/true
}}
define contact {{
  contact_name nobody-to-page
  alias nobody
  host_notifications_enabled 0
  service_notifications_enabled 0
  host_notification_period always
  service_notification_period always
  host_notification_options n
  service_notification_options n
  host_notification_commands true
  service_notification_commands true
}}
define host {{
  host_name vantage
  alias vantage
  address 127.0.0.1
  check_command true
  max_check_attempts 1
  check_period always
  contacts nobody-to-page
  notification_period always
  notification_interval 0
}}
define service {{
  host_name vantage
  service_description netprobe
  check_command netprobe
  max_check_attempts 1
  check_interval 2
  retry_interval 2
  check_period always
  contacts nobody-to-page
  notification_period always
  notification_interval 0
}}
"""


@pytest.fixture()
def nagios_dir():
    """A directory the `nagios` user can reach (pytest's tmp_path is root's, mode 0700)."""
    import pwd
    import tempfile

    try:
        nagios = pwd.getpwnam("nagios")
    except KeyError:
        pytest.skip("no `nagios` user (the nagios4 package creates it)")
    # the venv's interpreter may live where `nagios` cannot reach it (a pyenv under
    # /root): then Nagios runs its checks as root instead
    probe = subprocess.run(["su", "-s", "/bin/sh", nagios.pw_name, "-c",
                            f"'{NETPROBE}' --version"], capture_output=True, timeout=30)
    user = nagios if probe.returncode == 0 else pwd.getpwnam("root")
    path = Path(tempfile.mkdtemp(prefix="netprobe-nagios-"))
    path.chmod(0o755)
    try:
        yield path, user
    finally:
        shutil.rmtree(path, ignore_errors=True)


def can_ping_as(user) -> bool:
    """Whether net.ipv4.ping_group_range admits the user's group (no raw socket as non-root)."""
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    return low <= user.pw_gid <= high


def nagios_status(status: Path) -> dict[str, str] | None:
    """The service block of Nagios' status.dat, once it holds a check result."""
    if not status.exists():
        return None
    text = status.read_text(errors="replace")
    block = re.search(r"servicestatus \{(.*?)\}", text, re.S)
    if not block:
        return None
    fields = dict(re.findall(r"^\s*(\w+)=(.*)$", block.group(1), re.M))
    return fields if fields.get("has_been_checked") == "1" else None


@pytest.mark.skipif(not os.path.exists(NAGIOS4), reason="nagios4 (Debian package nagios4-core) "
                    "not installed")
def test_nagios4_keeps_every_perfdata_value_and_the_status_line_as_the_nagios_user(
        nagios_dir, tcp_listener, closed_tcp_port, dns_server):
    tmp_path, nagios = nagios_dir
    config = site(tmp_path, web_port=tcp_listener.port, closed_port=closed_tcp_port[1],
                  dns_port=dns_server.port)
    check = wrapper(tmp_path, config)
    (tmp_path / "objects.cfg").write_text(NAGIOS_OBJECTS.format(check=check))
    (tmp_path / "checkresults").mkdir()
    main_cfg = tmp_path / "nagios.cfg"
    main_cfg.write_text("\n".join(f"{k}={v}" for k, v in (
        ("log_file", tmp_path / "nagios.log"), ("cfg_file", tmp_path / "objects.cfg"),
        ("object_cache_file", tmp_path / "objects.cache"),
        ("precached_object_file", tmp_path / "objects.precache"),
        ("status_file", tmp_path / "status.dat"), ("status_update_interval", 1),
        ("nagios_user", nagios.pw_name), ("nagios_group", grp.getgrgid(nagios.pw_gid).gr_name),
        ("check_external_commands", 0), ("command_file", tmp_path / "nagios.cmd"),
        ("lock_file", tmp_path / "nagios.lock"), ("temp_file", tmp_path / "nagios.tmp"),
        ("temp_path", tmp_path), ("check_result_path", tmp_path / "checkresults"),
        ("retain_state_information", 0), ("state_retention_file", tmp_path / "retention.dat"),
        ("process_performance_data", 0), ("interval_length", 1), ("use_syslog", 0),
        ("enable_notifications", 0), ("execute_host_checks", 0),
        ("max_service_check_spread", 1), ("service_inter_check_delay_method", "n"),
        ("check_result_reaper_frequency", 1), ("service_check_timeout", 30),
        ("enable_flap_detection", 0))) + "\n")
    for path in tmp_path.rglob("*"):
        os.chown(path, nagios.pw_uid, nagios.pw_gid)
    os.chown(tmp_path, nagios.pw_uid, nagios.pw_gid)
    verify = subprocess.run([NAGIOS4, "-v", str(main_cfg)], capture_output=True, text=True,
                            timeout=30)
    assert verify.returncode == 0, verify.stdout[-2000:]
    proc = start([NAGIOS4, str(main_cfg)], tmp_path)
    try:
        fields = wait_for(lambda: nagios_status(tmp_path / "status.dat"),
                          "no check result in Nagios' status.dat", proc,
                          tmp_path / "nagios.log")
    finally:
        kill(proc)
    sent = (tmp_path / "sent.txt").read_text()
    code = int((tmp_path / "sent.rc").read_text())
    unprivileged = nagios.pw_uid != 0 and not can_ping_as(nagios)
    if unprivileged:
        # as `nagios`, without ICMP privilege: never a plain OK
        assert code == 3 and status_line(sent).startswith("NETPROBE UNKNOWN"), sent
    else:
        assert code == 2 and status_line(sent).startswith("NETPROBE CRITICAL"), sent
    assert int(fields["current_state"]) == code
    assert fields["plugin_output"] == status_line(sent)  # no ';' turned into ':'
    kept, given = perf_items(fields["performance_data"]), perf_sent(sent)
    assert len(given) >= 10 and kept == given
    if unprivileged:
        assert kept["web_rtt"] == "U" and kept["web_loss"] == "U"  # ICMP not measured


# -- no ICMP privilege: never a plain OK --------------------------------------------------

@pytest.mark.skipif(not (shutil.which("unshare") and shutil.which("setpriv")),
                    reason="needs util-linux `unshare` and `setpriv`")
def test_without_icmp_privilege_the_check_is_unknown_not_ok(tmp_path):
    """Root without CAP_NET_RAW, in a fresh network namespace whose ping_group_range
    admits no group: ICMP cannot be measured, the rest of the run is fine."""
    config = tmp_path / "site.yaml"
    config.write_text(textwrap.dedent("""\
        version: 1
        vantage: no-icmp
        defaults: {timeout: 300ms, attempts: 2, interval: 20ms}
        devices:
          router: {address: 127.0.0.1}
        endpoints:
          web: {address: 127.0.0.2, path: [router], probes: [icmp]}
        """))
    script = (f"ip link set lo up && sysctl -qw net.ipv4.ping_group_range='1 0' && "
              f"exec setpriv --bounding-set=-net_raw --inh-caps=-net_raw "
              f"'{NETPROBE}' check '{config}' -f nagios --confirm 0 --no-trace")
    done = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True,
                          text=True, timeout=60)
    first = done.stdout.splitlines()[0] if done.stdout else done.stderr
    assert done.returncode == 3, first
    assert first.startswith("NETPROBE UNKNOWN - ") and "not measured" in status_line(first)
    assert perf_items(first.split(" | ", 1)[1])["web_rtt"] == "U"
