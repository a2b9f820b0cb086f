"""Where the database is: DATABASE_URL, or the project's own cluster under the repository.

DATABASE_URL is the owner's connection (migrations, DBA commands). The HTTP app connects with
APP_DATABASE_URL when set (the marketplace_app role, which may only EXECUTE api functions), else
with DATABASE_URL. Without DATABASE_URL the project starts its private cluster in .pgdata/ and
uses database `marketplace` there: as postgres for the owner, as marketplace_app for the app.
"""
from __future__ import annotations

import contextlib
import sys
import os
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from pyapp.localpg import Cluster

ROOT = Path(__file__).resolve().parent.parent
LOCAL_DB = "marketplace"


@dataclass
class Database:
    owner_url: str
    app_url: str
    cluster: Cluster | None = None
    started_here: bool = False

    def stop_if_started(self) -> None:
        if self.cluster is not None and self.started_here:
            self.cluster.stop()
            self.started_here = False


def local_cluster() -> Cluster:
    return Cluster(ROOT / ".pgdata")


def open_database() -> Database:
    url = os.environ.get("DATABASE_URL")
    if url:
        return Database(owner_url=url, app_url=os.environ.get("APP_DATABASE_URL") or url)
    cluster = local_cluster()
    started = not cluster.running()
    if started:
        print(f"pyapp: starting the local PostgreSQL cluster in {cluster.datadir} (port {cluster.port})",
              file=sys.stderr)
        cluster.start()
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (LOCAL_DB,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(LOCAL_DB)))
    return Database(owner_url=cluster.dsn(LOCAL_DB), app_url=cluster.dsn(LOCAL_DB, "marketplace_app"),
                    cluster=cluster, started_here=started)


@contextlib.contextmanager
def database():
    """The database for one command; a local cluster this command started is stopped after."""
    db = open_database()
    try:
        yield db
    finally:
        db.stop_if_started()
