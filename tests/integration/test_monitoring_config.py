"""monitoring/prometheus.yml is a valid Prometheus configuration that scrapes /metrics with the
METRICS_TOKEN and loads alerts.yml; monitoring/alertmanager.yml is a valid Alertmanager
configuration that pages for critical alerts and rollback criteria and sends warnings elsewhere.
promtool comes with Debian's prometheus, amtool with prometheus-alertmanager (scripts/setup.sh
installs both)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

MONITORING = Path(__file__).resolve().parent.parent.parent / "monitoring"
PAGE = "marketplace-notify"
QUIET = "marketplace-warnings"


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: scripts/setup.sh installs it (Debian package {package}); "
                    f"run scripts/setup.sh or apt-get install {package}")
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=cwd)


# ---------------------------------------------------------------- prometheus.yml


def test_prometheus_config_is_valid(tmp_path):
    # As installed: alerts.yml and the token file beside the configuration (relative paths are
    # resolved against its folder, and promtool requires the credentials file to exist).
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(MONITORING / name, tmp_path / name)
    (tmp_path / "marketplace-metrics-token").write_text("not-a-real-token\n")
    r = run(tool("promtool", "prometheus"), "check", "config", str(tmp_path / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout and "rules found" in r.stdout, r.stdout


def test_prometheus_config_without_the_token_file_is_refused(tmp_path):
    # The check above is not vacuous: promtool looks for the credentials file.
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(MONITORING / name, tmp_path / name)
    r = run(tool("promtool", "prometheus"), "check", "config", str(tmp_path / "prometheus.yml"))
    assert r.returncode != 0 and "marketplace-metrics-token" in r.stdout + r.stderr


def test_prometheus_scrapes_metrics_with_the_token_and_alerts_locally():
    cfg = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert cfg["rule_files"] == ["alerts.yml"]
    targets = [t for am in cfg["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert targets == ["127.0.0.1:9093"]
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "marketplace-api")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "marketplace-metrics-token"}
    assert "bearer_token" not in job and "credentials" not in job["authorization"]  # no secret inline


# ---------------------------------------------------------------- alertmanager.yml


def test_alertmanager_config_is_valid():
    r = run(tool("amtool", "prometheus-alertmanager"), "check-config", str(MONITORING / "alertmanager.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout and "1 inhibit rules" in r.stdout, r.stdout


def routed_to(*labels: str) -> str:
    r = run(tool("amtool", "prometheus-alertmanager"), "config", "routes", "test",
            "--config.file", str(MONITORING / "alertmanager.yml"), *labels)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("labels, receiver", [
    (("alertname=MarketplaceNegativeStock", "severity=critical"), PAGE),
    (("alertname=MarketplaceServerErrors", "severity=critical"), PAGE),
    (("alertname=MarketplaceRollbackConflictRate", "severity=critical", "rollback=true"), PAGE),
    (("alertname=SomeFutureRollbackCriterion", "severity=warning", "rollback=true"), PAGE),
    (("alertname=MarketplaceConcurrencyErrors", "severity=warning"), QUIET),
    (("alertname=MarketplaceUnpaidOrdersPastHold", "severity=warning", "rollback=false"), QUIET),
    (("alertname=Unlabelled",), QUIET),
])
def test_alert_routing(labels, receiver):
    assert routed_to(*labels) == receiver


def test_every_rule_of_alerts_yml_routes_by_its_labels():
    """The real rules: every critical one and every rollback criterion pages, no warning does."""
    rules = [r for g in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    assert rules
    for rule in rules:
        labels = {"alertname": rule["alert"], **rule.get("labels", {})}
        want = PAGE if labels.get("severity") == "critical" or labels.get("rollback") == "true" else QUIET
        assert routed_to(*(f"{k}={v}" for k, v in labels.items())) == want, rule["alert"]


def test_alertmanager_inhibits_a_warning_by_its_critical_and_keeps_urls_out():
    cfg = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    assert cfg["inhibit_rules"] == [{"source_matchers": ['severity="critical"'],
                                     "target_matchers": ['severity="warning"'], "equal": ["alertname"]}]
    for receiver in cfg["receivers"]:
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack and slack["api_url_file"].startswith("/etc/"), receiver["name"]
        assert not receiver.get("webhook_configs"), "a webhook URL would sit in this file"


def test_alertmanager_templates_render(tmp_path):
    """The title and text templates parse (rendered against amtool's example data)."""
    cfg = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    glob = tmp_path / "empty.tmpl"
    glob.write_text("")
    for receiver in cfg["receivers"]:
        for slack in receiver["slack_configs"]:
            for field in ("title", "text"):
                r = run(tool("amtool", "prometheus-alertmanager"), "template", "render",
                        f"--template.glob={glob}", f"--template.text={slack[field]}")
                assert r.returncode == 0, (receiver["name"], field, r.stdout + r.stderr)
