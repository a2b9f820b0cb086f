"""The plugin's retries and answers in-process through WSGI, with no database: the routes here
raise the errors a database would, and never take a connection (pyapp.web.plugin)."""
from __future__ import annotations

import io
import json
import re

import bottle
import psycopg
import pytest

from pyapp import auth
from pyapp.db.pool import Pool
from pyapp.db.registry import shipped
from pyapp.metrics import METRICS
from pyapp.web import plugin
from pyapp.web.parsing import caller
from pyapp.web.plugin import MAX_ATTEMPTS, ApiPlugin
from pyapp.web.routes import token
from tests.support.db_errors import DbError

STALE_STATE = next(c.sqlstate for c in shipped().codes if c.retryable == "detail")


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setattr(plugin.time, "sleep", lambda s: None)
    a = bottle.Bottle(catchall=True)
    a.install(ApiPlugin(Pool()))
    return a


def call(a, path="/x", method="GET", body=b"", headers=None) -> tuple[int, dict, dict | str]:
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "t",
           "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
           "CONTENT_LENGTH": str(len(body)), "wsgi.errors": io.StringIO()}
    env.update(headers or {})
    out = {}

    def start_response(status, hdrs, exc_info=None):
        out["status"], out["headers"] = int(status.split()[0]), dict(hdrs)

    raw = b"".join(a(env, start_response)).decode()
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = raw
    return out["status"], out["headers"], doc


def test_a_transient_conflict_is_retried_then_answered_409_with_retry_after(app):
    calls = []

    @app.get("/x")
    def always(db):
        calls.append(1)
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    retries = METRICS.retries
    status, headers, doc = call(app)
    assert status == 409 and len(calls) == MAX_ATTEMPTS and METRICS.retries == retries + MAX_ATTEMPTS - 1
    assert headers["Content-Type"] == "application/problem+json" and headers["Retry-After"] == "1"
    assert doc["code"] == "CONCURRENCY_CONFLICT" and doc["retryable"] is True and doc["attempts"] == MAX_ATTEMPTS


def test_a_conflict_its_detail_calls_retryable_is_retried_until_it_succeeds(app):
    calls = []

    @app.get("/x")
    def flaky(db):
        calls.append(1)
        if len(calls) < 3:
            raise DbError(STALE_STATE, "a concurrent change won", {"retryable": True, "productId": "p"})
        return {"ok": True}

    assert call(app)[::2] == (200, {"ok": True}) and len(calls) == 3


def test_a_stale_version_is_not_retried_and_has_no_retry_after(app):
    calls = []

    @app.get("/x")
    def stale(db):
        calls.append(1)
        raise DbError(STALE_STATE, "version 3 is stale", {"currentVersion": 4, "retryable": False})

    status, headers, doc = call(app)
    assert status == 409 and len(calls) == 1 and "Retry-After" not in headers
    assert doc["code"] == "CONCURRENCY_CONFLICT" and doc["currentVersion"] == 4 and doc["detail"] == "version 3 is stale"


def test_route_option_api_retry_false_answers_the_first_conflict(app):
    calls = []

    @app.get("/x", api={"retry": False})
    def once(db):
        calls.append(1)
        raise psycopg.errors.LockNotAvailable("lock timeout")

    status, headers, doc = call(app)
    assert status == 409 and len(calls) == 1 and doc["attempts"] == 1 and headers["Retry-After"] == "1"


def test_a_bug_is_a_clean_500_and_bottle_errors_are_problems(app):
    @app.get("/x")
    def bug(db):
        raise psycopg.errors.UndefinedTable("relation does not exist")

    status, _, doc = call(app)
    assert status == 500 and doc["code"] == "INTERNAL_ERROR" and "relation" not in json.dumps(doc)
    status, headers, doc = call(app, path="/nowhere")
    assert status == 404 and doc["code"] == "NOT_FOUND" and headers["Content-Type"] == "application/problem+json"
    status, _, doc = call(app, method="DELETE")
    assert status == 405 and doc["code"] == "METHOD_NOT_ALLOWED"


def test_a_body_past_the_limit_is_413_before_the_route_runs(app):
    ran = []

    @app.post("/x")
    def post(db):
        ran.append(1)

    status, _, doc = call(app, method="POST", body=b"x" * (64 * 1024 + 1))
    assert status == 413 and doc["code"] == "PAYLOAD_TOO_LARGE" and not ran


def test_close_closes_the_pool_and_stops_the_flusher():
    a = bottle.Bottle()
    p = ApiPlugin(Pool())
    a.install(p)
    a.close()  # nothing opened yet: closing is safe, and idempotent
    a.close()


@pytest.fixture
def hashes(monkeypatch):
    """The Authorization headers auth.bearer_hash is asked to hash."""
    seen: list[str | None] = []
    real = auth.bearer_hash

    def counting(header):
        seen.append(header)
        return real(header)

    monkeypatch.setattr(auth, "bearer_hash", counting)
    return seen


def test_the_bearer_token_is_hashed_once_and_the_route_reuses_the_caller(app, hashes):
    callers = []

    @app.get("/api/marketplace/cart")  # the API document says it needs a bearer token
    def cart():
        callers.append((token(), token(), caller()))
        return {"ok": True}

    status, _, _ = call(app, "/api/marketplace/cart", headers={"HTTP_AUTHORIZATION": "Bearer tok-1"})
    assert status == 200 and hashes == ["Bearer tok-1"]
    assert callers == [(auth.token_hash("tok-1"),) * 3]


def test_retried_attempts_reuse_the_caller_hashed_for_the_request(app, hashes):
    callers = []

    @app.post("/api/marketplace/checkout")
    def checkout(db):
        callers.append(token())
        if len(callers) < 3:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return {"caller": token()}

    status, _, doc = call(app, "/api/marketplace/checkout", "POST", headers={"HTTP_AUTHORIZATION": "Bearer tok-2"})
    assert (status, doc) == (200, {"caller": auth.token_hash("tok-2")})
    assert callers == [auth.token_hash("tok-2")] * 3 and hashes == ["Bearer tok-2"]


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwdw==", "Bearer ", "Bearer " + "t" * 513])
def test_an_operation_that_needs_a_token_without_a_usable_one_is_401_before_the_route(app, hashes, header):
    ran = []

    @app.get("/api/marketplace/cart")
    def cart():
        ran.append(1)

    status, headers, doc = call(app, "/api/marketplace/cart",
                                headers={} if header is None else {"HTTP_AUTHORIZATION": header})
    assert status == 401 and doc["code"] == "UNAUTHENTICATED" and not ran
    assert len(hashes) == 1 and headers["Www-Authenticate"] == "Bearer"  # Bottle title-cases names


def test_a_route_that_needs_no_token_hashes_none_until_it_asks(app, hashes):
    @app.get("/x")
    def anonymous():
        return {"ok": True}

    assert call(app, headers={"HTTP_AUTHORIZATION": "Bearer tok-3"})[0] == 200 and hashes == []


def test_the_request_id_is_32_random_hex_digits_unless_the_client_sent_a_well_formed_one(app):
    @app.get("/x")
    def ok():
        return {"ok": True}

    ids = {call(app)[1]["X-Request-Id"] for _ in range(50)}
    assert len(ids) == 50 and all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in ids)
    assert call(app, headers={"HTTP_X_REQUEST_ID": "client-7:a.b_c"})[1]["X-Request-Id"] == "client-7:a.b_c"
    for bad in ("", "has space", "x" * 65, "é"):
        assert re.fullmatch(r"[0-9a-f]{32}", call(app, headers={"HTTP_X_REQUEST_ID": bad})[1]["X-Request-Id"]), bad
