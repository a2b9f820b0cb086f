"""The PostgreSQL the benchmarks run against: a throwaway cluster of their own, or
BENCH_DATABASE_URL (a role that may CREATE DATABASE). Shared by checkout_bench.py and
http_bench.py."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyapp.db.localpg import Cluster  # noqa: E402


class Postgres:
    """Where the databases live: our own throwaway cluster, or BENCH_DATABASE_URL."""

    def __init__(self, tmp: Path, extra_conf: str = ""):
        """`extra_conf` is appended to postgresql.conf of our own cluster (ignored with
        BENCH_DATABASE_URL, whose settings are its owner's)."""
        self.cluster = None
        self.created: list[str] = []
        url = os.environ.get("BENCH_DATABASE_URL")
        if not url:
            self.cluster = Cluster(tmp / "pgdata", trust=True)
            self.cluster.init()
            if extra_conf:
                with open(self.cluster.datadir / "postgresql.conf", "a") as f:
                    f.write(extra_conf)
            self.cluster.start()
            url = self.cluster.url
        self.base = conninfo_to_dict(url)

    def dsn(self, dbname: str, user: str | None = None) -> str:
        params = dict(self.base, dbname=dbname)
        if user:
            params["user"] = user
            params.pop("password", None)
        return make_conninfo(**params)

    def url(self, dbname: str, user: str | None = None) -> str:
        """URI form (yoyo and DATABASE_URL want one)."""
        b = self.base
        auth = quote(user or b.get("user", "postgres"), safe="")
        if b.get("password") and not user:
            auth += ":" + quote(b["password"], safe="")
        host = b.get("host") or b.get("hostaddr") or "127.0.0.1"
        return f"postgresql://{auth}@{host}:{b.get('port', '5432')}/{quote(dbname, safe='')}"

    def admin(self):
        return psycopg.connect(self.dsn(self.base.get("dbname") or "postgres"), autocommit=True)

    def create(self, name: str, template: str = "template0") -> str:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                          sql.Identifier(template)))
        self.created.append(name)
        return name

    def connect(self, dbname: str):
        return psycopg.connect(self.dsn(dbname), autocommit=True)

    def close(self) -> None:
        try:
            if self.cluster is None:
                with self.admin() as conn:
                    for name in reversed(self.created):
                        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            if self.cluster is not None:
                self.cluster.destroy()
