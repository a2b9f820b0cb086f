"""Invariants every test that changes stock or orders asserts at its end, and fast fixtures.

    assert_invariants(conn)                       # the rules that always hold
    assert_invariants(conn, initial={pid: n}, restocked={pid: n})
                                                  # and initial + restocked - sold + returned = stock

`conn` is a superuser connection (the app role cannot read tables). "sold" is counted from
"OrderItem" of every order, "returned" from "OrderItem" of cancelled orders, so the accounting
check does not trust the ledger it is compared with.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping


def _rows(conn, query, params=None):
    return conn.execute(query, params).fetchall()


def assert_invariants(conn, initial: Mapping[str, int] | None = None,
                      restocked: Mapping[str, int] | None = None,
                      order_ledger: bool = True) -> dict[str, int]:
    """Fails with a readable message on the first broken rule; returns {product id: stock}.

    order_ledger=False skips the per-order ledger check, for tests that insert orders by hand
    (such orders never took stock through api.checkout, so they have no CHECKOUT rows)."""
    negative = _rows(conn, 'SELECT id, stock FROM "Product" WHERE stock < 0')
    assert not negative, f"negative stock: {negative}"

    bad_version = _rows(conn, 'SELECT id, "version" FROM "Product" WHERE "version" < 1')
    assert not bad_version, f"version below 1: {bad_version}"

    off_ledger = _rows(conn, '''
        SELECT p.id, p.stock, coalesce(l.s, 0) AS ledger
        FROM "Product" p
        LEFT JOIN (SELECT "productId", sum(delta) AS s FROM "StockLedger" GROUP BY 1) l
               ON l."productId" = p.id
        WHERE p.stock <> coalesce(l.s, 0)''')
    assert not off_ledger, f"stock differs from the ledger (id, stock, ledger): {off_ledger}"

    # The last ledger row of each product states the product's current stock and version.
    stale_tail = _rows(conn, '''
        SELECT p.id, p.stock, p."version", l."stockAfter", l."versionAfter"
        FROM "Product" p
        JOIN LATERAL (SELECT * FROM "StockLedger" s WHERE s."productId" = p.id
                      ORDER BY s.id DESC LIMIT 1) l ON true
        WHERE l."stockAfter" <> p.stock OR l."versionAfter" > p."version"''')
    assert not stale_tail, f"last ledger row disagrees with the product: {stale_tail}"

    no_items = _rows(conn, '''
        SELECT o.id FROM "Order" o
        WHERE NOT EXISTS (SELECT 1 FROM "OrderItem" i WHERE i."orderId" = o.id)''')
    assert not no_items, f"orders without items: {no_items}"

    bad_total = _rows(conn, '''
        SELECT o.id, o.total, s.total
        FROM "Order" o
        JOIN (SELECT "orderId", sum(quantity * "unitPrice") AS total FROM "OrderItem" GROUP BY 1) s
          ON s."orderId" = o.id
        WHERE o.total <> s.total''')
    assert not bad_total, f"order total differs from its items (id, total, items): {bad_total}"

    # Per order: a cancelled order's ledger rows net to 0 (taken once, returned once); any other
    # order's ledger rows equal minus its items, per product.
    bad_order_ledger = [] if not order_ledger else _rows(conn, '''
        WITH items AS (
            SELECT i."orderId", i."productId", sum(i.quantity) AS qty FROM "OrderItem" i GROUP BY 1, 2
        ), led AS (
            SELECT "orderId", "productId", sum(delta) AS net,
                   sum(delta) FILTER (WHERE reason = 'CHECKOUT') AS taken,
                   sum(delta) FILTER (WHERE reason NOT IN ('CHECKOUT')) AS given
            FROM "StockLedger" WHERE "orderId" IS NOT NULL GROUP BY 1, 2
        )
        SELECT o.id, o.status, it."productId", it.qty, l.net, l.taken, l.given
        FROM "Order" o
        JOIN items it ON it."orderId" = o.id
        LEFT JOIN led l ON l."orderId" = o.id AND l."productId" = it."productId"
        WHERE coalesce(l.taken, 0) <> -it.qty
           OR coalesce(l.net, 0) <> CASE WHEN o.status = 'CANCELLED' THEN 0 ELSE -it.qty END''')
    assert not bad_order_ledger, (
        "per-order ledger wrong (order, status, product, qty, net, taken, given): "
        f"{bad_order_ledger[:10]}")

    stocks = dict(_rows(conn, 'SELECT id, stock FROM "Product"'))
    if initial is not None:
        restocked = restocked or {}
        flows = dict((r[0], (r[1], r[2])) for r in _rows(conn, '''
            SELECT i."productId",
                   sum(i.quantity),
                   coalesce(sum(i.quantity) FILTER (WHERE o.status = 'CANCELLED'), 0)
            FROM "OrderItem" i JOIN "Order" o ON o.id = i."orderId"
            GROUP BY 1'''))
        wrong = []
        for pid, start in initial.items():
            sold, returned = flows.get(pid, (0, 0))
            expected = start + restocked.get(pid, 0) - sold + returned
            if expected != stocks[pid]:
                wrong.append((pid, start, restocked.get(pid, 0), sold, returned, stocks[pid]))
        assert not wrong, ("initial + restocked - sold + returned != stock "
                           f"(id, initial, restocked, sold, returned, stock): {wrong}")
    return stocks


def make_users(conn, n: int, role: str = "BUYER", prefix: str = "u") -> list[str]:
    """n users in one INSERT (plain SQL as superuser); returns their ids in order."""
    rows = _rows(conn, '''
        INSERT INTO "User" (id, email, name, role, "passwordHash")
        SELECT %(p)s || '-' || g || '-' || left(md5(random()::text), 8),
               %(p)s || g || '-' || left(md5(random()::text), 8) || '@example.test',
               'User ' || g, %(role)s, 'x-not-a-real-hash'
        FROM generate_series(1, %(n)s) AS g
        ORDER BY g
        RETURNING id''', {"p": prefix, "n": n, "role": role})
    return [r[0] for r in rows]


def make_products(conn, seller_id: str, stocks: Iterable[int], price: str = "10.00") -> list[str]:
    """One product per entry of `stocks` (the trigger opens each ledger); returns ids in order."""
    stocks = list(stocks)
    rows = _rows(conn, '''
        INSERT INTO "Product" (name, price, stock, "sellerId")
        SELECT 'Product ' || s.ord, %(price)s::numeric, s.stock, %(seller)s
        FROM unnest(%(stocks)s::integer[]) WITH ORDINALITY AS s(stock, ord)
        ORDER BY s.ord
        RETURNING id, name''', {"price": price, "seller": seller_id, "stocks": stocks})
    # RETURNING order follows insertion order in practice, but map by name to be sure.
    by_name = {name: pid for pid, name in rows}
    return [by_name[f"Product {i}"] for i in range(1, len(stocks) + 1)]


def fill_carts(conn, user_ids: Iterable[str], lines: Mapping[str, int]) -> None:
    """Puts the same lines {product id: quantity} in every given user's cart (plain SQL)."""
    conn.execute('''
        INSERT INTO "CartItem" ("userId", "productId", quantity)
        SELECT u, l.pid, l.qty
        FROM unnest(%s::text[]) AS u, unnest(%s::text[], %s::integer[]) AS l(pid, qty)''',
                 (list(user_ids), list(lines), list(lines.values())))
