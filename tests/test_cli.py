"""The command line through typer's runner, against real listeners and a real
DNS server on loopback (TCP and DNS probes need no privilege, so these tests
run as any user)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netprobe.cli import app

runner = CliRunner()


def site(tmp_path: Path, *, web_port: int, dns_port: int, closed_port: int | None = None,
         rtt_warn: str = "150ms", expect: str = "203.0.113.10") -> Path:
    extra = f", tcp/{closed_port}" if closed_port else ""
    text = f"""
        version: 1
        vantage: test-vantage
        defaults:
          timeout: 300ms
          attempts: 2
          interval: 20ms
          thresholds: {{rtt: {{warn: {rtt_warn}, crit: 1h}}}}
        endpoints:
          web:
            address: 127.0.0.1
            probes: [tcp/{web_port}{extra}]
          resolver:
            address: 127.0.0.1
            probes:
              - dns: {{query: www.intra.example, expect: [{expect}], port: {dns_port}}}
        """
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def states(report: dict) -> dict[str, str]:
    return {c["name"]: c["state"] for c in report["components"]}


def test_healthy_check_exits_0_with_the_report_contract(tmp_path, tcp_listener, dns_server):
    config = site(tmp_path, web_port=tcp_listener.port, dns_port=dns_server.port)
    result = run("check", str(config), "-f", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["schema"] == "netprobe.report/1" and report["status"] == "ok"
    assert report["vantage"] == "test-vantage" and report["exit_code"] == 0
    assert states(report) == {"web": "up", f"web/tcp/{tcp_listener.port}": "up",
                              "resolver": "up", "resolver/dns": "up"}
    assert tcp_listener.accepted >= 2  # the probes really connected


def test_a_refused_port_is_a_service_down_and_exits_2(tmp_path, tcp_listener, dns_server,
                                                      closed_tcp_port):
    _, closed = closed_tcp_port
    config = site(tmp_path, web_port=tcp_listener.port, dns_port=dns_server.port,
                  closed_port=closed)
    result = run("check", str(config), "-f", "json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert states(report)[f"web/tcp/{closed}"] == "down"
    assert states(report)["web"] == "up"  # the host answered (RST): the service is down
    kinds = {f["kind"] for f in report["findings"]}
    assert "service_down" in kinds


def test_dns_answer_that_differs_from_expect_is_critical(tmp_path, tcp_listener, dns_server):
    config = site(tmp_path, web_port=tcp_listener.port, dns_port=dns_server.port,
                  expect="203.0.113.99")
    result = run("check", str(config), "-f", "json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    mismatch = [f for f in report["findings"] if f["kind"] == "dns_mismatch"]
    assert mismatch and "203.0.113.10" in mismatch[0]["summary"]


def test_fail_on_critical_lets_warnings_pass(tmp_path, tcp_listener, dns_server):
    # every RTT is above a warn threshold of 0 ms: degraded, a warning
    config = site(tmp_path, web_port=tcp_listener.port, dns_port=dns_server.port, rtt_warn="0ms")
    assert run("check", str(config), "-q").exit_code == 1
    assert run("check", str(config), "-q", "--fail-on", "critical").exit_code == 0


def test_one_run_writes_every_format_and_prints_the_table(tmp_path, tcp_listener, dns_server):
    from prometheus_client.parser import text_string_to_metric_families

    config = site(tmp_path, web_port=tcp_listener.port, dns_port=dns_server.port)
    out = tmp_path / "out"
    out.mkdir()
    files = [out / n for n in ("r.json", "m.prom", "r.md", "junit.xml", "r.txt")]
    result = run("check", str(config), *[a for f in files for a in ("-o", str(f))])
    assert result.exit_code == 0, result.output
    assert "netprobe OK" in result.stdout and "resolver/dns" in result.stdout
    assert json.loads(files[0].read_text())["status"] == "ok"
    names = {m.name for m in text_string_to_metric_families(files[1].read_text())}
    assert {"netprobe_probe_success", "netprobe_run_duration_seconds"} <= names
    assert files[2].read_text().startswith("# netprobe")
    suite = ET.parse(files[3]).getroot()
    assert int(suite.get("failures")) == 0 and int(suite.get("tests")) >= 4
    assert "resolver/dns" in files[4].read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(f.name for f in files)  # no temp files


def test_json_on_stdout_is_the_same_bytes_as_the_json_file(tmp_path, tcp_listener, dns_server):
    # stdout gets orjson's bytes as they are; a file goes through the text renderer
    config = site(tmp_path, web_port=tcp_listener.port, dns_port=dns_server.port)
    config.write_text(config.read_text(encoding="utf-8").replace("web:", "wéb-站点:"),
                      encoding="utf-8")
    saved = tmp_path / "r.json"
    result = run("check", str(config), "-f", "json", "-o", str(saved))
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == saved.read_bytes()
    assert result.stdout_bytes.endswith(b"}\n") and "wéb-站点".encode() in result.stdout_bytes


def test_nagios_line(tmp_path, tcp_listener, dns_server):
    config = site(tmp_path, web_port=tcp_listener.port, dns_port=dns_server.port)
    result = run("check", str(config), "-f", "nagios")
    first = result.stdout.splitlines()[0]
    assert result.exit_code == 0 and first.startswith("NETPROBE OK") and " | " in first


def test_diagnose_reproduces_a_saved_run_offline(tmp_path, tcp_listener, dns_server,
                                                 closed_tcp_port):
    config = site(tmp_path, web_port=tcp_listener.port, dns_port=dns_server.port,
                  closed_port=closed_tcp_port[1])
    saved = tmp_path / "run.json"
    first = run("check", str(config), "-q", "-o", str(saved))
    config.unlink()  # the saved report carries its topology
    again = run("diagnose", str(saved), "-f", "json")
    assert again.exit_code == first.exit_code == 2
    original, redone = json.loads(saved.read_text()), json.loads(again.stdout)
    assert states(redone) == states(original)
    assert [f["summary"] for f in redone["findings"]] == [f["summary"] for f in original["findings"]]


def test_history_collects_runs(tmp_path, tcp_listener, dns_server):
    config = site(tmp_path, web_port=tcp_listener.port, dns_port=dns_server.port)
    db = tmp_path / "h.db"
    for _ in range(2):
        assert run("check", str(config), "-q", "--history", str(db)).exit_code == 0
    result = run("history", str(db), "-f", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["runs"] == 2


# -- bad input: a clear message, exit 3, nothing written -----------------------

def test_broken_config_names_file_line_and_field_and_writes_nothing(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("version: 1\nendpoints:\n  web:\n    adress: 192.0.2.10\n", encoding="utf-8")
    target = tmp_path / "report.json"
    result = run("check", str(config), "-o", str(target))
    assert result.exit_code == 3
    assert f"{config}:4:5: endpoints.web.adress: unknown key 'adress' (did you mean 'address'?)" \
        in result.output
    assert "Traceback" not in result.output
    assert not target.exists()


def test_unknown_output_extension_is_refused_before_probing(tmp_path):
    config = site(tmp_path, web_port=9, dns_port=9)
    result = run("check", str(config), "-o", str(tmp_path / "report.docx"))
    assert result.exit_code == 3 and ".json" in result.output
    assert list(tmp_path.iterdir()) == [config]


def test_output_naming_a_directory_is_refused_before_probing(tmp_path, tcp_listener):
    config = site(tmp_path, web_port=tcp_listener.port, dns_port=9)
    (tmp_path / "out.json").mkdir()
    for target in (tmp_path / "out.json", tmp_path):
        result = run("check", str(config), "-o", str(target))
        assert result.exit_code == 3 and "is a directory" in result.output, result.output
    assert tcp_listener.accepted == 0  # refused before any packet
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "site.yaml"]


def test_version_and_help_read_as_words():
    proc = subprocess.run([sys.executable, "-m", "netprobe", "--version"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == "netprobe 0.1.0"
    commands = [("check",), ("validate",), ("diagnose",), ("history",), ("watch",), ("demo",),
                ("serve",), ("merge",), ("schema",),
                *(("lab", sub) for sub in ("up", "down", "status", "break", "heal", "exec"))]
    for command in commands:  # through the entry point, which mounts `lab`
        text = subprocess.run([sys.executable, "-m", "netprobe", *command, "--help"],
                              capture_output=True, text=True, timeout=30).stdout
        assert "Usage:" in text, text
        # a Python type in angle brackets (`<str>`, `<list[Path]>`); ranges like 1<=x stay
        assert not re.search(r"<[a-z][\w\[\] ]*>", text), f"{command}: {text}"
        assert "{" not in text.splitlines()[0], text


def test_missing_file_and_bad_option_values_exit_3(tmp_path):
    assert run("check", str(tmp_path / "nope.yaml")).exit_code == 3
    config = site(tmp_path, web_port=9, dns_port=9)
    assert run("check", str(config), "--timeout", "soon").exit_code == 3
    assert run("check", str(config), "--fail-on", "info").exit_code == 3
    assert run("history", str(tmp_path / "none.db")).exit_code == 3


@pytest.mark.parametrize("argv", [["check", "--no-such-option", "x.yaml"], ["frobnicate"]])
def test_usage_errors_exit_3_not_click_2(argv):
    # exit 2 means CRITICAL here; a usage error is UNKNOWN
    proc = subprocess.run([sys.executable, "-m", "netprobe", *argv], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 3, proc.stderr


def test_schema_is_json_schema_and_validate_reports_the_audit():
    schema = run("schema")
    assert schema.exit_code == 0
    assert json.loads(schema.stdout)["$schema"].startswith("https://json-schema.org/")
    example = Path(__file__).parent.parent / "configs" / "example.yaml"
    result = run("validate", str(example), "-f", "json")
    body = json.loads(result.stdout)
    assert body["valid"] and body["counts"]["lines"] >= 2
    assert result.exit_code == {"ok": 0, "warning": 1, "critical": 2}[body["status"]]
    assert any(f["kind"] == "shared_risk" for f in body["findings"])


def test_a_bad_history_path_is_refused_before_probing_and_nothing_is_written(tmp_path):
    config = site(tmp_path, web_port=9, dns_port=9)
    out = tmp_path / "out.json"
    result = run("check", str(config), "-o", str(out), "--history",
                 str(tmp_path / "no-such-dir" / "h.db"))
    assert result.exit_code == 3 and "no-such-dir" in result.output
    assert not out.exists()


def test_diagnose_refuses_a_config_the_report_was_not_made_with(tmp_path, tcp_listener,
                                                                dns_server):
    config = site(tmp_path, web_port=tcp_listener.port, dns_port=dns_server.port)
    saved = tmp_path / "run.json"
    assert run("check", str(config), "-q", "-o", str(saved)).exit_code == 0
    other = tmp_path / "other.yaml"
    other.write_text("version: 1\nendpoints:\n  portal: {address: 127.0.0.1, probes: [tcp/1]}\n",
                     encoding="utf-8")
    result = run("diagnose", str(saved), "--config", str(other))
    assert result.exit_code == 3 and "portal/tcp/1" in result.output


def test_command_line_overrides_beat_an_endpoints_own_settings(tmp_path):
    from netprobe.config import load_topology
    from netprobe.plan import PlanOptions, build_plan

    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nendpoints:\n  e: {address: 127.0.0.1, timeout: 5s, attempts: 10,"
                    " probes: [tcp/1]}\n", encoding="utf-8")
    (task,) = build_plan(load_topology(str(path)), PlanOptions(attempts=1, timeout_s=0.5))
    assert (task.attempts, task.timeout_s) == (1, 0.5)


def test_positions_stay_digits_on_stderr_never_emoji(tmp_path):
    # rich turns `:100:` into an emoji unless told not to; line 100 of a config gives one
    config = tmp_path / "site.yaml"
    config.write_text("version: 1\n" + "# comment\n" * 97 + "vantage: [\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "netprobe", "validate", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert f"{config}:100:1: not valid YAML" in proc.stderr, proc.stderr
    assert "\N{HUNDRED POINTS SYMBOL}" not in proc.stderr


def test_schema_report_and_history_describe_what_check_and_history_write(
        tmp_path, tcp_listener, dns_server, closed_tcp_port):
    import jsonschema

    config = site(tmp_path, web_port=tcp_listener.port, dns_port=dns_server.port,
                  closed_port=closed_tcp_port[1])
    db = tmp_path / "h.db"
    checked = run("check", str(config), "-f", "json", "--history", str(db))
    report_schema = json.loads(run("schema", "--report").stdout)
    history_schema = json.loads(run("schema", "--history").stdout)
    for schema, doc in ((report_schema, json.loads(checked.stdout)),
                        (history_schema, json.loads(run("history", str(db), "-f", "json").stdout))):
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        assert list(validator.iter_errors(doc)) == []
        assert not validator.is_valid({**doc, "schema": "something/else"})
    assert run("schema").stdout != run("schema", "--report").stdout
    assert run("schema", "--report", "--history").exit_code == 3


def test_prometheus_file_of_check_carries_line_info_for_cross_site_joins(tmp_path, tcp_listener):
    """A site exported by cron (textfile collector) joins the others by carrier in
    Prometheus like a `serve` site does; promtool accepts the file."""
    from prometheus_client.parser import text_string_to_metric_families

    config = tmp_path / "site.yaml"
    config.write_text(textwrap.dedent(f"""
        version: 1
        vantage: branch-2
        defaults: {{timeout: 300ms, attempts: 1}}
        devices:
          ce: {{address: 127.0.0.1}}
        lines:
          fibre-a: {{device: ce, far_end: 127.0.0.2, carrier: carrier-a, group: wan, priority: 1}}
          dsl-b: {{device: ce, far_end: 127.0.0.3, carrier: carrier-b, group: wan, priority: 2}}
        endpoints:
          web: {{address: 127.0.0.1, path: [ce, wan], probes: [tcp/{tcp_listener.port}]}}
        """), encoding="utf-8")
    out = tmp_path / "m.prom"
    result = run("check", str(config), "-q", "--no-trace", "-o", str(out))
    assert out.is_file(), result.output
    text = out.read_text()
    info = {(s.labels["component"], s.labels["carrier"], s.labels["group"])
            for m in text_string_to_metric_families(text) if m.name == "netprobe_line_info"
            for s in m.samples if s.labels["vantage"] == "branch-2" and s.value == 1.0}
    assert info == {("fibre-a", "carrier-a", "wan"), ("dsl-b", "carrier-b", "wan")}
    if shutil.which("promtool"):
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                              text=True, timeout=60)
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_demo_local_runs_end_to_end_with_or_without_icmp_privilege():
    """`make demo-local`, the README's no-root demo: a verdict and exit 0 whether
    ICMP is measured (root) or reported as not measured (UNKNOWN report)."""
    proc = subprocess.run([sys.executable, "-m", "netprobe", "demo", "local"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "without a usable report" not in proc.stdout + proc.stderr
    assert re.search(r"status (ok|unknown) \(exit [03]\)", proc.stdout), proc.stdout
