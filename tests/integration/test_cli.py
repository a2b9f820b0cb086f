"""The operations commands, run as a user would: `python -m pyapp ...` in a subprocess, judged by
exit codes and by the database. The project's own cluster (DATABASE_URL unset) is made in a
temporary folder named by LOCAL_PGDATA."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import requests

from pyapp.db import migrate
from pyapp.db.localpg import Cluster, free_port
from tests.support.invariants import assert_invariants

ROOT = Path(__file__).resolve().parent.parent.parent
NO_PASSFILE = "/nonexistent/pgpass"


OWN_CLUSTER_UNSET = ("DATABASE_URL", "APP_DATABASE_URL", "PGPASSFILE", "PGPASSWORD")


def pyapp(url: str | None, *args: str, timeout: float = 120, input: str = "", **env) -> subprocess.CompletedProcess:
    """Runs a command against DATABASE_URL=url; url None: against the project's own cluster (then
    pass LOCAL_PGDATA). Standard input is `input`, never the terminal."""
    full = {**os.environ, **env}
    if url is None:
        for name in OWN_CLUSTER_UNSET:
            full.pop(name, None)
    else:
        full["DATABASE_URL"] = url
    return subprocess.run([sys.executable, "-m", "pyapp", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=timeout, input=input)


@pytest.fixture
def empty_db(server):
    name = server.fresh_database(template="template0")
    yield server.url(name)
    server.drop_database(name)


def test_simulate_race_exactly_one_winner(http_app, http_db):  # noqa: F811
    # The checklist's race: 100 buyers (the default), prepared through the owner's connection.
    r = pyapp(http_db[0], "simulate-race", "--url", http_app.url)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout
    # Its table of answers: the buyers contend only for stock, so every loser is told it ran out
    # (400), none gets a conflict (409), and every buyer got an answer.
    answers = {int(m[1]): int(m[2]) for m in re.finditer(r"^(\d{3})\s+(\d+)\s*$", r.stdout, re.M)}
    assert answers == {201: 1, 400: 99}, r.stdout
    with psycopg.connect(http_db[0], autocommit=True) as conn:
        product = conn.execute("""SELECT id, stock FROM "Product" WHERE name LIKE 'Last unit %'
                                  ORDER BY "createdAt" DESC LIMIT 1""").fetchone()
        assert product[1] == 0
        orders = conn.execute("""SELECT count(DISTINCT "orderId") FROM "OrderItem" WHERE "productId" = %s""",
                              (product[0],)).fetchone()[0]
        assert orders == 1
        run = conn.execute("""SELECT name FROM "Product" WHERE id = %s""", (product[0],)).fetchone()[0].split()[-1]
        buyers = conn.execute("""SELECT count(*) FROM "User" WHERE email LIKE %s AND role = 'BUYER'""",
                              (f"race-{run}-b%",)).fetchone()[0]
        assert buyers == 100
        assert_invariants(conn)


def test_simulate_race_reports_unreachable_server_or_database(http_app, db_url):  # noqa: F811
    r = pyapp(db_url, "simulate-race", "--url", "http://127.0.0.1:9", "--buyers", "2")
    assert r.returncode == 3
    assert "server unreachable" in r.stderr
    with psycopg.connect(db_url, autocommit=True) as conn:  # nothing was prepared for nothing
        assert conn.execute("""SELECT count(*) FROM "User" WHERE email LIKE 'race-%'""").fetchone()[0] == 0
    r = pyapp(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere", "simulate-race",
              "--url", http_app.url, "--buyers", "2")
    assert r.returncode == 3
    assert "database unreachable" in r.stderr


def test_simulate_race_fails_when_the_server_serves_another_database(http_app, db_url):  # noqa: F811
    # Tokens minted in db_url mean nothing to a server on another database: no winner, exit 1.
    r = pyapp(db_url, "simulate-race", "--url", http_app.url, "--buyers", "2")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL" in r.stdout and "knows none of the tokens" in r.stderr


def test_status_migrate_verify_exit_codes(empty_db):
    r = pyapp(empty_db, "status")
    assert r.returncode == 1 and "PENDING" in r.stdout
    r = pyapp(empty_db, "migrate")
    assert r.returncode == 0, r.stderr
    assert pyapp(empty_db, "status").returncode == 0
    r = pyapp(empty_db, "verify")
    assert r.returncode == 0, r.stdout
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash")
                        VALUES ('s', 's@example.com', 'S', 'SELLER', 'x')""")
        pid = conn.execute("SELECT api.create_product('s', 'Bowl', 10, 5)").fetchone()[0]["id"]
        # A change that bypasses the ledger: verify must catch it.
        conn.execute('ALTER TABLE "Product" DISABLE TRIGGER product_stock_ledger_update')
        conn.execute('UPDATE "Product" SET stock = 7 WHERE id = %s', (pid,))
        conn.execute('ALTER TABLE "Product" ENABLE TRIGGER product_stock_ledger_update')
    r = pyapp(empty_db, "verify")
    assert r.returncode == 1
    assert "stock_matches_ledger" in r.stdout and "FAILED" in r.stdout


