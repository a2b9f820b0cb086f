"""`python -m pyapp smoke --url URL`: a checkout over HTTP against a running server, safe in
production.

As the owner (DATABASE_URL, or the project's own cluster) it takes the smoke test's fixture,
made on first use and reused after (api.smoke_prepare: an account nobody can log in as, and its
unlisted product of 1000 units with maxPerBuyer 1), and mints a 10-minute token for the account
(api.issue_token). Over HTTP, as that account, it then reads the product, checks that the
catalogue does not list it, adds it to the cart, checks out, and cancels; between the steps it
checks the order (201, status, total, items, "smoke": true), the stock (down by one, then back)
and the ledger (the order's CHECKOUT row, then its CANCEL row) in the database. It leaves
everything as it was: the order cancelled, the stock as before, the token revoked. The smoke
account's orders count nowhere (report, alerts, /metrics, the dashboard) and its checkouts are
counted apart (mk_checkout_total{outcome="smoke"}).

Exit 0 every check passed; 1 a check failed (each printed, the failed ones marked FAILED),
maintenance mode is on (a smoke run must check out, which maintenance forbids), or another smoke
run holds the fixture; 3 the server or the database could not be reached. deploy runs the same
checks through run().
"""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg

from pyapp.cli.race import _http
from pyapp.db import ops_calls as ops
from pyapp.db import registry
from pyapp.db.calls import Session
from pyapp.db.runtime import database

ADDRESS = {"name": "Smoke test", "line1": "python -m pyapp smoke", "city": "Nowhere"}
TOKEN_TTL = "10 minutes"
LOCK = "pyapp smoke"  # one smoke run at a time: a second would take the first one's unit
MAINTENANCE = ("maintenance mode is on: writes answer 503, so smoke cannot check out. "
               "End it first (python -m pyapp maintenance off), then run smoke again.")


class Stop(Exception):
    """A check failed that the next steps depend on."""


@dataclass
class Run:
    base: str
    conn: psycopg.Connection
    out: Callable[[str], None] = print
    checks: list = field(default_factory=list)
    user: str = ""
    product: str = ""
    price: Decimal = Decimal(0)
    token: str = ""
    token_hash: str = ""
    order: str | None = None
    cancelled: bool = False

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append((name, ok, detail))
        self.out(f"  {'ok' if ok else 'FAILED':<7} {name}: {detail}")
        return ok

    def require(self, name: str, ok: bool, detail: str) -> None:
        if not self.check(name, ok, detail):
            raise Stop(name)

    def http(self, method: str, path: str, body=None):
        return _http(method, self.base + path, body, self.token, timeout=30)

    @property
    def db(self) -> Session:
        return Session(self.conn)

    @property
    def failed(self) -> list[str]:
        return [n for n, ok, _ in self.checks if not ok]


