"""monitoring/alerts.yml is valid Prometheus and its unit tests (monitoring/alerts_test.yml) pass,
and its rules only use metric names GET /metrics exports."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pyapp import metrics

MONITORING = Path(__file__).resolve().parent.parent.parent / "monitoring"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: scripts/setup.sh installs it (Debian package prometheus); "
                    "run scripts/setup.sh or apt-get install prometheus")
    return path


def test_rules_are_valid():
    r = subprocess.run([promtool(), "check", "rules", str(MONITORING / "alerts.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rule_unit_tests_pass():
    r = subprocess.run([promtool(), "test", "rules", str(MONITORING / "alerts_test.yml")],
                       capture_output=True, text=True, timeout=60, cwd=MONITORING)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rules_use_exported_metric_names():
    exported = {"mk_checkout_total", "mk_concurrency_conflicts_total", "mk_db_retries_total",
                "mk_http_responses_total", "mk_checkout_duration_seconds_bucket", "mk_orders",
                "mk_products_negative_stock", "mk_orders_unpaid_past_hold", "mk_orders_expiry_failed",
                "mk_database_up", "mk_http_server_errors_total"}
    # the names are those pyapp.metrics defines
    assert metrics.CHECKOUTS._name + "_total" in exported and metrics.LATENCY._name + "_bucket" in exported
    assert metrics.SERVER_ERRORS._name + "_total" in exported
    used = set(re.findall(r"\bmk_[a-z_]+", (MONITORING / "alerts.yml").read_text()))
    assert used and used <= exported, used - exported
