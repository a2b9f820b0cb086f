"""The call layer of the owner's operations commands that have modules of their own (pyapp.cli:
deploy, smoke, simulate-race, expiry-schedule and the settings commands): one Python function per
SQL statement, with the conventions of pyapp.db.calls (`db` first, a pyapp.db.calls.Session
around the command's connection; then the arguments, the subject first). The caller is the DBA
who runs the command, on the owner's connection, so no token is passed.

A sibling of calls.py rather than part of it so that neither passes 300 lines. Besides the api
functions, it holds the reads a command needs and the api does not offer, as named queries:
the smoke test's and the race's checks of stock, ledger and orders (they check what the database
holds, not what the API answered), the catalogue probes (to_regprocedure, to_regclass,
pg_extension, pg_stat_activity, pg_database_size) and pg_cron's own functions and tables, which
live in pg_cron's database and are reached there over a second connection.
"""
from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

# ---------------------------------------------------------------- catalogue probes


def function_exists(db, signature: str) -> bool:
    """Whether a function of that signature exists, e.g. 'api.expiry_status()' (a database whose
    migrations are pending may predate it)."""
    return db.one("SELECT to_regprocedure(%s) IS NOT NULL", (signature,))


def relation_exists(db, name: str) -> bool:
    return db.one("SELECT to_regclass(%s) IS NOT NULL", (name,))


def extension_exists(db, name: str) -> bool:
    return db.one("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = %s)", (name,))


def server_version(db) -> str:
    return db.one("SHOW server_version")


def database_size(db) -> int:
    """Bytes of the current database."""
    return db.one("SELECT pg_database_size(current_database())")


def long_transactions(db, older_than_s: float) -> list:
    """(pid, age in seconds, state, user, query) of the client sessions of this database, other
    than this one, whose transaction is older than `older_than_s`; the oldest first."""
    return db.rows(
        """SELECT pid, extract(epoch FROM now() - xact_start)::numeric(12, 1) AS age_s, state, usename,
                  left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), 100) AS query
           FROM pg_stat_activity
           WHERE pid <> pg_backend_pid() AND datname = current_database() AND backend_type = 'client backend'
             AND xact_start < now() - make_interval(secs => %s)
           ORDER BY xact_start""", (older_than_s,))


def hidden_sessions(db) -> int:
    """Client sessions of other roles whose transaction this role may not see (it lacks
    pg_read_all_stats)."""
    return db.one("""SELECT count(*) FROM pg_stat_activity
                     WHERE pid <> pg_backend_pid() AND datname = current_database()
                       AND backend_type = 'client backend' AND state IS NULL""")


def try_advisory_lock(db, name: str) -> bool:
    """A session-level advisory lock on the hash of `name`, without waiting."""
    return db.one("SELECT pg_try_advisory_lock(hashtext(%s))", (name,))


# ---------------------------------------------------------------- maintenance (sql/api/)


def maintenance_status(db) -> dict:
    return db.one("SELECT api.maintenance_status()")


# ---------------------------------------------------------------- tokens, carts, orders as the owner


def issue_token(db, user_id: str, token_hash: str, ttl: str) -> Any:
    """A bearer token (its SHA-256) for the account, valid for `ttl` (an interval such as '1 hour')."""
    return db.one("SELECT api.issue_token(%s, %s, %s::interval)", (user_id, token_hash, ttl))


def revoke_token(db, token_hash: str) -> Any:
    return db.one("SELECT api.revoke_token(%s)", (token_hash,))


def create_product_defaults(db, seller_id: str, name: str, price: int, stock: int) -> dict:
    """api.create_product with its default description and per-buyer limit."""
    return db.one("SELECT api.create_product(%s, %s, %s::numeric, %s::integer)", (seller_id, name, price, stock))


def add_to_cart_for(db, buyer_id: str, product_id: str, quantity: int) -> Any:
    return db.one("SELECT api.add_to_cart(%s, %s, %s::integer)", (buyer_id, product_id, quantity))


def cancel_order_for(db, order_id: str, reason: str) -> Any:
    """api.cancel_order by the owner (no acting user), with the reason recorded."""
    return db.one("SELECT api.cancel_order(%s, NULL, %s)", (order_id, reason))


def clear_cart(db, user_id: str) -> None:
    """Empties one account's cart: the smoke test's own account, after its run (no api function
    empties another account's cart)."""
    db.conn.execute('DELETE FROM "CartItem" WHERE "userId" = %s', (user_id,))


# ---------------------------------------------------------------- reads the checks need


def product_stock(db, product_id: str) -> int | None:
    return db.one('SELECT stock FROM "Product" WHERE id = %s', (product_id,))


