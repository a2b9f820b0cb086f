"""Checkout paths that only two sessions at once can reach: a price changed while a buyer waits
for the product's row lock, and a cart checked out twice at the same moment."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

from tests.support.invariants import assert_invariants


def _seed(conn, stock: int = 5, price: str = "10.00") -> str:
    conn.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash") VALUES
                    ('s', 's@example.com', 'S', 'SELLER', 'x'), ('b', 'b@example.com', 'B', 'BUYER', 'x')""")
    return conn.execute("SELECT api.create_product('s', 'Jug', %s::numeric, %s)", (price, stock)).fetchone()[0]["id"]


def _wait_until_blocked(conn, pid_of_waiter: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                        (pid_of_waiter,)).fetchone()[0]:
            return
        time.sleep(0.02)
    raise AssertionError("the checkout never waited for the row lock")


def test_price_changed_while_waiting_for_the_lock_is_the_price_paid(conn, core_url):
    pid = _seed(conn)
    conn.execute("SELECT api.add_to_cart('b', %s, 2)", (pid,))
    result: dict = {}

    with psycopg.connect(core_url, autocommit=True) as buyer, psycopg.connect(conn.info.dsn) as editor:
        buyer_pid = buyer.info.backend_pid
        # The editor holds the row (as a seller's edit would) while the buyer checks out.
        editor.execute("""SELECT api.update_product(%s, 1, '{"price": 12.5}')""", (pid,))

        def checkout():
            result["order"] = buyer.execute("SELECT api.checkout('b', %s)", (Jsonb({"city": "Tlaquepaque"}),)).fetchone()[0]

        t = threading.Thread(target=checkout)
        t.start()
        _wait_until_blocked(conn, buyer_pid)
        editor.commit()
        t.join(10)
        assert not t.is_alive()

    order = result["order"]
    assert Decimal(str(order["total"])) == Decimal("25.00")
    assert [Decimal(str(i["unitPrice"])) for i in order["items"]] == [Decimal("12.50")]
    stored = conn.execute("""SELECT o.total, i."unitPrice" FROM "Order" o JOIN "OrderItem" i ON i."orderId" = o.id
                             WHERE o.id = %s""", (order["id"],)).fetchone()
    assert stored == (Decimal("25.00"), Decimal("12.50"))
    assert conn.execute('SELECT stock FROM "Product" WHERE id = %s', (pid,)).fetchone()[0] == 3
    assert_invariants(conn, initial={pid: 5})


def test_one_cart_checked_out_twice_at_once_makes_one_order(conn, core_url):
    pid = _seed(conn)
    conn.execute("SELECT api.add_to_cart('b', %s, 1)", (pid,))
    outcomes: list = []
    barrier = threading.Barrier(2)

    def checkout(key):
        with psycopg.connect(core_url, autocommit=True) as c:
            barrier.wait()
            try:
                outcomes.append(c.execute("SELECT api.checkout('b', %s, %s)",
                                          (Jsonb({"city": "Oaxaca"}), key)).fetchone()[0])
            except psycopg.Error as exc:
                outcomes.append(exc.sqlstate)

    for keys in ((None, None), ("k-1", "k-1")):
        if keys[0] is not None:
            conn.execute("SELECT api.add_to_cart('b', %s, 1)", (pid,))
        outcomes.clear()
        threads = [threading.Thread(target=checkout, args=(k,)) for k in keys]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        orders = [o for o in outcomes if isinstance(o, dict)]
        if keys[0] is None:
            # Without a key the second finds the cart already claimed: empty.
            assert len(orders) == 1 and outcomes.count("MKE00") == 1, outcomes
        else:
            # With the same key the second is a replay of the first order.
            assert len(orders) == 2, outcomes
            assert orders[0]["id"] == orders[1]["id"]
            assert sorted(o["replayed"] for o in orders) == [False, True]
    assert conn.execute('SELECT count(*) FROM "Order"').fetchone()[0] == 2
    assert conn.execute('SELECT stock FROM "Product" WHERE id = %s', (pid,)).fetchone()[0] == 3
    assert_invariants(conn, initial={pid: 5})


