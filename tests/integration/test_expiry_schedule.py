"""The order expiry as a pg_cron job (`python -m pyapp expiry-schedule on|off|status`) and the
`expire-orders` worker as its fallback, run as an operator would: commands in a subprocess, judged
by exit codes, by what they print and by the database. The tests' cluster loads pg_cron
(pyapp/db/localpg.py); one test makes a cluster without it. pg_cron 1.4 schedules in whole minutes,
so the test that waits for the job to run takes up to about a minute (marked slow)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from pyapp.db import migrate
from pyapp.db.localpg import CRON_BEGIN, CRON_CONF, Cluster, cron_installed
from tests.support.invariants import assert_invariants

ROOT = Path(__file__).resolve().parent.parent.parent


def pyapp(url: str, *args: str, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "ORDER_HOLD_MINUTES"}
    full.update(env, DATABASE_URL=url)
    return subprocess.run([sys.executable, "-m", "pyapp", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def stale_order(conn) -> tuple[str, str]:
    """A product with stock 3 and an unpaid order of 2 units, 2 hours old: (order, product)."""
    conn.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash") VALUES
                    ('s', 's@example.com', 'S', 'SELLER', 'x'), ('b', 'b@example.com', 'B', 'BUYER', 'x')""")
    pid = conn.execute("SELECT api.create_product('s', 'Cup', 8, 3)").fetchone()[0]["id"]
    conn.execute("SELECT api.add_to_cart('b', %s, 2)", (pid,))
    oid = conn.execute("""SELECT api.checkout('b', '{"city": "Puebla"}')""").fetchone()[0]["id"]
    conn.execute("""UPDATE "Order" SET "createdAt" = now() - interval '2 hours' WHERE id = %s""", (oid,))
    return oid, pid


def runner_states(conn) -> dict[str, str]:
    return dict(conn.execute("SELECT runner, state FROM api.expiry_status()").fetchall())


def check(conn, name: str) -> tuple[bool, str]:
    return conn.execute("SELECT ok, detail FROM api.integrity_report() WHERE check_name = %s", (name,)).fetchone()