def test_maintenance_backup_and_expiry(db_url, tmp_path):
    assert pyapp(db_url, "maintenance", "on").returncode == 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT api.maintenance_status()").fetchone()[0]["maintenance"] is True
    assert pyapp(db_url, "maintenance", "off").returncode == 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT api.maintenance_status()").fetchone()[0]["maintenance"] is False
        conn.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash") VALUES
                        ('s', 's@example.com', 'S', 'SELLER', 'x'), ('b', 'b@example.com', 'B', 'BUYER', 'x')""")
        pid = conn.execute("SELECT api.create_product('s', 'Cup', 8, 3)").fetchone()[0]["id"]
        conn.execute("SELECT api.add_to_cart('b', %s, 2)", (pid,))
        oid = conn.execute("""SELECT api.checkout('b', '{"city": "Puebla"}')""").fetchone()[0]["id"]
        conn.execute("""UPDATE "Order" SET "createdAt" = now() - interval '2 hours' WHERE id = %s""", (oid,))

    r = pyapp(db_url, "backup", "--dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    dumps = list(tmp_path.glob("marketplace-*.dump"))
    assert len(dumps) == 1 and dumps[0].stat().st_size > 0

    r = pyapp(db_url, "expire-orders")
    assert r.returncode == 0, r.stderr
    with psycopg.connect(db_url, autocommit=True) as conn:
        status, stock = conn.execute("""SELECT o.status, p.stock FROM "Order" o, "Product" p
                                        WHERE o.id = %s AND p.id = %s""", (oid, pid)).fetchone()
        assert (status, stock) == ("CANCELLED", 3)
        assert_invariants(conn)


def test_rollback_refuses_while_orders_pending(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash") VALUES
                        ('s', 's@example.com', 'S', 'SELLER', 'x'), ('b', 'b@example.com', 'B', 'BUYER', 'x')""")
        pid = conn.execute("SELECT api.create_product('s', 'Cup', 8, 3)").fetchone()[0]["id"]
        conn.execute("SELECT api.add_to_cart('b', %s, 1)", (pid,))
        conn.execute("""SELECT api.checkout('b', '{"city": "Puebla"}')""")
    r = pyapp(db_url, "rollback", "add_version_to_product")
    assert r.returncode == 1 and "PENDING_PAYMENT" in r.stderr
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("""SELECT count(*) FROM information_schema.columns
                               WHERE table_name = 'Product' AND column_name = 'version'""").fetchone()[0] == 1
    r = pyapp(db_url, "rollback", "add_version_to_product", "--force")
    assert r.returncode == 0, r.stderr
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("""SELECT count(*) FROM information_schema.columns
                               WHERE table_name = 'Product' AND column_name = 'version'""").fetchone()[0] == 0
    assert pyapp(db_url, "status").returncode == 1
    assert pyapp(db_url, "migrate").returncode == 0
    assert pyapp(db_url, "verify").returncode == 0


def test_unknown_migration_name_is_a_usage_error(db_url):
    r = pyapp(db_url, "rollback", "no_such_migration")
    assert r.returncode == 2 and "no migration named" in r.stderr


