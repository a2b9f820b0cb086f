"""Security over real HTTP (the granian server, role marketplace_app) and direct SQL as the app's role:
privileges, SQL-looking input kept as data, tokens, login throttling, isolation between users,
secrets kept out of logs and bodies, webhook replays, body size and nesting limits."""
from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
import uuid

import psycopg
import pytest
import requests
from psycopg import errors, sql

from pyapp import auth
from tests.integration.test_http_api import ADDRESS, HASH, PASSWORD, add, checkout, make_product, make_user, problem, signed
from tests.support.http_server import WEBHOOK_SECRET, HttpServer, create_admin

SQLISH = ["'; DROP TABLE \"Product\"; --", "' OR 1=1 --", "$$", "\\", "%s %(x)s $1 {}",
          "ñandú 🦜 \u202e naïve 日本語", "\"); DELETE FROM \"User\"; --", "x' UNION SELECT \"passwordHash\" FROM \"User\" --"]
TABLES = ["User", "Product", "CartItem", "Order", "OrderItem", "StockLedger", "ApiToken", "PaymentWebhookDelivery"]


def owner(http_db):
    return psycopg.connect(http_db[0], autocommit=True)


@pytest.fixture(autouse=True)
def fresh_throttle(http_db):
    """Every test starts with no recorded login attempts (all requests come from 127.0.0.x)."""
    with owner(http_db) as c:
        c.execute("DELETE FROM internal.login_attempt")


