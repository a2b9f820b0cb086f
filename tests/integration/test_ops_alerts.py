"""`python -m pyapp alerts`: each rule driven to fire on a real database, judged by the exit code
(2 critical, 1 warning, 0 quiet) and by the rule's row."""
from __future__ import annotations

import datetime as dt

import psycopg
from psycopg.types.json import Jsonb

from tests.integration.test_cli import pyapp
from tests.support.invariants import make_products, make_users


def states(r) -> dict[str, str]:
    """rule -> ok/FIRING from the printed table (the exit code is what is asserted first)."""
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ("negative_stock", "concurrency_errors", "failed_or_cancelled_orders",
                                  "unpaid_past_hold"):
            out[parts[0]] = parts[4]
    return out


def firing(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT rule FROM api.evaluate_alerts() WHERE firing").fetchall()}


def test_each_rule_fires_with_its_exit_code(db_url):
    r = pyapp(db_url, "alerts")
    assert r.returncode == 0, r.stdout + r.stderr
    assert set(states(r).values()) == {"ok"} and len(states(r)) == 4

    with psycopg.connect(db_url, autocommit=True) as c:
        seller = make_users(c, 1, role="SELLER", prefix="s")[0]
        buyer = make_users(c, 1, prefix="b")[0]
        pid = make_products(c, seller, [5])[0]
        c.execute("SELECT api.add_to_cart(%s, %s, 1)", (buyer, pid))
        order = c.execute("SELECT api.checkout(%s, %s)", (buyer, Jsonb({"city": "Lima"}))).fetchone()[0]
        c.execute("""UPDATE "Order" SET "createdAt" = now() - interval '2 hours' WHERE id = %s""", (order["id"],))
        assert firing(c) == {"unpaid_past_hold"}

    # unpaid past the hold window: a warning; a longer hold window quiets it
    r = pyapp(db_url, "alerts")
    assert r.returncode == 1 and states(r)["unpaid_past_hold"] == "FIRING", r.stdout
    assert pyapp(db_url, "alerts", "--hold-minutes", "180").returncode == 0
    assert pyapp(db_url, "expire-orders").returncode == 0
    assert pyapp(db_url, "alerts").returncode == 0

    # the expired order is CANCELLED within the hour: fires only under a threshold of 0
    r = pyapp(db_url, "alerts", "--max-failed-orders", "0")
    assert r.returncode == 1 and states(r)["failed_or_cancelled_orders"] == "FIRING", r.stdout

    # more than 100 ConcurrencyErrors in the last hour, as the HTTP workers persist them
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("SELECT api.record_checkout_stats(%s)", (Jsonb([{"minute": now, "conflicts": 60}]),))
        assert pyapp(db_url, "alerts").returncode == 0  # 60: not yet
        c.execute("SELECT api.record_checkout_stats(%s)", (Jsonb([{"minute": now, "conflicts": 41}]),))
    r = pyapp(db_url, "alerts")
    assert r.returncode == 1 and states(r)["concurrency_errors"] == "FIRING", r.stdout
    assert pyapp(db_url, "alerts", "--max-concurrency-errors", "500").returncode == 0

    # negative stock: critical (the CHECK has to be taken away first, as a broken deploy might)
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute('ALTER TABLE "Product" DROP CONSTRAINT "Product_stock_nonnegative"')
        c.execute('UPDATE "Product" SET stock = -1 WHERE id = %s', (pid,))
    r = pyapp(db_url, "alerts")
    assert r.returncode == 2 and states(r)["negative_stock"] == "FIRING", r.stdout
    assert states(r)["concurrency_errors"] == "FIRING"  # a critical outranks the warnings
    assert pyapp(db_url, "alerts", "--max-negative-stock", "-1").returncode == 2  # bad usage
    assert pyapp(db_url, "verify").returncode == 1


def test_alerts_reports_unreachable_database():
    r = pyapp("postgresql://nobody@127.0.0.1:9/none", "alerts")
    assert r.returncode == 3 and "unreachable" in r.stderr
