"""The HTTP worker's connection pool, and the one connection a request holds.

Pool wraps psycopg_pool's ConnectionPool, created lazily on the first request of each worker
process (after the server's fork); lock_timeout and statement_timeout travel in the connection
options. Every api call is a single statement on an autocommit connection, so it is its own
transaction and costs one round trip.

A pooled connection the server has closed (a restart, pg_terminate_backend) is discarded by the
pool's own `check=` callback before a statement is sent on it; a quiet socket costs no round trip.
The pool's get_stats() cannot tell a busy pool from an unreachable database (its pool_size also
counts connections it is still trying to open), so the pool keeps the number of connections this
process's requests hold, which can.
"""
from __future__ import annotations

import os
import select
import threading
import time

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from pyapp import config
from pyapp.db.registry import POLICY_QUERY, Registry

# The database answers but lacks this version's schema app (not migrated yet, or rolled back): no
# schema, no such function, no grant on it. A 503, not a 500: the server is not ready.
SCHEMA_MISSING = frozenset({"3F000", "42883", "42501"})


class DatabaseUnavailable(Exception):
    """No connection for this request. `database` says why, for the 503 body: "busy" when the
    pool's connections are in use by other requests (an overloaded app, the database is fine),
    "unreachable" when none is in use and none could be had."""

    def __init__(self, message: str, database: str = "unreachable"):
        super().__init__(message)
        self.database = database


def is_unavailable(exc: psycopg.Error) -> bool:
    """Whether a database error means the database cannot be used now (connection, resources,
    shutdown), as opposed to an answer about the request."""
    state = exc.sqlstate or ""
    if not state:
        return isinstance(exc, psycopg.OperationalError)
    return state[:2] in ("08", "53", "57") and state != "57014"


def _closed_by_server(conn: psycopg.Connection) -> bool:
    """Whether an idle pooled connection is dead. The server says nothing on an idle connection
    except when it ends it (a FATAL admin_shutdown, or the end of the stream after a crash), so
    a readable socket is checked with an empty query; a quiet one costs no round trip."""
    if conn.closed or conn.broken:
        return True
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        if not poller.poll(0):
            return False
        conn.execute("")
    except (psycopg.Error, OSError, ValueError):
        return True
    return False


class Pool:
    """The worker's connection pool and error registry, both made on first use in this process."""

    def __init__(self, read: bool = False) -> None:
        self.read = read  # the pool of READ_DATABASE_URL (catalogue reads; pyapp.db.replicas)
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._pid: int | None = None
        self.errors: Registry | None = None
        self._in_use = 0  # connections this process's requests hold now (tells "busy" from "unreachable")
        self._healthy_return = float("-inf")  # monotonic time a live connection last came back to the pool

    def pool(self) -> ConnectionPool:
        if self._pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    self._pool, self._pid, self.errors, self._in_use = self._open(), os.getpid(), None, 0
        return self._pool

    def _open(self) -> ConnectionPool:
        cfg = config.get()
        kwargs: dict = {"autocommit": True, "connect_timeout": 3, "application_name": "marketplace-http"}
        if cfg.pgbouncer:
            # PgBouncer transaction pooling: each statement may run on another server connection,
            # so no server-side prepared statements; and PgBouncer refuses the startup `options`,
            # so the timeouts are the role's (docs/scaling.md).
            kwargs["prepare_threshold"] = None
        else:
            # mk.release_early: api.checkout may commit a queued sale without waiting for the
            # disk; the checkout route then waits for it (Db.await_durable).
            kwargs["options"] = (f"-c lock_timeout={cfg.lock_timeout_ms} "
                                 f"-c statement_timeout={cfg.statement_timeout_ms}"
                                 + (" -c mk.release_early=on" if cfg.release_early else ""))
        pool = ConnectionPool(
            cfg.read_database_url if self.read else cfg.database_url, min_size=1, max_size=cfg.pool_size, open=False,
            timeout=cfg.pool_timeout_s, reconnect_timeout=30, max_idle=300, check=self._check,
            name=f"marketplace-{os.getpid()}", kwargs=kwargs)
        pool.open(wait=False)
        return pool

    def _check(self, conn: psycopg.Connection) -> None:
        """The pool's `check=`: raises for a connection the server has closed. One dead connection
        means the server restarted or ended its sessions, so the other idle ones are checked at
        once too (pool.check()), and the pool's wait before the next attempt finds a live one."""
        if _closed_by_server(conn):
            if self._pool is not None:
                self._pool.check()
            raise psycopg.OperationalError("the server closed this pooled connection")

    def getconn(self, timeout: float | None = None) -> psycopg.Connection:
        pool = self.pool()
        wait_started = time.monotonic()
        try:
            conn = pool.getconn(timeout=pool.timeout if timeout is None else timeout)
        except PoolTimeout as exc:
            # Busy, not unreachable, while this process's requests hold connections or a live one
            # came back during this wait (and went to another waiter). With the database down,
            # held connections fail fast and come back broken, so neither holds.
            if self._in_use > 0 or self._healthy_return >= wait_started:
                raise DatabaseUnavailable("every pooled database connection stayed busy for the pool timeout",
                                          database="busy") from exc
            raise DatabaseUnavailable("no database connection within the pool timeout") from exc
        with self._lock:
            self._in_use += 1
        if self.errors is None:
            try:
                self.errors = Registry.from_rows(conn.execute(POLICY_QUERY).fetchall())
            except psycopg.Error as exc:
                if is_unavailable(exc):
                    self.putconn(conn)
                    raise
                # A database without this version's schema (not migrated yet, or rolled back): the
                # request goes on without the registry (its errors then map by class), and the
                # next one tries to load it again.
        return conn

    def putconn(self, conn: psycopg.Connection) -> None:
        if self._pool is not None and self._pid == os.getpid():
            with self._lock:
                self._in_use -= 1
                if not (conn.closed or conn.broken):
                    self._healthy_return = time.monotonic()
            self._pool.putconn(conn)

    def stats(self) -> dict[str, int]:
        """psycopg_pool's own figures for this process's pool ({} before the first request)."""
        if self._pool is None or self._pid != os.getpid():
            return {}
        return self._pool.get_stats()

    def close(self) -> None:
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None


class Db:
    """What a route gets as `db`: one connection, taken from the pool on first use."""

    __slots__ = ("_pool", "_timeout", "_conn")

    def __init__(self, pool: Pool, timeout: float | None = None):
        self._pool, self._timeout = pool, timeout
        self._conn: psycopg.Connection | None = None

    def _c(self) -> psycopg.Connection:
        if self._conn is None:
            self._conn = self._pool.getconn(self._timeout)
        return self._conn

    def one(self, query: str, params=()):
        """The first column of the first row (None when there is no row)."""
        row = self._c().execute(query, params).fetchone()
        return None if row is None else row[0]

    def row(self, query: str, params=()):
        return self._c().execute(query, params).fetchone()

    def await_durable(self) -> None:
        """Returns once every commit before it is on disk (and on the synchronous standbys). For
        a transaction committed with synchronous_commit off: a later commit waits for the flush
        of everything before it in the WAL, but only if its own transaction wrote WAL (an xid
        alone commits without a flush). A transactional logical-decoding message is the smallest
        WAL record any role may write."""
        self._c().execute("SELECT pg_logical_emit_message(true, 'marketplace.durable', '')")

    def discard(self) -> None:
        """Closes the connection (it reached a node that cannot write): the pool drops it."""
        if self._conn is not None:
            self._conn.close()

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._pool.putconn(conn)
