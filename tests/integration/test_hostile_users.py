"""The attacks of the hostile-users review (docs/security.md), each performed as an attacker would:
over HTTP against the server, and in SQL as the app's own database role. Each succeeded before
migrations 0011/0012; each is refused now, and each test checks that nothing changed."""
from __future__ import annotations

import json
import threading
import uuid

import psycopg
import pytest
import requests
from psycopg import errors

from pyapp import auth
from tests.integration.test_http_api import PASSWORD, add, checkout, make_product, make_user, problem, signed
from tests.integration.test_security import assert_throttled, login, owner, post_from, user_with_password
from tests.support.http_server import WEBHOOK_SECRET, HttpServer, create_admin, seed_webhook_secret


def backdate(http_db, order_id: str, minutes: int = 31) -> None:
    with owner(http_db) as c:
        c.execute("""UPDATE "Order" SET "createdAt" = now() - make_interval(mins => %s) WHERE id = %s""",
                  (minutes, order_id))


# ---------------------------------------------------------------- 1. stock overflow stalls expiry


def test_a_seller_cannot_overflow_stock_and_stall_expiry(http_app, http_db):
    """List stock 1, let another account buy it and never pay, then push the stock towards 2^31-1:
    returning the unit used to overflow integer and roll back every expiry pass."""
    u = http_app.url
    _, seller = make_user(http_db, "SELLER")
    _, buyer = make_user(http_db)
    p = make_product(http_app, seller, stock=1)
    assert add(http_app, buyer, p["id"], 1).status_code == 201
    order = checkout(http_app, buyer).json()

    version = 2
    for delta in (1_000_000_000, 1_000_000_000, 147_483_647):
        r = requests.patch(u + f"/api/marketplace/products/{p['id']}", headers={**seller, "If-Match": f'"{version}"'},
                           json={"stockDelta": delta})
        if r.status_code == 200:
            version = r.json()["version"]
    doc = problem(requests.patch(u + f"/api/marketplace/products/{p['id']}",
                                 headers={**seller, "If-Match": f'"{version}"'}, json={"stockDelta": 1_000_000_000}),
                  400, "INVALID_ARGUMENT")
    assert doc["field"] == "stock", doc
    stock = requests.get(u + f"/api/marketplace/products/{p['id']}").json()["stock"]
    assert stock + 1 <= 1_000_000_000, "stock plus the unit held by the unpaid order stays in bounds"

    # Another buyer's stale order of another product expires in the same pass as the attacked one.
    _, other = make_user(http_db)
    q = make_product(http_app, seller, stock=2)
    assert add(http_app, other, q["id"], 1).status_code == 201
    other_order = checkout(http_app, other).json()
    backdate(http_db, order["id"])
    backdate(http_db, other_order["id"])
    with owner(http_db) as c:
        assert c.execute("SELECT api.expire_pending_orders('30 minutes')").fetchone()[0] >= 2
        statuses = dict(c.execute("""SELECT id, status FROM "Order" WHERE id IN (%s, %s)""",
                                  (order["id"], other_order["id"])).fetchall())
        assert statuses == {order["id"]: "CANCELLED", other_order["id"]: "CANCELLED"}
        assert c.execute("""SELECT stock FROM "Product" WHERE id = %s""", (p["id"],)).fetchone()[0] == stock + 1


# ---------------------------------------------------------------- 2. locking anyone out


def test_nobody_can_lock_an_account_out(http_app, http_db):
    """Five wrong passwords for the admin every 15 minutes, from several addresses, used to keep
    the admin at 429 everywhere."""
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    create_admin(http_db[0], email, PASSWORD)
    for source in ("127.0.0.21", "127.0.0.22"):
        for _ in range(5):
            assert login(http_app.url, email, "guess", source=source)[0] == 401
        assert_throttled(*login(http_app.url, email, PASSWORD, source=source))
    status, _, body = login(http_app.url, email, PASSWORD, source="127.0.0.23")
    assert status == 200 and json.loads(body)["role"] == "ADMIN", body


