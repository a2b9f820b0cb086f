"""HTTP routes: each parses the request's shape, calls one api function (authentication nested
into the same statement) and renders its result. Connections, retries, errors and JSON are the
business of pyapp.web.ApiPlugin."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from pathlib import Path

import bottle
import psycopg
from bottle import request, response

from pyapp import auth, config, openapi, web
from pyapp.metrics import multiprocess_dir
from pyapp.web import Problem, field, json_body, query_int, query_str

app = bottle.Bottle(catchall=True)
app.config["json.enable"] = False
app.install(web.ApiPlugin())
app.default_error_handler = web.error_handler

WEBHOOK_MAX_AGE_S = 300
_ETAG_RE = re.compile(r'^\s*(?:W/)?"?([0-9]{1,10})"?\s*$')


def token() -> str | None:
    return auth.bearer_hash(request.get_header("Authorization"))


def _etag(doc: dict) -> None:
    response.set_header("ETag", f'"{doc["version"]}"')


# ---------------------------------------------------------------- auth


@app.post("/api/auth/register")
def register(db):
    body = json_body()
    email, name = field(body, "email", "str", max_len=254), field(body, "name", "str", max_len=200)
    password = field(body, "password", "str", max_len=auth.MAX_PASSWORD)
    role = field(body, "role", "str", required=False, max_len=20) or "BUYER"
    if len(password) < 8:
        raise web.bad_request("password must be 8 to 1024 characters", "password")
    user = db.one("SELECT api.register_user(%s, %s, %s, %s)", (email, name, auth.hash_password(password), role))
    response.status = 201
    return user


def _retry_after(exc: psycopg.Error) -> str:
    try:
        return str(max(1, int(json.loads(exc.diag.message_detail or "{}")["retryAfter"])))
    except (ValueError, TypeError, KeyError):
        return "60"


@app.post("/api/auth/login")
def login(db):
    body = json_body()
    email = field(body, "email", "str", max_len=254)
    password = field(body, "password", "str", max_len=auth.MAX_PASSWORD)
    # Throttled per email and per client before any password is checked (MKT29: 429). The address
    # is the socket peer, never X-Forwarded-For (bottle's request.remote_addr), which anyone sets.
    # The attempt counts as a failure until api.issue_token clears it, so a failure costs no call.
    try:
        row = db.row("SELECT user_id, role, password_hash FROM api.begin_login(%s, %s)",
                     (email, request.environ.get("REMOTE_ADDR") or ""))
    except psycopg.Error as exc:
        if exc.sqlstate == "MKT29":  # the plugin renders the problem; the header is HTTP's own
            response.set_header("Retry-After", _retry_after(exc))
        raise
    db.release()  # no connection held while scrypt runs
    ok = auth.verify_password(password, row[2] if row else auth.DUMMY_HASH)
    if not (ok and row):
        raise Problem(401, "UNAUTHENTICATED", "Authentication required", "invalid email or password")
    tok = auth.new_token()
    issued = db.one("SELECT api.issue_token(%s, %s, %s::interval)", (row[0], auth.token_hash(tok), auth.TOKEN_TTL))
    return {"token": tok, "tokenType": "Bearer", "expiresAt": issued["expiresAt"],
            "userId": row[0], "role": row[1]}


@app.post("/api/auth/logout")
def logout(db):
    return db.one("SELECT api.revoke_token(%(t)s) FROM api.authenticate(%(t)s)", {"t": token()})


# ---------------------------------------------------------------- products


@app.get("/api/marketplace/products")
def list_products(db):
    return db.one("SELECT api.list_products(%s, %s)", (query_int("limit", 50), query_str("after")))


@app.get("/api/marketplace/products/<product_id>")
def get_product(db, product_id):
    product = db.one("SELECT api.get_product(%s)", (product_id,))
    _etag(product)
    if request.get_header("If-None-Match", "").strip() == f'"{product["version"]}"':
        response.status = 304
        return ""
    return product


@app.post("/api/marketplace/products")
def create_product(db):
    body = json_body()
    product = db.one(
        "SELECT api.create_product(api.authenticate(%s, 'SELLER'), %s, %s::numeric, %s::integer, %s)",
        (token(), field(body, "name", "str"), field(body, "price", "number"), field(body, "stock", "int"),
         field(body, "description", "str", required=False) or ""))
    response.status = 201
    response.set_header("Location", f"/api/marketplace/products/{product['id']}")
    _etag(product)
    return product


@app.route("/api/marketplace/products/<product_id>", method="PATCH")
def update_product(db, product_id):
    body = json_body()
    if_match = request.get_header("If-Match")
    if if_match is not None:
        m = _ETAG_RE.match(if_match)
        if not m:
            raise web.bad_request('If-Match must be an ETag such as "3"', "If-Match")
        version = int(m.group(1))
    elif "version" in body:
        version = field(body, "version", "int")
    else:
        raise Problem(428, "PRECONDITION_REQUIRED", "Precondition required",
                      'send If-Match: "<version>" or "version" in the body (read the product first)')
    # The body goes to SQL as jsonb unchanged (exact numbers); "version" is not a change.
    product = db.one("SELECT api.update_product(%s, %s::integer, %s::jsonb - 'version', api.authenticate(%s, 'SELLER'))",
                     (product_id, version, web.body_text(), token()))
    _etag(product)
    return product


# ---------------------------------------------------------------- cart


@app.get("/api/marketplace/cart")
def get_cart(db):
    return db.one("SELECT api.get_cart(api.authenticate(%s))", (token(),))


@app.post("/api/marketplace/cart/items")
def add_to_cart(db):
    body = json_body()
    line = db.one("SELECT api.add_to_cart(api.authenticate(%s), %s, %s::integer)",
                  (token(), field(body, "productId", "str", max_len=200), field(body, "quantity", "int")))
    response.status = 201
    return line


@app.route("/api/marketplace/cart/items/<product_id>", method="PATCH")
def set_cart_quantity(db, product_id):
    body = json_body()
    return db.one("SELECT api.set_cart_quantity(api.authenticate(%s), %s, %s::integer)",
                  (token(), product_id, field(body, "quantity", "int")))


@app.delete("/api/marketplace/cart/items/<product_id>")
def remove_from_cart(db, product_id):
    return db.one("SELECT api.remove_from_cart(api.authenticate(%s), %s)", (token(), product_id))


# ---------------------------------------------------------------- checkout and orders


@app.post("/api/marketplace/checkout", metric="checkout")
def checkout(db):
    body = json_body()
    field(body, "shippingAddress", "object")
    # The order goes out as the text PostgreSQL made of it: on the busiest route, parsing the
    # jsonb into Python only to serialise it again would be wasted work.
    # A checkout that queued for a product may have committed without waiting for the disk
    # (mk.release_early, set on the pool's connections), so that the next buyer gets the product
    # sooner; it says so in mk.flush_pending, and then the 201 waits for the flush.
    text, order_id, replayed, flush_pending = db.row(
        "SELECT o::text, o ->> 'id', o -> 'replayed' = 'true', current_setting('mk.flush_pending', true) = 'on'"
        " FROM api.checkout(api.authenticate(%s), %s::jsonb -> 'shippingAddress', %s) AS o",
        (token(), web.body_text(), request.get_header("Idempotency-Key")))
    if flush_pending:
        db.await_durable()
    response.status = 201
    response.content_type = "application/json"
    response.set_header("Location", f"/api/marketplace/orders/{order_id}")
    if replayed:
        response.set_header("Idempotent-Replayed", "true")
        request.environ["mk.outcome"] = "replayed"
    return text


@app.get("/api/marketplace/orders")
def list_orders(db):
    return db.one("SELECT api.list_orders(api.authenticate(%s), %s)", (token(), query_int("limit", 50)))


@app.get("/api/marketplace/orders/<order_id>")
def get_order(db, order_id):
    return db.one("SELECT api.get_order(%s, api.authenticate(%s))", (order_id, token()))


@app.post("/api/marketplace/orders/<order_id>/cancel")
def cancel_order(db, order_id):
    return db.one("SELECT api.cancel_order(%s, api.authenticate(%s))", (order_id, token()))


# ---------------------------------------------------------------- payment webhook


def _verified_signature() -> str:
    """The request's signature when it is valid and fresh; a 401 problem otherwise."""
    secret = config.get().webhook_secret
    if not secret:
        raise Problem(503, "WEBHOOK_NOT_CONFIGURED", "Service unavailable",
                      "payment webhooks are not configured on this server", headers={"Retry-After": "60"})
    ts = request.get_header("X-Signature-Timestamp", "").strip()
    sig = request.get_header("X-Signature", "").strip().lower()
    if not re.fullmatch(r"[0-9]{1,12}", ts) or not re.fullmatch(r"[0-9a-f]{64}", sig):
        raise Problem(401, "INVALID_SIGNATURE", "Invalid signature",
                      "X-Signature-Timestamp (unix seconds) and X-Signature (hex HMAC-SHA256) are required")
    expected = hmac.new(secret.encode(), ts.encode() + b"." + web.raw_body(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig):
        raise Problem(401, "INVALID_SIGNATURE", "Invalid signature", "the signature does not match the body")
    if abs(time.time() - int(ts)) > WEBHOOK_MAX_AGE_S:
        raise Problem(401, "INVALID_SIGNATURE", "Invalid signature",
                      "the signature timestamp is more than 5 minutes away from now")
    return sig


@app.post("/api/marketplace/payments/webhook")
def payment_webhook(db):
    sig = _verified_signature()
    body = json_body()
    status = field(body, "status", "str", max_len=20)
    if status not in ("succeeded", "failed"):
        raise web.bad_request("status must be succeeded or failed", "status")
    return db.one("SELECT api.payment_webhook(%s, %s, %s, %s)",
                  (sig, field(body, "orderId", "str", max_len=200), status == "succeeded",
                   field(body, "reference", "str", required=False, max_len=200)))


# ---------------------------------------------------------------- admin and operations


@app.post("/admin/maintenance/enable")
def maintenance_enable(db):
    return db.one("SELECT api.set_maintenance(true) FROM api.authenticate(%s, 'ADMIN')", (token(),))


@app.post("/admin/maintenance/disable")
def maintenance_disable(db):
    return db.one("SELECT api.set_maintenance(false) FROM api.authenticate(%s, 'ADMIN')", (token(),))


@app.get("/health", retry=False, db_timeout=2.0)
def health(db):
    state = db.one("SELECT api.health()")
    state["status"] = "ok" if state.get("migrations") == "ok" else "degraded"
    return state


@app.get("/metrics", retry=False, db_timeout=2.0)
def metrics(db):
    # Every worker's counters (pyapp.metrics), plus one api.ops_snapshot() call; a scrape still
    # answers, with mk_database_up 0, when the database cannot be read.
    import psycopg

    from pyapp.metrics import CONTENT_TYPE

    try:
        snapshot = db.one("SELECT api.ops_snapshot(make_interval(mins => %s))", (config.get().order_hold_minutes,))
    except (web.DatabaseUnavailable, psycopg.Error):
        snapshot = None
    response.content_type = CONTENT_TYPE
    return web.METRICS.render(snapshot)


@app.get("/openapi.json")
def openapi_document():
    return openapi.document()


# ---------------------------------------------------------------- operator dashboard

STATIC = Path(__file__).resolve().parent / "static"
_DASHBOARD_ASSETS = {"dashboard.html": "text/html; charset=utf-8",
                     "dashboard.js": "text/javascript; charset=utf-8",
                     "dashboard.css": "text/css; charset=utf-8"}
_DASHBOARD_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                  "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
DASHBOARD_REFRESH_S = 5


def checkout_counters() -> dict:
    """The app's checkout counters for the dashboard, read from the same registry /metrics exports
    (summed over the workers in multiprocess mode; names listed in docs/api.md). Counters are
    cumulative; the page derives per-interval figures."""
    by_outcome: dict[str, int] = {}
    seen = retries = 0
    buckets: list[tuple[float, int]] = []
    for name, labels, value in web.METRICS.samples():
        if name == "mk_checkout_total":
            by_outcome[labels.get("outcome", "")] = int(value)
        elif name == "mk_concurrency_conflicts_total":
            seen += int(value)
        elif name == "mk_db_retries_total":
            retries += int(value)
        elif name == "mk_checkout_duration_seconds_bucket":
            buckets.append((float(labels["le"]), int(value)))  # float("+Inf") is inf
    buckets.sort()
    return {
        "scope": "all" if multiprocess_dir() else "process", "pid": os.getpid(),
        "checkouts": sum(by_outcome.values()), "byOutcome": by_outcome,
        "conflicts": by_outcome.get("conflict", 0),  # checkouts answered 409 CONCURRENCY_CONFLICT
        "conflictsSeen": seen,  # every route, retried attempts included
        "retries": retries,  # every route's server-side retries
        "latency": {"le": [b if b != float("inf") else None for b, _ in buckets],
                    "counts": [n for _, n in buckets]},
    }


def _dashboard_asset(name: str) -> bytes:
    response.content_type = _DASHBOARD_ASSETS[name]
    response.set_header("Content-Security-Policy", _DASHBOARD_CSP)
    response.set_header("X-Content-Type-Options", "nosniff")
    response.set_header("Referrer-Policy", "no-referrer")
    response.set_header("Cache-Control", "no-cache")
    return (STATIC / name).read_bytes()


@app.get("/admin/dashboard")
def dashboard_page():
    """The page's shell needs no token: every figure comes from /admin/dashboard/data (ADMIN)."""
    return _dashboard_asset("dashboard.html")


@app.get("/admin/dashboard/dashboard.js")
def dashboard_script():
    return _dashboard_asset("dashboard.js")


@app.get("/admin/dashboard/dashboard.css")
def dashboard_style():
    return _dashboard_asset("dashboard.css")


@app.get("/admin/dashboard/data")
def dashboard_data(db):
    stats = db.one("SELECT api.dashboard_stats(make_interval(mins => %s)) FROM api.authenticate(%s, 'ADMIN')",
                   (config.get().order_hold_minutes, token()))
    response.set_header("Cache-Control", "no-store")
    return {"database": stats, "checkout": checkout_counters(), "refreshSeconds": DASHBOARD_REFRESH_S}
