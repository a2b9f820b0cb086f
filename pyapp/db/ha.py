"""A local high-availability cluster: one etcd and two PostgreSQL 15 nodes under Patroni.

    python -m pyapp.db.ha start [--dir DIR]     # starts it, prints the URLs to export
    python -m pyapp.db.ha status [--dir DIR]    # patronictl list
    python -m pyapp.db.ha stop [--dir DIR]      # stops Patroni (and its PostgreSQL) and etcd, removes DIR

`scripts/ha.sh` wraps the same commands. Patroni runs in `synchronous_mode` (a commit is
acknowledged only once the synchronous standby has flushed it) with `use_pg_rewind` (data
checksums), and `master_start_timeout: 0`: a crashed primary is not restarted in place while a
synchronous standby can take over, so a kill -9 of the primary's postmaster is a failover.

Everything lives under one throwaway folder (default: a new one under /tmp) owned by the user the
servers run as (`postgres` when started as root: PostgreSQL refuses root). Ports are free ones
chosen at start (etcd client and peer, each node's PostgreSQL and REST API) and written to
`DIR/cluster.json`, so that `status` and `stop` find them. Authentication is `trust` on
127.0.0.1: this is a cluster for a laptop and for the tests, never for production (see
docs/runbook.md, "Failover", for what a production deployment changes).

The application connects with a libpq multi-host URL and `target_session_attrs=read-write`: libpq
tries each node and keeps the one that accepts writes, so after a failover new connections find
the new primary without a restart of the app (pyapp.web drops the old ones).

Past 300 lines on purpose: HaCluster is one lifecycle (configure, start, wait, inspect, fail
over, stop) of processes that share one folder and one set of ports; the tests
(tests/slow/test_ha.py) drive it through the same object. It sits in pyapp/db/ beside the local
cluster (localpg) as the other way of running the database; `python -m pyapp.db.ha` is its entry
point (scripts/ha.sh).
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyapp.db.localpg import bindir, free_port

SCOPE = "mk-ha"
PATRONI = shutil.which("patroni") or "/usr/bin/patroni"
PATRONICTL = shutil.which("patronictl") or "/usr/bin/patronictl"
ETCD = shutil.which("etcd") or "/usr/bin/etcd"

# Patroni's timing: the leader key lives `ttl` seconds, the loop runs every `loop_wait`.
# A crashed primary (Patroni alive) is failed over at the next loop; a dead node (Patroni gone
# too) once its key expires, so ttl bounds the window.
DCS = {
    "ttl": 12,
    "loop_wait": 2,
    "retry_timeout": 5,
    "maximum_lag_on_failover": 1048576,
    "master_start_timeout": 0,
    "synchronous_mode": True,
    "postgresql": {
        "use_pg_rewind": True,
        "use_slots": True,
        "parameters": {
            "wal_level": "replica",
            "hot_standby": "on",
            "synchronous_commit": "on",
            "wal_log_hints": "on",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "wal_keep_size": "256MB",
            "max_connections": 100,
        },
    },
}


@dataclass
class Node:
    name: str
    pg_port: int
    api_port: int
    home: Path
    proc: subprocess.Popen | None = None

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def config_file(self) -> Path:
        return self.home / "patroni.yml"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def postmaster_pid(self) -> int | None:
        """The PID in postmaster.pid (first line), or None when the server is not running."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first)
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            return None


