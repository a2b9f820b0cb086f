"""Expiry that one bad order cannot hold back, as an operator sees it: `python -m pyapp
expire-orders` expires every other order and prints the ones it had to skip, `verify` and `alerts`
report them until they are dealt with, and GET /metrics exports their number."""
from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

from pyapp import metrics
from tests.integration.test_cli import pyapp
from tests.integration.test_ops_metrics import sample
from tests.support.invariants import assert_invariants, make_products, make_users


def test_metrics_export_the_orders_expiry_skipped():
    text = metrics.METRICS.render({"ordersByStatus": {}, "negativeStock": 0, "unpaidPastHold": 2,
                                   "expiryFailed": 2}).decode()
    assert "# TYPE mk_orders_expiry_failed gauge" in text
    assert sample(text, "mk_orders_expiry_failed") == 2


def rows(stdout: str, name: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if line.split()[:1] == [name]]


def test_expire_orders_skips_reports_and_retries_an_order_it_cannot_expire(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        seller = make_users(c, 1, role="SELLER", prefix="s")[0]
        buyers = make_users(c, 3, prefix="b")
        bad_product, product = make_products(c, seller, [5, 5])
        orders = []
        for buyer, pid in zip(buyers, [bad_product, product, product]):
            c.execute("SELECT api.add_to_cart(%s, %s, 1)", (buyer, pid))
            orders.append(c.execute("SELECT api.checkout(%s, %s)",
                                    (buyer, Jsonb({"city": "Lima"}))).fetchone()[0]["id"])
        bad = orders[0]
        # The bad order is the oldest, so it heads every batch; a DBA's UPDATE makes returning its
        # unit overflow the integer stock.
        c.execute("""UPDATE "Order" SET "createdAt" = now() - interval '2 hours'""")
        c.execute("""UPDATE "Order" SET "createdAt" = now() - interval '3 hours' WHERE id = %s""", (bad,))
        c.execute('UPDATE "Product" SET stock = 2147483647 WHERE id = %s', (bad_product,))

    # Batches of 1: the first holds only the bad order; the command goes on past it.
    r = pyapp(db_url, "expire-orders", "--batch-size", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "expire-orders: 2 expired (total 2), 1 skipped" in r.stdout, r.stdout
    assert f"expire-orders: skipped order {bad}: 22003 integer out of range (attempt 1;" in r.stdout, r.stdout
    with psycopg.connect(db_url, autocommit=True) as c:
        statuses = dict(c.execute('SELECT id, status FROM "Order"').fetchall())
        assert statuses == {bad: "PENDING_PAYMENT", orders[1]: "CANCELLED", orders[2]: "CANCELLED"}
        assert c.execute('SELECT stock FROM "Product" WHERE id = %s', (product,)).fetchone()[0] == 5
        assert c.execute("SELECT order_id, sqlstate, attempts FROM api.expiry_failures()").fetchall() == \
            [(bad, "22003", 1)]

    r = pyapp(db_url, "verify")
    assert r.returncode == 1 and rows(r.stdout, "expiry_failures")[0][1] == "FAILED", r.stdout
    assert bad in r.stdout
    r = pyapp(db_url, "alerts")
    assert r.returncode == 1, r.stdout
    assert rows(r.stdout, "expiry_failures")[0][1:5] == ["warning", "1", "0", "FIRING"], r.stdout

    # Within 10 minutes the order is left alone: nothing expired, nothing skipped.
    r = pyapp(db_url, "expire-orders")
    assert r.returncode == 0 and "expire-orders: 0 expired (total 0)\n" in r.stdout, r.stdout

    # The DBA repairs the stock; the retry (due 10 minutes after the failure) expires the order.
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute('UPDATE "Product" SET stock = 4 WHERE id = %s', (bad_product,))
        c.execute("UPDATE internal.expiry_failure SET last_failed_at = now() - interval '11 minutes'")
    r = pyapp(db_url, "expire-orders")
    assert r.returncode == 0 and "expire-orders: 1 expired (total 1)\n" in r.stdout, r.stdout
    assert pyapp(db_url, "verify").returncode == 0
    assert pyapp(db_url, "alerts").returncode == 0
    with psycopg.connect(db_url, autocommit=True) as c:
        assert c.execute('SELECT stock FROM "Product" WHERE id = %s', (bad_product,)).fetchone()[0] == 5
        assert c.execute("SELECT count(*) FROM api.expiry_failures()").fetchone()[0] == 0
        assert_invariants(c)
