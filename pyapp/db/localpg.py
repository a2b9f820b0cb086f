"""A private PostgreSQL cluster for a new user and for the tests.

When DATABASE_URL is unset, `python -m pyapp serve` keeps its cluster under the repository
(.pgdata/, ignored by git) and the tests make a throwaway one in a temporary folder. PostgreSQL
refuses to run as root, so as root the cluster belongs to the `postgres` system user.

Authentication. By default a cluster asks for a password over TCP (scram-sha-256): any local user
can reach 127.0.0.1, and a superuser session could run `COPY ... TO PROGRAM`. The passwords are
generated (one per role that logs in: `postgres`, `marketplace_app`) and kept in a pgpass-format
file beside the data folder, `<datadir>.run/pgpass`, mode 0600, which the project hands to libpq
through PGPASSFILE (pyapp.db.runtime), so no URL carries a password. Its socket, in `<datadir>.run/`,
admits only `postgres`, by peer authentication, for the OS user that owns the cluster (and root,
who could become that user anyway): that is how the passwords are set. A cluster made by an
earlier version with `initdb -A trust` is converted in place by its next start(): pg_hba.conf is
rewritten, the passwords are set, the configuration reloaded. `Cluster(..., trust=True)` keeps
the old behaviour, for the tests' throwaway clusters only (PgBouncer's test setup relies on it).

pg_cron. Where Debian's postgresql-15-cron is installed, a cluster loads pg_cron
(shared_preload_libraries), so that `python -m pyapp expiry-schedule on` can run the order expiry
inside PostgreSQL. pg_cron keeps its jobs in one database per cluster (`cron.database_name`): this
one keeps them in `postgres`, and each job names the database it runs in (cron.schedule_in_database),
so one cluster serves any number of marketplace databases (the tests make one per test). Jobs run
as background workers (`cron.use_background_workers`): they log in without a password, which a
libpq connection to 127.0.0.1 would need here. The settings are a marked block of postgresql.conf,
added by init() and by start() (on a running cluster they take effect at its next restart), and
removed again by start() when the library is gone, so that the server still starts.
`Cluster(..., cron=False)` makes a cluster without pg_cron (the tests' case for the worker).
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql

HBA_MARK = "# pyapp.db.localpg: passwords over TCP, peer for the cluster's owner on the socket"
LOGIN_ROLES = ("postgres", "marketplace_app")
CRON_BEGIN = "# pyapp.db.localpg: pg_cron (begin; managed block, see pyapp/db/localpg.py)"
CRON_END = "# pyapp.db.localpg: pg_cron (end)"
# max_worker_processes: pg_cron's launcher and each running job take one background worker, next
# to parallel query and logical replication (default 8 in all).
CRON_CONF = (f"{CRON_BEGIN}\n"
             "shared_preload_libraries = 'pg_cron'\n"
             "cron.database_name = 'postgres'\n"
             "cron.use_background_workers = on\n"
             "cron.log_statement = off\n"
             "max_worker_processes = 16\n"
             f"{CRON_END}\n")


def bindir() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if found:
        return Path(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: install postgresql-15")


def cron_installed() -> bool:
    """Whether pg_cron's library is installed for that PostgreSQL (Debian: postgresql-15-cron)."""
    try:
        return (bindir().parent / "lib" / "pg_cron.so").exists()
    except RuntimeError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _write_private(path: Path, text: str) -> None:
    """Writes `text` to `path` with mode 0600 (never readable by others, not even for a moment),
    unless it already holds exactly that with that mode."""
    if path.exists() and path.read_text() == text and not path.stat().st_mode & 0o077:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Cluster:
    """One PostgreSQL cluster in `datadir`, listening on 127.0.0.1:`port` and a socket beside it."""

    def __init__(self, datadir: Path, port: int | None = None, trust: bool = False, cron: bool | None = None):
        """`trust=True`: every local user may connect as anyone without a password (initdb -A
        trust); only for throwaway test clusters. Otherwise passwords, see the module docstring.
        `cron`: load pg_cron; None (default) where its library is installed, False never, True
        always (start() fails without the library)."""
        self.datadir = Path(datadir).resolve()
        self.rundir = self.datadir.parent / (self.datadir.name + ".run")
        self.trust = trust
        self.cron = cron_installed() if cron is None else cron
        self.pgpass = self.rundir / "pgpass"
        portfile = self.rundir / "port"
        if port is None and portfile.exists():
            port = int(portfile.read_text())
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, dbname: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def _pg(self, tool: str, *args: str, **kw) -> subprocess.CompletedProcess:
        r = subprocess.run(_as_owner([str(bindir() / tool), *args]),
                           capture_output=True, text=True, **kw)
        if r.returncode != 0:
            raise RuntimeError(f"{tool} failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")
        return r

    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialized():
            return False
        r = subprocess.run(_as_owner([str(bindir() / "pg_ctl"), "status", "-D", str(self.datadir)]),
                           capture_output=True, text=True)
        return r.returncode == 0

    def init(self) -> None:
        for d in (self.datadir, self.rundir):
            d.mkdir(parents=True, exist_ok=True)
            _chown(d)
        auth = ["-A", "trust"] if self.trust else ["--auth-local=peer", "--auth-host=scram-sha-256"]
        self._pg("initdb", "-D", str(self.datadir), "-U", "postgres", *auth,
                 "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write("\n# set by pyapp.db.localpg\n"
                    "max_connections = 200\nshared_buffers = 256MB\n"
                    "synchronous_commit = on\nfsync = on\n"
                    "lock_timeout = 0\nlog_min_messages = warning\n")
        self._write_cron_conf()

    def _write_cron_conf(self) -> bool:
        """Puts the pg_cron block into postgresql.conf, or takes it out (self.cron); returns
        whether the file changed. The server reads it at its next start."""
        conf = self.datadir / "postgresql.conf"
        text = conf.read_text()
        begin, end = text.find(CRON_BEGIN), text.find(CRON_END)
        kept = text if begin < 0 or end < begin else text[:begin] + text[end + len(CRON_END):].lstrip("\n")
        wanted = kept + (("" if kept.endswith("\n") else "\n") + CRON_CONF if self.cron else "")
        if wanted == text:
            return False
        with open(conf, "w") as f:  # in place: the file keeps its owner and mode
            f.write(wanted)
        return True

    def start(self) -> None:
        """Starts the cluster (making it first if need be); without trust, also makes sure that
        pg_hba.conf wants passwords and that `postgres` has the one in the pgpass file. Safe to
        call on a running cluster: that is how a running trust cluster gets converted."""
        if not self.initialized():
            self.init()
        self._write_cron_conf()
        hba_changed = False if self.trust else self._write_auth_files()
        if self.running():
            if hba_changed:
                self._pg("pg_ctl", "reload", "-D", str(self.datadir))
        else:
            self._start_server()
        if not self.trust:
            self.ensure_password("postgres", force=hba_changed)

    def _start_server(self) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        _chown(self.rundir)
        (self.rundir / "port").write_text(str(self.port))
        self._pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.datadir),
                 "-l", str(self.rundir / "postgres.log"),
                 "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.rundir}")
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start on port {self.port}")

    # ------------------------------------------------------------ passwords

    def _write_auth_files(self) -> bool:
        """pg_hba.conf and pg_ident.conf for password authentication; returns whether either
        changed (a fresh cluster from initdb, or a trust cluster of an earlier version)."""
        owners = {pwd.getpwuid(self.datadir.stat().st_uid).pw_name, pwd.getpwuid(os.geteuid()).pw_name}
        hba = (f"{HBA_MARK}\n"
               "# TYPE  DATABASE  USER      ADDRESS        METHOD\n"
               "local   all       postgres                 peer map=owner\n"
               "host    all       all       127.0.0.1/32   scram-sha-256\n"
               "host    all       all       ::1/128        scram-sha-256\n")
        ident = "# MAPNAME  SYSTEM-USERNAME  PG-USERNAME\n" + "".join(
            f"owner      {name}  postgres\n" for name in sorted(owners))
        changed = False
        for name, text in (("pg_ident.conf", ident), ("pg_hba.conf", hba)):
            path = self.datadir / name
            if path.exists() and path.read_text() == text:
                continue
            tmp = path.with_name(name + ".pyapp-new")
            tmp.write_text(text)
            os.chmod(tmp, 0o600)
            _chown(tmp)
            os.replace(tmp, path)
            changed = True
        return changed

    def passwords(self) -> dict[str, str]:
        """The passwords of the pgpass file, generating the missing ones (and the file)."""
        found: dict[str, str] = {}
        if self.pgpass.exists():
            for line in self.pgpass.read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 5 and not line.startswith("#"):
                    found[parts[3]] = parts[4]
        wanted = {role: found.get(role) or secrets.token_urlsafe(32) for role in LOGIN_ROLES}
        _write_private(self.pgpass, "".join(self._pgpass_line(role, pw) for role, pw in wanted.items()))
        return wanted

    def _pgpass_line(self, role: str, password: str) -> str:
        return f"127.0.0.1:{self.port}:*:{role}:{password}\n"

    def passfile_for(self, role: str) -> Path:
        """A pgpass file with `role`'s password only (`<datadir>.run/pgpass.<role>`, mode 0600):
        what a process that logs in as that role alone (the HTTP app) gets as PGPASSFILE."""
        path = self.rundir / f"pgpass.{role}"
        _write_private(path, self._pgpass_line(role, self.passwords()[role]))
        return path

    def _socket_connect(self) -> psycopg.Connection:
        """`postgres` over the socket (peer authentication): no password needed."""
        return psycopg.connect(host=str(self.rundir), port=self.port, user="postgres",
                               dbname="postgres", autocommit=True)

    def ensure_password(self, role: str, force: bool = False) -> bool:
        """Makes `role` log in over TCP with its password from the pgpass file, setting it when a
        login fails (or with force). A role that does not exist yet is skipped (marketplace_app
        comes with migration 0003). Returns whether it set the password."""
        password = self.passwords()[role]
        if not force:
            try:
                psycopg.connect(self.dsn("postgres", role), passfile=str(self.pgpass),
                                connect_timeout=10).close()
                return False
            except psycopg.OperationalError:
                pass
        with self._socket_connect() as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                return False
            # Only the SCRAM verifier travels to the server: the password is never in its logs.
            verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(verifier.decode())))
        return True

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._pg("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.datadir))

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)
        shutil.rmtree(self.rundir, ignore_errors=True)