def post_from(url: str, path: str, body: dict, source: str, headers: dict | None = None):
    """POST JSON from a given local source address (REMOTE_ADDR): (status, headers, body text)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60, source_address=(source, 0))
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, r.headers, r.read().decode()  # r.headers: names in any case
    finally:
        conn.close()


def login(url: str, email: str, password: str, source: str = "127.0.0.1", headers: dict | None = None):
    """POST /api/auth/login from a given local source address: (status, headers, body)."""
    return post_from(url, "/api/auth/login", {"email": email, "password": password}, source, headers)


def assert_throttled(status, headers, body, max_wait=900):
    assert status == 429, body
    assert headers["Content-Type"].startswith("application/problem+json")
    doc = json.loads(body)
    assert doc["code"] == "TOO_MANY_ATTEMPTS" and doc["status"] == 429
    retry = int(headers["Retry-After"])
    assert 1 <= retry <= max_wait and doc["retryAfter"] == retry
    assert "token" not in doc
    return retry


def user_with_password(http_db, role="BUYER"):
    """(id, email) of a user whose password is PASSWORD."""
    email = f"{role.lower()}-{uuid.uuid4().hex[:10]}@example.com"
    with owner(http_db) as c:
        uid = c.execute("SELECT api.create_user(%s, %s, %s, %s)", (email, role.title(), HASH, role)).fetchone()[0]["id"]
    return uid, email


# ---------------------------------------------------------------- the app's role in SQL


def test_app_role_cannot_touch_tables_or_internals(http_db):
    """The app's role may execute schema app and nothing else: every table, every internal helper
    and every api function (those take user, actor and seller ids) is refused."""
    with owner(http_db) as c:
        internal_fns = [r[0] for r in c.execute(
            """SELECT p.oid::regprocedure::text FROM pg_proc p
               WHERE p.pronamespace IN ('internal'::regnamespace, 'api'::regnamespace) AND p.prokind = 'f'""")]
        unpinned = c.execute(
            """SELECT p.oid::regprocedure::text FROM pg_proc p
               WHERE p.prosecdef AND p.pronamespace IN ('api'::regnamespace, 'internal'::regnamespace,
                                                        'app'::regnamespace, 'public'::regnamespace)
                 AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS s
                                 WHERE s ~ '^search_path=pg_catalog(, *[a-z_]+)*, *pg_temp$')""").fetchall()
        definers = c.execute("SELECT count(*) FROM pg_proc WHERE prosecdef AND pronamespace = 'api'::regnamespace").fetchone()[0]
    assert len(internal_fns) >= 60 and definers > 30
    assert unpinned == [], "SECURITY DEFINER functions without a pinned search_path"

    attempts = [f'SELECT * FROM "{t}"' for t in TABLES + ["Product"]] + [
        'UPDATE "Product" SET price = 0',
        'UPDATE "Product" SET stock = stock + 1000 WHERE true',
        'DELETE FROM "ApiToken"',
        'INSERT INTO "User" (email, name, role, "passwordHash") VALUES (\'x@x.io\', \'x\', \'ADMIN\', \'h\')',
        'TRUNCATE "Order"',
        "SELECT * FROM internal.login_attempt",
        "SELECT * FROM internal.settings",
        "SELECT * FROM internal.webhook_secret",
        "SELECT * FROM internal.login_secret",
        "UPDATE internal.settings SET maintenance = false, max_unpaid_orders = NULL",
        "CREATE TABLE public.planted (x int)",
        "CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql AS 'SELECT $1'",
        "SELECT api.create_user('evil@x.io', 'Evil', repeat('h', 40), 'ADMIN')",
        "SELECT api.create_user('evil@x.io', 'Evil', repeat('h', 40))",
        "SELECT * FROM api.login_credentials('buyer@example.com')",
    ] + [f"SELECT {fn.split('(')[0]}({', '.join('NULL::' + a for a in _args(fn))})" for fn in internal_fns]
    with psycopg.connect(http_db[1], autocommit=True) as app:
        assert app.execute("SELECT current_user").fetchone()[0] == "marketplace_app"
        for stmt in attempts:
            with pytest.raises(errors.InsufficientPrivilege):
                app.execute(stmt)
        # What it may do: call schema app (a read that needs no identity here).
        assert app.execute("SELECT app.list_products(1, NULL)").fetchone()[0] is not None
    with owner(http_db) as c:
        assert c.execute("SELECT count(*) FROM \"User\" WHERE email = 'evil@x.io' OR email = 'x@x.io'").fetchone()[0] == 0


def _args(regprocedure: str) -> list[str]:
    inner = regprocedure[regprocedure.index("(") + 1:-1].strip()
    return [a.strip() for a in inner.split(",")] if inner else []


# ---------------------------------------------------------------- SQL-looking input is data


def test_sql_looking_strings_are_stored_or_rejected_as_data(http_app, http_db):
    u = http_app.url
    with owner(http_db) as c:
        before = {t: c.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                  for t in TABLES}
    seller_id, seller = make_user(http_db, "SELLER")
    registered, products, orders = [], [], []
    for i, s in enumerate(SQLISH):
        # register: name kept exactly; the email holds the string without blanks (a valid address)
        email = f"{s.replace(' ', '')}{i}@example.com"
        r = requests.post(u + "/api/auth/register", json={"email": email, "password": PASSWORD, "name": s})
        assert r.status_code == 201, r.text
        assert r.json()["name"] == s and r.json()["email"] == email
        registered.append((r.json()["id"], email, s))
        if " " in s:  # not an address: refused, as data
            problem(requests.post(u + "/api/auth/register", json={"email": s + "@example.com", "password": PASSWORD,
                                                                 "name": s}), 400, "INVALID_ARGUMENT")
        # login with it, then act as that buyer
        r = requests.post(u + "/api/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        buyer = {"Authorization": "Bearer " + r.json()["token"]}
        problem(requests.post(u + "/api/auth/login", json={"email": s, "password": s}), 401)

        # products: name and description as given, then renamed through PATCH
        p = make_product(http_app, seller, stock=10, name=s)
        r = requests.post(u + "/api/marketplace/products", headers=seller,
                          json={"name": "d" + s, "price": 1, "stock": 1, "description": s})
        assert r.status_code == 201 and r.json()["description"] == s, r.text
        products += [(p["id"], s, ""), (r.json()["id"], "d" + s, s)]
        r = requests.patch(u + f"/api/marketplace/products/{p['id']}", headers={**seller, "If-Match": '"1"'},
                           json={"name": s + "!"})
        assert r.status_code == 200 and r.json()["name"] == s + "!", r.text
        products[-2] = (p["id"], s + "!", "")

        # path ids and query parameters
        q = urllib.parse.quote(s, safe="")
        problem(requests.get(u + "/api/marketplace/products/" + q), 404)
        problem(requests.patch(u + "/api/marketplace/products/" + q, headers={**seller, "If-Match": '"1"'},
                               json={"name": "x"}), 404)
        problem(requests.get(u + "/api/marketplace/orders/" + q, headers=buyer), 404)
        problem(requests.post(u + f"/api/marketplace/orders/{q}/cancel", headers=buyer), 404)
        problem(requests.patch(u + "/api/marketplace/cart/items/" + q, headers=buyer, json={"quantity": 1}), 404)
        problem(requests.delete(u + "/api/marketplace/cart/items/" + q, headers=buyer), 404)
        r = requests.get(u + "/api/marketplace/products", params={"after": s, "limit": 5})
        assert r.status_code == 200, r.text
        problem(requests.get(u + "/api/marketplace/products", params={"limit": s}), 400)
        problem(requests.get(u + "/api/marketplace/orders", headers=buyer, params={"limit": s}), 400)

        # cart: an unknown productId is a 404, the real one a line
        problem(add(http_app, buyer, s, 1), 404)
        assert add(http_app, buyer, p["id"], 2).status_code == 201

        # checkout: the string as address keys and values, and as the Idempotency-Key when it fits a header
        address = {"line1": s, s: s, "nested": {"k": [s, s]}}
        key = s if s.isascii() else None
        r = checkout(http_app, buyer, key=key, address=address)
        assert r.status_code == 201, r.text
        assert r.json()["shippingAddress"] == address
        orders.append((r.json()["id"], address, key))
        if key:  # a replay with the same key finds the same order
            assert add(http_app, buyer, p["id"], 1).status_code == 201
            r2 = checkout(http_app, buyer, key=key, address=address)
            assert r2.status_code == 201 and r2.json()["id"] == r.json()["id"], r2.text
            assert r2.headers.get("Idempotent-Replayed") == "true"
            assert requests.delete(u + f"/api/marketplace/cart/items/{p['id']}", headers=buyer).status_code == 200

        # the payment webhook: the string as the reference (and as an unknown order id)
        raw, h = signed({"orderId": r.json()["id"], "status": "succeeded", "reference": s})
        assert requests.post(u + "/api/marketplace/payments/webhook", data=raw, headers=h).status_code == 200
        raw, h = signed({"orderId": s, "status": "failed", "reference": s})
        problem(requests.post(u + "/api/marketplace/payments/webhook", data=raw, headers=h), 404)

    n = len(SQLISH)
    with owner(http_db) as c:
        for t in TABLES:
            assert c.execute("SELECT to_regclass(%s)", (f'public."{t}"',)).fetchone()[0] is not None, t
        after = {t: c.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                 for t in TABLES}
        assert after["User"] - before["User"] == n + 1  # the buyers and one seller
        assert after["Product"] - before["Product"] == 2 * n
        assert after["Order"] - before["Order"] == n
        assert after["OrderItem"] - before["OrderItem"] == n
        assert after["CartItem"] - before["CartItem"] == 0
        assert after["PaymentWebhookDelivery"] - before["PaymentWebhookDelivery"] == n
        for uid, email, name in registered:
            assert c.execute('SELECT email, name FROM "User" WHERE id = %s', (uid,)).fetchone() == (email, name)
        for pid, name, description in products:
            assert c.execute('SELECT name, description FROM "Product" WHERE id = %s', (pid,)).fetchone() == (name, description)
        for oid, address, key in orders:
            row = c.execute('SELECT "shippingAddress", "idempotencyKey", "paymentReference", status FROM "Order" '
                            "WHERE id = %s", (oid,)).fetchone()
            assert row[0] == address and row[1] == key and row[3] == "PAID"
            assert row[2] in SQLISH
        refs = {r[0] for r in c.execute('SELECT reference FROM "PaymentWebhookDelivery"')}
        assert set(SQLISH) <= refs


# ---------------------------------------------------------------- tokens


def test_expired_and_revoked_tokens_are_401(http_app, http_db):
    u = http_app.url
    _, email = user_with_password(http_db)
    tokens = []
    for _ in range(2):
        r = requests.post(u + "/api/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        tokens.append(r.json()["token"])
    expired, revoked = ({"Authorization": "Bearer " + t} for t in tokens)
    assert requests.get(u + "/api/marketplace/cart", headers=expired).status_code == 200
    with owner(http_db) as c:
        c.execute('UPDATE "ApiToken" SET "expiresAt" = now() - interval \'1 second\' WHERE "tokenHash" = %s',
                  (auth.token_hash(tokens[0]),))
    for method, path in (("GET", "/api/marketplace/cart"), ("GET", "/api/marketplace/orders"),
                         ("POST", "/api/auth/logout")):
        problem(requests.request(method, u + path, headers=expired), 401, "UNAUTHENTICATED")

    assert requests.post(u + "/api/auth/logout", headers=revoked).json() == {"revoked": True}
    for method, path in (("GET", "/api/marketplace/cart"), ("POST", "/api/marketplace/checkout"),
                         ("POST", "/api/auth/logout")):
        problem(requests.request(method, u + path, headers=revoked, json={"shippingAddress": ADDRESS}), 401)


# ---------------------------------------------------------------- login throttling


def test_login_throttle_locks_only_the_email_and_client_pair(http_app, http_db):
    u = http_app.url
    _, email = user_with_password(http_db)
    started = time.monotonic()
    for _ in range(5):
        status, _, body = login(u, email, "wrong password")
        assert status == 401, body
    retry = assert_throttled(*login(u, email, "wrong password"))
    # The oldest failure leaves the window 15 minutes after it was recorded (each login costs a
    # scrypt, so on a loaded machine the five take a while: count from before the first).
    assert 900 - (time.monotonic() - started) - 2 <= retry <= 900
    # The right password is refused from that client, whatever the case or headers (no trusted
    # proxy is configured, so X-Forwarded-For is ignored)...
    assert_throttled(*login(u, email, PASSWORD))
    assert_throttled(*login(u, email.upper(), PASSWORD))
    assert_throttled(*login(u, email, PASSWORD, headers={"X-Forwarded-For": "203.0.113.9"}))
    # ...but another client with no failures of its own gets in: nobody locks an account out.
    status, _, body = login(u, email, PASSWORD, source="127.0.0.2")
    assert status == 200 and json.loads(body)["token"], body

    with owner(http_db) as c:
        assert c.execute("SELECT count(*) FROM internal.login_attempt WHERE email = %s",
                         (email.lower(),)).fetchone()[0] == 5, "refused attempts are not recorded"
        # Ten minutes later the oldest failure has five minutes left in the window.
        c.execute("UPDATE internal.login_attempt SET attempted_at = attempted_at - interval '10 minutes'")
    assert 290 <= assert_throttled(*login(u, email, PASSWORD)) <= 300
    with owner(http_db) as c:
        c.execute("UPDATE internal.login_attempt SET attempted_at = attempted_at - interval '5 minutes'")
    status, _, body = login(u, email, PASSWORD)
    assert status == 200 and json.loads(body)["token"], body

    # A success clears the pair's failures: 4 failures, a success, then 5 more failures are 401s.
    for _ in range(4):
        assert login(u, email, "wrong")[0] == 401
    assert login(u, email, PASSWORD)[0] == 200
    for _ in range(5):
        assert login(u, email, "wrong")[0] == 401
    assert_throttled(*login(u, email, PASSWORD))
    # A DBA lifts it (python -m pyapp unthrottle EMAIL calls the same function).
    with owner(http_db) as c:
        assert c.execute("SELECT api.lift_login_throttle(%s)", (email.upper(),)).fetchone()[0] == 5
    assert login(u, email, PASSWORD)[0] == 200


def test_unknown_emails_are_throttled_alike(http_app, http_db):
    u = http_app.url
    _, email = user_with_password(http_db)
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    known = [login(u, email, "wrong password") for _ in range(5)]
    unknown = [login(u, nobody, "wrong password", source="127.0.0.5") for _ in range(5)]

    def shape(resp):
        status, headers, body = resp
        doc = json.loads(body)
        doc.pop("requestId"), doc.pop("retryAfter", None)  # which second it is
        return status, headers["Content-Type"], doc
    assert {json.dumps(shape(r)) for r in known + unknown} == {json.dumps(shape(known[0]))}
    throttled = [login(u, email, PASSWORD), login(u, nobody, PASSWORD, source="127.0.0.5")]
    for r in throttled:
        assert_throttled(*r)
    assert shape(throttled[0]) == shape(throttled[1])


def test_failures_on_other_emails_only_slow_a_client_down(http_app, http_db):
    u = http_app.url
    _, victim = user_with_password(http_db)
    # 24 failures from 127.0.0.3, each on another email (never 5 on one), faking X-Forwarded-For.
    for i in range(24):
        status, _, body = login(u, f"guess{i}@example.com", "wrong", source="127.0.0.3",
                                headers={"X-Forwarded-For": f"198.51.100.{i}"})
        assert status == 401, (i, body)
    with owner(http_db) as c:
        delay = c.execute("SELECT app.login_parameters(%s, '127.0.0.3') ->> 'delay'", (victim,)).fetchone()[0]
    assert 0 < float(delay) <= 3, delay  # 4 failures past the client's 20: slowed, not locked
    # A correct password from that client for an email it never failed on is accepted.
    status, _, body = login(u, victim, PASSWORD, source="127.0.0.3")
    assert status == 200, body
    assert login(u, "guess0@example.com", "wrong", source="127.0.0.4")[0] == 401


def test_login_throttle_holds_under_concurrency(http_app, http_db):
    """15 simultaneous wrong logins on one (email, client) pair, over both workers: exactly 5 are
    tried, whatever order they reach the database in."""
    _, email = user_with_password(http_db)
    results, barrier = [], threading.Barrier(15)

    def attempt():
        barrier.wait()
        for _ in range(100):  # as a client would: a 503 BUSY (no password slot free) is retried
            status = login(http_app.url, email, "wrong password")[0]
            if status != 503:
                break
            time.sleep(0.2)
        results.append(status)
    threads = [threading.Thread(target=attempt) for _ in range(15)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [401] * 5 + [429] * 10


# ---------------------------------------------------------------- isolation between users


def test_no_route_leaks_another_users_data(http_app, http_db):
    u = http_app.url
    seller_a, seller_a_h = make_user(http_db, "SELLER")
    buyer_a, buyer_a_h = make_user(http_db)
    _, seller_b_h = make_user(http_db, "SELLER")
    _, buyer_b_h = make_user(http_db)
    with owner(http_db) as c:
        email_a = c.execute('SELECT email FROM "User" WHERE id = %s', (buyer_a,)).fetchone()[0]
        seller_email_a = c.execute('SELECT email FROM "User" WHERE id = %s', (seller_a,)).fetchone()[0]
    product = make_product(http_app, seller_a_h, stock=10)
    other = make_product(http_app, seller_a_h, stock=10)
    assert add(http_app, buyer_a_h, product["id"], 1).status_code == 201
    r = checkout(http_app, buyer_a_h, key="a-secret-key", address={"street": "Secret street 7"})
    assert r.status_code == 201, r.text
    order_a = r.json()["id"]
    assert add(http_app, buyer_a_h, other["id"], 2).status_code == 201
    product = requests.get(u + f"/api/marketplace/products/{product['id']}").json()  # after the sale
    secrets = [buyer_a, seller_a, email_a, seller_email_a, order_a, "Secret street 7", "a-secret-key",
               buyer_a_h["Authorization"].split()[1]]

    def clean(r, *statuses):
        """The status is one of `statuses`, and the body holds nothing of A the caller did not send."""
        assert r.status_code in statuses, (r.request.method, r.request.url, r.status_code, r.text)
        sent = urllib.parse.unquote(r.request.url) + (r.request.body or b"").decode() + json.dumps(dict(r.request.headers))
        for s in secrets:
            assert s in sent or s not in r.text, (r.request.url, s, r.text)
        return r

    def same_as_unknown(r, unknown_path):
        """A's object answers exactly like one that does not exist (no existence oracle)."""
        other = requests.request(r.request.method, u + unknown_path, headers=dict(r.request.headers),
                                 data=r.request.body)
        def strip(x):
            doc = x.json()
            doc.pop("requestId")
            return x.status_code, {k: v for k, v in doc.items() if v not in (order_a, other_id)}
        assert strip(r) == strip(other)

    o = f"/api/marketplace/orders/{order_a}"
    clean(requests.get(u + "/api/marketplace/orders", headers=buyer_b_h), 200)
    assert requests.get(u + "/api/marketplace/orders", headers=buyer_b_h).json()["items"] == []
    other_id = str(uuid.uuid4())
    for headers in (buyer_b_h, seller_b_h, seller_a_h):
        same_as_unknown(clean(requests.get(u + o, headers=headers), 404), f"/api/marketplace/orders/{other_id}")
        same_as_unknown(clean(requests.post(u + o + "/cancel", headers=headers), 404),
                        f"/api/marketplace/orders/{other_id}/cancel")
        clean(requests.get(u + "/api/marketplace/cart", headers=headers), 200)
        clean(requests.patch(u + f"/api/marketplace/cart/items/{other['id']}", headers=headers, json={"quantity": 5}), 404)
        clean(requests.delete(u + f"/api/marketplace/cart/items/{other['id']}", headers=headers), 404)
        clean(requests.post(u + "/admin/maintenance/enable", headers=headers), 403)
        clean(requests.post(u + "/admin/maintenance/disable", headers=headers), 403)
        clean(requests.get(u + "/admin/dashboard/data", headers=headers), 403)
    for headers in (seller_b_h, buyer_b_h):
        clean(requests.patch(u + f"/api/marketplace/products/{product['id']}",
                             headers={**headers, "If-Match": f'"{product["version"]}"'}, json={"price": 1}), 403)
    # A product page names its seller (public); it tells nothing about who bought it.
    r = requests.get(u + f"/api/marketplace/products/{product['id']}")
    assert r.status_code == 200 and buyer_a not in r.text and email_a not in r.text and order_a not in r.text
    # The same key in another user's checkout is that user's own order, not a replay of A's.
    assert add(http_app, buyer_b_h, other["id"], 1).status_code == 201
    r = clean(checkout(http_app, buyer_b_h, key="a-secret-key"), 201)
    assert r.headers.get("Idempotent-Replayed") is None and r.json()["id"] != order_a

    # Nothing of A changed.
    with owner(http_db) as c:
        assert c.execute('SELECT status FROM "Order" WHERE id = %s', (order_a,)).fetchone()[0] == "PENDING_PAYMENT"
        assert c.execute('SELECT "productId", quantity FROM "CartItem" WHERE "userId" = %s',
                         (buyer_a,)).fetchall() == [(other["id"], 2)]
        assert c.execute('SELECT price::float8, version FROM "Product" WHERE id = %s',
                         (product["id"],)).fetchone() == (product["price"], product["version"])
        assert c.execute("SELECT maintenance FROM internal.settings").fetchone()[0] is False