def test_behind_a_trusted_proxy_each_forwarded_client_is_its_own(http_db):
    """Behind a proxy every client shares its address; with TRUSTED_PROXIES the hop it adds to
    X-Forwarded-For is the client, and hops the client wrote itself count for nothing."""
    seed_webhook_secret(http_db[0])
    _, email = user_with_password(http_db)
    srv = HttpServer(http_db[1], TRUSTED_PROXIES="127.0.0.31").start()
    try:
        proxy = dict(source="127.0.0.31")
        for _ in range(5):
            assert login(srv.url, email, "guess", headers={"X-Forwarded-For": "198.51.100.1"}, **proxy)[0] == 401
        assert_throttled(*login(srv.url, email, PASSWORD, headers={"X-Forwarded-For": "198.51.100.1"}, **proxy))
        # The attacker prepends a hop of its own choosing: the proxy's hop still names it.
        assert_throttled(*login(srv.url, email, PASSWORD, headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.1"},
                                **proxy))
        # Another client behind the same proxy is not concerned.
        status, _, body = login(srv.url, email, PASSWORD, headers={"X-Forwarded-For": "198.51.100.2"}, **proxy)
        assert status == 200, body
        # A peer that is not a trusted proxy cannot choose its address with the header.
        for _ in range(5):
            assert login(srv.url, email, "guess", source="127.0.0.32",
                         headers={"X-Forwarded-For": "198.51.100.3"})[0] == 401
        assert_throttled(*login(srv.url, email, PASSWORD, source="127.0.0.32",
                                headers={"X-Forwarded-For": "198.51.100.4"}))
    finally:
        srv.stop()
    with owner(http_db) as c:
        clients = {r[0] for r in c.execute("SELECT client FROM internal.login_attempt WHERE email = %s", (email,))}
    assert clients == {"198.51.100.1", "127.0.0.32"}


# ---------------------------------------------------------------- 3. a stolen app credential


