"""Concurrency: real threads, one psycopg connection each, all calls through api functions as the
app's role, started together by a barrier. Setup and the final checks use the superuser `conn`.

MK_STRESS_SECONDS (default 20) sets how long the random-cart test runs.
"""
from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from typing import Callable

import psycopg
from psycopg.types.json import Jsonb

from tests.support.invariants import assert_invariants, fill_carts, make_products, make_users

ADDRESS = Jsonb({"line1": "1 Workshop Lane", "city": "Oaxaca", "country": "MX"})
EXPECTED_REFUSALS = {"MK400", "MK409", "MKE00"}
# Only a versioned edit (api.update_product with a stale version) may meet MK409. Checkout and the
# cart functions contend only for stock: a conflict from them would be spurious, so they may not.
NO_CONFLICT_REFUSALS = EXPECTED_REFUSALS - {"MK409"}


def sqlstate_of(exc: BaseException) -> str:
    """The SQLSTATE of a database error, or a marker for anything else (always a failure)."""
    if isinstance(exc, psycopg.Error):
        return exc.sqlstate or f"NOSTATE:{type(exc).__name__}:{exc}"
    return f"PY:{type(exc).__name__}:{exc}"


def run_together(core_url: str, workers: list[Callable[[psycopg.Connection], None]]) -> list[BaseException]:
    """Runs each worker in its own thread with its own autocommit connection; all start together.

    Returns the exceptions the workers raised (a worker records expected refusals itself)."""
    barrier = threading.Barrier(len(workers))
    crashes: list[BaseException] = []

    def body(work):
        try:
            with psycopg.connect(core_url, autocommit=True) as c:
                barrier.wait(timeout=60)
                work(c)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            crashes.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
        assert not t.is_alive(), "a worker thread did not finish"
    return crashes


def call(c: psycopg.Connection, query: str, params=()):
    """(True, value) on success, (False, sqlstate) on a database error."""
    try:
        return True, c.execute(query, params).fetchone()[0]
    except psycopg.Error as exc:
        return False, sqlstate_of(exc)


def server_version(conn) -> str:
    return conn.execute("SELECT version()").fetchone()[0]


# 1. The last unit ---------------------------------------------------------------------------

def test_last_unit_is_sold_exactly_once(conn, core_url):
    seller = make_users(conn, 1, role="SELLER", prefix="seller")[0]
    initial: dict[str, int] = {}
    for race in range(3):
        product = make_products(conn, seller, [1], price="75.00")[0]
        initial[product] = 1
        buyers = make_users(conn, 50, prefix=f"race{race}")
        fill_carts(conn, buyers, {product: 1})

        outcomes: dict[str, tuple[bool, object]] = {}

        def buyer(uid):
            def work(c):
                # run_together below runs and joins it within this round
                outcomes[uid] = call(c, "SELECT api.checkout(%s, %s)", (uid, ADDRESS))  # noqa: B023
            return work

        crashes = run_together(core_url, [buyer(u) for u in buyers])
        assert not crashes, crashes

        winners = [uid for uid, (ok, _) in outcomes.items() if ok]
        refusals = Counter(v for ok, v in outcomes.values() if not ok)
        print(f"race {race}: 1 winner expected, got {len(winners)}; refusals {dict(refusals)}")
        assert len(winners) == 1, outcomes
        assert set(refusals) <= {"MK400", "MK409"}, refusals
        assert sum(refusals.values()) == 49
        # The buyers contend only for the stock: every loser is told it ran out, none conflicts.
        assert refusals == Counter({"MK400": 49}), refusals

        order = outcomes[winners[0]][1]
        assert order["status"] == "PENDING_PAYMENT"
        assert order["items"] == [{"productId": product, "quantity": 1, "unitPrice": 75.0}]

        stock, version = conn.execute('SELECT stock, "version" FROM "Product" WHERE id = %s',
                                      (product,)).fetchone()
        assert (stock, version) == (0, 2)
        assert conn.execute('SELECT sum(delta) FROM "StockLedger" WHERE "productId" = %s',
                            (product,)).fetchone()[0] == 0
        checkout_rows = conn.execute('''
            SELECT "orderId", delta FROM "StockLedger"
            WHERE "productId" = %s AND reason = 'CHECKOUT' ''', (product,)).fetchall()
        assert checkout_rows == [(order["id"], -1)]
        assert conn.execute('''
            SELECT count(*) FROM "Order" o JOIN "OrderItem" i ON i."orderId" = o.id
            WHERE i."productId" = %s''', (product,)).fetchone()[0] == 1
        # The losers keep their carts (their checkout rolled back as a whole); the winner's is empty.
        assert conn.execute('SELECT count(*) FROM "CartItem" WHERE "productId" = %s',
                            (product,)).fetchone()[0] == 49

    assert_invariants(conn, initial=initial)


