"""configs/prometheus/: checked and unit-tested by Prometheus's own promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROM = Path(__file__).resolve().parent.parent / "configs" / "prometheus"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (Debian package prometheus)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120,
                          cwd=PROM)


@needs_promtool
def test_scrape_config_is_valid() -> None:
    proc = promtool("check", "config", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "recording.yml" in proc.stdout + proc.stderr  # the rule file was found and checked


@needs_promtool
def test_recording_rules_are_valid_and_pass_their_unit_tests() -> None:
    rule_files = sorted(p.name for p in PROM.glob("*.yml") if p.name != "prometheus.yml")
    assert "recording.yml" in rule_files and "alerts-cross-site.yml" in rule_files
    proc = promtool("check", "rules", *rule_files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = promtool("test", "rules", *sorted(str(p.relative_to(PROM))
                                            for p in (PROM / "tests").glob("*_test.yml")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
