"""`python -m pyapp simulate-race`: the deployment checklist's race test against a running server.

As the owner (DATABASE_URL, or the project's own cluster), it makes a product with stock 1 and N
buyers with it in their cart, each with a bearer token; then all N check out over HTTP at once.
Exit 0 when exactly one buyer got it (one 201, stock 0, one order, every other answer 400 or 409),
1 otherwise, 2 with fewer than 2 buyers, 3 (from pyapp.__main__) when the server or the database
cannot be reached. It holds the small HTTP client
that smoke and deploy use too (`_http`).
"""
from __future__ import annotations

import json
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import psycopg

from pyapp import config
from pyapp.cli.tables import print_table
from pyapp.db import calls
from pyapp.db import ops_calls as ops
from pyapp.db.calls import Session
from pyapp.db.runtime import database


def _http(method: str, url: str, body=None, token=None, timeout=30.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b"null")
        except ValueError:
            return e.code, {"raw": raw[:200].decode("utf-8", "replace")}


def _reachable(base: str) -> None:
    """Raises URLError (exit 3) when nothing answers HTTP at `base`; any status will do."""
    try:
        urllib.request.urlopen(f"{base}/health", timeout=10).close()
    except urllib.error.HTTPError:
        pass


def _prepare_race(conn: psycopg.Connection, run: str, buyers: int) -> tuple[str, list[str]]:
    """As the owner, in one transaction: a seller, a product with stock 1, and `buyers` buyers,
    each with a bearer token and the product in the cart. Not over HTTP: sign-up is limited per
    client and every login costs a deliberately slow password hash. One hash serves every account
    (of a random password nobody knows); the tokens expire in an hour."""
    from pyapp.auth import hash_password, new_token, token_hash

    pw_hash = hash_password(secrets.token_urlsafe(24))
    db = Session(conn)

    def user(tag: str, role: str) -> str:
        return calls.create_user(db, f"race-{run}-{tag}@example.com", f"Race {tag}", pw_hash, role)["id"]

    with conn.transaction():
        seller = user("seller", "SELLER")
        product = ops.create_product_defaults(db, seller, f"Last unit {run}", 99, 1)["id"]
        tokens = []
        for i in range(buyers):
            buyer, token = user(f"b{i}", "BUYER"), new_token()
            ops.issue_token(db, buyer, token_hash(token), "1 hour")
            ops.add_to_cart_for(db, buyer, product, 1)
            tokens.append(token)
    return product, tokens


def simulate_race(args) -> int:
    if args.buyers < 2:
        print("pyapp: a race needs at least 2 buyers", file=sys.stderr)
        return 2
    base = (args.url or config.server_url()).rstrip("/")
    _reachable(base)
    run = uuid.uuid4().hex[:8]
    with database() as db, psycopg.connect(db.owner_url, autocommit=True) as conn:
        print(f"simulate-race: preparing a product with stock 1 and {args.buyers} buyers with it in their cart",
              flush=True)
        product, tokens = _prepare_race(conn, run, args.buyers)
        barrier = threading.Barrier(len(tokens))
        results: list[int | str] = ["no answer"] * len(tokens)

        def buy(i: int) -> None:
            barrier.wait()
            try:
                results[i], _ = _http("POST", f"{base}/api/marketplace/checkout",
                                      {"shippingAddress": {"city": "Oaxaca"}}, tokens[i], timeout=60)
            except (urllib.error.URLError, OSError):
                pass

        threads = [threading.Thread(target=buy, args=(i,)) for i in range(len(tokens))]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        row = ops.stock_and_orders(Session(conn), product)
    assert row is not None, "the race's product was made in this run"
    stock, orders = row
    counts = {s: results.count(s) for s in sorted(set(results), key=str)}
    print_table(["status", "responses"], [(s, n) for s, n in counts.items()])
    print(f"simulate-race: product {product}: {len(tokens)} checkouts in {elapsed:.2f} s; "
          f"stock now {stock}, {orders} order(s)")
    if counts.get(401) == len(tokens):
        print(f"simulate-race: the server at {base} knows none of the tokens: does it serve the database "
              "of DATABASE_URL (or the project's own cluster)?", file=sys.stderr)
    ok = counts.get(201, 0) == 1 and stock == 0 and orders == 1 and set(counts) <= {201, 400, 409}
    print("simulate-race: PASS (exactly one buyer got the last unit)" if ok else "simulate-race: FAIL")
    return 0 if ok else 1