# 2. Random multi-line carts -----------------------------------------------------------------

def test_random_carts_under_load(conn, core_url):
    seconds = float(os.environ.get("MK_STRESS_SECONDS", "20"))
    seller = make_users(conn, 1, role="SELLER", prefix="seller")[0]
    start_stock = [20, 10, 5, 3, 40]
    products = make_products(conn, seller, start_stock, price="12.50")
    initial = dict(zip(products, start_stock))
    buyers = make_users(conn, 16, prefix="load")

    lock = threading.Lock()
    counts: Counter = Counter()          # (operation, outcome) -> n
    restocked: Counter = Counter()       # product -> units added through api.update_product
    unexpected: list[tuple[str, str]] = []
    deadline = time.monotonic() + seconds

    def note(op: str, ok: bool, value):
        key = (op, "ok" if ok else value)
        allowed = EXPECTED_REFUSALS if op == "restock" else NO_CONFLICT_REFUSALS
        with lock:
            counts[key] += 1
            if not ok and value not in allowed:
                unexpected.append((op, value))

    def restock(c, rng):
        pid = rng.choice(products)
        delta = rng.randint(1, 6)
        for _ in range(50):
            ok, prod = call(c, "SELECT api.get_product(%s)", (pid,))
            note("get_product", ok, prod)
            if not ok:
                return
            ok, val = call(c, "SELECT api.update_product(%s, %s, %s)",
                           (pid, prod["version"], Jsonb({"stockDelta": delta})))
            note("restock", ok, val)
            if ok:
                with lock:
                    restocked[pid] += delta
                return
            if val != "MK409":
                return
        raise AssertionError("restock did not get through in 50 attempts")

    def buyer(uid, seed):
        def work(c):
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                if rng.random() < 0.08:
                    restock(c, rng)
                lines = rng.sample(products, rng.randint(1, 4))
                for pid in lines:
                    ok, val = call(c, "SELECT api.add_to_cart(%s, %s, %s)", (uid, pid, rng.randint(1, 3)))
                    note("add_to_cart", ok, val)
                ok, order = call(c, "SELECT api.checkout(%s, %s)", (uid, ADDRESS))
                note("checkout", ok, order)
                if not ok:
                    # Give up on this cart; the next round starts from an empty one.
                    for pid in lines:
                        ok2, val = call(c, "SELECT api.remove_from_cart(%s, %s)", (uid, pid))
                        note("remove_from_cart", ok2, val)
                    continue
                fate = rng.random()
                if fate < 0.25:
                    ok, val = call(c, "SELECT api.cancel_order(%s, %s)", (order["id"], uid))
                    note("cancel_order", ok, val)
                elif fate < 0.55:
                    ok, val = call(c, "SELECT api.record_payment(%s, true, %s)", (order["id"], f"ref-{seed}"))
                    note("pay_ok", ok, val)
                elif fate < 0.70:
                    ok, val = call(c, "SELECT api.record_payment(%s, false)", (order["id"],))
                    note("pay_failed", ok, val)
                    if ok and rng.random() < 0.5:
                        ok, val = call(c, "SELECT api.cancel_order(%s, %s)", (order["id"], uid))
                        note("cancel_order", ok, val)
        return work

    def restocker(seed):
        def work(c):
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                restock(c, rng)
                time.sleep(0.02)
        return work

    workers = [buyer(u, i) for i, u in enumerate(buyers)] + [restocker(1000)]
    crashes = run_together(core_url, workers)

    by_state = Counter()
    for (_op, outcome), n in counts.items():
        by_state[outcome] += n
    print(f"\n{seconds:.0f}s, {len(buyers)} buyers + 1 restocker on {len(products)} products")
    print(f"{'operation':<18}{'outcome':<10}{'count':>8}")
    for (op, outcome), n in sorted(counts.items()):
        print(f"{op:<18}{outcome:<10}{n:>8}")
    print("by SQLSTATE:", dict(by_state))
    if any(s.startswith("XX000") for _, s in unexpected):
        print("XX000 seen on", server_version(conn))

    assert not crashes, crashes
    assert by_state["40P01"] == 0, "deadlocks"
    assert not unexpected, Counter(unexpected)
    assert counts[("checkout", "ok")] > 0, "no checkout succeeded: the test proved nothing"
    assert counts[("checkout", "MK400")] > 0, "stock never ran short: the race was not exercised"
    assert counts[("checkout", "MK409")] == 0, "checkout answered a conflict where only stock was contended"

    stocks = assert_invariants(conn, initial=initial, restocked=restocked)
    print("final stock:", [stocks[p] for p in products], "restocked:", [restocked[p] for p in products])
    # The restocks the client saw are exactly the RESTOCK rows of the ledger.
    ledger_restock = dict(conn.execute('''
        SELECT "productId", sum(delta) FROM "StockLedger" WHERE reason = 'RESTOCK' GROUP BY 1''').fetchall())
    assert {p: ledger_restock.get(p, 0) for p in products} == {p: restocked[p] for p in products}


