"""Test databases: one server per test session, one migrated template, a fresh copy per test.

DATABASE_URL (a role that may CREATE DATABASE) selects an existing server; otherwise a throwaway
cluster is made in a temporary folder and removed at the end of the session.
"""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from pyapp.db import migrate
from pyapp.db.localpg import Cluster

APP_ROLE = "marketplace_app"


def with_db(url: str, dbname: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, "/" + dbname, parts.query, ""))


class Server:
    """A PostgreSQL server the tests may create databases in."""

    def __init__(self):
        self.cluster = None
        url = os.environ.get("DATABASE_URL")
        if not url:
            tmp = Path(tempfile.mkdtemp(prefix="mk-test-"))
            os.chmod(tmp, 0o755)
            # trust, explicitly: a throwaway cluster in a private folder, and tests/support/pgbouncer.py
            # relies on it; the project's own cluster asks for passwords (pyapp/db/localpg.py).
            self.cluster = Cluster(tmp / "pgdata", trust=True)
            self.cluster.start()
            url = self.cluster.url
            self._tmp = tmp
        self.admin_url = url
        self.prefix = f"mk_test_{os.getpid()}_"
        self.template = self.prefix + "template"
        self.create_database(self.template, template="template0")
        migrate.apply(self.url(self.template))
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                sql.Identifier(self.template)))

    def url(self, dbname: str, user: str | None = None) -> str:
        return with_db(self.admin_url, dbname, user)

    def create_database(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template or self.template)))
        return self.url(name)

    def fresh_database(self, template: str | None = None) -> str:
        """A new database copied from the migrated template (or `template`); returns its name."""
        name = self.prefix + uuid.uuid4().hex[:10]
        self.create_database(name, template)
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def close(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            names = [r[0] for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (self.prefix + "%",))]
            for name in names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if self.cluster is not None:
            self.cluster.destroy()
            import shutil
            shutil.rmtree(self._tmp, ignore_errors=True)