def test_buyers_of_one_product_wait_in_its_queue_and_give_up_cleanly(conn, core_url):
    """A second buyer of a product whose sale is in flight waits in the product's queue (an
    advisory lock, not the row), and at lock_timeout gives up with 55P03 having changed nothing;
    once the first commits, the same checkout goes through."""
    pid = _seed(conn)
    conn.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash")
                    VALUES ('c', 'c@example.com', 'C', 'BUYER', 'x')""")
    conn.execute("SELECT api.add_to_cart('b', %s, 1), api.add_to_cart('c', %s, 1)", (pid, pid))
    failure: dict = {}

    with psycopg.connect(core_url) as first, psycopg.connect(core_url, autocommit=True) as second:
        first.execute("SELECT api.checkout('c', %s)", (Jsonb({"city": "Oaxaca"}),))  # not committed yet
        second.execute("SET lock_timeout = '2s'")
        second_pid = second.info.backend_pid

        def checkout():
            try:
                second.execute("SELECT api.checkout('b', %s)", (Jsonb({"city": "Puebla"}),))
            except psycopg.Error as exc:
                failure["sqlstate"] = exc.sqlstate

        t = threading.Thread(target=checkout)
        t.start()
        _wait_until_blocked(conn, second_pid)
        waiting = conn.execute("SELECT locktype FROM pg_locks WHERE pid = %s AND NOT granted",
                               (second_pid,)).fetchall()
        t.join(10)
        assert not t.is_alive()
        assert waiting == [("advisory",)], waiting
        assert failure.get("sqlstate") == "55P03", failure
        # Nothing of the second buyer's checkout remains: cart intact, no order.
        assert conn.execute("""SELECT quantity FROM "CartItem" WHERE "userId" = 'b'""").fetchall() == [(1,)]
        assert conn.execute("""SELECT count(*) FROM "Order" WHERE "userId" = 'b'""").fetchone()[0] == 0
        first.commit()
        order = second.execute("SELECT api.checkout('b', %s)", (Jsonb({"city": "Puebla"}),)).fetchone()[0]
    assert order["status"] == "PENDING_PAYMENT"
    assert conn.execute('SELECT stock FROM "Product" WHERE id = %s', (pid,)).fetchone()[0] == 3
    assert_invariants(conn, initial={pid: 5})


def test_a_queued_checkout_releases_early_only_for_a_caller_that_asked(conn, db_url, core_url):
    """With mk.release_early = 'on', a checkout that had to queue for its product commits without
    waiting for the disk (synchronous_commit off) and says so in mk.flush_pending; one that did
    not queue, or whose caller did not ask (a DBA in psql), keeps a durable commit."""
    pid = _seed(conn, stock=10)
    buyers = ["c", "d", "e"]
    for u in buyers:
        conn.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash")
                        VALUES (%s, %s, %s, 'BUYER', 'x')""", (u, f"{u}@example.com", u.upper()))
    for u in buyers:
        conn.execute("SELECT api.add_to_cart(%s, %s, 1)", (u, pid))
    probe = ("SELECT o ->> 'status', current_setting('synchronous_commit'),"
             " coalesce(current_setting('mk.flush_pending', true), '')"
             " FROM api.checkout(%s, %s) AS o")
    address = Jsonb({"city": "Oaxaca"})

    def queued_checkout(user: str, release_early: bool) -> tuple:
        """`user` checks out while the product's queue is held (as by a sale in flight), then
        the holder commits."""
        result: dict = {}
        with psycopg.connect(db_url) as first, psycopg.connect(core_url, autocommit=True) as second:
            first.execute("SELECT pg_advisory_xact_lock(1296782161, hashtext(%s))", (pid,))
            if release_early:
                second.execute("SET mk.release_early = 'on'")
            second_pid = second.info.backend_pid

            def run():
                result["row"] = second.execute(probe, (user, address)).fetchone()

            t = threading.Thread(target=run)
            t.start()
            _wait_until_blocked(conn, second_pid)
            first.commit()
            t.join(10)
            assert not t.is_alive()
            # the statement's settings were transaction-local: gone after its commit
            after = second.execute("SELECT current_setting('synchronous_commit'),"
                                   " coalesce(current_setting('mk.flush_pending', true), '')").fetchone()
        assert after == ("on", ""), after
        return result["row"]

    assert queued_checkout("c", release_early=True) == ("PENDING_PAYMENT", "off", "on")
    assert queued_checkout("d", release_early=False) == ("PENDING_PAYMENT", "on", "")
    with psycopg.connect(core_url, autocommit=True) as alone:  # asked, but nobody else was selling
        alone.execute("SET mk.release_early = 'on'")
        assert alone.execute(probe, ("e", address)).fetchone() == ("PENDING_PAYMENT", "on", "")
    assert conn.execute('SELECT stock FROM "Product" WHERE id = %s', (pid,)).fetchone()[0] == 7
    assert_invariants(conn, initial={pid: 10})


def test_early_release_reaches_the_app_through_app_checkout(conn, db_url, app_url):
    """The HTTP app calls app.checkout, a SECURITY DEFINER wrapper with its own search_path: the
    early release api.checkout sets inside it (synchronous_commit off, mk.flush_pending on) must
    still reach the app's session, or the app would answer before the sale is on disk."""
    pid = _seed(conn, stock=3)
    token = "f" * 64
    conn.execute("SELECT api.issue_token('b', %s)", (token,))
    conn.execute("SELECT api.add_to_cart('b', %s, 1)", (pid,))
    result: dict = {}
    with psycopg.connect(db_url) as first, psycopg.connect(app_url, autocommit=True) as app:
        first.execute("SELECT pg_advisory_xact_lock(1296782161, hashtext(%s))", (pid,))
        app.execute("SET mk.release_early = 'on'")

        def run():
            result["row"] = app.execute(
                "SELECT o ->> 'status', current_setting('synchronous_commit'),"
                " coalesce(current_setting('mk.flush_pending', true), '')"
                " FROM app.checkout(%s, %s) AS o", (token, Jsonb({"city": "Oaxaca"}))).fetchone()

        t = threading.Thread(target=run)
        t.start()
        _wait_until_blocked(conn, app.info.backend_pid)
        first.commit()
        t.join(10)
        assert not t.is_alive()
    assert result["row"] == ("PENDING_PAYMENT", "off", "on")
    assert_invariants(conn, initial={pid: 3})