# ---------------------------------------------------------------- secrets in logs and bodies


def test_secrets_never_in_logs_or_bodies(http_db):
    srv = HttpServer(http_db[1], SERVER_LOGLEVEL="debug").start()
    bodies, issued = [], []
    try:
        u = srv.url
        pw_buyer, pw_seller, pw_admin = (f"pw-{uuid.uuid4().hex}" for _ in range(3))
        wrong = [f"wrong-{uuid.uuid4().hex}" for _ in range(7)]
        admin_email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
        create_admin(http_db[0], admin_email, pw_admin)

        def keep(r):
            bodies.append((r.request.method, r.request.url, r.status_code, r.text, dict(r.headers)))
            return r
        b_email, s_email = (f"{k}-{uuid.uuid4().hex[:8]}@example.com" for k in ("buyer", "seller"))
        assert keep(requests.post(u + "/api/auth/register", json={"email": b_email, "password": pw_buyer,
                                                                  "name": "B"})).status_code == 201
        assert keep(requests.post(u + "/api/auth/register", json={"email": s_email, "password": pw_seller,
                                                                  "name": "S", "role": "SELLER"})).status_code == 201
        keep(requests.post(u + "/api/auth/register", json={"email": b_email, "password": pw_buyer, "name": "B"}))

        def token(email, password):
            r = requests.post(u + "/api/auth/login", json={"email": email, "password": password})
            assert r.status_code == 200, r.text
            issued.append(r.json()["token"])
            return {"Authorization": "Bearer " + r.json()["token"]}
        buyer, seller, admin = token(b_email, pw_buyer), token(s_email, pw_seller), token(admin_email, pw_admin)

        p = keep(requests.post(u + "/api/marketplace/products", headers=seller,
                               json={"name": "Vase", "price": 10, "stock": 3})).json()
        keep(requests.patch(u + f"/api/marketplace/products/{p['id']}", headers={**seller, "If-Match": '"7"'},
                            json={"price": 11}))  # stale: logs a ConcurrencyError
        keep(add(srv, buyer, p["id"], 1))
        order = keep(checkout(srv, buyer, key="k1")).json()
        raw, h = signed({"orderId": order["id"], "status": "succeeded", "reference": "psp-1"})
        keep(requests.post(u + "/api/marketplace/payments/webhook", data=raw, headers=h))
        keep(requests.post(u + "/api/marketplace/payments/webhook", data=raw, headers=h))  # replay
        raw, h = signed({"orderId": order["id"], "status": "failed"}, secret="not-" + WEBHOOK_SECRET)
        keep(requests.post(u + "/api/marketplace/payments/webhook", data=raw, headers=h))
        keep(requests.get(u + "/admin/dashboard/data", headers=admin))
        keep(requests.post(u + "/admin/maintenance/enable", headers=buyer))
        # Bad logins: wrong passwords, a truncated body holding a password, a password of the wrong type
        for w in wrong:
            keep(requests.post(u + "/api/auth/login", json={"email": b_email, "password": w}))
        keep(requests.post(u + "/api/auth/login", data='{"email": "%s", "password": "%s' % (b_email, pw_buyer)))
        keep(requests.post(u + "/api/auth/login", json={"email": b_email, "password": [pw_buyer]}))
        keep(requests.post(u + "/api/auth/login", json={"email": pw_buyer, "password": pw_buyer}))
        keep(requests.get(u + "/api/marketplace/cart", headers={"Authorization": "Bearer " + issued[0] + "x"}))
        keep(requests.get(u + "/nowhere?token=" + issued[0]))
        for h in (buyer, seller, admin):
            keep(requests.post(u + "/api/auth/logout", headers=h))
        keep(requests.get(u + "/api/marketplace/cart", headers=buyer))
        assert any(b[2] == 429 for b in bodies) and any(b[2] == 409 for b in bodies)
        assert any(b[2] == 401 for b in bodies if b[1].endswith("/webhook"))
    finally:
        proc = srv.proc
        if proc is not None:  # stop the server first so that every worker's output is flushed
            proc.terminate()
            proc.wait(15)
        logs = srv.log_file.read_text() if srv.log_file.exists() else ""
        out = srv.log_file.with_suffix(".out")
        output = out.read_text(errors="replace") if out.exists() else ""
        srv.stop()

    assert "ConcurrencyError" in logs, "the log file should hold the run's events"
    assert output.strip(), "the server's output should not be empty at debug level"
    secrets = [pw_buyer, pw_seller, pw_admin, WEBHOOK_SECRET, *wrong, *issued]
    for s in secrets:
        assert s not in logs, f"a secret is in the log file: {s[:6]}..."
        assert s not in output, f"a secret is in the server's output: {s[:6]}..."
    for method, url, status, text, headers in bodies:
        for s in secrets:
            assert s not in text and s not in json.dumps(headers), (method, url, status, s[:6])
        assert "scrypt$" not in text and "passwordHash" not in text


