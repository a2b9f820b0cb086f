"""Soak: mixed HTTP traffic for MK_SOAK_SECONDS (default 300) against the HTTP server, with the expiry
worker running, then the books are checked.

12 client threads: one seller (restocks the hot products with PATCH If-Match, re-reading on 409),
one browser (pages through the catalogue, reads products, conditional GETs), and ten buyers
(browse, add / patch / delete cart lines, check out hot (stock 3) and cold products, some with an
Idempotency-Key and a replay, then pay (signed webhook, success or failure), cancel, or leave the
order unpaid). The test's main thread backdates a few unpaid orders every 2 s so that
`python -m pyapp expire-orders --every 2` (a subprocess) expires them during the run.

At the end: no 5xx, no transport error and no checkout conflict; every product's stock = initial
+ restocked - sold + returned = its ledger (tests/support/invariants.py); every acknowledged (201) order
exists exactly once and no order exists that was not acknowledged; api.integrity_report()
passes; the server's workers are the ones that started (none died) and each one's RSS grew by
less than 50 % between the end of the warm-up and the end. A summary table is printed (requests by route and status,
orders by status, RSS per worker).

    MK_SOAK_SECONDS=60 .venv/bin/python -m pytest tests/slow/test_soak.py -m slow -s
With MK_VIA_PGBOUNCER=1 the app reaches the database through PgBouncer (tests/support/pgbouncer.py).
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from tests.support import pgbouncer
from tests.support.http_server import ROOT, WEBHOOK_SECRET, HttpServer, seed_webhook_secret
from tests.support.invariants import assert_invariants
from tests.support.pg import APP_ROLE

pytestmark = pytest.mark.slow

SECONDS = int(os.environ.get("MK_SOAK_SECONDS", "300"))
BUYERS = 10
HOT, COLD = 3, 30
HOT_STOCK, COLD_STOCK = 3, 100_000
RESTOCK_BELOW, RESTOCK_BY = 2, 4
RSS_GROWTH_LIMIT = 1.5
PASSWORD = "soak-password-2026"
ADDRESS = {"street": "Calle Alcalá 1", "city": "Madrid", "zip": "28014"}


# ---------------------------------------------------------------- bookkeeping


class Books:
    """What the clients saw, shared by the threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: collections.Counter = collections.Counter()  # (route, status)
        self.errors: list[str] = []  # transport errors and 5xx, with a sample of the body
        self.acked: collections.Counter = collections.Counter()  # order id -> non-replayed 201s
        self.replays_ok = 0
        self.restocked: collections.Counter = collections.Counter()
        self.failures: list[str] = []  # broken expectations seen by the clients

    def note(self, route: str, status, text: str = "") -> None:
        with self.lock:
            self.requests[(route, status)] += 1
            if status == "ERR" or (isinstance(status, int) and status >= 500):
                if len(self.errors) < 50:
                    self.errors.append(f"{route} -> {status}: {text[:300]}")

    def fail(self, what: str) -> None:
        with self.lock:
            if len(self.failures) < 50:
                self.failures.append(what)


class Client:
    def __init__(self, base: str, books: Books, headers: dict | None = None):
        self.base, self.books = base, books
        self.s = requests.Session()
        if headers:
            self.s.headers.update(headers)

    def call(self, method: str, route: str, path: str, **kw) -> requests.Response | None:
        try:
            r = self.s.request(method, self.base + path, timeout=30, **kw)
        except requests.RequestException as exc:
            self.books.note(route, "ERR", repr(exc))
            return None
        self.books.note(route, r.status_code, r.text if r.status_code >= 500 else "")
        return r


