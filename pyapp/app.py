"""HTTP routes: each parses the request's shape, calls one function of schema `app` (the only
functions the app's database role may execute: each identifies the caller by the SHA-256 of the
bearer token, see sql/app/) and renders its result. Connections, retries, errors and JSON are the
business of pyapp.web.ApiPlugin."""
from __future__ import annotations

import contextlib
import hmac
import os
import re
import threading
import time
from pathlib import Path

import bottle
import psycopg
from bottle import request, response

from pyapp import auth, clients, config, openapi, replicas, web
from pyapp.metrics import DECIDED, multiprocess_dir
from pyapp.web import Problem, field, json_body, query_int, query_str

app = bottle.Bottle(catchall=True)
app.config["json.enable"] = False
app.install(web.ApiPlugin())
app.default_error_handler = web.error_handler

_ETAG_RE = re.compile(openapi.ETAG_PATTERN)
_EMAIL_RE = re.compile(openapi.EMAIL_PATTERN)


def token() -> str | None:
    return auth.bearer_hash(request.get_header("Authorization"))


def _etag(doc: dict) -> None:
    response.set_header("ETag", f'"{doc["version"]}"')


# ---------------------------------------------------------------- auth


@contextlib.contextmanager
def _password_work():
    """auth.password_work as HTTP: 503 with Retry-After when this process has no slot free."""
    try:
        with auth.password_work():
            yield
    except auth.Busy as exc:
        raise Problem(503, "BUSY", "Service unavailable", str(exc), headers={"Retry-After": "1"}) from None


@app.post("/api/auth/register")
def register(db):
    body = json_body()
    email, name = field(body, "email", "str", max_len=254), field(body, "name", "str", max_len=200)
    password = field(body, "password", "str", max_len=auth.MAX_PASSWORD)
    role = field(body, "role", "str", required=False, max_len=20) or "BUYER"
    if len(password) < 8:
        raise web.bad_request("password must be 8 to 1024 characters", "password")
    if not _EMAIL_RE.match(email):  # the document's pattern; api.create_user's check is no stricter
        raise web.bad_request("email must be an address such as name@example.com", "email")
    client = clients.client_address(request.environ)
    db.one("SELECT app.check_registration(%s)", (client,))  # 429 before the scrypt, not after
    db.release()  # no connection held while scrypt runs
    with _password_work():
        password_hash = auth.hash_password(password)
    user = db.one("SELECT app.register(%s, %s, %s, %s, %s)", (client, email, name, password_hash, role))
    response.status = 201
    return user


@app.post("/api/auth/login")
def login(db):
    body = json_body()
    email = field(body, "email", "str", max_len=254)
    password = field(body, "password", "str", max_len=auth.MAX_PASSWORD)
    # The database holds the stored hash and the throttle (per email and client pair); the app only
    # derives the key from the password with the salt and cost it is given, and the database
    # compares it and makes the token (sql/app/auth.sql).
    client = clients.client_address(request.environ)
    params = db.one("SELECT app.login_parameters(%s, %s)", (email, client))
    db.release()  # no connection held while waiting or while scrypt runs
    with _password_work():
        time.sleep(min(3.0, max(0.0, float(params.get("delay") or 0))))
        key = auth.derive_key(password, params)
        upgrade = auth.hash_password(password, params["upgrade"]) if params.get("upgrade") else None
    result = db.one("SELECT app.login(%s, %s, %s, %s)", (email, client, key, upgrade))
    if not result.get("authenticated"):
        raise Problem(401, "UNAUTHENTICATED", "Authentication required", "invalid email or password")
    return {k: result[k] for k in ("token", "tokenType", "expiresAt", "userId", "role")}


@app.post("/api/auth/logout")
def logout(db):
    return db.one("SELECT app.logout(%s)", (token(),))


# ---------------------------------------------------------------- products


@app.get("/api/marketplace/products", replica=True)  # READ_DATABASE_URL when set
def list_products(db):
    return db.one("SELECT app.list_products(%s, %s)", (query_int("limit", 50), query_str("after")))


@app.get("/api/marketplace/products/<product_id>", replica=True)
def get_product(db, product_id):
    product = db.one("SELECT app.get_product(%s)", (product_id,))
    _etag(product)
    if request.get_header("If-None-Match", "").strip() == f'"{product["version"]}"':
        response.status = 304
        return ""
    return product


@app.post("/api/marketplace/products")
def create_product(db):
    body = json_body()
    product = db.one(
        "SELECT app.create_product(%s, %s, %s::numeric, %s::integer, %s, %s::integer)",
        (token(), field(body, "name", "str", max_len=200), field(body, "price", "number"), field(body, "stock", "int"),
         field(body, "description", "str", required=False, max_len=5000) or "",
         field(body, "maxPerBuyer", "int", required=False)))
    response.status = 201
    response.set_header("Location", f"/api/marketplace/products/{product['id']}")
    _etag(product)
    return product