def test_a_stolen_app_credential_is_worth_no_more_than_an_anonymous_client(http_app, http_db):
    """Connected as marketplace_app, try every escalation the old grants allowed: mint an ADMIN
    token, read a password hash, mark an order PAID, switch maintenance, move stock, act for
    another user. Each is refused and nothing changes."""
    admin_email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    admin_id = create_admin(http_db[0], admin_email, PASSWORD)
    victim_id, victim = make_user(http_db)
    attacker_id, attacker = make_user(http_db)
    _, seller = make_user(http_db, "SELLER")
    p = make_product(http_app, seller, stock=3)
    assert add(http_app, victim, p["id"], 1).status_code == 201
    order = checkout(http_app, victim).json()
    attacker_hash = auth.token_hash(attacker["Authorization"].split()[1])

    def state():
        with owner(http_db) as c:
            return (c.execute('SELECT count(*) FROM "ApiToken"').fetchone()[0],
                    c.execute('SELECT status FROM "Order" WHERE id = %s', (order["id"],)).fetchone()[0],
                    c.execute('SELECT stock, version FROM "Product" WHERE id = %s', (p["id"],)).fetchone(),
                    c.execute("SELECT maintenance, max_unpaid_orders FROM internal.settings").fetchone(),
                    c.execute('SELECT "passwordHash" FROM "User" WHERE id = %s', (admin_id,)).fetchone()[0],
                    c.execute('SELECT count(*) FROM "CartItem"').fetchone()[0])
    before = state()
    stored_key = before[4].split("$")[-1]

    refused = [
        ("SELECT api.issue_token(%s, %s)", (admin_id, "a" * 64)),
        ("SELECT * FROM api.login_credentials(%s)", (admin_email,)),
        ("SELECT api.record_payment(%s, true, 'forged')", (order["id"],)),
        ("SELECT api.set_maintenance(true)", ()),
        ("SELECT api.decrement_stock(%s, 1)", (p["id"],)),
        ("SELECT api.update_product(%s, 1, '{\"stock\": 0}')", (p["id"],)),
        ("SELECT api.expire_pending_orders('0 minutes')", ()),
        ("SELECT api.cancel_order(%s)", (order["id"],)),
        ("SELECT api.add_to_cart(%s, %s, 1)", (victim_id, p["id"])),
        ("SELECT api.checkout(%s, '{\"a\": 1}')", (victim_id,)),
        ("SELECT api.authenticate(%s)", (attacker_hash,)),
        ("SELECT api.set_limits('{\"maxUnpaidOrders\": null}')", ()),
        ("SELECT api.set_webhook_secret('0123456789abcdef-attacker')", ()),
        ("SELECT * FROM internal.webhook_secret", ()),
        ('SELECT "passwordHash" FROM "User"', ()),
    ]
    with psycopg.connect(http_db[1], autocommit=True) as app:
        for stmt, params in refused:
            with pytest.raises(errors.InsufficientPrivilege):
                app.execute(stmt, params)
        # What it may call instead asks for proof it does not have.
        params = app.execute("SELECT app.login_parameters(%s, '127.0.0.1')", (admin_email,)).fetchone()[0]
        assert set(params) <= {"salt", "n", "r", "p", "delay", "upgrade"}
        assert stored_key not in json.dumps(params), "the stored key never leaves the database"
        assert app.execute("SELECT app.login(%s, '10.9.9.9', %s)", (admin_email, stored_key[:-2] + "AA")).fetchone()[0] \
            == {"authenticated": False}
        for stmt, params_, state_ in [
            ("SELECT app.set_maintenance(%s, true)", (attacker_hash,), "MK403"),
            ("SELECT app.set_maintenance(%s, true)", ("f" * 64,), "MK401"),
            ("SELECT app.cancel_order(%s, %s)", (attacker_hash, order["id"]), "MK404"),
            ("SELECT app.get_order(%s, %s)", (attacker_hash, order["id"]), "MK404"),
            ("SELECT app.update_product(%s, %s, 2, '{\"stock\": 0}')", (attacker_hash, p["id"]), "MK403"),
            ("SELECT app.payment_webhook('1700000000', %s, convert_to(%s, 'UTF8'))",
             ("0" * 64, json.dumps({"orderId": order["id"], "status": "succeeded"})), "MKW01"),
        ]:
            with pytest.raises(psycopg.Error) as exc:
                app.execute(stmt, params_)
            assert exc.value.sqlstate == state_, (stmt, exc.value.sqlstate)
    # The same over HTTP: a webhook signed with a key the attacker guessed is refused.
    raw, h = signed({"orderId": order["id"], "status": "succeeded"}, secret="not-the-webhook-secret")
    problem(requests.post(http_app.url + "/api/marketplace/payments/webhook", data=raw, headers=h), 401,
            "INVALID_SIGNATURE")
    after = state()
    assert after[:5] == before[:5] and after[5] == before[5], (before, after)
    assert after[4] == before[4]


# ---------------------------------------------------------------- 4. holding the catalogue


def test_one_buyer_cannot_hold_the_catalogue(http_app, http_db):
    """Add each one-of-a-kind piece, check out, never pay, again and again: a buyer holds at most
    MAX_UNPAID_ORDERS (3) unpaid orders; the next checkout creates nothing and keeps the cart."""
    u = http_app.url
    _, seller = make_user(http_db, "SELLER")
    buyer_id, buyer = make_user(http_db)
    pieces = [make_product(http_app, seller, stock=1, name=f"Pieza única {i}") for i in range(5)]
    orders = []
    for i, piece in enumerate(pieces[:3]):
        assert add(http_app, buyer, piece["id"], 1).status_code == 201
        r = checkout(http_app, buyer, key=f"hoard-{i}")
        assert r.status_code == 201, r.text
        orders.append(r.json())
    assert add(http_app, buyer, pieces[3]["id"], 1).status_code == 201
    doc = problem(checkout(http_app, buyer), 409, "TOO_MANY_UNPAID_ORDERS")
    assert doc["unpaidOrders"] == 3 and doc["maxUnpaidOrders"] == 3
    cart = requests.get(u + "/api/marketplace/cart", headers=buyer).json()
    assert [i["productId"] for i in cart["items"]] == [pieces[3]["id"]], "the cart is kept"
    assert requests.get(u + f"/api/marketplace/products/{pieces[3]['id']}").json()["stock"] == 1
    with owner(http_db) as c:
        assert c.execute('SELECT count(*) FROM "Order" WHERE "userId" = %s', (buyer_id,)).fetchone()[0] == 3

    # A retried checkout (same Idempotency-Key) still gets its original order at the limit.
    r = checkout(http_app, buyer, key="hoard-0")
    assert r.status_code == 201 and r.json()["id"] == orders[0]["id"]
    assert r.headers.get("Idempotent-Replayed") == "true"

    # Paying or cancelling frees a slot.
    raw, h = signed({"orderId": orders[0]["id"], "status": "succeeded", "reference": "psp-1"})
    assert requests.post(u + "/api/marketplace/payments/webhook", data=raw, headers=h).status_code == 200
    assert checkout(http_app, buyer).status_code == 201
    assert add(http_app, buyer, pieces[4]["id"], 1).status_code == 201
    problem(checkout(http_app, buyer), 409, "TOO_MANY_UNPAID_ORDERS")
    assert requests.post(u + f"/api/marketplace/orders/{orders[1]['id']}/cancel", headers=buyer).status_code == 200
    assert checkout(http_app, buyer).status_code == 201


