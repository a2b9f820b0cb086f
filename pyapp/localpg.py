"""A private PostgreSQL cluster for a new user and for the tests.

When DATABASE_URL is unset, `python -m pyapp serve` keeps its cluster under the repository
(.pgdata/, ignored by git) and the tests make a throwaway one in a temporary folder. PostgreSQL
refuses to run as root, so as root the cluster belongs to the `postgres` system user.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path


def bindir() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if found:
        return Path(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: install postgresql-15")


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


class Cluster:
    """One PostgreSQL cluster in `datadir`, listening on 127.0.0.1:`port` and a socket beside it."""

    def __init__(self, datadir: Path, port: int | None = None):
        self.datadir = Path(datadir).resolve()
        self.rundir = self.datadir.parent / (self.datadir.name + ".run")
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
        self._pg("initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write("\n# set by pyapp.localpg\n"
                    "max_connections = 200\nshared_buffers = 256MB\n"
                    "synchronous_commit = on\nfsync = on\n"
                    "lock_timeout = 0\nlog_min_messages = warning\n")

    def start(self) -> None:
        if not self.initialized():
            self.init()
        if self.running():
            return
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

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._pg("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.datadir))

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)
        shutil.rmtree(self.rundir, ignore_errors=True)
