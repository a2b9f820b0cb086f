"""PgBouncer in transaction pooling mode in front of the test server, for the tests.

    with PgBouncer(target_port=5432) as bouncer:       # or .start() / .stop()
        url = bouncer.url("mydb", user="marketplace_app")

Debian's `pgbouncer` (/usr/sbin/pgbouncer, scripts/setup.sh installs it) listens on a free
127.0.0.1 port and forwards every database name to the same name on the target server
(`* = host=... port=...`). auth_type = trust with an auth_file naming the users it lets in
(PgBouncer still wants the user listed in trust mode); the target server must trust them too,
which the tests' throwaway cluster does. PgBouncer refuses to run as root, so as root it runs
as the `postgres` system user with its files in a temporary folder that user owns.

`via_pgbouncer(owner_url, app_url)` is what the HTTP fixtures use when MK_VIA_PGBOUNCER=1: it
gives the database the app role's timeouts (ALTER ROLE ... IN DATABASE ... SET, since PgBouncer
refuses the startup `options` the app sends otherwise) and yields the app URL through PgBouncer
and the environment the HTTP app needs (DB_PGBOUNCER=1).
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from pyapp.db.localpg import free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
APP_ROLE = "marketplace_app"
# What the app sends as startup options without PgBouncer (pyapp.config defaults).
ROLE_SETTINGS = {"lock_timeout": "2000", "statement_timeout": "5000"}


def available() -> bool:
    return os.path.exists(PGBOUNCER)


class PgBouncer:
    """One pgbouncer process; `pool_size` server connections per (database, user) pair."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", pool_size: int = 8,
                 users: tuple[str, ...] = ("postgres", APP_ROLE), max_client_conn: int = 200):
        self.target_host, self.target_port = target_host, target_port
        self.pool_size, self.users, self.max_client_conn = pool_size, users, max_client_conn
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.dir: Path | None = None

    # -- files

    def _write_files(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mk-pgbouncer-"))
        os.chmod(self.dir, 0o755)
        # Parents of the temp folder must be traversable by the postgres user.
        (self.dir / "users.txt").write_text("".join(f'"{u}" ""\n' for u in self.users))
        (self.dir / "pgbouncer.ini").write_text(f"""\
[databases]
* = host={self.target_host} port={self.target_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir / 'users.txt'}
pool_mode = transaction
default_pool_size = {self.pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = {self.max_client_conn}
max_db_connections = 0
server_reset_query =
server_check_delay = 10
query_wait_timeout = 60
ignore_startup_parameters = extra_float_digits
admin_users = postgres
stats_users = postgres
logfile = {self.dir / 'pgbouncer.log'}
pidfile = {self.dir / 'pgbouncer.pid'}
log_connections = 0
log_disconnections = 0
""")
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.dir, *self.dir.iterdir()):
                os.chown(p, pw.pw_uid, pw.pw_gid)

    # -- lifecycle

    def start(self) -> "PgBouncer":
        if not available():
            raise RuntimeError("pgbouncer is not installed (scripts/setup.sh installs it)")
        self._write_files()
        cmd = [PGBOUNCER, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                self.stop()
                raise RuntimeError(f"pgbouncer exited ({self.proc and self.proc.returncode}): {log[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("pgbouncer did not listen within 15 s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # runuser forwards SIGTERM to pgbouncer
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> "PgBouncer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- use

    def url(self, dbname: str, user: str = APP_ROLE) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, command: str) -> list[tuple]:
        """Runs a PgBouncer admin console command (SHOW POOLS, SHOW STATS, ...)."""
        with psycopg.connect(self.url("pgbouncer", "postgres"), autocommit=True,
                             prepare_threshold=None) as c:
            cur = c.execute(command, prepare=False)
            return cur.fetchall() if cur.description else []

    def admin_dicts(self, command: str) -> list[dict]:
        with psycopg.connect(self.url("pgbouncer", "postgres"), autocommit=True,
                             prepare_threshold=None) as c:
            cur = c.execute(command, prepare=False)
            names = [d.name for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def log(self) -> str:
        if self.dir is None:
            return ""
        p = self.dir / "pgbouncer.log"
        return p.read_text(errors="replace") if p.exists() else ""


def target_of(url: str) -> tuple[str, int, str]:
    """(host, port, dbname) of a postgresql:// URL."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432, parts.path.lstrip("/")


def set_role_timeouts(owner_url: str, role: str = APP_ROLE, settings: dict | None = None) -> None:
    """ALTER ROLE role IN DATABASE <db of owner_url> SET lock_timeout/statement_timeout: what the
    app otherwise sends as startup options. Scoped to the one (throwaway) database."""
    dbname = target_of(owner_url)[2]
    with psycopg.connect(owner_url, autocommit=True) as c:
        for name, value in (settings or ROLE_SETTINGS).items():
            c.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                sql.Identifier(role), sql.Identifier(dbname), sql.Identifier(name), sql.Literal(value)))


def app_env() -> dict:
    """Environment for an HttpServer whose DATABASE_URL goes through PgBouncer."""
    return {"DB_PGBOUNCER": "1"}


@contextlib.contextmanager
def via_pgbouncer(owner_url: str, app_url: str, pool_size: int = 8):
    """Starts PgBouncer in front of app_url's server; yields (app URL through PgBouncer, env)."""
    host, port, dbname = target_of(app_url)
    user = urlsplit(app_url).username or APP_ROLE
    set_role_timeouts(owner_url, user)
    bouncer = PgBouncer(port, host, pool_size=pool_size, users=("postgres", user))
    bouncer.start()
    try:
        yield bouncer, bouncer.url(dbname, user), app_env()
    finally:
        bouncer.stop()


def enabled() -> bool:
    """Whether the HTTP fixtures should route the app through PgBouncer (MK_VIA_PGBOUNCER=1)."""
    return os.environ.get("MK_VIA_PGBOUNCER", "").strip() not in ("", "0", "false", "no")