def test_max_per_buyer_caps_what_one_buyer_holds(http_app, http_db):
    u = http_app.url
    _, seller = make_user(http_db, "SELLER")
    _, buyer = make_user(http_db)
    r = requests.post(u + "/api/marketplace/products", headers=seller,
                      json={"name": "Cuenco", "price": 30, "stock": 10, "maxPerBuyer": 2})
    assert r.status_code == 201 and r.json()["maxPerBuyer"] == 2, r.text
    pid = r.json()["id"]
    doc = problem(add(http_app, buyer, pid, 3), 409, "MAX_PER_BUYER_EXCEEDED")
    assert doc["maxPerBuyer"] == 2
    assert add(http_app, buyer, pid, 2).status_code == 201
    assert checkout(http_app, buyer).status_code == 201
    problem(add(http_app, buyer, pid, 1), 409, "MAX_PER_BUYER_EXCEEDED")  # two already held unpaid
    assert requests.get(u + f"/api/marketplace/products/{pid}").json()["stock"] == 8


# ---------------------------------------------------------------- 5. unlimited sign-up


def test_sign_up_is_limited_per_client(http_app, http_db):
    """Each sign-up costs a 128 MiB scrypt and enables the attacks above: 20 per client an hour
    (REGISTRATIONS_PER_CLIENT_PER_HOUR), loopback included, then 429 with Retry-After."""
    run = uuid.uuid4().hex[:8]

    def register(i: int, source: str):
        return post_from(http_app.url, "/api/auth/register",
                         {"email": f"signup-{run}-{i}@example.com", "password": PASSWORD, "name": f"S{i}"}, source)

    for i in range(20):
        status, _, body = register(i, "127.0.0.41")
        assert status == 201, (i, body)
    status, headers, body = register(20, "127.0.0.41")
    assert status == 429, body
    doc = json.loads(body)
    assert doc["code"] == "TOO_MANY_ATTEMPTS" and headers["Content-Type"].startswith("application/problem+json")
    assert 1 <= int(headers["Retry-After"]) <= 3600
    assert register(21, "127.0.0.42")[0] == 201, "another client is not concerned"
    with owner(http_db) as c:
        n = c.execute("""SELECT count(*) FROM "User" WHERE email LIKE %s""", (f"signup-{run}-%",)).fetchone()[0]
    assert n == 21