# 3. Expiry under fire -----------------------------------------------------------------------

def test_expiry_races_cancels_and_checkouts(conn, core_url):
    seller = make_users(conn, 1, role="SELLER", prefix="seller")[0]
    start_stock = [100000, 100000, 100000, 50, 20]
    products = make_products(conn, seller, start_stock, price="3.00")
    initial = dict(zip(products, start_stock))
    rng = random.Random(7)

    # ~300 orders made through api.checkout, one buyer each.
    owners = make_users(conn, 300, prefix="exp")
    orders: dict[str, str] = {}          # order id -> owner
    for uid in owners:
        for pid in rng.sample(products[:3], rng.randint(1, 3)):
            conn.execute("SELECT api.add_to_cart(%s, %s, %s)", (uid, pid, rng.randint(1, 3)))
        order = conn.execute("SELECT api.checkout(%s, %s)", (uid, ADDRESS)).fetchone()[0]
        orders[order["id"]] = uid
    ids = list(orders)
    rng.shuffle(ids)
    failed = set(ids[::2])               # half of them have a failed payment
    for oid in failed:
        conn.execute("SELECT api.record_payment(%s, false)", (oid,))
    old = set(ids[:200])                 # these are past the hold window and must expire
    conn.execute('''UPDATE "Order" SET "createdAt" = "createdAt" - interval '1 hour'
                    WHERE id = ANY(%s)''', (list(old),))
    to_cancel = ids[100:260]             # 100 old (race with expiry) and 60 fresh ones
    rng.shuffle(to_cancel)
    halves = [to_cancel[::2], to_cancel[1::2]]

    lock = threading.Lock()
    counts: Counter = Counter()
    unexpected: list[tuple[str, str]] = []
    user_cancelled: set[str] = set()
    expired_total = [0]
    cancellers_done = threading.Event()
    new_orders: list[str] = []
    fresh_buyers = make_users(conn, 2, prefix="fresh")

    def note(op, ok, value, allowed=NO_CONFLICT_REFUSALS):
        with lock:
            counts[(op, "ok" if ok else value)] += 1
            if not ok and value not in allowed:
                unexpected.append((op, value))

    def expirer(c):
        idle = 0
        while idle < 3:
            ok, n = call(c, "SELECT api.expire_pending_orders('30 minutes', 20)")
            note("expire", ok, n, allowed=set())
            if not ok:
                return
            with lock:
                expired_total[0] += n
            idle = idle + 1 if (n == 0 and cancellers_done.is_set()) else 0
            # A pause between batches spreads the expiry over the cancellers' run, so both win some.
            time.sleep(0.1 if n else 0.005)

    def canceller(batch):
        def work(c):
            for oid in batch:
                ok, val = call(c, "SELECT api.cancel_order(%s, %s)", (oid, orders[oid]))
                # MKS09: the expiry job got there first, which is allowed.
                note("cancel", ok, val, allowed={"MKS09"})
                if ok:
                    with lock:
                        user_cancelled.add(oid)
        return work

    def buyer(uid, seed):
        def work(c):
            r = random.Random(seed)
            for _ in range(40):
                lines = r.sample(products, r.randint(1, 3))
                for pid in lines:
                    ok, val = call(c, "SELECT api.add_to_cart(%s, %s, %s)", (uid, pid, r.randint(1, 2)))
                    note("add_to_cart", ok, val)
                ok, order = call(c, "SELECT api.checkout(%s, %s)", (uid, ADDRESS))
                note("checkout", ok, order)
                if ok:
                    with lock:
                        new_orders.append(order["id"])
                else:
                    for pid in lines:
                        ok, val = call(c, "SELECT api.remove_from_cart(%s, %s)", (uid, pid))
                        note("remove", ok, val)
        return work

    # The expirers stop after 3 idle rounds once both cancellers are done.
    remaining = [len(halves)]

    def wrap_canceller(w):
        def work(c):
            try:
                w(c)
            finally:
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        cancellers_done.set()
        return work

    workers = [expirer] * 4 + [wrap_canceller(canceller(h)) for h in halves] + \
              [buyer(u, 100 + i) for i, u in enumerate(fresh_buyers)]
    crashes = run_together(core_url, workers)

    print(f"\nexpired {expired_total[0]}, cancelled by buyers {len(user_cancelled)}, "
          f"new orders {len(new_orders)}")
    for (op, outcome), n in sorted(counts.items()):
        print(f"{op:<10}{outcome:<8}{n:>6}")
    assert not crashes, crashes
    assert not unexpected, Counter(unexpected)
    assert counts[("checkout", "MK409")] == 0, "checkout answered a conflict where only stock was contended"

    status = dict(conn.execute('SELECT id, status FROM "Order"').fetchall())
    reason = dict(conn.execute('SELECT id, "cancelReason" FROM "Order"').fetchall())
    # Every old order is gone: cancelled by its buyer or expired, never both.
    assert all(status[o] == "CANCELLED" for o in old)
    assert {o for o in orders if reason[o] == "CANCELLED_BY_BUYER"} == user_cancelled
    expired = {o for o in orders if reason[o] in ("EXPIRED", "PAYMENT_FAILED_EXPIRED")}
    assert expired == old - user_cancelled
    assert expired_total[0] == len(expired)
    assert all(reason[o] == ("PAYMENT_FAILED_EXPIRED" if o in failed else "EXPIRED") for o in expired)
    # Fresh orders stay unless their buyer cancelled them; the new checkouts were not touched.
    for o in set(orders) - old:
        assert status[o] == ("CANCELLED" if o in user_cancelled else
                             "PAYMENT_FAILED" if o in failed else "PENDING_PAYMENT")
    assert all(status[o] == "PENDING_PAYMENT" for o in new_orders)

    # Each cancelled order's stock came back exactly once, with one kind of reason.
    per_order = conn.execute('''
        SELECT l."orderId", sum(l.delta), array_agg(DISTINCT l.reason ORDER BY l.reason),
               count(*) FILTER (WHERE l.reason <> 'CHECKOUT'),
               (SELECT count(DISTINCT i."productId") FROM "OrderItem" i WHERE i."orderId" = l."orderId")
        FROM "StockLedger" l WHERE l."orderId" = ANY(%s) GROUP BY 1''', (list(orders),)).fetchall()
    assert len(per_order) == len(orders)
    for oid, net, reasons, returns, lines in per_order:
        if status[oid] == "CANCELLED":
            assert net == 0, (oid, net)
            assert returns == lines, (oid, returns, lines)
            back = {"CANCEL"} if oid in user_cancelled else \
                {"PAYMENT_FAILED_EXPIRED" if oid in failed else "EXPIRED"}
            assert set(reasons) == {"CHECKOUT"} | back, (oid, reasons)
        else:
            assert net < 0 and returns == 0 and reasons == ["CHECKOUT"], (oid, net, reasons)

    assert_invariants(conn, initial=initial)
    assert conn.execute("SELECT count(*) FROM api.integrity_report() WHERE NOT ok").fetchone()[0] == 0
