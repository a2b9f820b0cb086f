"""The one call layer for the SQL API: one Python function per SQL call the app makes.

Routes (pyapp.web.routes) and commands (pyapp.cli) call these instead of writing SQL. Every
function takes `db` (anything with `one(query, params)` and `row(query, params)`: the request's
pyapp.db.pool.Db, or `Session` below around a command's connection) and then the caller first:
the SHA-256 of the bearer token (`caller`) for the app functions that authenticate in the database
(sql/app/: the token is checked in the same statement, so authentication costs no extra round
trip), or the client address for those that throttle by it. Each is a single statement.
"""
from __future__ import annotations

from typing import Any

import psycopg

# ---------------------------------------------------------------- sessions


class Session:
    """A command's connection with the same `one`/`row` interface as a request's Db."""

    __slots__ = ("conn",)

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def one(self, query: str, params=()):
        row = self.conn.execute(query, params).fetchone()
        return None if row is None else row[0]

    def row(self, query: str, params=()):
        return self.conn.execute(query, params).fetchone()


# ---------------------------------------------------------------- accounts (sql/app/auth.sql)


def check_registration(db, client: str) -> Any:
    return db.one("SELECT app.check_registration(%s)", (client,))


def register(db, client: str, email: str, name: str, password_hash: str, role: str) -> dict:
    return db.one("SELECT app.register(%s, %s, %s, %s, %s)", (client, email, name, password_hash, role))


def login_parameters(db, client: str, email: str) -> dict:
    return db.one("SELECT app.login_parameters(%s, %s)", (email, client))


def login(db, client: str, email: str, key: str, upgrade: str | None) -> dict:
    return db.one("SELECT app.login(%s, %s, %s, %s)", (email, client, key, upgrade))


def logout(db, caller: str | None) -> dict:
    return db.one("SELECT app.logout(%s)", (caller,))


# ---------------------------------------------------------------- catalogue (sql/app/catalogue.sql)


def list_products(db, limit: int, after: str | None) -> dict:
    return db.one("SELECT app.list_products(%s, %s)", (limit, after))


def get_product(db, product_id: str) -> dict:
    return db.one("SELECT app.get_product(%s)", (product_id,))


def create_product(db, caller: str | None, name: str, price: str, stock: int, description: str,
                   max_per_buyer: int | None) -> dict:
    return db.one("SELECT app.create_product(%s, %s, %s::numeric, %s::integer, %s, %s::integer)",
                  (caller, name, price, stock, description, max_per_buyer))


def update_product(db, caller: str | None, product_id: str, version: int, body_text: str) -> dict:
    """`body_text` is the request body as sent (exact numbers); its "version" is not a change."""
    return db.one("SELECT app.update_product(%s, %s, %s::integer, %s::jsonb - 'version')",
                  (caller, product_id, version, body_text))


# ---------------------------------------------------------------- cart (sql/app/cart.sql)


def get_cart(db, caller: str | None) -> dict:
    return db.one("SELECT app.get_cart(%s)", (caller,))


def add_to_cart(db, caller: str | None, product_id: str, quantity: int) -> dict:
    return db.one("SELECT app.add_to_cart(%s, %s, %s::integer)", (caller, product_id, quantity))


def set_cart_quantity(db, caller: str | None, product_id: str, quantity: int) -> dict:
    return db.one("SELECT app.set_cart_quantity(%s, %s, %s::integer)", (caller, product_id, quantity))


def remove_from_cart(db, caller: str | None, product_id: str) -> dict:
    return db.one("SELECT app.remove_from_cart(%s, %s)", (caller, product_id))


# ---------------------------------------------------------------- orders (sql/app/orders.sql)


def checkout(db, caller: str | None, body_text: str, idempotency_key: str | None):
    """(order as JSON text, order id, replayed, flush pending, smoke): the order goes out as the
    text PostgreSQL made of it, with no parse into Python and back on the busiest route. A checkout
    that queued for a product may have committed without waiting for the disk (mk.release_early);
    it says so in mk.flush_pending, and the answer then waits for the flush (Db.await_durable)."""
    return db.row(
        "SELECT o::text, o ->> 'id', o -> 'replayed' = 'true', current_setting('mk.flush_pending', true) = 'on',"
        " o ? 'smoke' FROM app.checkout(%s, %s::jsonb -> 'shippingAddress', %s) AS o",
        (caller, body_text, idempotency_key))


def list_orders(db, caller: str | None, limit: int) -> dict:
    return db.one("SELECT app.list_orders(%s, %s)", (caller, limit))


def get_order(db, caller: str | None, order_id: str) -> dict:
    return db.one("SELECT app.get_order(%s, %s)", (caller, order_id))


def cancel_order(db, caller: str | None, order_id: str) -> dict:
    return db.one("SELECT app.cancel_order(%s, %s)", (caller, order_id))


def payment_webhook(db, timestamp: str | None, signature: str | None, body: bytes) -> dict:
    """The signer is the caller: signature, freshness, replay and the body are checked in the
    database against keys the app's role cannot read; the raw body goes there byte for byte."""
    return db.one("SELECT app.payment_webhook(%s, %s, %s)", (timestamp, signature, body))


# ---------------------------------------------------------------- operations (sql/app/operations.sql)


def set_maintenance(db, caller: str | None, enabled: bool) -> dict:
    return db.one("SELECT app.set_maintenance(%s, %s)", (caller, enabled))


def health(db) -> dict:
    return db.one("SELECT app.health()")


def ops_snapshot(db, hold_minutes: int) -> dict:
    return db.one("SELECT app.ops_snapshot(make_interval(mins => %s))", (hold_minutes,))


def dashboard_stats(db, caller: str | None, hold_minutes: int) -> dict:
    return db.one("SELECT app.dashboard_stats(%s, make_interval(mins => %s))", (caller, hold_minutes))
