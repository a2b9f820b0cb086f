"""Operations surfaces: /health (incl. an unreachable database and its recovery), /metrics,
/openapi.json; and the plugin's retries and 500 handling, exercised in-process through WSGI."""
from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import bottle
import psycopg
import pytest
import requests
from openapi_spec_validator import validate

from pyapp.app import app as real_app
from pyapp.db.localpg import free_port
from pyapp.web import plugin as web
from tests.integration.test_http_api import add, checkout, make_product, make_user
from tests.support.http_server import HttpServer


def test_health_and_metrics(http_app, http_db):
    r = requests.get(http_app.url + "/health")
    assert r.status_code == 200
    doc = r.json()
    assert doc.pop("replication")["role"] == "primary"  # the node and its standbys (tests/slow/test_ha.py)
    assert doc == {"status": "ok", "database": "ok", "migrations": "ok", "migrationsMissing": [],
                   "maintenance": False}
    _, seller = make_user(http_db, "SELLER")
    _, buyer = make_user(http_db)
    p = make_product(http_app, seller, stock=1)
    add(http_app, buyer, p["id"], 1)
    # two workers: retry until the worker that served the checkout answers the scrape
    assert checkout(http_app, buyer).status_code == 201
    for _ in range(20):
        text = requests.get(http_app.url + "/metrics").text
        if 'mk_checkout_total{outcome="success"} 1.0' in text:
            break
    assert 'mk_checkout_total{outcome="success"} 1.0' in text
    assert "mk_db_retries_total" in text and 'mk_checkout_duration_seconds_bucket{le="+Inf"}' in text


def test_openapi_document_is_valid_and_complete(http_app):
    r = requests.get(http_app.url + "/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    for route in real_app.routes:
        path = re.sub(r"<(\w+)>", lambda m: "{" + {"product_id": "productId", "order_id": "orderId"}[m.group(1)] + "}",
                      route.rule)
        assert route.method.lower() in doc["paths"].get(path, {}), (route.method, path)
    checkout_409 = doc["paths"]["/api/marketplace/checkout"]["post"]["responses"]["409"]
    assert "Retry-After" in doc["components"]["responses"][checkout_409["$ref"].split("/")[-1]]["headers"]


class Forwarder:
    """A TCP forwarder to PostgreSQL that can be switched on and off, to take the database away."""

    def __init__(self, target_port: int):
        self.port, self.target = free_port(), target_port
        self.sock = None

    def on(self):
        self.sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.sock,), daemon=True).start()

    def off(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def _accept(self, sock):
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_health_503_when_database_unreachable_then_recovers(http_db):
    parts = urlsplit(http_db[1])
    fwd = Forwarder(parts.port)
    url = parts._replace(netloc=f"{parts.username}@127.0.0.1:{fwd.port}").geturl()
    srv = HttpServer(url, WORKERS="1", DB_POOL_TIMEOUT_S="1").start(wait_healthy=False)
    try:
        r = requests.get(srv.url + "/health", timeout=10)
        assert r.status_code == 503 and r.headers["Content-Type"].startswith("application/problem+json")
        assert r.json()["code"] == "DATABASE_UNAVAILABLE" and r.json()["database"] == "unreachable"
        assert int(r.headers["Retry-After"]) > 0
        r = requests.get(srv.url + "/api/marketplace/products", timeout=10)
        assert r.status_code == 503 and "Retry-After" in r.headers
        fwd.on()
        deadline = time.time() + 20
        while time.time() < deadline:
            r = requests.get(srv.url + "/health", timeout=10)
            if r.status_code == 200:
                break
            time.sleep(0.3)
        assert r.status_code == 200, r.text
        assert requests.get(srv.url + "/api/marketplace/products", timeout=10).status_code == 200
    finally:
        srv.stop()
        fwd.off()


# ---------------------------------------------------------------- the plugin in-process


def _mini_app():
    a = bottle.Bottle(catchall=True)
    a.config["json.enable"] = False
    a.install(web.ApiPlugin(web.Pool()))
    return a


def _call(a, method="GET", path="/x", body=b""):
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "t", "SERVER_PORT": "80",
           "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "wsgi.url_scheme": "http",
           "SERVER_PROTOCOL": "HTTP/1.1"}
    out = {}

    def start_response(status, headers, exc_info=None):
        out["status"], out["headers"] = int(status.split()[0]), dict(headers)

    out["body"] = b"".join(a(env, start_response))
    return out