def test_a_login_flood_cannot_stall_checkouts(http_app, http_db):
    """Each login costs a 128 MiB scrypt: a flood of them must not take every request thread.
    Password work has a few slots per worker; beyond them a login is refused at once (503 BUSY,
    Retry-After), and checkouts go on meanwhile."""
    _, seller = make_user(http_db, "SELLER")
    p = make_product(http_app, seller, stock=10)
    buyers = [make_user(http_db)[1] for _ in range(6)]
    for b in buyers:
        assert add(http_app, b, p["id"], 1).status_code == 201
    flood: list[int] = []
    checkouts: list[int] = []

    def guess(i: int) -> None:
        flood.append(post_from(http_app.url, "/api/auth/login",
                               {"email": f"flood{i}@example.com", "password": "guess"}, f"127.0.1.{i}")[0])

    def buy(h: dict) -> None:
        checkouts.append(checkout(http_app, h).status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(48)]
    for t in threads:
        t.start()
    buyers_threads = [threading.Thread(target=buy, args=(h,)) for h in buyers]
    for t in buyers_threads:
        t.start()
    for t in threads + buyers_threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads + buyers_threads), "a request hung"
    assert checkouts == [201] * len(buyers), checkouts
    assert len(flood) == 48 and set(flood) <= {401, 503}, sorted(flood)
    assert 503 in flood, "the flood never met the limit on password work: it proved nothing"


# ---------------------------------------------------------------- 6. /metrics


def test_metrics_needs_its_token_and_a_scrape_storm_reads_the_database_once(http_db):
    seed_webhook_secret(http_db[0])
    srv = HttpServer(http_db[1], METRICS_TOKEN="scrape-token-0123456789", WORKERS="1").start()
    try:
        problem(requests.get(srv.url + "/metrics"), 401, "UNAUTHENTICATED")
        problem(requests.get(srv.url + "/metrics", headers={"Authorization": "Bearer wrong"}), 401)
        ok = {"Authorization": "Bearer scrape-token-0123456789"}

        def cancelled() -> str:
            r = requests.get(srv.url + "/metrics", headers=ok)
            assert r.status_code == 200 and "mk_database_up 1.0" in r.text, r.text[:500]
            return next(line for line in r.text.splitlines() if line.startswith('mk_orders{status="CANCELLED"}'))

        first = cancelled()
        with owner(http_db) as c:  # a change the snapshot would show at once if it were re-read
            c.execute("""UPDATE "Order" SET status = 'CANCELLED' WHERE id IN
                         (SELECT id FROM "Order" WHERE status <> 'CANCELLED' LIMIT 1)""")
            c.execute("""INSERT INTO "Order" ("userId", status, total, "shippingAddress")
                         SELECT id, 'CANCELLED', 1, '{"a": 1}' FROM "User" LIMIT 1""")
        assert all(cancelled() == first for _ in range(20)), "served from the 15-second cache"
    finally:
        srv.stop()


# ---------------------------------------------------------------- webhook keys


def test_webhook_keys_rotate_without_refusing_deliveries(http_app, http_db):
    u = http_app.url + "/api/marketplace/payments/webhook"
    _, seller = make_user(http_db, "SELLER")
    orders = []
    for _ in range(3):
        _, buyer = make_user(http_db)
        p = make_product(http_app, seller, stock=1)
        assert add(http_app, buyer, p["id"], 1).status_code == 201
        orders.append(checkout(http_app, buyer).json()["id"])
    new_key = "rotated-webhook-secret-2026"
    with owner(http_db) as c:
        assert c.execute("SELECT api.set_webhook_secret(%s)", (new_key,)).fetchone()[0] == {"added": True, "active": 2}
    for oid, key in ((orders[0], WEBHOOK_SECRET), (orders[1], new_key)):
        raw, h = signed({"orderId": oid, "status": "succeeded"}, secret=key)
        assert requests.post(u, data=raw, headers=h).json()["status"] == "PAID"
    with owner(http_db) as c:
        assert c.execute("SELECT api.retire_webhook_secrets()").fetchone()[0] == {"retired": 1, "active": 1}
    raw, h = signed({"orderId": orders[2], "status": "succeeded"}, secret=WEBHOOK_SECRET)
    problem(requests.post(u, data=raw, headers=h), 401, "INVALID_SIGNATURE")
    raw, h = signed({"orderId": orders[2], "status": "succeeded"}, secret=new_key)
    assert requests.post(u, data=raw, headers=h).json()["status"] == "PAID"
    seed_webhook_secret(http_db[0])  # the module's other tests sign with WEBHOOK_SECRET