def test_expiry_worker_runs_passes_and_stops_cleanly_on_sigterm(db_url):
    import signal
    import time

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash") VALUES
                        ('s', 's@example.com', 'S', 'SELLER', 'x'), ('b', 'b@example.com', 'B', 'BUYER', 'x')""")
        pid = conn.execute("SELECT api.create_product('s', 'Cup', 8, 3)").fetchone()[0]["id"]
        conn.execute("SELECT api.add_to_cart('b', %s, 2)", (pid,))
        oid = conn.execute("""SELECT api.checkout('b', '{"city": "Puebla"}')""").fetchone()[0]["id"]
    env = {**os.environ, "DATABASE_URL": db_url}
    proc = subprocess.Popen([sys.executable, "-m", "pyapp", "expire-orders", "--every", "0.2"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert all("expire-orders:" in ln for ln in lines), lines
        # An order that passes the window while the worker runs is expired by its next pass.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("""UPDATE "Order" SET "createdAt" = now() - interval '2 hours' WHERE id = %s""", (oid,))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if conn.execute('SELECT status FROM "Order" WHERE id = %s', (oid,)).fetchone()[0] == "CANCELLED":
                    break
                time.sleep(0.1)
            assert conn.execute('SELECT status FROM "Order" WHERE id = %s', (oid,)).fetchone()[0] == "CANCELLED"
            assert conn.execute('SELECT stock FROM "Product" WHERE id = %s', (pid,)).fetchone()[0] == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()


# ---------------------------------------------------------------- settings kept in the database

def test_webhook_secret_set_rotate_retire_status(db_url):
    r = pyapp(db_url, "webhook-secret", "status")
    assert r.returncode == 1 and "0 active" in r.stdout
    first, second = "first-webhook-key-0123456789", "second-webhook-key-0123456789"
    r = pyapp(db_url, "webhook-secret", "set", "--secret", first)
    assert r.returncode == 0, r.stderr
    assert "added" in r.stdout and "1 active" in r.stdout
    r = pyapp(db_url, "webhook-secret", "set", PAYMENT_WEBHOOK_SECRET=first)
    assert r.returncode == 0 and "unchanged" in r.stdout and "1 active" in r.stdout
    r = pyapp(db_url, "webhook-secret", "set", input=second + "\n")  # no flag, no variable: standard input
    assert r.returncode == 0, r.stderr
    assert "added" in r.stdout and "2 active" in r.stdout
    r = pyapp(db_url, "webhook-secret", "status")
    assert r.returncode == 0 and "2 active" in r.stdout
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert [a for _, _, a in conn.execute("SELECT * FROM api.webhook_secrets() ORDER BY id")][-2:] == [True, True]
    r = pyapp(db_url, "webhook-secret", "retire")
    assert r.returncode == 0 and "retired 1" in r.stdout and "1 active" in r.stdout
    r = pyapp(db_url, "webhook-secret", "status")
    assert r.returncode == 0 and "1 active" in r.stdout
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute("SELECT id, active FROM api.webhook_secrets() ORDER BY id").fetchall()
        assert [a for _, a in rows if a] == [True] and rows[-1][1] is True
    r = pyapp(db_url, "webhook-secret", "set", input="")
    assert r.returncode == 2 and "no secret" in r.stderr
    r = pyapp(db_url, "webhook-secret", "set", "--secret", "short")
    assert r.returncode == 2 and "refused" in r.stderr
    r = pyapp(db_url, "webhook-secret")
    assert r.returncode == 2


def test_webhook_secret_never_printed(db_url):
    secret = "never-printed-webhook-key-42"
    outputs = [pyapp(db_url, "webhook-secret", "set", PAYMENT_WEBHOOK_SECRET=secret),
               pyapp(db_url, "webhook-secret", "status"), pyapp(db_url, "webhook-secret", "retire")]
    assert [r.returncode for r in outputs] == [0, 0, 0]
    assert all(secret not in r.stdout + r.stderr for r in outputs)


def test_unthrottle_clears_failed_logins(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("""INSERT INTO internal.login_attempt (email, client)
                        SELECT 'ana@example.com', c FROM unnest(ARRAY['192.0.2.7', '192.0.2.7', '192.0.2.7',
                                                                      '198.51.100.1', '198.51.100.1']) c
                        UNION ALL SELECT 'bo@example.com', '192.0.2.7'""")
    r = pyapp(db_url, "unthrottle", "ana@example.com", "--client", "192.0.2.7")
    assert r.returncode == 0, r.stderr
    assert "cleared 3 failed logins of ana@example.com from 192.0.2.7" in r.stdout
    r = pyapp(db_url, "unthrottle", "ana@example.com")
    assert r.returncode == 0 and "cleared 2 failed logins" in r.stdout
    r = pyapp(db_url, "unthrottle", "ana@example.com")
    assert r.returncode == 0 and "cleared 0 failed logins" in r.stdout
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT email, client FROM internal.login_attempt").fetchall() == \
            [("bo@example.com", "192.0.2.7")]
    r = pyapp(db_url, "unthrottle", "bo@example.com", "--client", "not-an-address")
    assert r.returncode == 2 and "--client" in r.stderr


def test_limits_show_and_set(db_url):
    def current():
        with psycopg.connect(db_url, autocommit=True) as conn:
            return conn.execute("SELECT api.limits()").fetchone()[0]

    r = pyapp(db_url, "limits")
    assert r.returncode == 0, r.stderr
    assert "maxUnpaidOrders" in r.stdout and "registrationsPerClientPerHour" in r.stdout
    assert current() == {"maxUnpaidOrders": 3, "registrationsPerClientPerHour": 20}
    r = pyapp(db_url, "limits", "--max-unpaid-orders", "5")
    assert r.returncode == 0, r.stderr
    assert current() == {"maxUnpaidOrders": 5, "registrationsPerClientPerHour": 20}
    r = pyapp(db_url, "limits", "--registrations-per-client-per-hour", "none")
    assert r.returncode == 0, r.stderr
    assert current() == {"maxUnpaidOrders": 5, "registrationsPerClientPerHour": None}
    assert "none" in r.stdout
    for bad in ("0", "-1", "many", "1000001"):
        r = pyapp(db_url, "limits", "--max-unpaid-orders", bad)
        assert r.returncode == 2, bad
    assert current() == {"maxUnpaidOrders": 5, "registrationsPerClientPerHour": None}


# ---------------------------------------------------------------- the project's own cluster

@pytest.fixture
def own_pgdata():
    """Where the project's own cluster goes (LOCAL_PGDATA); removed after the test."""
    tmp = Path(tempfile.mkdtemp(prefix="mk-own-"))
    os.chmod(tmp, 0o755)  # the cluster belongs to the postgres user when the tests run as root
    try:
        yield tmp / "pgdata"
    finally:
        Cluster(tmp / "pgdata").destroy()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def serving(pgdata: Path, *args: str, **env):
    """`python -m pyapp serve ARGS` on the own cluster in `pgdata`, on a free port, until healthy.
    Yields (base URL, process); after the block, SIGTERM and the exit code in process.returncode."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if k not in OWN_CLUSTER_UNSET}
    full.update(LOCAL_PGDATA=str(pgdata), HOST="127.0.0.1", PORT=str(port), WORKERS="1", THREADS="4", **env)
    out = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "pyapp", "serve", *args], cwd=ROOT, env=full,
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, text=True)

    def output() -> str:
        out.seek(0)
        return out.read()

    proc.output = output
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"serve exited with {proc.returncode}: {output()[-3000:]}"
            assert time.monotonic() < deadline, f"serve did not become healthy: {output()[-3000:]}"
            try:
                if requests.get(url + "/health", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        out_text = output()
        out.close()
        proc.output = lambda: out_text


def child_pids(pid: int) -> list[int]:
    """The child processes of `pid` (under serve: the HTTP server; under the server: its workers)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except OSError:  # a thread that has just ended
            pass
    return sorted(found)


