"""The HTTP app through PgBouncer in transaction pooling mode (tests/support/pgbouncer.py).

PgBouncer hands each transaction to whichever server connection is free, so the app must keep
no session state, prepare no statements (DB_PGBOUNCER=1 sets prepare_threshold=None) and send no
startup `options` (PgBouncer refuses them; the timeouts are set on the role instead). These tests
show the two failure modes without the flag, then run a representative HTTP flow through
PgBouncer with fewer server connections than the app has client connections, and finally the
HTTP suites (tests/integration/test_http_api.py, the security and hostile-input suites) each once more with
MK_VIA_PGBOUNCER=1. A missing pgbouncer binary fails these tests; it does not skip them.
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
from tests.support import pgbouncer
from tests.support.http_server import ROOT, WEBHOOK_SECRET, HttpServer, seed_webhook_secret
from tests.support.invariants import assert_invariants

# Deliberately no skip: scripts/setup.sh installs pgbouncer, so a missing binary is a broken
# environment and fails here instead of passing silently.

PASSWORD = "correct horse battery"
ADDRESS = {"street": "Calle Mayor 1", "city": "Madrid", "zip": "28013"}
POOL_SIZE = 4  # server connections per (database, user): fewer than the app's 2 x 8 threads


@pytest.fixture(scope="module")
def bounced(http_db):
    """(PgBouncer, HttpServer whose DATABASE_URL goes through it)."""
    seed_webhook_secret(http_db[0])
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
            a.execute("SELECT app.health()", prepare=True).fetchone()  # prepared on server X
            b.execute("SELECT 1").fetchone()  # b's open transaction holds X (PgBouncer reuses it first)
            with pytest.raises(psycopg.errors.InvalidSqlStatementName):
                a.execute("SELECT app.health()", prepare=True).fetchone()  # runs on server Y
            b.rollback()
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as a, psycopg.connect(url) as b:
            for _ in range(10):
                a.execute("SELECT app.health()").fetchone()
            b.execute("SELECT 1").fetchone()
            for _ in range(10):
                a.execute("SELECT app.health()").fetchone()
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
    barrier = threading.Barrier(len(buyers))
    # One slot per client: its response, or the exception that stopped it (a timeout included).
    results: list[requests.Response | BaseException | None] = [None] * len(buyers)

    def go(i, hdrs):
        try:
            barrier.wait(30)
            results[i] = requests.post(u + "/api/marketplace/checkout", headers=hdrs,
                                       json={"shippingAddress": ADDRESS}, timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread below
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i, b)) for i, b in enumerate(buyers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not [t for t in threads if t.is_alive()], "a client is still waiting for its answer"
    failed = [r for r in results if not isinstance(r, requests.Response)]
    assert not failed, f"clients without an answer: {failed}"
    codes = sorted(r.status_code for r in results)
    assert len(codes) == 20 and codes.count(201) == 1, codes
    assert all(c in (400, 409) for c in codes if c != 201), codes
    # Only stock is contended: the losers hear that it ran out, never a conflict.
    assert codes.count(409) == 0, [r.text for r in results if r.status_code == 409]
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


# ---------------------------------------------------------------- the HTTP suites again


def test_pgbouncer_is_installed():
    """The tests below need the binary; without it they would fail one by one in their setup."""
    assert pgbouncer.available(), (f"pgbouncer not found at {pgbouncer.PGBOUNCER}: scripts/setup.sh installs it "
                                   "(Debian package pgbouncer)")


# Suites whose http_app goes through PgBouncer when MK_VIA_PGBOUNCER=1. tests/integration/test_hostile_users.py
# is listed before it exists on every branch: a missing file fails its run with a clear message.
THROUGH_PGBOUNCER = ["tests/integration/test_http_api.py", "tests/integration/test_security.py",
                     "tests/integration/test_http_hostile.py",
                     "tests/integration/test_hostile_users.py"]


@pytest.mark.parametrize("suite", THROUGH_PGBOUNCER)
def test_http_suite_through_pgbouncer(server, suite):
    """Each suite again with MK_VIA_PGBOUNCER=1 (its http_app goes through PgBouncer), on this
    session's server. CI runs them through this test; by hand, e.g.:
    MK_VIA_PGBOUNCER=1 .venv/bin/python -m pytest tests/integration/test_http_api.py"""
    assert (ROOT / suite).is_file(), f"{suite} does not exist: it is listed to run through PgBouncer"
    env = {**os.environ, "MK_VIA_PGBOUNCER": "1", "DATABASE_URL": server.admin_url}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", suite],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-1]
    assert " passed" in last and "failed" not in last and "error" not in last, r.stdout[-1000:]
    # Every test of the suite ran: nothing skipped or deselected.
    assert "skipped" not in last and "deselected" not in last, last