def login(base: str, role: str, tag: str) -> dict:
    email = f"soak-{tag}-{uuid.uuid4().hex[:8]}@example.com"
    r = requests.post(base + "/api/auth/register",
                      json={"email": email, "password": PASSWORD, "name": f"Soak {tag}", "role": role}, timeout=30)
    assert r.status_code == 201, r.text
    r = requests.post(base + "/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["token"]}


def signed(body: dict) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    ts = int(time.time())
    sig = hmac.new(WEBHOOK_SECRET.encode(), f"{ts}.".encode() + raw, hashlib.sha256).hexdigest()
    return raw, {"X-Signature-Timestamp": str(ts), "X-Signature": sig, "Content-Type": "application/json"}


# ---------------------------------------------------------------- server workers


def worker_pids(master: int) -> list[int]:
    try:
        text = Path(f"/proc/{master}/task/{master}/children").read_text()
        return sorted(int(p) for p in text.split())
    except OSError:
        pids = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == master:
                    pids.append(int(d.name))
        return sorted(pids)


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# ---------------------------------------------------------------- the actors


def seller_loop(c: Client, books: Books, hot: list[str], cold: list[str], stop: threading.Event) -> None:
    rng = random.Random(1)
    while not stop.is_set():
        for pid in hot:
            r = c.call("GET", "GET /products/{id}", f"/api/marketplace/products/{pid}")
            if r is None or r.status_code != 200:
                continue
            if r.json()["stock"] < RESTOCK_BELOW:
                p = c.call("PATCH", "PATCH /products/{id}", f"/api/marketplace/products/{pid}",
                           headers={"If-Match": r.headers["ETag"]}, json={"stockDelta": RESTOCK_BY})
                if p is not None and p.status_code == 200:
                    with books.lock:
                        books.restocked[pid] += RESTOCK_BY
                elif p is not None and p.status_code != 409:
                    books.fail(f"restock {pid}: {p.status_code} {p.text[:200]}")
        if rng.random() < 0.1:  # a price edit on a cold product, with a stale version now and then
            pid = rng.choice(cold)
            r = c.call("GET", "GET /products/{id}", f"/api/marketplace/products/{pid}")
            if r is not None and r.status_code == 200:
                etag = r.headers["ETag"] if rng.random() < 0.8 else '"1"'
                c.call("PATCH", "PATCH /products/{id}", f"/api/marketplace/products/{pid}",
                       headers={"If-Match": etag}, json={"price": rng.choice([9.5, 10, 12.25])})
        stop.wait(0.05)


def browser_loop(c: Client, books: Books, products: list[str], stop: threading.Event) -> None:
    rng = random.Random(2)
    etags: dict[str, str] = {}
    while not stop.is_set():
        after = None
        for _ in range(3):
            r = c.call("GET", "GET /products", "/api/marketplace/products",
                       params={"limit": 10, **({"after": after} if after else {})})
            if r is None or r.status_code != 200:
                break
            after = r.json()["next"]
            if not after:
                break
        for pid in rng.sample(products, 3):
            h = {"If-None-Match": etags[pid]} if pid in etags and rng.random() < 0.5 else {}
            r = c.call("GET", "GET /products/{id}", f"/api/marketplace/products/{pid}", headers=h)
            if r is not None and r.status_code == 200:
                etags[pid] = r.headers["ETag"]
        c.call("GET", "GET /health", "/health")
        stop.wait(0.01)


def buyer_loop(i: int, c: Client, hook: Client, books: Books, hot: list[str], cold: list[str],
               stop: threading.Event) -> None:
    rng = random.Random(100 + i)
    while not stop.is_set():
        # browse
        c.call("GET", "GET /products", "/api/marketplace/products", params={"limit": 20})
        for pid in rng.sample(cold, 2) + [rng.choice(hot)]:
            c.call("GET", "GET /products/{id}", f"/api/marketplace/products/{pid}")
        # cart: add two or three lines, change one, maybe drop one
        lines = rng.sample(cold, rng.randint(1, 2)) + ([rng.choice(hot)] if rng.random() < 0.5 else [])
        for pid in lines:
            c.call("POST", "POST /cart/items", "/api/marketplace/cart/items",
                   json={"productId": pid, "quantity": rng.randint(1, 2)})
        c.call("PATCH", "PATCH /cart/items/{id}", f"/api/marketplace/cart/items/{rng.choice(lines)}",
               json={"quantity": 1})
        if rng.random() < 0.3:
            c.call("DELETE", "DELETE /cart/items/{id}", f"/api/marketplace/cart/items/{rng.choice(lines)}")
        c.call("GET", "GET /cart", "/api/marketplace/cart")
        if rng.random() < 0.2:  # abandons the cart for now
            continue
        # checkout, half of them with an idempotency key
        key = uuid.uuid4().hex if rng.random() < 0.5 else None
        h = {"Idempotency-Key": key} if key else {}
        r = c.call("POST", "POST /checkout", "/api/marketplace/checkout", headers=h,
                   json={"shippingAddress": ADDRESS})
        if r is None:
            continue
        if r.status_code == 400 and r.json().get("code") == "INSUFFICIENT_STOCK":
            for short in r.json().get("products", []):  # the cart stays: drop what is short
                c.call("DELETE", "DELETE /cart/items/{id}", f"/api/marketplace/cart/items/{short['productId']}")
            continue
        if r.status_code != 201:
            continue
        order = r.json()
        with books.lock:
            books.acked[order["id"]] += 1
        if key and rng.random() < 0.3:
            again = c.call("POST", "POST /checkout", "/api/marketplace/checkout", headers=h,
                           json={"shippingAddress": ADDRESS})
            if again is not None and again.status_code == 201:
                if again.json()["id"] != order["id"] or again.headers.get("Idempotent-Replayed") != "true":
                    books.fail(f"replay of {order['id']} gave {again.json()['id']} {dict(again.headers)}")
                else:
                    with books.lock:
                        books.replays_ok += 1
            elif again is not None:
                books.fail(f"replay of {order['id']}: {again.status_code} {again.text[:200]}")
        # then: pay, fail to pay (and maybe pay later), cancel, or leave it to expire
        fate = rng.random()
        outcomes = (["succeeded"] if fate < 0.45 else ["failed"] if fate < 0.55
                    else ["failed", "succeeded"] if fate < 0.65 else [])
        for outcome in outcomes:
            raw, sh = signed({"orderId": order["id"], "status": outcome, "reference": uuid.uuid4().hex})
            hook.call("POST", "POST /payments/webhook", "/api/marketplace/payments/webhook", data=raw, headers=sh)
        if 0.65 <= fate < 0.8:
            c.call("POST", "POST /orders/{id}/cancel", f"/api/marketplace/orders/{order['id']}/cancel")
        if rng.random() < 0.3:
            c.call("GET", "GET /orders", "/api/marketplace/orders")
            c.call("GET", "GET /orders/{id}", f"/api/marketplace/orders/{order['id']}")
        stop.wait(rng.uniform(0, 0.01))


# ---------------------------------------------------------------- the test


def _table(headers: list[str], rows: list[tuple]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*map(str, r)) for r in rows])


