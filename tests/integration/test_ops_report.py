"""`python -m pyapp report`: figures from real HTTP checkouts, still there after the server is
restarted (each worker flushes them at exit; the periodic flush is set to a minute so that the
exit flush is what this test exercises); client errors and maintenance 503s leave the success rate
alone; `report --check` exits 0, 1 or 2 as api.deploy_verdict judges windows of known figures."""
from __future__ import annotations

import json
import re
import time
import uuid

import psycopg
import pytest
import requests
from psycopg.types.json import Jsonb

from pyapp.metrics import OUTCOMES, checkout_outcome
from tests.integration.test_cli import pyapp
from tests.integration.test_http_api import ADDRESS, add, checkout, make_product, make_user
from tests.integration.test_ops_metrics import sample
from tests.support.http_server import HttpServer


def report(url: str, since: str = "1h") -> dict:
    r = pyapp(url, "report", "--since", since, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_report_after_http_checkouts_and_a_restart(http_db):  # noqa: F811
    owner, app = http_db
    srv = HttpServer(app, STATS_FLUSH_SECONDS="60").start()
    try:
        _, seller = make_user(http_db, "SELLER")
        product = make_product(srv, seller, stock=3)
        buyers = [make_user(http_db)[1] for _ in range(5)]
        for h in buyers[:4]:
            assert add(srv, h, product["id"], 1).status_code == 201
        assert [checkout(srv, h).status_code for h in buyers[:4]] == [201, 201, 201, 400]
        assert checkout(srv, buyers[4]).status_code == 400  # empty cart
    finally:
        srv.stop()  # SIGTERM: each worker flushes what it buffered

    srv = HttpServer(app).start()  # a new server, a new metrics folder: the figures are in the database
    try:
        assert requests.get(srv.url + "/health").status_code == 200
        rep = report(owner)
    finally:
        srv.stop()
    assert rep["checkouts"] == 5
    assert rep["byOutcome"] == {"success": 3, "insufficient_stock": 1, "empty_cart": 1, "conflict": 0, "error": 0,
                                "client_error": 0, "maintenance": 0}
    assert rep["decidedCheckouts"] == 4 and rep["failedCheckouts"] == 0
    assert rep["successRate"] == 1  # an empty cart is the client's error, insufficient stock a correct answer
    assert rep["concurrencyErrors"] == 0 and rep["retries"] == 0 and rep["retriesPerCheckout"] == 0
    lat = rep["latencySeconds"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= 30
    assert rep["concurrencyErrorRate"] == 0
    assert rep["verdict"]["status"] == "WARN" and rep["verdict"]["insufficientData"] is True  # --json carries it
    assert rep["negativeStock"] == 0
    assert rep["ordersByStatus"] == {"PENDING_PAYMENT": 3}
    with psycopg.connect(owner, autocommit=True) as c:
        assert c.execute("SELECT sum(success), sum(insufficient_stock), sum(empty_cart) FROM internal.checkout_stats"
                         ).fetchone() == (3, 1, 1)

    r = pyapp(owner, "report", "--since", "7d")
    assert r.returncode == 0 and "latency P95" in r.stdout
    for bad in ("24", "5x", "0h", "-3h"):
        assert pyapp(owner, "report", "--since", bad).returncode == 2


def test_quantiles_interpolate_inside_buckets(conn):
    q = "SELECT internal.histogram_quantile(%s, ARRAY[0.01, 0.1, 'Infinity']::float8[], %s::bigint[])"
    assert abs(conn.execute(q, (0.5, [0, 10, 0])).fetchone()[0] - 0.055) < 1e-9  # halfway into (0.01, 0.1]
    assert conn.execute(q, (0.99, [0, 0, 4])).fetchone()[0] == 0.1  # overflow: the highest finite bound
    assert conn.execute(q, (0.5, [0, 0, 0])).fetchone()[0] is None


# ---------------------------------------------------------------- outcomes


@pytest.mark.parametrize("status, code, outcome", [
    (201, None, "success"),
    (400, "INSUFFICIENT_STOCK", "insufficient_stock"),
    (409, "CONCURRENCY_CONFLICT", "conflict"),
    (400, "EMPTY_CART", "empty_cart"),
    (503, "MAINTENANCE", "maintenance"),
    (401, "UNAUTHENTICATED", "client_error"),
    (400, "INVALID_ARGUMENT", "client_error"),
    (400, "INVALID_JSON", "client_error"),
    (403, "FORBIDDEN", "client_error"),
    (409, "TOO_MANY_UNPAID_ORDERS", "client_error"),
    (409, "MAX_PER_BUYER_EXCEEDED", "client_error"),
    (413, "PAYLOAD_TOO_LARGE", "client_error"),
    (422, "IDEMPOTENCY_KEY_REUSED", "client_error"),
    (429, "TOO_MANY_ATTEMPTS", "client_error"),
    (503, "DATABASE_UNAVAILABLE", "error"),
    (503, "TIMEOUT", "error"),
    (500, "INTERNAL_ERROR", "error"),
    (500, None, "error"),
])
def test_checkout_outcome_tells_server_failures_from_client_errors(status, code, outcome):
    assert checkout_outcome(status, code) == outcome
    assert outcome in OUTCOMES


def test_client_errors_and_maintenance_leave_the_success_rate_alone(http_db):  # noqa: F811
    """401 (expired and missing tokens), 400 (empty cart, malformed body), 409 TOO_MANY_UNPAID_ORDERS,
    422 and maintenance 503s over HTTP: counted by outcome, in /metrics and in the database, and
    not one of them lowers the success rate."""
    owner, app = http_db
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute("DELETE FROM internal.checkout_stats")  # the module's earlier figures
    srv = HttpServer(app, STATS_FLUSH_SECONDS="1").start()
    try:
        _, seller = make_user(http_db, "SELLER")
        product = make_product(srv, seller, stock=10)
        url = srv.url + "/api/marketplace/checkout"
        codes: list[tuple[int, str | None]] = []

        def record(r):
            codes.append((r.status_code, r.json().get("code") if r.status_code >= 400 else None))
            return r

        a = make_user(http_db)[1]  # 3 orders (MAX_UNPAID_ORDERS), then one too many
        for _ in range(3):
            assert add(srv, a, product["id"], 1).status_code == 201
            assert record(checkout(srv, a)).status_code == 201
        assert add(srv, a, product["id"], 1).status_code == 201
        assert record(checkout(srv, a)).json()["code"] == "TOO_MANY_UNPAID_ORDERS"
        b = make_user(http_db)[1]  # an order, then its idempotency key with another payload
        key = uuid.uuid4().hex
        assert add(srv, b, product["id"], 1).status_code == 201
        assert record(checkout(srv, b, key=key)).status_code == 201
        assert add(srv, b, product["id"], 1).status_code == 201
        assert record(checkout(srv, b, key=key, address={"city": "Puebla"})).status_code == 422
        c = make_user(http_db)[1]  # a correct refusal: decided, and no failure
        assert add(srv, c, product["id"], 100).status_code == 201
        assert record(checkout(srv, c)).json()["code"] == "INSUFFICIENT_STOCK"
        assert record(checkout(srv, make_user(http_db)[1])).json()["code"] == "EMPTY_CART"
        assert record(requests.post(url, headers=c, json={"shippingAddress": "nowhere"})).status_code == 400

        expired_uid, expired = make_user(http_db)
        assert add(srv, expired, product["id"], 1).status_code == 201
        with psycopg.connect(owner, autocommit=True) as conn:
            conn.execute("""UPDATE "ApiToken" SET "expiresAt" = now() - interval '1 minute' WHERE "userId" = %s""",
                         (expired_uid,))
        for _ in range(20):
            assert record(checkout(srv, expired)).status_code == 401
        for _ in range(5):
            assert record(requests.post(url, json={"shippingAddress": ADDRESS})).status_code == 401

        d = make_user(http_db)[1]
        assert add(srv, d, product["id"], 1).status_code == 201
        with psycopg.connect(owner, autocommit=True) as conn:
            conn.execute("SELECT api.set_maintenance(true)")
            try:
                for _ in range(10):
                    r = record(checkout(srv, d))
                    assert r.status_code == 503 and r.json()["code"] == "MAINTENANCE", r.text
            finally:
                conn.execute("SELECT api.set_maintenance(false)")

        expected = {"success": 4, "insufficient_stock": 1, "conflict": 0, "error": 0, "empty_cart": 1,
                    "client_error": 1 + 1 + 1 + 20 + 5, "maintenance": 10}
        assert sum(expected.values()) == len(codes), codes
        text = requests.get(srv.url + "/metrics").text
        for outcome, n in expected.items():
            assert sample(text, "mk_checkout_total", f'{{outcome="{outcome}"}}') == n, (outcome, text)
        # only the 5 decided checkouts have a latency
        assert sample(text, "mk_checkout_duration_seconds_count") == 5
        assert sample(text, "mk_checkout_total", '{outcome="error"}') == 0

        with psycopg.connect(owner, autocommit=True) as conn:  # every worker flushes each second
            deadline = time.monotonic() + 15
            total = "SELECT coalesce(sum(success + insufficient_stock + conflict + error + empty_cart " \
                    "+ client_error + maintenance), 0) FROM internal.checkout_stats"
            while conn.execute(total).fetchone()[0] < len(codes):
                assert time.monotonic() < deadline, "the figures were not persisted"
                time.sleep(0.2)
    finally:
        srv.stop()

    rep = report(owner)
    assert rep["byOutcome"] == expected
    assert rep["checkouts"] == len(codes) and rep["decidedCheckouts"] == 5 and rep["failedCheckouts"] == 0
    assert rep["successRate"] == 1, rep  # 100 %, though 40 of 44 checkouts made no order
    assert rep["concurrencyErrorRate"] == 0
    r = pyapp(owner, "report", "--since", "1h", "--check")
    assert r.returncode == 1, r.stdout + r.stderr  # 5 decided checkouts: too few to judge, WARN
    assert re.search(r"^checkout success rate\s+100\.00 %\s+> 95\.00 %\s+<= 96\.00 %\s+WARN\s+"
                     r"insufficient data: 5 of 200", r.stdout, re.M), r.stdout


# ---------------------------------------------------------------- report --check


def put_window(conn, minutes: list[dict]) -> None:
    """Replaces the persisted figures with `minutes`, each {"ago": minutes back, ...counts}; every
    decided checkout at 0.05 s unless "latency" is given."""
    conn.execute("DELETE FROM internal.checkout_stats")
    rows = []
    for m in minutes:
        m = dict(m)
        ago = m.pop("ago")
        decided = sum(m.get(k, 0) for k in ("success", "insufficient_stock", "conflict", "error"))
        m.setdefault("latency", {"0.05": decided, "+Inf": 0})
        rows.append({"minute": conn.execute("SELECT date_trunc('minute', now()) - make_interval(mins => %s)",
                                            (ago,)).fetchone()[0].isoformat(), **m})
    conn.execute("SELECT api.record_checkout_stats(%s)", (Jsonb(rows),))


def check(url: str, *extra: str) -> tuple[int, str, dict]:
    """report --since 1h --check: exit code, text output, and the verdict of --json."""
    text = pyapp(url, "report", "--since", "1h", "--check", *extra)
    js = pyapp(url, "report", "--since", "1h", "--check", "--json", *extra)
    assert js.returncode == text.returncode, (text.stdout, js.stdout, js.stderr)
    assert not text.stderr.strip(), text.stderr
    return text.returncode, text.stdout, json.loads(js.stdout)["verdict"]


def verdict_rows(out: str) -> dict[str, list[str]]:
    """target title -> [measured, threshold, warn at, status] from the verdict table."""
    rows = {}
    for title in ("checkout success rate", "checkout latency P95", "ConcurrencyError rate"):
        m = re.search(rf"^{title}\s+(\S+ \S+)\s+(\S+ \S+ \S+)\s+(\S+ \S+ \S+)\s+(PASS|WARN|FAIL)", out, re.M)
        assert m, (title, out)
        rows[title] = list(m.groups())
    return rows


def test_report_check_exit_codes(db_url, conn):
    # Healthy: 300 decided checkouts in the hour (plus an old bad minute and client errors beside).
    put_window(conn, [{"ago": 5, "success": 200, "insufficient_stock": 4, "error": 1, "conflicts": 1,
                       "client_error": 900},
                      {"ago": 30, "success": 95, "maintenance": 300, "empty_cart": 20},
                      {"ago": 120, "success": 10, "error": 90}])
    code, out, verdict = check(db_url)
    assert code == 0 and verdict["status"] == "PASS", out
    assert "verdict: PASS (exit 0)" in out
    assert verdict_rows(out) == {
        "checkout success rate": ["99.67 %", "> 95.00 %", "<= 96.00 %", "PASS"],
        "checkout latency P95": ["0.048 s", "< 2.000 s", ">= 1.600 s", "PASS"],
        "ConcurrencyError rate": ["0.33 %", "< 1.00 %", ">= 0.80 %", "PASS"]}
    for figure in ("success rate", "latency P95", "ConcurrencyError rate", "decided by the server"):
        assert re.search(rf"^{figure}\s", out, re.M), (figure, out)  # the figures are printed as before

    # Warning: ConcurrencyErrors at 0.8 % of the decided checkouts (80 % of the way to 1 %).
    put_window(conn, [{"ago": 5, "success": 250, "conflicts": 2}])
    code, out, verdict = check(db_url)
    assert code == 1 and verdict["status"] == "WARN", out
    assert verdict_rows(out)["ConcurrencyError rate"] == ["0.80 %", "< 1.00 %", ">= 0.80 %", "WARN"]
    assert "verdict: WARN (exit 1)" in out

    # Warning: too few checkouts to judge; with a lower --min-checkouts the same window passes.
    put_window(conn, [{"ago": 5, "success": 120}])
    code, out, verdict = check(db_url)
    assert code == 1 and verdict["insufficientData"] is True, out
    assert "insufficient data: 120 of 200 checkouts" in out
    code, out, verdict = check(db_url, "--min-checkouts", "100")
    assert code == 0 and verdict["minCheckouts"] == 100, out

    # Failing: 6 % of the decided checkouts failed on the server, and P95 above 2 s.
    put_window(conn, [{"ago": 5, "success": 188, "error": 12, "conflicts": 1,
                       "latency": {"1.0": 150, "2.5": 20, "10.0": 30, "+Inf": 0}}])
    code, out, verdict = check(db_url)
    assert code == 2 and verdict["status"] == "FAIL", out
    rows = verdict_rows(out)
    assert rows["checkout success rate"] == ["94.00 %", "> 95.00 %", "<= 96.00 %", "FAIL"]
    assert rows["checkout latency P95"][3] == "FAIL" and rows["ConcurrencyError rate"][3] == "PASS"
    assert "verdict: FAIL (exit 2)" in out

    # Failing with few checkouts: 12 of 50 failed, which 200 checkouts could not mend either.
    put_window(conn, [{"ago": 5, "success": 38, "error": 12}])
    code, out, verdict = check(db_url)
    assert code == 2 and "misses the target even counted against 200 checkouts" in out, out

    # Without --check the verdict does not decide the exit code; bad usage is 2 with a message on stderr.
    r = pyapp(db_url, "report", "--since", "1h")
    assert r.returncode == 0 and "verdict:" not in r.stdout, r.stdout
    for bad in (("--since", "5x", "--check"), ("--since", "1h", "--check", "--min-checkouts", "0")):
        r = pyapp(db_url, "report", *bad)
        assert r.returncode == 2 and r.stderr.startswith("pyapp: ") and not r.stdout, (bad, r.stdout, r.stderr)