@pytest.fixture
def cron(server, dbname, db_url):
    """A connection to pg_cron's database on the tests' server; the jobs of this test's database
    are removed afterwards."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        cron_db = conn.execute("SELECT current_setting('cron.database_name', true)").fetchone()[0]
    if cron_db is None:
        if server.cluster is None:
            pytest.skip("the server of DATABASE_URL does not load pg_cron")
        pytest.fail("the tests' cluster does not load pg_cron: install postgresql-15-cron (scripts/setup.sh)")
    with psycopg.connect(server.url(cron_db), autocommit=True) as c:
        yield c
        if c.execute("SELECT to_regclass('cron.job')").fetchone()[0] is not None:
            c.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE database = %s", (dbname,))


def jobs(cron, dbname: str) -> list[tuple]:
    return cron.execute("""SELECT jobid, jobname, schedule, command, database, active FROM cron.job
                           WHERE database = %s OR jobname = %s ORDER BY jobid""",
                        (dbname, f"marketplace-expire-orders:{dbname}")).fetchall()


def test_cluster_config_block_follows_the_library(tmp_path):
    conf = tmp_path / "pgdata" / "postgresql.conf"
    conf.parent.mkdir()
    conf.write_text("port = 5432\n")
    with_cron = Cluster(tmp_path / "pgdata", port=1, cron=True)
    assert with_cron._write_cron_conf() is True
    assert conf.read_text() == "port = 5432\n" + CRON_CONF
    assert with_cron._write_cron_conf() is False, "the block is written once"
    conf.write_text(conf.read_text() + "max_connections = 50\n")
    assert Cluster(tmp_path / "pgdata", port=1, cron=False)._write_cron_conf() is True
    assert conf.read_text() == "port = 5432\nmax_connections = 50\n", "removed whole, the rest kept"
    assert Cluster(tmp_path / "pgdata", port=1).cron is cron_installed()


def test_the_tests_cluster_loads_pg_cron_with_background_workers(server, cron):
    if server.cluster is None:
        pytest.skip("the server of DATABASE_URL is configured by its owner")
    settings = dict(cron.execute("""SELECT name, setting FROM pg_settings
                                    WHERE name IN ('cron.database_name', 'cron.use_background_workers')"""))
    assert settings == {"cron.database_name": "postgres", "cron.use_background_workers": "on"}
    assert CRON_BEGIN in (server.cluster.datadir / "postgresql.conf").read_text()


def test_schedule_on_is_idempotent_status_shows_it_and_off_removes_it(dbname, db_url, cron):
    r = pyapp(db_url, "expiry-schedule", "on")
    assert r.returncode == 0, r.stderr
    assert f"pg_cron job marketplace-expire-orders:{dbname}" in r.stdout
    [(jobid, name, schedule, command, database, active)] = jobs(cron, dbname)
    assert (name, schedule, database, active) == (f"marketplace-expire-orders:{dbname}", "* * * * *", dbname, True)
    assert command == ("SELECT api.record_expiry_run('pg_cron', api.expire_pending_orders("
                       "interval '30 minutes', 1000), interval '1 minute')")

    # Again, with the hold window from ORDER_HOLD_MINUTES and another interval: the same job, changed.
    r = pyapp(db_url, "expiry-schedule", "on", "--every-minutes", "5", ORDER_HOLD_MINUTES="45")
    assert r.returncode == 0, r.stderr
    [(jobid2, _, schedule, command, database, active)] = jobs(cron, dbname)
    assert (jobid2, schedule, database, active) == (jobid, "*/5 * * * *", dbname, True)
    assert "interval '45 minutes', 1000), interval '5 minutes'" in command
    # A job someone deactivated is active again after `on`.
    cron.execute("SELECT cron.alter_job(%s, active => false)", (jobid,))
    assert pyapp(db_url, "expiry-schedule", "on", "--every-minutes", "5", ORDER_HOLD_MINUTES="45").returncode == 0
    assert jobs(cron, dbname)[0][5] is True

    # Waiting for its first run, which counts; or, past a multiple of 5 minutes, it ran.
    r = pyapp(db_url, "status")
    assert r.returncode == 0, r.stdout
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("pg_cron"))
    assert re.match(r"pg_cron +(waiting|running) ", line) and f"marketplace-expire-orders:{dbname}" in line, line
    r = pyapp(db_url, "expiry-schedule", "status")
    assert r.returncode == 0, r.stdout
    assert f"(id {jobid}) */5 * * * * in database {dbname}, active; last run: " in r.stdout
    r = pyapp(db_url, "verify")
    assert r.returncode == 0, r.stdout
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("expiry_running"))
    assert re.search(r" ok +pg_cron (waiting|running): job marketplace-expire-orders:", line), line

    r = pyapp(db_url, "expiry-schedule", "off")
    assert r.returncode == 0, r.stderr
    assert f"removed pg_cron job marketplace-expire-orders:{dbname}" in r.stdout
    assert jobs(cron, dbname) == []
    r = pyapp(db_url, "expiry-schedule", "off")
    assert r.returncode == 0 and "no pg_cron job" in r.stdout
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert runner_states(conn) == {"pg_cron": "off", "worker": "never"}
        assert check(conn, "expiry_running")[0] is True  # nothing scheduled, nothing stale
    assert pyapp(db_url, "expiry-schedule", "status").returncode == 1  # no runner runs


def test_expiry_schedule_on_a_database_that_predates_it(server):
    name = server.fresh_database(template="template0")
    try:
        r = pyapp(server.url(name), "expiry-schedule", "status")
        assert r.returncode == 1 and "python -m pyapp migrate" in r.stderr
        r = pyapp(server.url(name), "status")
        assert r.returncode == 1 and "expiry runner" not in r.stdout  # only the pending migrations
    finally:
        server.drop_database(name)


def test_schedule_on_refuses_bad_arguments(db_url, cron):
    r = pyapp(db_url, "expiry-schedule", "on", "--batch-size", "0")
    assert r.returncode == 2 and "batch size" in r.stderr
    r = pyapp(db_url, "expiry-schedule", "on", "--every-minutes", "60")
    assert r.returncode == 2
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert runner_states(conn)["pg_cron"] == "off"


@pytest.mark.slow
def test_pg_cron_expires_a_stale_order_and_verify_reports_it(dbname, db_url, cron):
    with psycopg.connect(db_url, autocommit=True) as conn:
        oid, pid = stale_order(conn)
        assert check(conn, "expiry_running")[0] is False  # stale, and nothing runs
    r = pyapp(db_url, "expiry-schedule", "on")
    assert r.returncode == 0, r.stderr

    # pg_cron runs jobs at the start of each minute.
    with psycopg.connect(db_url, autocommit=True) as conn:
        deadline = time.monotonic() + 75
        while time.monotonic() < deadline:
            if conn.execute('SELECT status FROM "Order" WHERE id = %s', (oid,)).fetchone()[0] == "CANCELLED":
                break
            time.sleep(1)
        status, reason = conn.execute('SELECT status, "cancelReason" FROM "Order" WHERE id = %s', (oid,)).fetchone()
        assert status == "CANCELLED", cron.execute("SELECT status, return_message FROM cron.job_run_details "
                                                   "ORDER BY runid DESC LIMIT 3").fetchall()
        assert reason == "EXPIRED"
        assert conn.execute('SELECT stock FROM "Product" WHERE id = %s', (pid,)).fetchone()[0] == 3
        assert_invariants(conn)
        state, last, expired = conn.execute("""SELECT state, last_success_at, last_expired FROM api.expiry_status()
                                               WHERE runner = 'pg_cron'""").fetchone()
        assert (state, expired) == ("running", 1) and last is not None

    r = pyapp(db_url, "verify")
    assert r.returncode == 0, r.stdout
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("expiry_running"))
    assert re.search(r" ok +pg_cron running: .*last success .* \d+ expired", line), line
    r = pyapp(db_url, "status")
    assert r.returncode == 0
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("pg_cron"))
    assert "running" in line and "never" not in line
    r = pyapp(db_url, "expiry-schedule", "status")
    assert r.returncode == 0 and "last run: succeeded at" in r.stdout, r.stdout

    assert pyapp(db_url, "expiry-schedule", "off").returncode == 0
    assert jobs(cron, dbname) == []


def test_without_pg_cron_on_refuses_and_the_worker_is_reported():
    tmp = Path(tempfile.mkdtemp(prefix="mk-nocron-"))
    os.chmod(tmp, 0o755)  # as tests/support/pg.py: the cluster belongs to postgres when the tests run as root
    cluster = Cluster(tmp / "pgdata", trust=True, cron=False)
    try:
        cluster.start()
        with psycopg.connect(cluster.url, autocommit=True) as c:
            c.execute("CREATE DATABASE marketplace")
        url = cluster.dsn("marketplace")
        migrate.apply(url)
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT current_setting('cron.database_name', true)").fetchone()[0] is None
            oid, pid = stale_order(conn)

        r = pyapp(url, "expiry-schedule", "on")
        assert r.returncode == 1
        assert "pg_cron is not loaded on this server" in r.stderr
        assert "python -m pyapp expire-orders --every 60" in r.stderr
        r = pyapp(url, "status")
        assert r.returncode == 0
        assert "unavailable" in next(ln for ln in r.stdout.splitlines() if ln.startswith("pg_cron"))
        r = pyapp(url, "verify")
        assert r.returncode == 1
        assert "FAILED" in next(ln for ln in r.stdout.splitlines() if ln.startswith("expiry_running"))
        assert pyapp(url, "expiry-schedule", "status").returncode == 1

        proc = subprocess.Popen([sys.executable, "-m", "pyapp", "expire-orders", "--every", "0.5"], cwd=ROOT,
                                env={**os.environ, "DATABASE_URL": url}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            assert "1 expired" in proc.stdout.readline()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            proc.stdout.close()

        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute('SELECT status FROM "Order" WHERE id = %s', (oid,)).fetchone()[0] == "CANCELLED"
            assert runner_states(conn) == {"pg_cron": "unavailable", "worker": "running"}
            every, runs = conn.execute("""SELECT every, runs FROM api.expiry_status()
                                          WHERE runner = 'worker'""").fetchone()
            assert every.total_seconds() == 0.5 and runs >= 1
        r = pyapp(url, "verify")
        assert r.returncode == 0, r.stdout
        assert "worker running" in next(ln for ln in r.stdout.splitlines() if ln.startswith("expiry_running"))
        r = pyapp(url, "status")
        assert "running" in next(ln for ln in r.stdout.splitlines() if ln.startswith("worker"))
        assert pyapp(url, "expiry-schedule", "status").returncode == 0

        # A one-off pass is recorded too, and is no runner.
        assert pyapp(url, "expire-orders").returncode == 0
        with psycopg.connect(url, autocommit=True) as conn:
            assert runner_states(conn)["manual"] == "ran"
        r = pyapp(url, "expiry-schedule", "off")
        assert r.returncode == 0 and "pg_cron is not loaded on this server" in r.stdout
    finally:
        cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
