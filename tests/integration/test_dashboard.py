"""The operator dashboard end to end: the HTTP server serving a fresh database, real checkouts, the page
rendered by headless Chromium (DOM figures against the database, a screenshot in artifacts/);
the data endpoint's 401/403; the Grafana dashboard's panels; docs/api.md against its generator."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from pyapp import auth
from tests.support.browser import Figures, run_chromium
from tests.support.http_server import HttpServer, create_admin

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "artifacts"
GRAFANA = ROOT / "monitoring" / "grafana-dashboard.json"
API_DOC = ROOT / "docs" / "api.md"
ADMIN_PASSWORD = "dashboard admin password"
ADDRESS = {"street": "Calle 5 de Mayo 10", "city": "Oaxaca", "zip": "68000"}
STATUSES = ("PENDING_PAYMENT", "PAID", "PAYMENT_FAILED", "CANCELLED", "SHIPPED", "DELIVERED")


@pytest.fixture(scope="module")
def dash_app(http_db):
    # One worker: the checkout counters are per process today, so the page must see all of them.
    # Figures persisted every second: the verdict is read from them (api.deploy_verdict).
    srv = HttpServer(http_db[1], WORKERS="1", THREADS="4", STATS_FLUSH_SECONDS="1").start()
    yield srv
    srv.stop()


def make_user(http_db, role: str) -> dict:
    tok = auth.new_token()
    with psycopg.connect(http_db[0], autocommit=True) as c:
        uid = c.execute("SELECT api.create_user(%s, %s, %s, %s)",
                        (f"{role.lower()}-{uuid.uuid4().hex[:10]}@example.com", role.title(),
                         auth.hash_password("irrelevant password"), role)).fetchone()[0]["id"]
        c.execute("SELECT api.issue_token(%s, %s)", (uid, auth.token_hash(tok)))
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture(scope="module")
def admin_token(dash_app, http_db):
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    create_admin(http_db[0], email, ADMIN_PASSWORD)
    r = requests.post(dash_app.url + "/api/auth/login", json={"email": email, "password": ADMIN_PASSWORD})
    assert r.status_code == 200 and r.json()["role"] == "ADMIN", r.text
    return r.json()["token"]


@pytest.fixture(scope="module")
def shop(dash_app, http_db):
    """A few checkouts through HTTP: 3 created (one then paid), 1 refused for insufficient stock."""
    seller = make_user(http_db, "SELLER")
    r = requests.post(dash_app.url + "/api/marketplace/products", headers=seller,
                      json={"name": "Alebrije", "price": 45, "stock": 3})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    statuses, orders = [], []
    for qty in (1, 1, 1, 2):
        buyer = make_user(http_db, "BUYER")
        assert requests.post(dash_app.url + "/api/marketplace/cart/items", headers=buyer,
                             json={"productId": pid, "quantity": qty}).status_code == 201
        r = requests.post(dash_app.url + "/api/marketplace/checkout", headers=buyer, json={"shippingAddress": ADDRESS})
        statuses.append(r.status_code)
        if r.status_code == 201:
            orders.append(r.json()["id"])
    assert statuses == [201, 201, 201, 400]
    with psycopg.connect(http_db[0], autocommit=True) as c:
        c.execute("SELECT api.record_payment(%s, true, 'psp-1')", (orders[0],))
    return {"checkouts": len(statuses), "orders": orders}


# One minute of known figures, 10 minutes back, beside the shop's 4 checkouts: 200 decided in the
# hour, 5 of them failed (success rate 97.5 %: PASS), 3 ConcurrencyErrors (1.5 %: FAIL), and 20 of
# 200 between 1 and 2.5 s (P95 about 1.75 s: WARN); client errors and maintenance count neither way.
VERDICT_MINUTE = {"success": 186, "insufficient_stock": 5, "conflict": 2, "error": 3, "client_error": 40,
                  "maintenance": 20, "empty_cart": 7, "conflicts": 3, "latency_sum_s": 60.0,
                  "latency": {"0.1": 146, "1.0": 30, "2.5": 20, "+Inf": 0}}


@pytest.fixture(scope="module")
def verdict_window(http_db, shop):
    """The hour the verdict judges, once the shop's checkouts are persisted; returns what
    api.deploy_verdict('1 hour') says of it."""
    with psycopg.connect(http_db[0], autocommit=True) as c:
        decided = ("SELECT coalesce(sum(success + insufficient_stock + conflict + error), 0) "
                   "FROM internal.checkout_stats")
        deadline = time.monotonic() + 15
        while c.execute(decided).fetchone()[0] < shop["checkouts"]:
            assert time.monotonic() < deadline, "the shop's checkouts were not persisted"
            time.sleep(0.2)
        c.execute("SELECT api.record_checkout_stats(jsonb_build_array(%s::jsonb || jsonb_build_object("
                  "'minute', date_trunc('minute', now()) - interval '10 minutes')))", (json.dumps(VERDICT_MINUTE),))
        assert c.execute(decided).fetchone()[0] == 200
        return c.execute("SELECT api.deploy_verdict('1 hour')").fetchone()[0]


def db_orders_by_status(http_db) -> dict[str, int]:
    with psycopg.connect(http_db[0], autocommit=True) as c:
        rows = dict(c.execute('SELECT status, COUNT(*) FROM "Order" GROUP BY status').fetchall())
    return {s: rows.get(s, 0) for s in STATUSES}


# ---------------------------------------------------------------- the data endpoint


def test_data_endpoint_requires_an_admin(dash_app, http_db):
    url = dash_app.url + "/admin/dashboard/data"
    for headers, status, code in (({}, 401, "UNAUTHENTICATED"),
                                  ({"Authorization": "Bearer not-a-token"}, 401, "UNAUTHENTICATED"),
                                  (make_user(http_db, "BUYER"), 403, "FORBIDDEN"),
                                  (make_user(http_db, "SELLER"), 403, "FORBIDDEN")):
        r = requests.get(url, headers=headers)
        assert r.status_code == status, r.text
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert r.json()["code"] == code and r.json()["status"] == status


def test_data_endpoint_reports_database_and_counters(dash_app, http_db, admin_token, shop):
    r = requests.get(dash_app.url + "/admin/dashboard/data", headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    doc = r.json()
    assert doc["database"]["ordersByStatus"] == db_orders_by_status(http_db)
    assert doc["database"]["negativeStock"] == 0 and doc["database"]["unpaidPastHold"] == 0
    c = doc["checkout"]
    assert c["checkouts"] == shop["checkouts"]
    # "created" per process today, "success" in the prometheus_client rewrite: either way 3 + 1.
    assert c["byOutcome"].get("created", 0) + c["byOutcome"].get("success", 0) == 3, c
    assert c["byOutcome"]["insufficient_stock"] == 1 and c["conflicts"] == 0, c
    assert c["decided"] == shop["checkouts"], c
    assert c["latency"]["le"][-1] is None and c["latency"]["counts"][-1] == shop["checkouts"]
    verdict = doc["database"]["verdict"]  # api.deploy_verdict('1 hour'): the shop's 4 are too few to judge
    assert verdict["status"] == "WARN" and verdict["insufficientData"] is True, verdict
    assert [ch["name"] for ch in verdict["checks"]] == ["successRate", "p95LatencySeconds", "concurrencyErrorRate"]


def test_page_shell_loads_without_a_token(dash_app):
    r = requests.get(dash_app.url + "/admin/dashboard")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    for src in re.findall(r'(?:src|href)="([^"]+)"', r.text):
        assert src.startswith("/admin/dashboard/"), f"the page must be self-contained: {src}"
        assert requests.get(dash_app.url + src).status_code == 200, src


# ---------------------------------------------------------------- the page in Chromium


def test_dashboard_renders_the_figures_in_chromium(dash_app, http_db, admin_token, shop, verdict_window):
    url = f"{dash_app.url}/admin/dashboard?refresh=2#token={admin_token}"
    # Virtual time runs the page's timers without waiting for them: several polls in a few seconds.
    dom = run_chromium(["--dump-dom", "--virtual-time-budget=7000", url]).decode()
    page = Figures()
    page.feed(dom)
    assert page.body.get("data-state") == "ready", dom[:3000]
    expected = db_orders_by_status(http_db)
    for status, n in expected.items():
        assert page.found[f"orders-{status}"] == [str(n), str(n)], status
    assert page.found["orders-total"][0] == str(sum(expected.values()))
    assert page.found["checkouts-total"] == [str(shop["checkouts"]), str(shop["checkouts"])]
    assert page.found["negative-stock"][0] == "0" and page.found["unpaid-past-hold"][0] == "0"
    assert int(page.found["samples"][0]) >= 2, "the page kept polling"
    assert page.found["conflict-rate"][0] == "0"
    p50, p99 = float(page.found["latency-p50"][0]), float(page.found["latency-p99"][0])
    assert 0 < p50 <= p99, (p50, p99)
    assert page.found["latency-p50"][1].endswith(" ms")
    assert "<svg" in dom and "<path" in dom, "the charts were drawn"

    # The checklist's verdict over the last hour, as the database judges it (report --since 1h --check).
    expected = verdict_window
    assert expected["status"] == "FAIL" and expected["decidedCheckouts"] == 200, expected
    assert page.found["verdict-status"] == ["FAIL", "FAIL"]
    assert page.found["verdict-checkouts"][0] == "200" and page.found["verdict-min-checkouts"][0] == "200"
    checks = {ch["name"]: ch for ch in expected["checks"]}
    assert {n: ch["status"] for n, ch in checks.items()} == {
        "successRate": "PASS", "p95LatencySeconds": "WARN", "concurrencyErrorRate": "FAIL"}
    assert checks["successRate"]["value"] == 0.975 and checks["concurrencyErrorRate"]["value"] == 0.015
    assert 1.6 <= checks["p95LatencySeconds"]["value"] < 2, checks["p95LatencySeconds"]
    for name, ch in checks.items():
        assert page.found[f"verdict-{name}-status"] == [ch["status"], ch["status"]], name
        assert float(page.found[f"verdict-{name}-value"][0]) == pytest.approx(ch["value"]), name
        assert float(page.found[f"verdict-{name}-threshold"][0]) == pytest.approx(ch["threshold"]), name
        assert float(page.found[f"verdict-{name}-warn-at"][0]) == pytest.approx(ch["warnAt"]), name
    assert page.found["verdict-successRate-value"][1] == "97.50 %"
    assert page.found["verdict-successRate-threshold"][1] == "> 95.00 %"
    assert page.found["verdict-concurrencyErrorRate-value"][1] == "1.50 %"
    assert page.found["verdict-concurrencyErrorRate-threshold"][1] == "< 1.00 %"
    assert page.found["verdict-p95LatencySeconds-threshold"][1] == "< 2.000 s"
    assert page.found["verdict-concurrencyErrorRate-reason"][1] == "misses the target"

    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / "dashboard.png"
    png.unlink(missing_ok=True)
    run_chromium([f"--screenshot={png}", "--window-size=1280,900", "--hide-scrollbars",
                  "--virtual-time-budget=7000", url])
    data = png.read_bytes() if png.exists() else b""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, f"no screenshot at {png}"


def test_dashboard_page_without_admin_shows_the_problem(dash_app, http_db):
    tok = make_user(http_db, "BUYER")["Authorization"].split()[1]
    dom = run_chromium(["--dump-dom", "--virtual-time-budget=3000",
                        f"{dash_app.url}/admin/dashboard#token={tok}"]).decode()
    page = Figures()
    page.feed(dom)
    assert page.body.get("data-state") == "error" and page.body.get("data-http-status") == "403"
    assert "FORBIDDEN" in page.found["error"][1]


# ---------------------------------------------------------------- Grafana and the docs


def documented_metrics() -> set[str]:
    """The metric names listed in docs/api.md's operations note (`- \\`mk_...\\``)."""
    return set(re.findall(r"^- `(mk_[a-z0-9_]+)`", API_DOC.read_text(), re.M))