@app.route("/api/marketplace/products/<product_id>", method="PATCH")
def update_product(db, product_id):
    body = json_body()
    # Shapes SQL would let through: a "version" next to If-Match, and lengths before trimming.
    body_version = field(body, "version", "int") if "version" in body else None
    field(body, "name", "str", required=False, max_len=200)
    field(body, "description", "str", required=False, max_len=5000)
    if_match = request.get_header("If-Match")
    if if_match is not None:
        m = _ETAG_RE.match(if_match)
        if not m:
            raise web.bad_request('If-Match must be an ETag such as "3"', "If-Match")
        version = int(m.group(2))
        if version > web.INT32[1]:  # no product has this version: stale, as any other (409)
            version = 0
    elif body_version is not None:
        version = body_version
    else:
        raise Problem(428, "PRECONDITION_REQUIRED", "Precondition required",
                      'send If-Match: "<version>" or "version" in the body (read the product first)')
    # The body goes to SQL as jsonb unchanged (exact numbers); "version" is not a change.
    product = db.one("SELECT app.update_product(%s, %s, %s::integer, %s::jsonb - 'version')",
                     (token(), product_id, version, web.body_text()))
    _etag(product)
    return product


# ---------------------------------------------------------------- cart


@app.get("/api/marketplace/cart")
def get_cart(db):
    return db.one("SELECT app.get_cart(%s)", (token(),))


@app.post("/api/marketplace/cart/items")
def add_to_cart(db):
    body = json_body()
    line = db.one("SELECT app.add_to_cart(%s, %s, %s::integer)",
                  (token(), field(body, "productId", "str", max_len=200), field(body, "quantity", "int")))
    response.status = 201
    return line


@app.route("/api/marketplace/cart/items/<product_id>", method="PATCH")
def set_cart_quantity(db, product_id):
    body = json_body()
    return db.one("SELECT app.set_cart_quantity(%s, %s, %s::integer)",
                  (token(), product_id, field(body, "quantity", "int")))


@app.delete("/api/marketplace/cart/items/<product_id>")
def remove_from_cart(db, product_id):
    return db.one("SELECT app.remove_from_cart(%s, %s)", (token(), product_id))


# ---------------------------------------------------------------- checkout and orders


@app.post("/api/marketplace/checkout", metric="checkout")
def checkout(db):
    body = json_body()
    field(body, "shippingAddress", "object")  # its size (4096 bytes) and emptiness: api.checkout
    # The order goes out as the text PostgreSQL made of it: on the busiest route, parsing the
    # jsonb into Python only to serialise it again would be wasted work.
    # A checkout that queued for a product may have committed without waiting for the disk
    # (mk.release_early, set on the pool's connections), so that the next buyer gets the product
    # sooner; it says so in mk.flush_pending, and then the 201 waits for the flush.
    text, order_id, replayed, flush_pending, smoke = db.row(
        "SELECT o::text, o ->> 'id', o -> 'replayed' = 'true', current_setting('mk.flush_pending', true) = 'on',"
        " o ? 'smoke' FROM app.checkout(%s, %s::jsonb -> 'shippingAddress', %s) AS o",
        (token(), web.body_text(), request.get_header("Idempotency-Key")))
    if flush_pending:
        db.await_durable()
    response.status = 201
    response.content_type = "application/json"
    response.set_header("Location", f"/api/marketplace/orders/{order_id}")
    if replayed:
        response.set_header("Idempotent-Replayed", "true")
    if smoke:  # `python -m pyapp smoke`: counted apart, not as a sale (pyapp/metrics.py)
        request.environ["mk.outcome"] = "smoke"
    return text


@app.get("/api/marketplace/orders")
def list_orders(db):
    return db.one("SELECT app.list_orders(%s, %s)", (token(), query_int("limit", 50)))


@app.get("/api/marketplace/orders/<order_id>")
def get_order(db, order_id):
    return db.one("SELECT app.get_order(%s, %s)", (token(), order_id))


@app.post("/api/marketplace/orders/<order_id>/cancel")
def cancel_order(db, order_id):
    return db.one("SELECT app.cancel_order(%s, %s)", (token(), order_id))


# ---------------------------------------------------------------- payment webhook


@app.post("/api/marketplace/payments/webhook")
def payment_webhook(db):
    # Signature, freshness, replay and the body are all checked in the database, against keys the
    # app's role cannot read (app.payment_webhook); the raw body goes there byte for byte.
    return db.one("SELECT app.payment_webhook(%s, %s, %s)",
                  (request.get_header("X-Signature-Timestamp"), request.get_header("X-Signature"),
                   web.raw_body()))


# ---------------------------------------------------------------- admin and operations


@app.post("/admin/maintenance/enable")
def maintenance_enable(db):
    return db.one("SELECT app.set_maintenance(%s, true)", (token(),))


@app.post("/admin/maintenance/disable")
def maintenance_disable(db):
    return db.one("SELECT app.set_maintenance(%s, false)", (token(),))


@app.get("/health", retry=False, db_timeout=2.0)
def health(db):
    # Without this version's schema the plugin answers 503 NOT_MIGRATED (pyapp.web.SCHEMA_MISSING).
    state = db.one("SELECT app.health()")
    state["status"] = "ok" if state.get("migrations") == "ok" else "degraded"
    state["replication"] = replicas.replication_state(db)  # the node, its standbys (Patroni)
    return state


