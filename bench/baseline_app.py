"""The baseline for bench/http_bench.py: what the old ORM backend did for a checkout of one
product, as a small Bottle app served by granian's WSGI mode with the same shape as ours (WORKERS
processes of THREADS blocking threads, HTTP/1), as bench/http_bench.py --with-baseline runs it:

    cd bench && DATABASE_URL=<owner URL> PYTHONPATH=.. ../.venv/bin/python -m granian \
        --interface wsgi --workers 2 --blocking-threads 8 --http 1 --no-ws \
        --host 127.0.0.1 --port 8000 --log-level warning baseline_app:app

It uses the tables directly (so it connects as their owner), one statement per round trip, as an
ORM does:

  1. authenticate: SELECT the token's user (autocommit, outside the transaction);
  2. BEGIN; SELECT stock, version, price of the product; stock < quantity -> ROLLBACK, 400;
  3. UPDATE "Product" SET stock = stock - qty, version = version + 1
     WHERE id = $1 AND version = $v   (optimistic lock);
  4. 0 rows updated (lost the race) -> ROLLBACK, release the connection, sleep with exponential
     backoff (10 ms, doubling, +-50 % jitter) and start again at 2, up to 3 retries, then 409;
  5. INSERT "Order", INSERT "OrderItem", COMMIT -> 201.

(The "Product" trigger sets version to old + 1 whatever the SET says, so the row still moves by
exactly one version per update.) Pool: psycopg_pool, made lazily per worker after the fork, sized
and timed out as pyapp's (DB_POOL_SIZE, default THREADS), with the same lock and statement
timeouts, closed when the worker exits (a multiprocessing finalizer, as pyapp.server does: a
granian worker leaves through os._exit, which skips atexit). No metrics. Routes:
POST /baseline/checkout {productId, quantity}, GET /health, and POST /floor/sale {productId,
quantity}, which is not a checkout: one conditional autocommit UPDATE of the product, the least
work any sale served by this stack has to do (bench/README.md).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing.util
import os
import random
import threading
import time
import uuid
from decimal import Decimal

import bottle
import psycopg
from bottle import request, response
from psycopg_pool import ConnectionPool, PoolTimeout

from pyapp import config

RETRIES = 3
BACKOFF_BASE_S = 0.010

app = bottle.Bottle(catchall=True)

_lock = threading.Lock()
_pool: ConnectionPool | None = None
_pool_pid: int | None = None


def pool() -> ConnectionPool:
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        with _lock:
            if _pool is None or _pool_pid != os.getpid():
                cfg = config.get()
                options = f"-c lock_timeout={cfg.lock_timeout_ms} -c statement_timeout={cfg.statement_timeout_ms}"
                p = ConnectionPool(cfg.database_url, min_size=1, max_size=cfg.pool_size, open=False,
                                   timeout=cfg.pool_timeout_s, max_idle=300, name=f"baseline-{os.getpid()}",
                                   kwargs={"autocommit": True, "options": options,
                                           "application_name": "baseline-http"})
                p.open(wait=False)
                _pool, _pool_pid = p, os.getpid()
                multiprocessing.util.Finalize(None, _close_pool, exitpriority=10)
    return _pool


def _close_pool() -> None:
    if _pool is not None and _pool_pid == os.getpid():
        _pool.close()


def answer(status: int, doc: dict) -> str:
    response.status = status
    response.content_type = "application/json" if status < 400 else "application/problem+json"
    return json.dumps(doc, default=lambda v: float(v) if isinstance(v, Decimal) else str(v))


def problem(status: int, code: str, detail: str) -> str:
    return answer(status, {"type": "about:blank", "title": code, "status": status, "detail": detail, "code": code})


class LostRace(Exception):
    """The versioned UPDATE matched no row: someone else changed the product first."""


@app.get("/health")
def health():
    try:
        with pool().connection(timeout=2) as conn:
            conn.execute("SELECT 1")
    except (psycopg.Error, PoolTimeout):
        return problem(503, "DATABASE_UNAVAILABLE", "no database")
    return answer(200, {"status": "ok"})


def _sale_body() -> tuple[str, int] | None:
    try:
        body = json.loads(request.body.read() or b"null")
        product_id, qty = body["productId"], body["quantity"]
        if not isinstance(product_id, str) or not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            raise ValueError
    except (ValueError, TypeError, KeyError):
        return None
    return product_id, qty


@app.post("/floor/sale")
def floor_sale():
    """A lower bound, not a checkout: no authentication, no order, one statement. Any checkout
    served by this stack parses a request, makes at least this round trip (the same UPDATE with the
    same triggers and one durable commit) and answers; it cannot be cheaper than this."""
    sale = _sale_body()
    if sale is None:
        return problem(400, "INVALID_ARGUMENT", "expected {productId: string, quantity: positive integer}")
    product_id, qty = sale
    try:
        with pool().connection() as conn:
            cur = conn.execute('UPDATE "Product" SET stock = stock - %s WHERE id = %s AND stock >= %s',
                               (qty, product_id, qty))
    except PoolTimeout:
        return problem(503, "DATABASE_UNAVAILABLE", "no database connection within the pool timeout")
    except psycopg.Error as exc:
        return problem(500, "DATABASE_ERROR", f"{exc.sqlstate}: {str(exc)[:200]}")
    if cur.rowcount == 0:
        return problem(400, "INSUFFICIENT_STOCK", "Stock insuficiente")
    return answer(201, {"productId": product_id, "quantity": qty})


@app.post("/baseline/checkout")
def checkout():
    sale = _sale_body()
    if sale is None:
        return problem(400, "INVALID_ARGUMENT", "expected {productId: string, quantity: positive integer}")
    product_id, qty = sale
    authz = request.get_header("Authorization", "")
    scheme, _, token = authz.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return problem(401, "UNAUTHENTICATED", "bearer token required")
    token_hash = hashlib.sha256(token.strip().encode()).hexdigest()
    try:
        with pool().connection() as conn:
            row = conn.execute(
                'SELECT u.id FROM "ApiToken" t JOIN "User" u ON u.id = t."userId" '
                'WHERE t."tokenHash" = %s AND t."revokedAt" IS NULL AND t."expiresAt" > now()',
                (token_hash,)).fetchone()
        if row is None:
            return problem(401, "UNAUTHENTICATED", "invalid token")
        user_id = row[0]
        for attempt in range(RETRIES + 1):
            if attempt:
                delay = BACKOFF_BASE_S * 2 ** (attempt - 1)
                time.sleep(delay * random.uniform(0.5, 1.5))
            try:
                with pool().connection() as conn, conn.transaction():
                    product = conn.execute('SELECT stock, version, price FROM "Product" WHERE id = %s',
                                           (product_id,)).fetchone()
                    if product is None:
                        return problem(404, "NOT_FOUND", "no such product")
                    stock, version, price = product
                    if stock < qty:
                        return problem(400, "INSUFFICIENT_STOCK", f"Stock insuficiente: {stock} left")
                    cur = conn.execute(
                        'UPDATE "Product" SET stock = stock - %s, version = version + 1 '
                        'WHERE id = %s AND version = %s', (qty, product_id, version))
                    if cur.rowcount == 0:
                        raise LostRace
                    order_id = str(uuid.uuid4())
                    conn.execute(
                        'INSERT INTO "Order" (id, "userId", status, total, "shippingAddress") '
                        "VALUES (%s, %s, 'PENDING_PAYMENT', %s, '{\"city\": \"X\"}')",
                        (order_id, user_id, price * qty))
                    conn.execute(
                        'INSERT INTO "OrderItem" ("orderId", "productId", quantity, "unitPrice") '
                        'VALUES (%s, %s, %s, %s)', (order_id, product_id, qty, price))
            except LostRace:
                continue  # the transaction block rolled back; the connection went back to the pool
            return answer(201, {"id": order_id, "userId": user_id, "status": "PENDING_PAYMENT",
                                "total": price * qty, "attempts": attempt + 1,
                                "items": [{"productId": product_id, "quantity": qty, "unitPrice": price}]})
        return problem(409, "CONCURRENCY_CONFLICT", f"lost the race {RETRIES + 1} times")
    except PoolTimeout:
        return problem(503, "DATABASE_UNAVAILABLE", "no database connection within the pool timeout")
    except psycopg.Error as exc:
        return problem(500, "DATABASE_ERROR", f"{exc.sqlstate}: {str(exc)[:200]}")
