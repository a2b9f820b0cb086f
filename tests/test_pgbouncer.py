"""The HTTP app through PgBouncer in transaction pooling mode (tests/pgbouncer.py).

PgBouncer hands each transaction to whichever server connection is free, so the app must keep
no session state, prepare no statements (DB_PGBOUNCER=1 sets prepare_threshold=None) and send no
startup `options` (PgBouncer refuses them; the timeouts are set on the role instead). These tests
show the two failure modes without the flag, then run a representative HTTP flow through
PgBouncer with fewer server connections than the app has client connections, and finally the
whole of tests/test_http_api.py with MK_VIA_PGBOUNCER=1.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
import requests

from pyapp import auth
from tests import pgbouncer
from tests.http_server import ROOT, WEBHOOK_SECRET, HttpServer, http_db  # noqa: F401
from tests.invariants import assert_invariants

pytestmark = pytest.mark.skipif(not pgbouncer.available(), reason="pgbouncer is not installed")

PASSWORD = "correct horse battery"
ADDRESS = {"street": "Calle Mayor 1", "city": "Madrid", "zip": "28013"}
POOL_SIZE = 4  # server connections per (database, user): fewer than the app's 2 x 8 threads


@pytest.fixture(scope="module")
def bounced(http_db):
    """(PgBouncer, HttpServer whose DATABASE_URL goes through it)."""
    with pgbouncer.via_pgbouncer(*http_db, pool_size=POOL_SIZE) as (bouncer, url, env):
        srv = HttpServer(url, **env).start()
        try:
            yield bouncer, srv
        finally:
            srv.stop()


def problem(r: requests.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.headers
    doc = r.json()
    if code:
        assert doc["code"] == code, doc
    return doc


def register_login(base: str, role: str = "BUYER") -> dict:
    email = f"pgb-{role.lower()}-{uuid.uuid4().hex[:10]}@example.com"
    r = requests.post(base + "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "P", "role": role},
                      timeout=30)
    assert r.status_code == 201, r.text
    r = requests.post(base + "/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["token"]}


def fast_buyer(owner_url: str, password_hash: str) -> dict:
    """A buyer and token made in SQL (one scrypt hash for all), for the 20-buyer race."""
    tok = auth.new_token()
    with psycopg.connect(owner_url, autocommit=True) as c:
        uid = c.execute("SELECT api.create_user(%s, 'Racer', %s, 'BUYER')",
                        (f"racer-{uuid.uuid4().hex[:10]}@example.com", password_hash)).fetchone()[0]["id"]
        c.execute("SELECT api.issue_token(%s, %s)", (uid, auth.token_hash(tok)))
    return {"Authorization": f"Bearer {tok}"}


def signed(body: dict) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    ts = int(time.time())
    sig = hmac.new(WEBHOOK_SECRET.encode(), f"{ts}.".encode() + raw, hashlib.sha256).hexdigest()
    return raw, {"X-Signature-Timestamp": str(ts), "X-Signature": sig, "Content-Type": "application/json"}


# ---------------------------------------------------------------- why the flag exists


def test_role_carries_the_timeouts_through_pgbouncer(http_db):
    """The startup `options` the app sends directly are refused by PgBouncer; the role's
    per-database settings give every server connection the same timeouts instead."""
    with pgbouncer.via_pgbouncer(*http_db, pool_size=2) as (bouncer, url, _env):
        with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter: options"):
            psycopg.connect(url, options="-c lock_timeout=2000").close()
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as c:
            assert c.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
                             ).fetchone() == ("2s", "5s")
            assert c.execute("SELECT current_user").fetchone()[0] == pgbouncer.APP_ROLE


def test_prepared_statements_break_under_transaction_pooling(http_db):
    """What prepare_threshold=None avoids: a statement psycopg prepared on one server connection
    is executed by name on another one, which never saw it."""
    with pgbouncer.via_pgbouncer(*http_db, pool_size=2) as (bouncer, url, _env):
        with psycopg.connect(url, autocommit=True) as a, psycopg.connect(url) as b:
            a.execute("SELECT api.maintenance_status()", prepare=True).fetchone()  # prepared on server X
            b.execute("SELECT 1").fetchone()  # b's open transaction holds X (PgBouncer reuses it first)
            with pytest.raises(psycopg.errors.InvalidSqlStatementName):
                a.execute("SELECT api.maintenance_status()", prepare=True).fetchone()  # runs on server Y
            b.rollback()
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as a, psycopg.connect(url) as b:
            for _ in range(10):
                a.execute("SELECT api.maintenance_status()").fetchone()
            b.execute("SELECT 1").fetchone()
            for _ in range(10):
                a.execute("SELECT api.maintenance_status()").fetchone()
            b.rollback()


def test_app_without_the_flag_cannot_reach_the_database(http_db):
    """Without DB_PGBOUNCER=1 the app sends `options` and PgBouncer turns every connection away:
    /health answers 503, not 500."""
    with pgbouncer.via_pgbouncer(*http_db, pool_size=2) as (bouncer, url, _env):
        srv = HttpServer(url, DB_PGBOUNCER="0", DB_POOL_TIMEOUT_S="1").start(wait_healthy=False)
        try:
            r = requests.get(srv.url + "/health", timeout=10)
            assert r.status_code == 503, r.text
        finally:
            srv.stop()


# ---------------------------------------------------------------- the HTTP flow through PgBouncer


def test_http_flow_through_pgbouncer(bounced, http_db):
    bouncer, app = bounced
    u = app.url
    owner_url = http_db[0]

    # register and login (both over HTTP), a seller creates products
    seller = register_login(u, "SELLER")
    buyer = register_login(u)
    r = requests.post(u + "/api/marketplace/products", headers=seller, json={"name": "Jarrón", "price": 12.5, "stock": 5})
    assert r.status_code == 201 and r.headers["ETag"] == '"1"', r.text
    p = r.json()
    r = requests.post(u + "/api/marketplace/products", headers=seller, json={"name": "Última", "price": 40, "stock": 1})
    assert r.status_code == 201, r.text
    last = r.json()
    initial = {p["id"]: 5, last["id"]: 1}
    assert requests.get(u + "/api/marketplace/products").status_code == 200

    # cart: add, patch, delete, add again
    line = u + f"/api/marketplace/cart/items/{p['id']}"
    assert requests.post(u + "/api/marketplace/cart/items", headers=buyer, json={"productId": p["id"], "quantity": 3}
                         ).status_code == 201
    r = requests.patch(line, headers=buyer, json={"quantity": 2})
    assert r.status_code == 200 and r.json()["quantity"] == 2
    assert requests.delete(line, headers=buyer).status_code == 200
    problem(requests.delete(line, headers=buyer), 404, "NOT_FOUND")
    assert requests.post(u + "/api/marketplace/cart/items", headers=buyer, json={"productId": p["id"], "quantity": 2}
                         ).status_code == 201
    assert requests.get(u + "/api/marketplace/cart", headers=buyer).json()["total"] == 25

    # checkout with an idempotency key, then its replay
    key = uuid.uuid4().hex
    h = {**buyer, "Idempotency-Key": key}
    first = requests.post(u + "/api/marketplace/checkout", headers=h, json={"shippingAddress": ADDRESS})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers, first.text
    again = requests.post(u + "/api/marketplace/checkout", headers=h, json={"shippingAddress": ADDRESS})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true", again.text
    assert again.json()["id"] == first.json()["id"]
    problem(requests.post(u + "/api/marketplace/checkout", headers=h, json={"shippingAddress": {"city": "Sevilla"}}),
            422, "IDEMPOTENCY_KEY_REUSED")
    order = first.json()

    # 409 on a stale PATCH, 200 on the current version
    purl = u + f"/api/marketplace/products/{p['id']}"
    version = int(requests.get(purl).headers["ETag"].strip('"'))
    r = requests.patch(purl, headers={**seller, "If-Match": f'"{version}"'}, json={"stockDelta": 2})
    assert r.status_code == 200 and r.json()["version"] == version + 1, r.text
    doc = problem(requests.patch(purl, headers={**seller, "If-Match": f'"{version}"'}, json={"price": 1}),
                  409, "CONCURRENCY_CONFLICT")
    assert doc["currentVersion"] == version + 1
    restocked = {p["id"]: 2}

    # webhook: payment succeeded
    raw, sh = signed({"orderId": order["id"], "status": "succeeded", "reference": "pgb-1"})
    r = requests.post(u + "/api/marketplace/payments/webhook", data=raw, headers=sh)
    assert r.status_code == 200 and r.json()["status"] == "PAID", r.text
    problem(requests.post(u + "/api/marketplace/payments/webhook", data=raw, headers=sh), 401)

    # 20 buyers race for the last unit: exactly one 201
    pw_hash = auth.hash_password(PASSWORD)
    buyers = [fast_buyer(owner_url, pw_hash) for _ in range(20)]
    for b in buyers:
        assert requests.post(u + "/api/marketplace/cart/items", headers=b,
                             json={"productId": last["id"], "quantity": 1}).status_code == 201
    barrier, results, lock = threading.Barrier(len(buyers)), [], threading.Lock()

    def go(hdrs):
        barrier.wait(30)
        r = requests.post(u + "/api/marketplace/checkout", headers=hdrs, json={"shippingAddress": ADDRESS}, timeout=60)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=go, args=(b,)) for b in buyers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    codes = sorted(r.status_code for r in results)
    assert len(codes) == 20 and codes.count(201) == 1, codes
    assert all(c in (400, 409) for c in codes if c != 201), codes
    for r in results:
        if r.status_code == 400:
            assert r.json()["code"] == "INSUFFICIENT_STOCK", r.text

    # maintenance: writes 503 with Retry-After, reads 200
    with psycopg.connect(owner_url, autocommit=True) as c:
        c.execute("SELECT api.set_maintenance(true)")
    try:
        r = requests.post(u + "/api/marketplace/cart/items", headers=buyer, json={"productId": p["id"], "quantity": 1})
        problem(r, 503, "MAINTENANCE")
        assert int(r.headers["Retry-After"]) > 0
        assert requests.get(u + "/api/marketplace/products").status_code == 200
        assert requests.get(u + "/health").json()["maintenance"] is True
    finally:
        with psycopg.connect(owner_url, autocommit=True) as c:
            c.execute("SELECT api.set_maintenance(false)")
    assert requests.post(u + "/api/marketplace/cart/items", headers=buyer, json={"productId": p["id"], "quantity": 1}
                         ).status_code == 201

    # PgBouncer multiplexed: never more server connections than its pool, and it was used
    servers = [s for s in bouncer.admin_dicts("SHOW SERVERS") if s["user"] == pgbouncer.APP_ROLE]
    assert 1 <= len(servers) <= POOL_SIZE, servers
    stats = {s["database"]: s for s in bouncer.admin_dicts("SHOW STATS")}
    dbname = pgbouncer.target_of(owner_url)[2]
    assert stats[dbname]["total_xact_count"] > 40, stats[dbname]
    with psycopg.connect(owner_url, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND datname = %s",
                         (pgbouncer.APP_ROLE, dbname)).fetchone()[0] <= POOL_SIZE
        stocks = assert_invariants(c, initial=initial, restocked=restocked)
    assert stocks[last["id"]] == 0 and stocks[p["id"]] == 5 - 2 + 2
    assert not [ln for ln in app.log_lines() if '"level": "ERROR"' in ln]


# ---------------------------------------------------------------- the whole HTTP suite


def test_http_api_suite_through_pgbouncer(server):
    """tests/test_http_api.py again with MK_VIA_PGBOUNCER=1 (its http_app goes through PgBouncer),
    on this session's server. CI runs it through this test; by hand:
    MK_VIA_PGBOUNCER=1 .venv/bin/python -m pytest tests/test_http_api.py"""
    env = {**os.environ, "MK_VIA_PGBOUNCER": "1", "DATABASE_URL": server.admin_url}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_http_api.py"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout.splitlines()[-1], r.stdout[-1000:]
