"""The plugin's retries and answers in-process through WSGI, with no database: the routes here
raise the errors a database would, and never take a connection (pyapp.web.plugin)."""
from __future__ import annotations

import io
import json

import bottle
import psycopg
import pytest

from pyapp.db.pool import Pool
from pyapp.db.registry import shipped
from pyapp.metrics import METRICS
from pyapp.web import plugin
from pyapp.web.plugin import MAX_ATTEMPTS, ApiPlugin
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