def product_before(db, product_id: str) -> str | None:
    """The greatest product id below this one (the catalogue lists in id order)."""
    return db.one('SELECT max(id) FROM "Product" WHERE id < %s', (product_id,))


def order_status(db, order_id: str) -> str | None:
    return db.one('SELECT status FROM "Order" WHERE id = %s', (order_id,))


def ledger_deltas(db, order_id: str | None, product_id: str, reason: str) -> list[int]:
    """The stock ledger's deltas of one order, product and reason (CHECKOUT, CANCEL, ...)."""
    return [r[0] for r in db.rows(
        """SELECT delta FROM "StockLedger" WHERE "orderId" = %s AND "productId" = %s AND reason = %s""",
        (order_id, product_id, reason))]


def stock_and_orders(db, product_id: str) -> tuple[int, int] | None:
    """(stock, how many orders hold the product) of one product; None when there is no such product."""
    return db.row(
        """SELECT p.stock, (SELECT count(DISTINCT i."orderId") FROM "OrderItem" i WHERE i."productId" = p.id)
           FROM "Product" p WHERE p.id = %s""", (product_id,))


# ---------------------------------------------------------------- smoke fixture (sql/api/smoke.sql)


def smoke_prepare(db) -> dict:
    return db.one("SELECT api.smoke_prepare()")


# ---------------------------------------------------------------- settings (webhook keys, limits, throttle)


def set_webhook_secret(db, secret: str) -> dict:
    return db.one("SELECT api.set_webhook_secret(%s)", (secret,))


def retire_webhook_secrets(db) -> dict:
    return db.one("SELECT api.retire_webhook_secrets()")


def webhook_secrets(db) -> list:
    """(id, created_at, active) of every key, in id order; never the key."""
    return db.rows("SELECT id, created_at, active FROM api.webhook_secrets() ORDER BY id")


def set_limits(db, changes: dict) -> dict:
    return db.one("SELECT api.set_limits(%s)", (Jsonb(changes),))


def limits(db) -> dict:
    return db.one("SELECT api.limits()")


def lift_login_throttle(db, email: str, client: str | None) -> int:
    return db.one("SELECT api.lift_login_throttle(%s, %s)", (email, client))


# ---------------------------------------------------------------- expiry schedule (sql/api/expiry_schedule.sql)


def expiry_runners(db) -> list:
    """(runner, state, last_success_at, detail) rows of api.expiry_status()."""
    return db.rows("SELECT runner, state, last_success_at, detail FROM api.expiry_status()")


def expiry_status(db) -> list:
    """(runner, state, running, last_success_at, detail, job_name, cron_database) rows."""
    return db.rows("""SELECT runner, state, running, last_success_at, detail, job_name, cron_database
                      FROM api.expiry_status()""")


def schedule_expiry(db, every_minutes: int, hold_minutes: int, batch: int) -> tuple:
    """(job name, schedule, command, database, pg_cron's database) to hand to pg_cron."""
    return db.row("SELECT * FROM api.schedule_expiry(%s, make_interval(mins => %s), %s)",
                  (every_minutes, hold_minutes, batch))


def unschedule_expiry(db) -> tuple:
    """(job name, pg_cron's database or None, whether it was scheduled)."""
    return db.row("SELECT * FROM api.unschedule_expiry()")


# ---------------------------------------------------------------- pg_cron, in pg_cron's database


def create_pg_cron(db) -> None:
    db.conn.execute("CREATE EXTENSION pg_cron")


def cron_schedule(db, job: str, schedule: str, command: str, dbname: str) -> int:
    """Schedules (or reschedules) the named job to run in `dbname`; returns its jobid."""
    return db.one("SELECT cron.schedule_in_database(%s, %s, %s, %s)", (job, schedule, command, dbname))


def cron_activate(db, jobid: int, dbname: str) -> None:
    """An existing job of that name keeps its database and active flag: sets both."""
    db.one("SELECT cron.alter_job(%s, database => %s, active => true)", (jobid, dbname))


def cron_unschedule(db, job: str) -> int:
    """Removes every job of that name; returns how many."""
    return len(db.rows("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %s", (job,)))


def cron_job(db, job: str) -> tuple | None:
    """(jobid, schedule, active, database) of the named job, or None."""
    return db.row("SELECT jobid, schedule, active, database FROM cron.job WHERE jobname = %s", (job,))


def cron_last_run(db, jobid: int) -> tuple | None:
    """(status, start_time, return_message) of the job's latest run, or None."""
    return db.row("""SELECT status, start_time, return_message FROM cron.job_run_details
                     WHERE jobid = %s ORDER BY runid DESC LIMIT 1""", (jobid,))