def test_plugin_retries_transient_conflicts_then_answers_409(monkeypatch):
    monkeypatch.setattr(web.time, "sleep", lambda s: None)
    a, calls = _mini_app(), []

    @a.get("/x")
    def always_conflict(db):
        calls.append(1)
        raise psycopg.errors.SerializationFailure("could not serialize access")

    @a.get("/flaky")
    def flaky(db):
        calls.append(1)
        if len(calls) < 3:
            raise psycopg.errors.LockNotAvailable("lock timeout")
        return {"ok": True}

    retries = web.METRICS.retries
    r = _call(a)
    assert r["status"] == 409 and len(calls) == web.MAX_ATTEMPTS
    assert r["headers"]["Content-Type"] == "application/problem+json" and r["headers"]["Retry-After"] == "1"
    assert json.loads(r["body"])["code"] == "CONCURRENCY_CONFLICT"
    assert web.METRICS.retries == retries + web.MAX_ATTEMPTS - 1
    calls.clear()
    r = _call(a, path="/flaky")
    assert r["status"] == 200 and json.loads(r["body"]) == {"ok": True} and len(calls) == 3


def test_plugin_maps_timeouts_and_hides_internals():
    a = _mini_app()

    @a.get("/slow")
    def slow(db):
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

    @a.get("/bug")
    def bug(db):
        raise RuntimeError("secret internals: password=hunter2")

    r = _call(a, path="/slow")
    assert r["status"] == 503 and "Retry-After" in r["headers"]
    r = _call(a, path="/bug")
    assert r["status"] == 500 and r["headers"]["Content-Type"] == "application/problem+json"
    assert b"hunter2" not in r["body"] and b"RuntimeError" not in r["body"]
    r = _call(a, path="/missing")
    assert r["status"] == 404 and r["headers"]["Content-Type"] == "application/problem+json"


def test_root_links_to_the_reference_health_and_operator_page(http_app):
    r = requests.get(http_app.url + "/")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    links = r.json()["links"]
    for path in links.values():
        assert requests.get(http_app.url + path).status_code in (200, 401), path  # /metrics may want a token
    assert {"/health", "/openapi.json", "/docs", "/admin/dashboard"} <= set(links.values())
    page = requests.get(http_app.url + "/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert 'href="/docs"' in page.text and "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_docs_page_renders_every_operation_in_chromium(http_app):
    """The reference is a packaged page (no CDN): headless Chromium renders one section per
    operation of /openapi.json."""
    from tests.support.browser import run_chromium

    dom = run_chromium(["--dump-dom", "--virtual-time-budget=5000", http_app.url + "/docs"]).decode()
    assert 'data-state="ready"' in dom, dom[:2000]
    doc = requests.get(http_app.url + "/openapi.json").json()
    ops = [op for item in doc["paths"].values() for m, op in item.items() if m in ("get", "post", "patch", "delete")]
    assert ops and all(f'id="{op["operationId"]}"' in dom for op in ops)
    assert "Stock insuficiente" in dom and "TOO_MANY_UNPAID_ORDERS" in dom
    assert "<script src=" in requests.get(http_app.url + "/docs").text and "cdn" not in dom.lower()


def test_health_on_a_database_without_the_schema_is_503_not_500(server):
    """Before `migrate` (or after a rollback) the database answers but has no schema app: /health and
    every other route say so with a 503 problem, never a 500, and recover once the schema is there."""
    from pyapp.db import migrate
    from tests.support.pg import APP_ROLE

    name = server.prefix + "bare_" + uuid.uuid4().hex[:8]
    url = server.create_database(name, template="template0")
    srv = HttpServer(server.url(name, user=APP_ROLE)).start(wait_healthy=False)
    try:
        r = requests.get(srv.url + "/health")
        assert r.status_code == 503 and r.headers["Content-Type"].startswith("application/problem+json"), r.text
        assert r.json()["code"] == "NOT_MIGRATED" and r.json()["database"] == "ok"
        r = requests.get(srv.url + "/api/marketplace/products")
        assert r.status_code == 503 and r.json()["code"] == "NOT_MIGRATED", r.text
        migrate.apply(url)
        assert requests.get(srv.url + "/health").json()["status"] == "ok"
    finally:
        srv.stop()
        server.drop_database(name)