_snapshot_lock = threading.Lock()
_snapshot: dict = {"at": float("-inf"), "value": None}


def _database_snapshot(db) -> dict | None:
    """api.ops_snapshot at most once per METRICS_DB_CACHE_SECONDS (15) per worker: a scrape storm
    costs the database nothing more. None when the database cannot be read (the scrape still
    answers, with mk_database_up 0)."""
    with _snapshot_lock:
        if time.monotonic() - _snapshot["at"] < config.get().metrics_cache_s:
            return _snapshot["value"]
    try:
        value = db.one("SELECT app.ops_snapshot(make_interval(mins => %s))", (config.get().order_hold_minutes,))
    except (web.DatabaseUnavailable, psycopg.Error):
        return None
    with _snapshot_lock:
        _snapshot.update(at=time.monotonic(), value=value)
    return value


@app.get("/metrics", retry=False, db_timeout=2.0)
def metrics(db):
    # Every worker's counters (pyapp.metrics) and the database's figures, cached. With
    # METRICS_TOKEN set, only a scraper that sends it as a bearer token gets them.
    from pyapp.metrics import CONTENT_TYPE

    expected = config.get().metrics_token
    if expected:
        given = request.get_header("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            raise Problem(401, "UNAUTHENTICATED", "Authentication required",
                          "GET /metrics needs Authorization: Bearer <METRICS_TOKEN>",
                          headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    snapshot = _database_snapshot(db)
    response.content_type = CONTENT_TYPE
    return web.METRICS.render(snapshot)


@app.get("/openapi.json")
def openapi_document():
    return openapi.document()


# ---------------------------------------------------------------- operator dashboard

STATIC = Path(__file__).resolve().parent / "static"
_ASSETS = {"dashboard.html": "text/html; charset=utf-8",
           "dashboard.js": "text/javascript; charset=utf-8",
           "dashboard.css": "text/css; charset=utf-8",
           "docs.html": "text/html; charset=utf-8",
           "docs.js": "text/javascript; charset=utf-8",
           "docs.css": "text/css; charset=utf-8",
           "index.html": "text/html; charset=utf-8"}
_PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
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
        # The smoke test's checkouts are shown in byOutcome but are not sales.
        "checkouts": sum(n for o, n in by_outcome.items() if o != "smoke"), "byOutcome": by_outcome,
        "decided": sum(by_outcome.get(o, 0) for o in DECIDED),  # the rates' denominator (pyapp.metrics)
        "conflicts": by_outcome.get("conflict", 0),  # checkouts answered 409 CONCURRENCY_CONFLICT
        "conflictsSeen": seen,  # every route, retried attempts included
        "retries": retries,  # every route's server-side retries
        "latency": {"le": [b if b != float("inf") else None for b, _ in buckets],
                    "counts": [n for _, n in buckets]},
    }


def _asset(name: str) -> bytes:
    """A packaged page of pyapp/static/ (no CDN, no inline script: the CSP allows only this server)."""
    response.content_type = _ASSETS[name]
    response.set_header("Content-Security-Policy", _PAGE_CSP)
    response.set_header("X-Content-Type-Options", "nosniff")
    response.set_header("Referrer-Policy", "no-referrer")
    response.set_header("Cache-Control", "no-cache")
    return (STATIC / name).read_bytes()


LINKS = {"health": "/health", "openapi": "/openapi.json", "docs": "/docs", "operatorPage": "/admin/dashboard",
         "metrics": "/metrics"}


@app.get("/")
def index():
    """What this server is and where to go: an HTML page for a browser, JSON for anything else."""
    if "text/html" in request.get_header("Accept", ""):
        return _asset("index.html")
    return {"name": "Artisan marketplace API", "version": openapi.document()["info"]["version"], "links": LINKS}


@app.get("/docs")
def docs_page():
    """A readable API reference, rendered in the browser from /openapi.json."""
    return _asset("docs.html")


@app.get("/docs/docs.js")
def docs_script():
    return _asset("docs.js")


@app.get("/docs/docs.css")
def docs_style():
    return _asset("docs.css")


@app.get("/admin/dashboard")
def dashboard_page():
    """The page's shell needs no token: every figure comes from /admin/dashboard/data (ADMIN)."""
    return _asset("dashboard.html")


@app.get("/admin/dashboard/dashboard.js")
def dashboard_script():
    return _asset("dashboard.js")


@app.get("/admin/dashboard/dashboard.css")
def dashboard_style():
    return _asset("dashboard.css")


@app.get("/admin/dashboard/data")
def dashboard_data(db):
    stats = db.one("SELECT app.dashboard_stats(%s, make_interval(mins => %s))",
                   (token(), config.get().order_hold_minutes))
    response.set_header("Cache-Control", "no-store")
    return {"database": stats, "checkout": checkout_counters(), "refreshSeconds": DASHBOARD_REFRESH_S,
            "replication": replicas.replication_state(db)}  # the node and its standbys
