"""Where the database is: DATABASE_URL, or the project's own cluster under the repository.

DATABASE_URL is the owner's connection (migrations, DBA commands). The HTTP app connects with
APP_DATABASE_URL when set (the marketplace_app role, which may only EXECUTE app functions), else
with DATABASE_URL. Without DATABASE_URL the project starts its private cluster in .pgdata/ (or
LOCAL_PGDATA) and uses database `marketplace` there: as postgres for the owner, as marketplace_app
for the app. That cluster asks for passwords over TCP; they are in the 0600 pgpass file beside it
(.pgdata.run/pgpass), which this process and its children (the HTTP server, pg_dump) get as PGPASSFILE,
so the URLs carry none.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from pyapp import config
from pyapp.db.localpg import Cluster

ROOT = Path(__file__).resolve().parents[2]
LOCAL_DB = "marketplace"
APP_ROLE = "marketplace_app"


@dataclass
class Database:
    owner_url: str
    app_url: str
    cluster: Cluster | None = None
    started_here: bool = False

    @property
    def local(self) -> bool:
        """Whether this is the project's own cluster (DATABASE_URL unset)."""
        return self.cluster is not None

    def after_migrations(self) -> None:
        """The app role of the own cluster logs in with its password from the pgpass file
        (migration 0003 creates it without one)."""
        if self.cluster is not None:
            self.cluster.ensure_password(APP_ROLE)

    @contextlib.contextmanager
    def session(self, autocommit: bool = True):
        """One owner connection for a command, as a pyapp.db.calls.Session (one transaction for the
        whole command with autocommit=False, committed when it ends without an error)."""
        from pyapp.db.calls import Session

        with psycopg.connect(self.owner_url, autocommit=autocommit) as conn:
            yield Session(conn)

    def stop_if_started(self) -> None:
        if self.cluster is not None and self.started_here:
            self.cluster.stop()
            self.started_here = False


def local_cluster() -> Cluster:
    """The project's own cluster: .pgdata/ under the repository, or LOCAL_PGDATA."""
    return Cluster(Path(config.local_pgdata() or ROOT / ".pgdata"))


def open_database() -> Database:
    url, app_url = config.database_urls()
    if url:
        return Database(owner_url=url, app_url=app_url)
    cluster = local_cluster()
    started = not cluster.running()
    if started:
        print(f"pyapp: starting the local PostgreSQL cluster in {cluster.datadir} (port {cluster.port})",
              file=sys.stderr)
    db = Database(owner_url=cluster.dsn(LOCAL_DB), app_url=cluster.dsn(LOCAL_DB, APP_ROLE),
                  cluster=cluster, started_here=started)
    try:
        # Also on a running cluster: converts one an earlier version left on trust authentication.
        cluster.start()
        os.environ["PGPASSFILE"] = str(cluster.pgpass)
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (LOCAL_DB,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(LOCAL_DB)))
        db.after_migrations()  # a cluster converted from trust: its app role gets its password now
    except BaseException:
        db.stop_if_started()
        raise
    return db


@contextlib.contextmanager
def database():
    """The database for one command; a local cluster this command started is stopped after."""
    db = open_database()
    try:
        yield db
    finally:
        db.stop_if_started()


def scalar(conn: psycopg.Connection, query, params=()):
    """The first column of the one row `query` returns: a function call or an aggregate, which
    always return a row (LookupError if it did not)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise LookupError(f"no row from {str(query)[:80]!r}")
    return row[0]