def _money(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _problem(status: int, body) -> str:
    detail = body.get("detail") or body.get("title") if isinstance(body, dict) else None
    code = body.get("code") if isinstance(body, dict) else None
    return f"HTTP {status}" + (f" {code}" if code else "") + (f": {detail}" if detail else "")


def _answered(run: Run, name: str, status: int, body, expected: int) -> None:
    """Requires `expected`; explains a 503 (maintenance) and a 401 (another database) plainly."""
    if status == 503 and isinstance(body, dict) and body.get("code") == "MAINTENANCE":
        run.require(name, False, MAINTENANCE)
    if status == 401:
        run.require(name, False, "the server does not know the smoke token: does it serve the database "
                                 "of DATABASE_URL (or the project's own cluster)?")
    if status != expected:
        run.require(name, False, f"expected HTTP {expected}, got {_problem(status, body)}")


def _stock(run: Run) -> int:
    stock = ops.product_stock(run.db, run.product)
    assert stock is not None, "the smoke product exists once prepare() has run"
    return stock


def _ledger(run: Run, reason: str) -> list[int]:
    return ops.ledger_deltas(run.db, run.order, run.product, reason)


def prepare(run: Run) -> int:
    """The fixture and a token; returns the product's stock before the run."""
    from pyapp.auth import new_token, token_hash

    if not ops.try_advisory_lock(run.db, LOCK):
        run.require("fixture", False, "another smoke run is in progress; try again when it has finished")
    try:
        fx = ops.smoke_prepare(run.db)
    except psycopg.Error as exc:
        if registry.code_of(run.conn, exc) == "MAINTENANCE":
            run.require("fixture", False, MAINTENANCE)
        raise
    run.user, run.product, run.price = fx["userId"], fx["productId"], _money(fx["price"])
    run.check("fixture", True, f"account {run.user}, product {run.product} "
                               f"({'made now' if fx['created'] else 'reused'}; stock {fx['stock']}"
                               + (f"; cancelled {fx['cleanedUp']} order(s) an earlier run left open" if fx["cleanedUp"] else "")
                               + ")")
    run.token = new_token()
    run.token_hash = token_hash(run.token)
    ops.issue_token(run.db, run.user, run.token_hash, TOKEN_TTL)
    return fx["stock"]


def catalogue(run: Run, before: int) -> None:
    status, body = run.http("GET", f"/api/marketplace/products/{urllib.parse.quote(run.product)}")
    _answered(run, "product readable by id", status, body, 200)
    run.require("product readable by id", body.get("stock") == before,
                f"GET answered stock {body.get('stock')}, the database holds {before}")
    # The listing is in id order: the first listed product after the smoke product's predecessor
    # would be the smoke product if it were listed. One small page, whatever the catalogue's size.
    pred = ops.product_before(run.db, run.product)
    query = "?limit=1" + (f"&after={urllib.parse.quote(pred)}" if pred is not None else "")
    status, body = run.http("GET", f"/api/marketplace/products{query}")
    _answered(run, "product unlisted", status, body, 200)
    listed = [i.get("id") for i in body.get("items", [])]
    run.require("product unlisted", run.product not in listed, "GET /api/marketplace/products leaves it out")


def checkout(run: Run, before: int) -> None:
    status, body = run.http("POST", "/api/marketplace/cart/items", {"productId": run.product, "quantity": 1})
    _answered(run, "add to cart", status, body, 201)
    run.check("add to cart", True, "HTTP 201")
    status, body = run.http("POST", "/api/marketplace/checkout", {"shippingAddress": ADDRESS})
    if status == 201 and isinstance(body, dict):
        run.order = body.get("id")
    _answered(run, "checkout", status, body, 201)
    run.check("checkout", True, f"HTTP 201, order {run.order}")
    items = [(i.get("productId"), i.get("quantity"), _money(i.get("unitPrice"))) for i in body.get("items", [])]
    run.check("order status", body.get("status") == "PENDING_PAYMENT", f"{body.get('status')} (expected PENDING_PAYMENT)")
    total = _money(body.get("total", -1))
    run.check("order total", total == run.price, f"{total} (expected {run.price})")
    lines = "; ".join(f"{q} x {p} at {u}" for p, q, u in items[:3])
    run.check("order items", items == [(run.product, 1, run.price)],
              f"{len(items)} line(s): {lines} (expected 1 x {run.product} at {run.price})")
    run.check("order marked smoke", body.get("smoke") is True,
              f"\"smoke\": {json.dumps(body.get('smoke'))} (expected true)")
    after = _stock(run)
    run.check("stock taken", after == before - 1, f"{before} -> {after} (expected {before - 1})")
    ledger = _ledger(run, "CHECKOUT")
    run.check("ledger CHECKOUT", ledger == [-1], f"CHECKOUT rows of the order: {ledger} (expected [-1])")


def cancel(run: Run, before: int) -> None:
    assert run.order is not None, "cancel runs after a checkout made an order"
    status, body = run.http("POST", f"/api/marketplace/orders/{urllib.parse.quote(run.order)}/cancel")
    _answered(run, "cancel", status, body, 200)
    run.cancelled = True
    run.check("cancel", body.get("status") == "CANCELLED", f"HTTP 200, status {body.get('status')}")
    after = _stock(run)
    run.check("stock returned", after == before, f"{after} (expected {before}, as before the run)")
    ledger = _ledger(run, "CANCEL")
    run.check("ledger CANCEL", ledger == [1], f"CANCEL rows of the order: {ledger} (expected [1])")


def cleanup(run: Run, before: int | None) -> None:
    """Leaves things as they were, whatever failed: the order cancelled, the cart empty, the
    token revoked (as the owner; a failure here is reported, never raised)."""
    if not run.user:
        return
    try:
        if run.order and not run.cancelled:
            if ops.order_status(run.db, run.order) in ("PENDING_PAYMENT", "PAYMENT_FAILED", "PAID"):
                ops.cancel_order_for(run.db, run.order, "SMOKE_CLEANUP")
                run.out(f"  cleanup: cancelled order {run.order} as the owner")
        ops.clear_cart(run.db, run.user)
        if run.token_hash:
            ops.revoke_token(run.db, run.token_hash)
        if before is not None:
            after = _stock(run)
            run.check("left as it was", after == before, f"stock {after} (before the run: {before})")
    except psycopg.Error as exc:
        run.check("left as it was", False, f"cleanup failed ({exc.sqlstate}): {str(exc).splitlines()[0]}; "
                                           "the next smoke run cancels what is left")


def run(owner_url: str, base: str, out=print) -> tuple[int, list[str]]:
    """Every check against the server at `base`; returns (exit code, names of the failed checks).
    Raises URLError (exit 3) when the server cannot be reached at the start."""
    base = base.rstrip("/")
    _, health = _http("GET", base + "/health", timeout=10)  # URLError: unreachable
    if isinstance(health, dict) and health.get("maintenance") is True:
        out(f"  FAILED  maintenance: {MAINTENANCE}")
        return 1, ["maintenance"]
    code = None
    with psycopg.connect(owner_url, autocommit=True) as conn:
        r = Run(base=base, conn=conn, out=out)
        before = None
        try:
            before = prepare(r)
            catalogue(r, before)
            checkout(r, before)
            cancel(r, before)
        except Stop:
            pass
        except (urllib.error.URLError, OSError) as exc:
            r.check("server", False, f"stopped answering: {getattr(exc, 'reason', exc)}")
            code = 3
        finally:
            cleanup(r, before)
    return (code or (1 if r.failed else 0)), r.failed


def smoke(args) -> int:
    print(f"smoke: checkout and cancel of the smoke test's product at {args.url}", flush=True)
    with database() as db:
        code, failed = run(db.owner_url, args.url)
    if code == 0:
        print("smoke: PASS (checked out and cancelled; stock and ledger as before)")
    else:
        print(f"smoke: FAIL ({', '.join(failed)})", file=sys.stderr)
    return code