def test_grafana_dashboard_panels_have_targets(dash_app):
    doc = json.loads(GRAFANA.read_text())
    assert 36 <= doc["schemaVersion"] <= 41
    panels = [p for top in doc["panels"] for p in [top, *top.get("panels", [])] if p["type"] != "row"]
    assert len(panels) >= 6
    used = set()
    for p in panels:
        assert p.get("targets"), f"panel {p['title']!r} has no target"
        for t in p["targets"]:
            query = (t.get("expr") or t.get("rawSql") or "").strip()
            assert query, f"panel {p['title']!r} has a target without an expression"
            used |= set(re.findall(r"\bmk_[a-z0-9_]+", t.get("expr") or ""))
    titles = " ".join(p["title"].lower() for p in panels)
    for figure in ("conflict rate", "retries per checkout", "latency", "negative stock", "orders by status"):
        assert figure in titles, figure
    # Every metric a panel queries is listed in docs/api.md and exported by /metrics today.
    families = set(re.findall(r"^# TYPE (\S+) ", requests.get(dash_app.url + "/metrics").text, re.M))
    base = {re.sub(r"_(bucket|sum|count)$", "", m) if re.sub(r"_(bucket|sum|count)$", "", m) in families else m
            for m in used}
    assert base <= documented_metrics(), f"add to docs/api.md: {sorted(base - documented_metrics())}"
    assert documented_metrics() <= families, (
        f"docs/api.md lists metrics /metrics no longer exports: {sorted(documented_metrics() - families)}")


def test_api_doc_is_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "apidoc.py"), "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