def test_soak_mixed_traffic(server, capsys):
    dbname = server.fresh_database()
    owner_url, app_url = server.url(dbname), server.url(dbname, user=APP_ROLE)
    bouncer = srv = expirer = None
    books, stop = Books(), threading.Event()
    threads: list[threading.Thread] = []
    tmp = Path(tempfile.mkdtemp(prefix="mk-soak-"))
    log = None
    try:
        # The buyers leave a third of their orders unpaid, many at a time: lift the per-buyer
        # unpaid-order limit (default 3) as the owner, as `python -m pyapp limits` would.
        with psycopg.connect(owner_url, autocommit=True) as conn:
            conn.execute("""SELECT api.set_limits('{"maxUnpaidOrders": null}')""")
        seed_webhook_secret(owner_url)  # the key the buyers' payment webhooks are signed with
        env = {}
        if pgbouncer.enabled():
            pgbouncer.set_role_timeouts(owner_url)
            bouncer = pgbouncer.PgBouncer(server_port(owner_url), pool_size=8).start()
            app_url, env = bouncer.url(dbname), pgbouncer.app_env()
        srv = HttpServer(app_url, **env).start()
        master = srv.proc.pid
        boot = {p: rss_kb(p) for p in worker_pids(master)}
        assert len(boot) == 2, boot

        seller = login(srv.url, "SELLER", "seller")
        buyers = [login(srv.url, "BUYER", f"b{i}") for i in range(BUYERS)]
        sc = Client(srv.url, books, seller)
        initial: dict[str, int] = {}
        hot, cold = [], []
        for n in range(HOT + COLD):
            stock = HOT_STOCK if n < HOT else COLD_STOCK
            r = sc.call("POST", "POST /products", "/api/marketplace/products",
                        json={"name": f"Soak {n}", "price": 10 + n, "stock": stock})
            assert r is not None and r.status_code == 201, r and r.text
            (hot if n < HOT else cold).append(r.json()["id"])
            initial[r.json()["id"]] = stock

        log = open(tmp / "expire.out", "wb")
        expirer = subprocess.Popen([sys.executable, "-m", "pyapp", "expire-orders", "--every", "2"],
                                   cwd=ROOT, env={**os.environ, "DATABASE_URL": owner_url},
                                   stdout=log, stderr=subprocess.STDOUT)

        threads.append(threading.Thread(target=seller_loop, args=(sc, books, hot, cold, stop), name="seller"))
        threads.append(threading.Thread(target=browser_loop, args=(Client(srv.url, books), books, hot + cold, stop),
                                        name="browser"))
        for i, h in enumerate(buyers):
            threads.append(threading.Thread(target=buyer_loop, name=f"buyer{i}",
                                            args=(i, Client(srv.url, books, h), Client(srv.url, books), books,
                                                  hot, cold, stop)))
        started = time.monotonic()
        for t in threads:
            t.start()

        warm_at = started + max(5.0, SECONDS * 0.1)
        warm: dict[int, int | None] = {}
        samples: list[tuple[int, dict]] = []
        backdated = 0
        next_sample = started
        with psycopg.connect(owner_url, autocommit=True) as conn:
            while time.monotonic() - started < SECONDS:
                time.sleep(2)
                # a few unpaid orders become older than the 30-minute hold: the worker expires them
                backdated += conn.execute('''
                    UPDATE "Order" SET "createdAt" = "createdAt" - interval '31 minutes'
                    WHERE id IN (SELECT id FROM "Order"
                                 WHERE status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED')
                                   AND "createdAt" > now() - interval '30 minutes'
                                   AND "createdAt" < now() - interval '3 seconds'
                                 ORDER BY random() LIMIT 5)''').rowcount
                now = time.monotonic()
                if not warm and now >= warm_at:
                    warm = {p: rss_kb(p) for p in worker_pids(master)}
                if now >= next_sample:
                    samples.append((int(now - started), {p: rss_kb(p) for p in worker_pids(master)}))
                    next_sample = now + max(10.0, SECONDS / 10)
                assert expirer.poll() is None, (tmp / "expire.out").read_text()[-2000:]
                assert srv.proc.poll() is None, "the server exited"
        stop.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a client thread did not stop"
        elapsed = time.monotonic() - started
        end = {p: rss_kb(p) for p in worker_pids(master)}
        samples.append((int(elapsed), end))
        # ------------------------------------------------ the books
        with psycopg.connect(owner_url, autocommit=True) as conn:
            deadline = time.monotonic() + 20  # the worker's passes after the last backdating
            while time.monotonic() < deadline and conn.execute(
                    """SELECT count(*) FROM "Order" WHERE status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED')
                       AND "createdAt" < now() - interval '30 minutes'""").fetchone()[0]:
                time.sleep(0.5)
            time.sleep(0.5)  # let the worker print its pass
            stocks = assert_invariants(conn, initial=initial, restocked=dict(books.restocked))
            db_orders = dict(conn.execute('SELECT id, status FROM "Order"').fetchall())
            by_status = conn.execute('SELECT status, count(*) FROM "Order" GROUP BY 1 ORDER BY 1').fetchall()
            reasons = conn.execute('SELECT reason, count(*), sum(delta) FROM "StockLedger" GROUP BY 1 ORDER BY 1'
                                   ).fetchall()
            report = conn.execute("SELECT check_name, ok, detail FROM api.integrity_report()").fetchall()
        expired_lines = [ln for ln in (tmp / "expire.out").read_text().splitlines() if "expire-orders:" in ln]
        expired = int(expired_lines[-1].split("total ")[1].rstrip(")")) if expired_lines else 0

        total = sum(books.requests.values())
        routes = sorted({r for r, _ in books.requests})
        statuses = sorted({s for _, s in books.requests}, key=str)
        rows = [(r, *[books.requests.get((r, s), "") for s in statuses], sum(books.requests[(r, s)] for s in statuses))
                for r in routes]
        rss_rows = []
        for p in sorted(end):
            series = " ".join(f"{t}s:{(s.get(p) or 0) // 1024}" for t, s in samples)
            rss_rows.append((p, (boot.get(p) or 0) // 1024, (warm.get(p) or 0) // 1024, (end[p] or 0) // 1024, series))
        with capsys.disabled():
            print(f"\n\nsoak: {elapsed:.0f} s, {total} requests ({total / elapsed:.0f}/s), "
                  f"{len(books.acked)} orders acknowledged, {books.replays_ok} idempotent replays, "
                  f"{backdated} orders backdated, {expired} expired by the worker, "
                  f"restocked {sum(books.restocked.values())} units"
                  + (" (through PgBouncer)" if bouncer else ""))
            print(_table(["route", *map(str, statuses), "total"], rows))
            print()
            print(_table(["order status", "orders"], by_status))
            print()
            print(_table(["ledger reason", "rows", "units"], reasons))
            print()
            print(_table(["worker pid", "RSS MiB boot", "after warm-up", "end", "samples (s:MiB)"], rss_rows))
            print("hot products' stock at the end:", [stocks[p] for p in hot])

        assert not books.errors, books.errors[:10]
        assert not books.failures, books.failures[:10]
        assert sum(1 for (_r, s) in books.requests if isinstance(s, int) and s >= 500) == 0
        # Checkouts contend only for stock (the unpaid-order limit is lifted): a short product is a
        # 400, never a conflict.
        assert books.requests[("POST /checkout", 409)] == 0, books.requests[("POST /checkout", 409)]
        # every acknowledged order exists exactly once, and no order exists that nobody was told of
        assert all(n == 1 for n in books.acked.values()), [o for o, n in books.acked.items() if n != 1]
        missing = [o for o in books.acked if o not in db_orders]
        assert not missing, missing[:10]
        assert len(db_orders) == len(books.acked), (len(db_orders), len(books.acked))
        statuses_seen = {s for s, _ in by_status}
        assert {"PAID", "CANCELLED"} <= statuses_seen, by_status
        assert backdated > 0 and expired > 0, (backdated, expired)
        assert sum(books.restocked.values()) > 0, "the hot products were never restocked"
        assert all(ok for _, ok, _ in report), report
        # workers: none replaced, memory stable after warm-up
        assert sorted(end) == sorted(boot), (boot, end)
        grown = {p: (warm[p], end[p]) for p in end if end[p] > RSS_GROWTH_LIMIT * warm[p]}
        assert not grown, f"worker RSS grew by more than 50 % (kB warm, end): {grown}"
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        if expirer is not None and expirer.poll() is None:
            expirer.terminate()
            try:
                expirer.wait(15)
            except subprocess.TimeoutExpired:
                expirer.kill()
                expirer.wait(5)
        if srv is not None:
            srv.stop()
        if bouncer is not None:
            bouncer.stop()
        if log is not None:
            log.close()
        shutil.rmtree(tmp, ignore_errors=True)
        server.drop_database(dbname)


def server_port(url: str) -> int:
    return pgbouncer.target_of(url)[1]
