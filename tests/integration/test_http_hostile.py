"""Malformed and hostile requests: every answer is a 4xx problem+json, never a 5xx or an HTML page."""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import requests

from tests.integration.test_http_api import make_product, make_user
from tests.support.http_server import WEBHOOK_SECRET

SQLISH = "'; DROP TABLE \"Product\"; --"

BODIES = [
    b"", b"null", b"[]", b"{", b'"text"', b"42", b"\xff\xfe\xfd", b'{"a": NaN}', b'{"a": Infinity}',
    b"[" * 5000 + b"]" * 5000, b'{"a":' * 100 + b"1" + b"}" * 100,
    b'{"quantity": 1e999999, "price": 1e999999, "stock": 1e999999}',
    b'{"quantity": ' + b"9" * 5000 + b"}",
    b'{"quantity": -1, "productId": "x"}', b'{"quantity": 0, "productId": "x"}',
    b'{"quantity": 99999999999999999999, "productId": "x", "price": 99999999999999999999, "stock": 1}',
    b'{"quantity": "1", "productId": 5, "name": [], "price": "free", "stock": true}',
    b'{"quantity": 1.5, "productId": null, "email": {}, "password": 1}',
    ('{"productId": "%s", "quantity": 1, "email": "%s@x.io", "password": "%s", "name": "%s", '
     '"price": 1, "stock": 1, "shippingAddress": {"s": "%s"}}' % ((SQLISH.replace('"', '\\"'),) * 5)).encode(),
    b'{"name": "nul\\u0000byte", "email": "a\\u0000@x.io", "password": "p\\u0000assword", "price": 1, "stock": 1,'
    b' "productId": "\\u0000", "quantity": 1, "shippingAddress": {"k": "\\u0000"}}',
    b'{"shippingAddress": {"deep": ' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}}",
    b'{"shippingAddress": {}, "version": "two", "stockDelta": 1e400}',
    b'{"name": "\\ud800 lone surrogate", "password": "\\udfff\\ud800xxxxx", "email": "\\ud800@x.io"}',
    b'{"a": 1}' + b" " * 10,
]


def assert_clean_4xx(r: requests.Response, allowed=(400, 401, 403, 404, 405, 409, 413, 422, 428)):
    assert r.status_code in allowed, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.headers
    assert "<html" not in r.text.lower() and "traceback" not in r.text.lower()
    doc = r.json()
    assert {"type", "title", "status", "detail", "code"} <= doc.keys()


@pytest.fixture(scope="module")
def actors(http_app, http_db):
    _, seller = make_user(http_db, "SELLER")
    _, buyer = make_user(http_db)
    product = make_product(http_app, seller, stock=3)
    return seller, buyer, product


def _targets(actors):
    seller, buyer, product = actors
    pid = product["id"]
    return [
        ("POST", "/api/auth/register", {}),
        ("POST", "/api/auth/login", {}),
        ("POST", "/api/marketplace/products", seller),
        ("PATCH", f"/api/marketplace/products/{pid}", {**seller, "If-Match": '"1"'}),
        ("POST", "/api/marketplace/cart/items", buyer),
        ("PATCH", f"/api/marketplace/cart/items/{pid}", buyer),
        ("POST", "/api/marketplace/checkout", buyer),
    ]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_hostile_bodies_never_5xx(http_app, actors, body):
    for method, path, headers in _targets(actors):
        r = requests.request(method, http_app.url + path, data=body,
                             headers={**headers, "Content-Type": "application/json"}, timeout=10)
        if r.status_code < 400:  # some bodies are valid for some routes (e.g. a lone surrogate name)
            continue
        assert_clean_4xx(r)


