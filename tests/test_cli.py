"""The operations commands, run as a user would: `python -m pyapp ...` in a subprocess, judged by
exit codes and by the database."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.http_server import http_app, http_db  # noqa: F401 - fixtures
from tests.invariants import assert_invariants

ROOT = Path(__file__).resolve().parent.parent


def pyapp(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "pyapp", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def empty_db(server):
    name = server.fresh_database(template="template0")
    yield server.url(name)
    server.drop_database(name)


def test_simulate_race_exactly_one_winner(http_app, http_db):  # noqa: F811
    r = pyapp(http_db[0], "simulate-race", "--url", http_app.url, "--buyers", "50")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout
    with psycopg.connect(http_db[0], autocommit=True) as conn:
        product = conn.execute("""SELECT id, stock FROM "Product" WHERE name LIKE 'Last unit %'
                                  ORDER BY "createdAt" DESC LIMIT 1""").fetchone()
        assert product[1] == 0
        orders = conn.execute("""SELECT count(DISTINCT "orderId") FROM "OrderItem" WHERE "productId" = %s""",
                              (product[0],)).fetchone()[0]
        assert orders == 1
        assert_invariants(conn)


def test_simulate_race_reports_unreachable_server(db_url):
    r = pyapp(db_url, "simulate-race", "--url", "http://127.0.0.1:9", "--buyers", "2")
    assert r.returncode == 3
    assert "unreachable" in r.stderr


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