def environ_of_child(pid: int) -> dict[str, str]:
    """The environment of the (first) child process of `pid`: the HTTP server's, under serve."""
    raw = Path(f"/proc/{child_pids(pid)[0]}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def assert_passwords_required(pgdata: Path) -> None:
    """Over TCP, both login roles of the own cluster are refused without their password or with a
    wrong one, and admitted with the pgpass file beside the cluster, which only its owner reads."""
    cluster = Cluster(pgdata)  # reads the port; starts nothing
    assert stat.S_IMODE(cluster.pgpass.stat().st_mode) == 0o600
    rules = [ln.split() for ln in (pgdata / "pg_hba.conf").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    assert rules and not any("trust" in r for r in rules), rules
    for role, dbname in (("postgres", "postgres"), ("marketplace_app", "marketplace")):
        url = cluster.dsn(dbname, role)
        assert ":" not in url.split("@")[0].removeprefix("postgresql://")  # no password in the URL
        for password in (None, "not-the-password"):
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(url, passfile=NO_PASSFILE, password=password, connect_timeout=10).close()
        with psycopg.connect(url, passfile=str(cluster.pgpass), connect_timeout=10) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == role


def test_serve_makes_its_own_cluster_with_passwords(own_pgdata):
    secret = "serve-webhook-key-0123456789"
    with serving(own_pgdata, "--demo", PAYMENT_WEBHOOK_SECRET=secret, MAX_UNPAID_ORDERS="5",
                 REGISTRATIONS_PER_CLIENT_PER_HOUR="7") as (url, proc):
        assert_passwords_required(own_pgdata)
        cluster = Cluster(own_pgdata)
        with psycopg.connect(cluster.dsn("marketplace"), passfile=str(cluster.pgpass), autocommit=True) as conn:
            # serve wrote what the environment set, through the owner's connection
            assert conn.execute("SELECT api.limits()").fetchone()[0] == \
                {"maxUnpaidOrders": 5, "registrationsPerClientPerHour": 7}
            assert [a for _, _, a in conn.execute("SELECT * FROM api.webhook_secrets()")] == [True]
            assert conn.execute("""SELECT count(*) FROM "User" WHERE email IN
                                   ('buyer@example.com', 'seller@example.com', 'admin@example.com')""").fetchone()[0] == 3
        # The app logs in as marketplace_app with a pgpass file of its own password alone (its
        # URL has none), and is not given the webhook key (the database checks signatures).
        assert requests.get(url + "/api/marketplace/products", timeout=10).status_code == 200
        app_env = environ_of_child(proc.pid)
        assert "PAYMENT_WEBHOOK_SECRET" not in app_env
        assert app_env["DATABASE_URL"] == cluster.dsn("marketplace", "marketplace_app")
        app_passfile = Path(app_env["PGPASSFILE"])
        assert stat.S_IMODE(app_passfile.stat().st_mode) == 0o600
        assert [ln.split(":")[3] for ln in app_passfile.read_text().splitlines()] == ["marketplace_app"]
        # SIGHUP (systemctl reload) reaches the server, which replaces its worker and goes on.
        master = child_pids(proc.pid)[0]
        before = child_pids(master)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while not (child_pids(master) and set(child_pids(master)).isdisjoint(before)):
            assert proc.poll() is None, proc.output()[-3000:]
            assert time.monotonic() < deadline, f"workers {before} were not replaced: {child_pids(master)}"
            time.sleep(0.2)
        assert child_pids(proc.pid) == [master]
        assert requests.get(url + "/api/marketplace/products", timeout=10).status_code == 200
    assert proc.returncode == 0, proc.output()[-3000:]
    assert secret not in proc.output()
    assert not Cluster(own_pgdata).running()  # serve stopped the cluster it started


def test_trust_cluster_of_an_earlier_version_is_converted(own_pgdata):
    old = Cluster(own_pgdata, trust=True)  # as `serve` made it before: initdb -A trust
    old.start()
    with psycopg.connect(old.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE marketplace")
    migrate.apply(old.dsn("marketplace"))  # marketplace_app exists, without a password
    old.stop()

    # Its next start (stopped): serve converts it, and the app still logs in.
    with serving(own_pgdata) as (url, proc):
        assert_passwords_required(own_pgdata)
        assert requests.get(url + "/api/marketplace/products", timeout=10).status_code == 200
    assert proc.returncode == 0, proc.output()[-3000:]

    # One left running on trust by an earlier version: the next command converts it, and leaves
    # it running since it did not start it.
    (own_pgdata / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    old.start()
    psycopg.connect(old.url, passfile=NO_PASSFILE).close()  # anyone, no password
    r = pyapp(None, "status", LOCAL_PGDATA=str(own_pgdata))
    assert r.returncode == 0, r.stdout + r.stderr
    assert_passwords_required(own_pgdata)
    assert old.running()
    # Children get the password file too: pg_dump, for a backup.
    r = pyapp(None, "backup", "--dir", str(own_pgdata.parent / "backups"), LOCAL_PGDATA=str(own_pgdata))
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(list((own_pgdata.parent / "backups").glob("marketplace-*.dump"))) == 1


def test_serve_demo_only_in_its_own_cluster_on_loopback(own_pgdata):
    # DATABASE_URL set: refused before connecting (an unreachable database would be exit 3).
    r = pyapp(f"postgresql://postgres@127.0.0.1:{free_port()}/marketplace", "serve", "--demo", timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "refused" in r.stderr and "DATABASE_URL" in r.stderr
    # HOST not a loopback address: refused before the cluster is even made.
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        r = pyapp(None, "serve", "--demo", timeout=60, LOCAL_PGDATA=str(own_pgdata), HOST=host)
        assert r.returncode == 2, (host, r.stdout + r.stderr)
        assert "refused" in r.stderr and "HOST" in r.stderr
    assert not own_pgdata.exists()