def _owner() -> tuple[int, int] | None:
    """(uid, gid) to run the servers as: postgres when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def _http(url: str, method: str = "GET", timeout: float = 2.0) -> tuple[int, dict | None]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    except (urllib.error.URLError, OSError):
        return 0, None
    try:
        return status, json.loads(body or b"null")
    except ValueError:
        return status, None


class HaCluster:
    """etcd + n Patroni nodes under `base`. Processes are this object's children, tracked by PID."""

    def __init__(self, base: Path | None = None, nodes: int = 2, dbname: str = "marketplace"):
        self.base = Path(base) if base else Path(tempfile.mkdtemp(prefix="mk-ha-"))
        self.dbname = dbname
        self.etcd_proc: subprocess.Popen | None = None
        state = self.base / "cluster.json"
        if state.exists():  # an existing cluster (status, stop from another process)
            doc = json.loads(state.read_text())
            self.etcd_client, self.etcd_peer = doc["etcd"]
            self.nodes = [Node(n["name"], n["pg"], n["api"], Path(n["home"])) for n in doc["nodes"]]
            self._pids = doc.get("pids", {})
        else:
            self.etcd_client, self.etcd_peer = free_port(), free_port()
            self.nodes = [Node(f"node{i}", free_port(), free_port(), self.base / f"node{i}") for i in range(nodes)]
            self._pids = {}

    # ------------------------------------------------------------ URLs

    def hosts(self) -> str:
        return ",".join(f"127.0.0.1:{n.pg_port}" for n in self.nodes)

    def url(self, dbname: str | None = None, user: str = "postgres", attrs: str = "read-write") -> str:
        """A libpq multi-host URL over every node; `attrs` is target_session_attrs."""
        return (f"postgresql://{user}@{self.hosts()}/{dbname or self.dbname}"
                f"?target_session_attrs={attrs}&connect_timeout=3")

    def node_url(self, node: Node, dbname: str | None = None, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{node.pg_port}/{dbname or self.dbname}?connect_timeout=3"

    # ------------------------------------------------------------ start

    def _popen(self, args: list[str], log: Path, **kw) -> subprocess.Popen:
        owner = _owner()
        out = open(log, "ab")
        extra: dict[str, Any] = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
        env = {**os.environ, "HOME": str(self.base), "PGPASSFILE": str(self.base / "pgpass")}
        env.pop("DATABASE_URL", None)
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=self.base, env=env,
                                start_new_session=True, **extra, **kw)

    def _config(self, node: Node) -> dict:
        return {
            "scope": SCOPE,
            "namespace": "/mk/",
            "name": node.name,
            "log": {"level": "INFO", "dir": str(node.home), "file_num": 2},
            "restapi": {"listen": f"127.0.0.1:{node.api_port}", "connect_address": f"127.0.0.1:{node.api_port}"},
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_client}"]},
            "bootstrap": {
                "dcs": DCS,
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.pg_port}",
                "connect_address": f"127.0.0.1:{node.pg_port}",
                "data_dir": str(node.data_dir),
                "bin_dir": str(bindir()),
                "pgpass": str(node.home / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": "postgres"},
                    "replication": {"username": "replicator", "password": "replicator"},
                    "rewind": {"username": "postgres", "password": "postgres"},
                },
                "parameters": {"unix_socket_directories": str(node.home), "port": node.pg_port},
                # trust on loopback only: a throwaway cluster (module docstring)
                "pg_hba": ["local all all trust", "host all all 127.0.0.1/32 trust",
                           "host replication all 127.0.0.1/32 trust"],
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    def _save(self) -> None:
        doc = {"etcd": [self.etcd_client, self.etcd_peer],
               "nodes": [{"name": n.name, "pg": n.pg_port, "api": n.api_port, "home": str(n.home)} for n in self.nodes],
               "pids": {**self._pids}}
        (self.base / "cluster.json").write_text(json.dumps(doc, indent=1))

    def start(self, timeout: float = 120) -> "HaCluster":
        owner = _owner()
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o700)
        for n in self.nodes:
            n.home.mkdir(parents=True, exist_ok=True)
            n.config_file.write_text(json.dumps(self._config(n), indent=1))  # JSON is YAML
        (self.base / "etcd").mkdir(exist_ok=True)
        if owner:
            for p in [self.base, *self.base.rglob("*")]:
                os.chown(p, *owner)
        self.etcd_proc = self._popen(
            [ETCD, "--name", "etcd0", "--data-dir", str(self.base / "etcd"),
             "--listen-client-urls", f"http://127.0.0.1:{self.etcd_client}",
             "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_client}",
             "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
             "--initial-cluster", f"etcd0=http://127.0.0.1:{self.etcd_peer}",
             "--enable-v2=true"],
            self.base / "etcd.log")
        self._pids["etcd"] = self.etcd_proc.pid
        self._wait(lambda: _http(f"http://127.0.0.1:{self.etcd_client}/health")[0] == 200, 30, "etcd healthy")
        first, *rest = self.nodes
        self.start_node(first)
        self._save()
        self._wait(lambda: _http(first.api + "/primary")[0] == 200, timeout, f"{first.name} primary")
        for n in rest:
            self.start_node(n)
        self._save()
        self.wait_synchronous(timeout)
        return self

    def start_node(self, node: Node) -> None:
        node.proc = self._popen([PATRONI, str(node.config_file)], node.home / "patroni.out")
        self._pids[node.name] = node.proc.pid

    # ------------------------------------------------------------ state

    def cluster(self) -> dict:
        """Patroni's view (REST /cluster of any node that answers): members, roles, states, lag."""
        for n in self.nodes:
            status, doc = _http(n.api + "/cluster")
            if status == 200 and doc:
                return doc
        return {"members": []}

    def leader(self) -> Node | None:
        """The node whose REST API says it is the running primary (GET /primary answers 200)."""
        for n in self.nodes:
            if _http(n.api + "/primary", timeout=1.0)[0] == 200:
                return n
        return None

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def sync_standby(self) -> str | None:
        for m in self.cluster().get("members", []):
            if m.get("role") == "sync_standby" and m.get("state") in ("running", "streaming"):
                return m["name"]
        return None

    def wait_synchronous(self, timeout: float = 120) -> tuple[Node, str]:
        """Waits for a primary and a streaming synchronous standby; returns (primary, standby name)."""
        def ready():
            leader = self.leader()
            return leader is not None and self.sync_standby() is not None
        self._wait(ready, timeout, "a primary with a synchronous standby")
        leader, sync = self.leader(), self.sync_standby()
        assert leader is not None and sync is not None
        return leader, sync

    def _wait(self, cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            for n in self.nodes:
                if n.proc is not None and n.proc.poll() is not None and n.proc.returncode not in (0, None):
                    pass  # a node we stopped on purpose; the condition decides
            time.sleep(0.25)
        raise TimeoutError(f"HA cluster: no {what} within {timeout:.0f} s; logs under {self.base}\n"
                           + self.patronictl("list", check=False))

    # ------------------------------------------------------------ operations

    def patronictl(self, *args: str, check: bool = True) -> str:
        owner = _owner()
        extra: dict[str, Any] = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
        r = subprocess.run([PATRONICTL, "-c", str(self.nodes[0].config_file), *args], capture_output=True,
                           text=True, cwd=self.base, timeout=120, env={**os.environ, "HOME": str(self.base)},
                           **extra)
        if check and r.returncode != 0:
            raise RuntimeError(f"patronictl {' '.join(args)} failed: {r.stdout}{r.stderr}")
        return r.stdout + r.stderr

    def switchover(self, candidate: str | None = None) -> str:
        leader = self.leader()
        assert leader is not None, "no primary to switch over from"
        target = candidate or next(n.name for n in self.nodes if n is not leader)
        return self.patronictl("switchover", SCOPE, "--leader", leader.name, "--candidate", target, "--force")

    def kill_node(self, node: Node) -> None:
        """kill -9 of the node's Patroni and then of its postmaster: the node is gone, and the
        standby takes over once the leader key expires (ttl). start_node() brings it back."""
        assert node.proc is not None, f"{node.name} was not started by this process"
        node.proc.kill()
        node.proc.wait(10)
        pid = node.postmaster_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        self._wait_gone(node, 30)

    def kill_postmaster(self, node: Node) -> int:
        """kill -9 of the node's postmaster (Patroni lives on and sees it crashed). Returns the PID."""
        pid = node.postmaster_pid()
        assert pid is not None, f"{node.name} has no running postmaster"
        os.kill(pid, signal.SIGKILL)
        return pid

    # ------------------------------------------------------------ stop

    def stop(self, remove: bool = True) -> None:
        """Stops every Patroni (which stops its PostgreSQL with a fast shutdown), then etcd; kills
        only the processes this cluster started (PIDs from cluster.json when not our children)."""
        procs = [(n.name, n.proc) for n in self.nodes] + [("etcd", self.etcd_proc)]
        for name, proc in procs:
            pid = proc.pid if proc is not None else self._pids.get(name)
            if pid is None:
                continue
            if name == "etcd":  # after every Patroni is down
                for n in self.nodes:
                    self._wait_gone(n)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and _alive(pid, proc):
                time.sleep(0.1)
            if _alive(pid, proc):
                os.kill(pid, signal.SIGKILL)
                _alive(pid, proc)
        for n in self.nodes:  # a postmaster that outlived its Patroni (it should not)
            pid = n.postmaster_pid()
            if pid is not None:
                os.kill(pid, signal.SIGQUIT)
                self._wait_gone(n)
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def _wait_gone(self, node: Node, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and node.postmaster_pid() is not None:
            time.sleep(0.1)


def _alive(pid: int, proc: subprocess.Popen | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def bootstrap_database(cluster: HaCluster) -> str:
    """Creates the marketplace database on the primary and applies every migration; returns the
    owner URL (multi-host, read-write)."""
    import psycopg

    from pyapp.db import migrate

    admin = cluster.url("postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cluster.dbname,)).fetchone() is None:
            c.execute(f'CREATE DATABASE "{cluster.dbname}"')
    url = cluster.url()
    migrate.apply(url)
    return url


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pyapp.db.ha", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["start", "status", "stop"])
    p.add_argument("--dir", default=os.environ.get("MK_HA_DIR", ""),
                   help="the cluster's folder (start: default a new one under /tmp; MK_HA_DIR)")
    args = p.parse_args(argv)
    if args.command == "start":
        base = Path(args.dir) if args.dir else None
        if base is not None and (base / "cluster.json").exists():
            print(f"a cluster already lives in {base}: stop it first", file=sys.stderr)
            return 1
        cluster = HaCluster(base)
        try:
            cluster.start()
            bootstrap_database(cluster)
        except BaseException:
            cluster.stop()
            raise
        leader, sync = cluster.wait_synchronous()
        print(f"HA cluster in {cluster.base}: primary {leader.name}, synchronous standby {sync}")
        print(f"export MK_HA_DIR={cluster.base}")
        print(f"export DATABASE_URL='{cluster.url()}'")
        print(f"export APP_DATABASE_URL='{cluster.url(user='marketplace_app')}'")
        print(f"export READ_DATABASE_URL='{cluster.url(user='marketplace_app', attrs='prefer-standby')}'")
        return 0
    if not args.dir or not (Path(args.dir) / "cluster.json").exists():
        print("no cluster: give --dir (or MK_HA_DIR) of a started one", file=sys.stderr)
        return 1
    cluster = HaCluster(Path(args.dir))
    if args.command == "status":
        print(cluster.patronictl("list", check=False), end="")
        return 0
    cluster.stop()
    print(f"stopped and removed {cluster.base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
