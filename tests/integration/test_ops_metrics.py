"""GET /metrics under two server workers: the counters of both add up in every scrape, the
database figures come from app.ops_snapshot(), and the same figures reach the database through
app.record_checkout_stats."""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import requests

from tests.integration.test_http_api import add, checkout, make_product, make_user
from tests.support.http_server import HttpServer
from tests.support.invariants import assert_invariants

SUCCESSES = 24


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def two_workers(http_db, tmp_path_factory):  # noqa: F811
    metrics_dir = tmp_path_factory.mktemp("prom")
    # METRICS_DB_CACHE_SECONDS=0: every scrape reads the database, so a change shows at the next
    # one (the 15-second cache is tested in test_hostile_users.py).
    srv = HttpServer(http_db[1], WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
                     STATS_FLUSH_SECONDS="1", METRICS_DB_CACHE_SECONDS="0").start()
    yield srv, metrics_dir
    srv.stop()


def test_counters_add_up_across_workers(two_workers, http_db):  # noqa: F811
    srv, metrics_dir = two_workers
    _, seller = make_user(http_db, "SELLER")
    product = make_product(srv, seller, stock=SUCCESSES)
    buyers = [make_user(http_db)[1] for _ in range(SUCCESSES + 3)]
    for h in buyers[:SUCCESSES + 2]:
        assert add(srv, h, product["id"], 1).status_code == 201

    # Concurrent requests on fresh connections, so both workers take some.
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda h: checkout(srv, h).status_code, buyers[:SUCCESSES + 2]))
    assert sorted(codes) == [201] * SUCCESSES + [400, 400]  # the last two find the product sold out
    assert checkout(srv, buyers[-1]).status_code == 400  # empty cart
    assert requests.post(srv.url + "/api/marketplace/checkout", json={"shippingAddress": {"c": 1}}).status_code == 401

    pids = {p.stem.rsplit("_", 1)[-1] for p in Path(metrics_dir).glob("counter_*.db")}
    assert len(pids) >= 2, f"only {pids} wrote counters: the test did not reach both workers"

    # the 401 is the client's error, not a failure of the server
    expected = {"success": SUCCESSES, "insufficient_stock": 2, "empty_cart": 1, "client_error": 1, "maintenance": 0,
                "error": 0, "conflict": 0}
    decided = SUCCESSES + 2  # only these have a latency
    for _ in range(6):  # whichever worker answers, every scrape sums both
        r = requests.get(srv.url + "/metrics")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.text
        for outcome, n in expected.items():
            assert sample(text, "mk_checkout_total", f'{{outcome="{outcome}"}}') == n, (outcome, text)
        assert sample(text, "mk_checkout_duration_seconds_count") == decided
        assert sample(text, "mk_checkout_duration_seconds_bucket", '{le="+Inf"}') == decided
        assert 'mk_checkout_duration_seconds_bucket{le="0.005"}' in text
        assert 'mk_checkout_duration_seconds_bucket{le="10.0"}' in text
        assert "# TYPE mk_concurrency_conflicts_total counter" in text and "mk_db_retries_total" in text
        assert sample(text, "mk_database_up") == 1
        assert sample(text, "mk_orders", '{status="PENDING_PAYMENT"}') == SUCCESSES
        assert sample(text, "mk_orders", '{status="PAID"}') == 0
        assert sample(text, "mk_products_negative_stock") == 0
        assert sample(text, "mk_orders_unpaid_past_hold") == 0

    with psycopg.connect(http_db[0], autocommit=True) as c:
        # an order past the hold window shows at the next scrape
        c.execute("""UPDATE "Order" SET "createdAt" = now() - interval '2 hours'
                     WHERE id = (SELECT min(id) FROM "Order")""")
        assert sample(requests.get(srv.url + "/metrics").text, "mk_orders_unpaid_past_hold") == 1

        # the persisted figures: every worker flushes each second
        deadline = time.monotonic() + 15
        while True:
            row = c.execute("""SELECT sum(success), sum(insufficient_stock), sum(empty_cart), sum(client_error),
                                      sum(error), sum(conflict) FROM internal.checkout_stats""").fetchone()
            if row == (SUCCESSES, 2, 1, 1, 0, 0) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert row == (SUCCESSES, 2, 1, 1, 0, 0)
        assert c.execute("SELECT sum(n) FROM internal.checkout_latency").fetchone()[0] == decided
        assert_invariants(c)


def test_conflicts_and_retries_are_counted_and_persisted(two_workers, http_db):  # noqa: F811
    srv, _ = two_workers
    _, seller = make_user(http_db, "SELLER")
    product = make_product(srv, seller, stock=3)
    before = requests.get(srv.url + "/metrics").text
    url = f"{srv.url}/api/marketplace/products/{product['id']}"
    # a stale version: a ConcurrencyError (MK409), not retried
    r = requests.patch(url, headers={**seller, "If-Match": '"7"'}, json={"price": 3})
    assert r.status_code == 409
    after = requests.get(srv.url + "/metrics").text
    assert sample(after, "mk_concurrency_conflicts_total", '{sqlstate="MK409"}') == \
        sample(before, "mk_concurrency_conflicts_total", '{sqlstate="MK409"}') + 1
    with psycopg.connect(http_db[0], autocommit=True) as c:
        deadline = time.monotonic() + 15
        while c.execute("SELECT coalesce(sum(conflicts), 0) FROM internal.checkout_stats").fetchone()[0] < 1:
            assert time.monotonic() < deadline, "the conflict was not persisted"
            time.sleep(0.2)


def test_record_checkout_stats_validates_input_and_guards_its_table(http_db):  # noqa: F811
    with psycopg.connect(http_db[1], autocommit=True) as c:  # as the app's role, through schema app
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT app.record_checkout_stats('[{\"minute\": \"not a time\"}]')")
        assert e.value.sqlstate == "MKV00"
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT app.record_checkout_stats('{}')")
        assert e.value.sqlstate == "MKV00"
        assert c.execute("SELECT app.record_checkout_stats('[]')").fetchone()[0] == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT * FROM internal.checkout_stats")