# ---------------------------------------------------------------- webhook replays and staleness


def test_webhook_rejects_replays_and_stale_timestamps(http_app, http_db):
    u = http_app.url
    _, seller = make_user(http_db, "SELLER")
    _, buyer = make_user(http_db)
    p = make_product(http_app, seller, stock=5)
    orders = []
    for _ in range(2):
        assert add(http_app, buyer, p["id"], 1).status_code == 201
        orders.append(checkout(http_app, buyer).json()["id"])
    hook = u + "/api/marketplace/payments/webhook"

    raw, h = signed({"orderId": orders[0], "status": "succeeded", "reference": "r1"})
    assert requests.post(hook, data=raw, headers=h).status_code == 200
    problem(requests.post(hook, data=raw, headers=h), 401)  # the very same delivery again
    now = int(time.time())
    # Well outside the 5-minute window on either side: a bound of 301 s would depend on how long
    # the requests took.
    for ts in (now - 600, now - 3600, now + 600, 0):
        raw, h = signed({"orderId": orders[1], "status": "succeeded", "reference": "r2"}, ts=ts)
        problem(requests.post(hook, data=raw, headers=h), 401)
    # A body changed under a valid signature is refused too.
    raw, h = signed({"orderId": orders[1], "status": "failed"})
    problem(requests.post(hook, data=raw.replace(b"failed", b"succeeded"), headers=h), 401)
    with owner(http_db) as c:
        assert c.execute('SELECT status FROM "Order" WHERE id = %s', (orders[1],)).fetchone()[0] == "PENDING_PAYMENT"
        assert c.execute('SELECT count(*) FROM "PaymentWebhookDelivery" WHERE "orderId" = ANY(%s)',
                         (orders,)).fetchone()[0] == 1
    # Fresh enough: inside the window with a clear margin (290 s left 10 s for all the requests above).
    raw, h = signed({"orderId": orders[1], "status": "succeeded", "reference": "r2"}, ts=int(time.time()) - 150)
    assert requests.post(hook, data=raw, headers=h).status_code == 200


