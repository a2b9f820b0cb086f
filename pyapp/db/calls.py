"""The one call layer for the SQL API: one Python function per SQL call the app makes.

Routes (pyapp.web.routes) and commands (pyapp.cli) call these instead of writing SQL. Every
function takes `db` (anything with `one(query, params)` and `row(query, params)`: the request's
pyapp.db.pool.Db, or `Session` below around a command's connection) and then the caller first:
the SHA-256 of the bearer token (`caller`) for the app functions that authenticate in the database
(sql/app/: the token is checked in the same statement, so authentication costs no extra round
trip), or the client address for those that throttle by it. Each is a single statement.

The commands' calls (at the end) run as the owner, on schema api, where the caller is the DBA
who runs the command; the few reads of tables a command needs are named queries here too, so that
no command writes SQL of its own. The commands with modules of their own (deploy, smoke,
simulate-race, expiry-schedule, the settings) have theirs in the sibling pyapp.db.ops_calls.
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

    def rows(self, query: str, params=()) -> list:
        return self.conn.execute(query, params).fetchall()


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


def replication_state(db) -> dict | None:
    """The node this session is on and its standbys (sql/api/replication_state.sql); None on a
    database that lacks the function (a deploy before its migration), so that /health still
    answers 200 and lists the pending migrations instead of a 503."""
    try:
        return db.one("SELECT app.replication_state()")
    except (psycopg.errors.UndefinedFunction, psycopg.errors.InsufficientPrivilege,
            psycopg.errors.InvalidSchemaName):
        return None


def ops_snapshot(db, hold_minutes: int) -> dict:
    return db.one("SELECT app.ops_snapshot(make_interval(mins => %s))", (hold_minutes,))


def dashboard_stats(db, caller: str | None, hold_minutes: int) -> dict:
    return db.one("SELECT app.dashboard_stats(%s, make_interval(mins => %s))", (caller, hold_minutes))


# ---------------------------------------------------------------- commands, as the owner (sql/api/)


def pending_payment_orders(db) -> int:
    """Orders whose stock is held under optimistic locking (rollback refuses to drop `version` then)."""
    return db.one("""SELECT count(*) FROM "Order" WHERE status = 'PENDING_PAYMENT'""")


def has_users(db) -> bool:
    return db.one('SELECT EXISTS (SELECT 1 FROM "User")')


def integrity_report(db, hold_minutes: int) -> list:
    """(check name, ok, detail) rows."""
    return db.rows("SELECT check_name, ok, detail FROM api.integrity_report(make_interval(mins => %s))",
                   (hold_minutes,))


def owner_set_maintenance(db, enabled: bool) -> dict:
    return db.one("SELECT api.set_maintenance(%s)", (enabled,))


def evaluate_alerts(db, hold_minutes: int, window_minutes: int, max_negative_stock: int,
                    max_concurrency_errors: int, max_failed_orders: int, max_unpaid_past_hold: int) -> list:
    """(rule, severity, value, threshold, firing, detail) rows."""
    return db.rows(
        """SELECT rule, severity, value, threshold, firing, detail
           FROM api.evaluate_alerts(make_interval(mins => %s), make_interval(mins => %s), %s, %s, %s, %s)""",
        (hold_minutes, window_minutes, max_negative_stock, max_concurrency_errors, max_failed_orders,
         max_unpaid_past_hold))


def report_and_verdict(db, amount: int, unit: str, min_checkouts: int | None) -> tuple[dict, dict]:
    """api.checkout_report and api.deploy_verdict over the last `amount` `unit`s (mins, hours or
    days), in one statement: the figures and the verdict see the same rows and the same now()."""
    if unit not in ("mins", "hours", "days"):
        raise ValueError(unit)
    verdict_sql = "api.deploy_verdict(w)" if min_checkouts is None else "api.deploy_verdict(w, %(min)s)"
    row = db.row(f"SELECT api.checkout_report(w), {verdict_sql} FROM make_interval({unit} => %(amount)s) AS w",
                 {"amount": amount, "min": min_checkouts})
    assert row is not None, "a SELECT from one interval returns one row"
    return row[0], row[1]


def expire_pending_orders(db, hold_minutes: int, batch: int) -> int:
    return db.one("SELECT api.expire_pending_orders(make_interval(mins => %s), %s)", (hold_minutes, batch))


def expiry_failures_now(db) -> list:
    """(order_id, sqlstate, message, attempts) of the orders expiry skipped in this transaction."""
    return db.rows("""SELECT order_id, sqlstate, message, attempts
                      FROM api.expiry_failures() WHERE last_failed_at = now()""")


def record_expiry_run(db, runner: str, expired: int, every_s: float | None) -> bool:
    """Records an expiry pass; False on a database whose migrations predate the record."""
    if not db.one("SELECT to_regprocedure('api.record_expiry_run(text, integer, interval)')"):
        return False
    db.one("SELECT api.record_expiry_run(%s, %s, make_interval(secs => %s))", (runner, expired, every_s))
    return True


def create_user(db, email: str, name: str, password_hash: str, role: str) -> dict:
    return db.one("SELECT api.create_user(%s, %s, %s, %s)", (email, name, password_hash, role))


def create_product_for(db, seller_id: str, name: str, price, stock: int, description: str) -> dict:
    return db.one("SELECT api.create_product(%s, %s, %s::numeric, %s::integer, %s)",
                  (seller_id, name, price, stock, description))
