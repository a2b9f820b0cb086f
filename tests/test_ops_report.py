"""`python -m pyapp report`: figures from real HTTP checkouts, still there after the server is
restarted (each worker flushes them at exit; the periodic flush is set to a minute so that the
exit flush is what this test exercises)."""
from __future__ import annotations

import json

import psycopg
import requests

from tests.http_server import HttpServer, http_db  # noqa: F401 - fixture
from tests.test_cli import pyapp
from tests.test_http_api import add, checkout, make_product, make_user


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
    assert rep["byOutcome"] == {"success": 3, "insufficient_stock": 1, "empty_cart": 1, "conflict": 0, "error": 0}
    assert rep["successRate"] == 0.6
    assert rep["concurrencyErrors"] == 0 and rep["retries"] == 0 and rep["retriesPerCheckout"] == 0
    lat = rep["latencySeconds"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= 30
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