# ---------------------------------------------------------------- body size and JSON nesting


def test_body_size_and_nesting_limits(http_app, http_db):
    u = http_app.url
    _, buyer = make_user(http_db)
    big = {"email": "a@example.com", "password": "x" * 8, "name": "n", "pad": "a" * (64 * 1024)}
    for path, headers in (("/api/auth/register", {}), ("/api/auth/login", {}),
                          ("/api/marketplace/checkout", buyer), ("/api/marketplace/cart/items", buyer)):
        problem(requests.post(u + path, headers=headers, json=big), 413, "PAYLOAD_TOO_LARGE")
    fits = json.dumps({"email": f"f-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD, "name": "n",
                       "pad": ""})
    fits = fits.replace('"pad": ""', '"pad": "' + "a" * (64 * 1024 - len(fits)) + '"')
    assert len(fits.encode()) == 64 * 1024
    assert requests.post(u + "/api/auth/register", data=fits).status_code == 201

    def nested(depth):  # a register body whose "x" makes the whole document `depth` levels deep
        inner = 1
        for _ in range(depth - 1):
            inner = {"a": inner}
        return {"email": f"n-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD, "name": "n", "x": inner}
    assert requests.post(u + "/api/auth/register", json=nested(32)).status_code == 201
    doc = problem(requests.post(u + "/api/auth/register", json=nested(33)), 400, "INVALID_JSON")
    assert "32" in doc["detail"]
    problem(requests.post(u + "/api/auth/register", data=b'{"x":' + b"[" * 100000 + b"]" * 100000 + b"}"), 413)
    problem(requests.post(u + "/api/auth/register", data=b'{"x":' + b"[" * 20000 + b"]" * 20000 + b"}"), 400,
            "INVALID_JSON")
