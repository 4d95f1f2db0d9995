"""cluster/monitoring/ as Prometheus' and Alertmanager's own tools read it.

``promtool`` (Debian's ``prometheus``) checks the rule file (syntax, PromQL, annotation
templates), runs its unit tests (``alerts_test.yml``) and checks the example Prometheus config;
``amtool`` (Debian's ``prometheus-alertmanager``) checks the Alertmanager config. ``make setup``
installs both. That the rules and the Grafana dashboard read only series the monitor and the
server expose is checked in ``test_monitor_exposition.py``; that the alerts fire through a real
Prometheus and Alertmanager, in ``tests/integration/test_alerting.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

MONITORING = Path(__file__).resolve().parents[2] / "cluster" / "monitoring"


def _tool(name: str, *args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    """Run one of Prometheus' command-line tools; a missing one fails naming its package."""
    path = shutil.which(name)
    assert path, (
        f"{name} is not installed: `make setup` installs it as root "
        "(apt-get install prometheus prometheus-alertmanager)"
    )
    return subprocess.run(
        [path, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _rule_count(path: Path) -> int:
    groups = yaml.safe_load(path.read_text())["groups"]
    return sum(len(group["rules"]) for group in groups)


def test_promtool_accepts_every_alert_rule() -> None:
    done = _tool("promtool", "check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    # promtool counts what it parsed: every rule of the file, none skipped.
    assert f"SUCCESS: {_rule_count(MONITORING / 'alerts.yml')} rules found" in done.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    done = _tool("promtool", "test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The unit tests compare values, not only syntax: a 5xx limit of 5% instead of 1% no
    longer fires on the 2% error rate of their input and fails them."""
    rules = (MONITORING / "alerts.yml").read_text()
    assert rules.count("> 0.01") == 1
    (tmp_path / "alerts.yml").write_text(rules.replace("> 0.01", "> 0.05"))
    shutil.copy(MONITORING / "alerts_test.yml", tmp_path)
    done = _tool("promtool", "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert "ModelServerErrorRate" in done.stdout + done.stderr


def test_promtool_accepts_the_example_prometheus_config_and_its_rule_file() -> None:
    done = _tool("promtool", "check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    # The config's rule_files are found (relative to it) and checked with it.
    assert "SUCCESS: 1 rule files found" in done.stdout
    assert "Checking alerts.yml" in done.stdout


def test_amtool_accepts_the_example_alertmanager_config() -> None:
    done = _tool("amtool", "check-config", "alertmanager.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "1 receivers" in done.stdout


def test_amtool_refuses_a_route_to_an_unknown_receiver(tmp_path: Path) -> None:
    """amtool checks meaning, not only YAML: the check above would catch a renamed receiver."""
    config = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    config["route"]["receiver"] = "nobody"
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(yaml.safe_dump(config))
    done = _tool("amtool", "check-config", str(broken))
    assert done.returncode != 0
    assert "nobody" in done.stdout + done.stderr
