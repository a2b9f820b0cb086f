"""maxPerBuyer under concurrency, with real sessions: a buyer cannot slip past the cap by adding to
the cart, or checking out again, while an earlier checkout of theirs is still in flight (its held
units are not yet committed). The api functions are called as the owner, as DBAs do; the HTTP
app reaches them through schema app."""
from __future__ import annotations

import threading
import time

import psycopg
from psycopg.types.json import Jsonb

from tests.support.invariants import assert_invariants

SALE_QUEUE = 1296782161  # the advisory-lock class of api.checkout's per-product sale queue


def _seed(conn, cap: int = 2, stock: int = 100) -> str:
    conn.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash") VALUES
                    ('s', 's@example.com', 'S', 'SELLER', 'x'), ('b', 'b@example.com', 'B', 'BUYER', 'x')""")
    return conn.execute("SELECT api.create_product('s', 'Drop', 10, %s, '', %s)", (stock, cap)).fetchone()[0]["id"]


def _wait_until_blocked(conn, pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                        (pid,)).fetchone()[0]:
            return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for a lock")


def _unpaid_units(conn, pid: str) -> int:
    return conn.execute("""SELECT coalesce(sum(i.quantity), 0) FROM "Order" o JOIN "OrderItem" i ON i."orderId" = o.id
                           WHERE o."userId" = 'b' AND i."productId" = %s
                             AND o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED')""", (pid,)).fetchone()[0]


def test_add_to_cart_waits_for_the_checkout_in_flight_and_counts_its_order(conn, db_url):
    pid = _seed(conn)
    conn.execute("SELECT api.add_to_cart('b', %s, 2)", (pid,))
    result: dict = {}

    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as buyer, \
            psycopg.connect(db_url, autocommit=True) as adder:
        # Another sale of the product is in progress: the buyer's checkout claims the cart, writes
        # its order and then queues for the product.
        holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (SALE_QUEUE, pid))

        def checkout():
            result["order"] = buyer.execute("SELECT api.checkout('b', %s)", (Jsonb({"city": "Puebla"}),)).fetchone()[0]

        def add():
            try:
                adder.execute("SELECT api.add_to_cart('b', %s, 1)", (pid,))
                result["add"] = "ok"
            except psycopg.Error as exc:
                result["add"] = exc.sqlstate
                result["detail"] = exc.diag.message_detail

        t_checkout = threading.Thread(target=checkout)
        t_checkout.start()
        _wait_until_blocked(conn, buyer.info.backend_pid)
        t_add = threading.Thread(target=add)
        t_add.start()
        # The line the checkout claimed is still locked by it: the add waits instead of reading
        # a held count without the checkout's order.
        _wait_until_blocked(conn, adder.info.backend_pid)
        holder.commit()
        t_checkout.join(10)
        t_add.join(10)
        assert not t_checkout.is_alive() and not t_add.is_alive()

    assert result["order"]["status"] == "PENDING_PAYMENT"
    assert result["add"] == "MKQ09", result
    assert '"held": 2' in result["detail"] and '"requested": 1' in result["detail"]
    assert conn.execute('SELECT count(*) FROM "CartItem"').fetchone()[0] == 0
    assert _unpaid_units(conn, pid) == 2
    assert_invariants(conn)


def test_many_adds_and_checkouts_of_one_buyer_never_hold_more_than_the_cap(conn, db_url):
    pid = _seed(conn, cap=3, stock=200)
    outcomes: list = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def worker():
        with psycopg.connect(db_url, autocommit=True) as c:
            barrier.wait(timeout=30)
            for _ in range(15):
                for query, params in (("SELECT api.add_to_cart('b', %s, 1)", (pid,)),
                                      ("SELECT api.checkout('b', %s)", (Jsonb({"city": "Lima"}),))):
                    try:
                        c.execute(query, params)
                        outcome = "ok"
                    except psycopg.Error as exc:
                        outcome = exc.sqlstate
                    with lock:
                        outcomes.append((query.split("(")[0].split(".")[1], outcome))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive()

    assert set(o for _, o in outcomes) <= {"ok", "MKQ09", "MKE00"}, outcomes
    assert ("checkout", "ok") in outcomes and ("add_to_cart", "MKQ09") in outcomes
    assert _unpaid_units(conn, pid) <= 3
    assert conn.execute('SELECT stock FROM "Product" WHERE id = %s', (pid,)).fetchone()[0] == 200 - _unpaid_units(conn, pid)
    assert_invariants(conn)