def test_hostile_webhook_bodies_signed_correctly(http_app):
    for body in BODIES:
        ts = str(int(time.time()))
        sig = hmac.new(WEBHOOK_SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        r = requests.post(http_app.url + "/api/marketplace/payments/webhook", data=body,
                          headers={"X-Signature-Timestamp": ts, "X-Signature": sig})
        assert_clean_4xx(r)
    for ts, sig in (("abc", "00"), ("-5", "zz" * 32), ("9" * 40, "0" * 64), ("", ""), (str(int(time.time())), "Z" * 64)):
        r = requests.post(http_app.url + "/api/marketplace/payments/webhook", data=b"{}",
                          headers={"X-Signature-Timestamp": ts, "X-Signature": sig})
        assert_clean_4xx(r, (401,))


def test_body_over_64_kib_is_413(http_app, actors):
    _, buyer, _ = actors
    big = b'{"shippingAddress": {"x": "' + b"a" * (70 * 1024) + b'"}}'
    assert_clean_4xx(requests.post(http_app.url + "/api/marketplace/checkout", data=big, headers=buyer), (413,))

    def chunks():
        for _ in range(80):
            yield b"a" * 1024
    assert_clean_4xx(requests.post(http_app.url + "/api/auth/login", data=chunks()), (413,))


def test_hostile_paths_headers_and_queries(http_app, actors):
    seller, buyer, product = actors
    u = http_app.url
    cases = [
        ("GET", "/api/marketplace/products/" + requests.utils.quote(SQLISH, safe=""), {}),
        ("GET", "/api/marketplace/products/%ff%fe", {}),
        ("GET", "/api/marketplace/products/" + "x" * 3000, {}),
        ("GET", "/api/marketplace/orders/%27%20OR%201=1--", buyer),
        ("GET", "/nowhere", {}),
        ("GET", "/api/marketplace/products/a/b/c", {}),
        ("DELETE", "/api/marketplace/products", seller),
        ("PUT", "/api/marketplace/checkout", buyer),
        ("GET", "/api/marketplace/checkout", buyer),
        ("GET", "/api/marketplace/products?limit=abc", {}),
        ("GET", "/api/marketplace/products?limit=99999999999", {}),
        ("GET", "/api/marketplace/products?limit=-5", {}),
        ("GET", "/api/marketplace/products?after=" + "z" * 500, {}),
        ("GET", "/api/marketplace/orders?limit=1000", buyer),
        ("GET", "/api/marketplace/cart", {"Authorization": "Bearer " + "x" * 4000}),
        ("GET", "/api/marketplace/cart", {"Authorization": "Bearer " + SQLISH}),
        ("GET", "/api/marketplace/cart", {"Authorization": "Bearer"}),
        ("POST", "/admin/maintenance/enable", {"Authorization": "Bearer \u00e9t\u00e9".encode().decode("latin-1")}),
        ("PATCH", f"/api/marketplace/products/{product['id']}", {**seller, "If-Match": "garbage"}),
        ("PATCH", f"/api/marketplace/products/{product['id']}", {**seller, "If-Match": '"99999999999"'}),
        ("POST", "/api/marketplace/checkout", {**buyer, "Idempotency-Key": "k" * 1000}),
        ("POST", "/api/marketplace/checkout", {**buyer, "Idempotency-Key": ""}),
    ]
    for method, path, headers in cases:
        r = requests.request(method, u + path, headers=headers, json={"shippingAddress": {"a": 1}, "price": 1})
        assert_clean_4xx(r)
    r = requests.request("PUT", u + "/health")
    assert_clean_4xx(r, (405,))
    assert "GET" in r.headers.get("Allow", "")


def test_headers_that_are_not_utf8_never_get_a_500(http_app, http_db):
    """Raw bytes in a header a route reads (found by the fuzz test in If-Match). The server hands
    the app such a value as an empty string, so each route answers as it does for an empty header:
    400 problem+json where an empty value is invalid, 401 for a token that cannot be read, and the
    ordinary answer where the header is optional."""
    import http.client as hc
    from urllib.parse import urlsplit

    from tests.integration.test_http_api import make_product, make_user

    _, seller = make_user(http_db, "SELLER")
    p = make_product(http_app, seller, stock=1)
    parts = urlsplit(http_app.url)
    for method, path, header, expected in (
            ("PATCH", f"/api/marketplace/products/{p['id']}", "If-Match", (400, "INVALID_ARGUMENT")),
            ("POST", "/api/marketplace/checkout", "Idempotency-Key", (400, "INVALID_ARGUMENT")),
            ("GET", "/api/marketplace/cart", "Authorization", (401, "UNAUTHENTICATED")),
            ("GET", f"/api/marketplace/products/{p['id']}", "If-None-Match", (200, None)),
            ("GET", "/", "Accept", (200, None))):
        conn = hc.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.putrequest(method, path)
            conn.putheader(header, b"\xb8\xff")
            if header != "Authorization":  # without a token the answer is 401, before any other header is read
                conn.putheader("Authorization", seller["Authorization"])
            conn.putheader("Content-Type", "application/json")
            body = b'{"shippingAddress": {"city": "x"}, "name": "y"}'
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            raw = r.read()
        finally:
            conn.close()
        status, code = expected
        assert r.status == status, (header, r.status, raw[:300])
        if code:
            assert r.getheader("Content-Type").startswith("application/problem+json"), header
            assert json.loads(raw)["code"] == code, (header, raw)


def raw_exchange(http_app, data: bytes, bound_s: float = 60) -> bytes:
    """Sends `data` on a new connection and reads until the server closes it (or bound_s, which
    only a server that never closes reaches): what came back."""
    import socket
    with socket.create_connection(("127.0.0.1", http_app.port), timeout=bound_s) as s:
        s.sendall(data)
        got = b""
        end = time.monotonic() + bound_s
        while time.monotonic() < end:
            chunk = s.recv(65536)
            if not chunk:
                return got
            got += chunk
        raise AssertionError(f"the server kept the connection open for {bound_s} s: {got[:200]!r}")


def test_an_oversized_request_head_is_refused_before_the_app(http_app):
    """pyapp/server.py's HEAD_BUFFER_BYTES: a head far over it is 431, from the server itself."""
    from pyapp.server import HEAD_BUFFER_BYTES
    head = (b"GET /health HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(3 * HEAD_BUFFER_BYTES // 1000))
            + b"\r\n")
    answer = raw_exchange(http_app, head)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert requests.get(http_app.url + "/health", timeout=10).status_code == 200  # the server goes on


def test_a_client_that_never_finishes_its_head_is_disconnected(http_app):
    """pyapp/server.py's HEAD_TIMEOUT_MS: half a request head, then silence; the server closes the
    connection instead of holding it (the bound is only for a server that never does)."""
    answer = raw_exchange(http_app, b"POST /api/marketplace/checkout HTTP/1.1\r\nHost: x\r\nContent-Ty")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    idle = raw_exchange(http_app, b"")  # a connection that sends nothing at all
    assert idle == b"" or idle.startswith(b"HTTP/1.1 408 "), idle[:200]
