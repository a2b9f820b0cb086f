"""mk_http_server_errors_total{status}, the metric of the alert MarketplaceServerErrors
(monitoring/alerts.yml): an unhandled error counts as a 500, a 503 under its own status, other
answers not at all; in-process through WSGI (tests/integration/test_http_ops.py's mini app), then once through
the HTTP server to see both series exported at 0 in multiprocess mode."""
from __future__ import annotations

import json
import re

import bottle
import requests

from pyapp.web import plugin as web
from tests.integration.test_http_ops import _call, _mini_app


def counts() -> dict:
    """{(metric, label value): value} of the two HTTP response counters, whichever registry
    pyapp.metrics uses in this process."""
    out = {}
    for name, labels, value in web.METRICS.samples():
        if name == "mk_http_server_errors_total":
            out[("status", labels["status"])] = value
        elif name == "mk_http_responses_total":
            out[("class", labels["class"])] = value
    return out


def delta(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)
            if after.get(k, 0) != before.get(k, 0)}


def test_unhandled_error_counts_as_a_500_and_a_503_as_itself():
    a = _mini_app()

    @a.get("/bug")
    def bug(db):
        raise RuntimeError("a bug")

    @a.get("/maintenance")
    def maintenance(db):
        raise web.Problem(503, "MAINTENANCE", "Service unavailable", "maintenance mode is on")

    @a.get("/fine")
    def fine():
        return {"ok": True}

    @a.get("/moved")
    def moved():
        bottle.redirect("/fine", 303)

    @a.get("/aborted")
    def aborted():
        bottle.abort(500, "aborted")

    before = counts()
    r = _call(a, path="/bug")
    assert r["status"] == 500 and json.loads(r["body"])["code"] == "INTERNAL_ERROR"
    assert delta(before, counts()) == {("status", "500"): 1, ("class", "5xx"): 1}

    before = counts()
    assert _call(a, path="/maintenance")["status"] == 503
    assert delta(before, counts()) == {("status", "503"): 1, ("class", "5xx"): 1}

    before = counts()
    assert _call(a, path="/fine")["status"] == 200
    assert _call(a, path="/missing")["status"] == 404
    assert delta(before, counts()) == {("class", "2xx"): 1, ("class", "4xx"): 1}

    # A redirect raised by a route is counted once, as what it is (not as a 500).
    before = counts()
    assert _call(a, path="/moved")["status"] == 303
    assert delta(before, counts()) == {("class", "3xx"): 1}

    # An HTTPError raised by a route goes through error_handler, which counts it, once.
    before = counts()
    r = _call(a, path="/aborted")
    assert r["status"] == 500 and r["headers"]["Content-Type"] == "application/problem+json"
    assert delta(before, counts()) == {("status", "500"): 1, ("class", "5xx"): 1}


def test_server_error_series_are_exported_at_zero_under_the_server(http_app):  # noqa: F811
    text = requests.get(http_app.url + "/metrics", timeout=10).text
    assert "# TYPE mk_http_server_errors_total counter" in text
    for status in ("500", "503"):
        m = re.search(rf'^mk_http_server_errors_total{{status="{status}"}} ([0-9.e+-]+)$', text, re.M)
        assert m and float(m.group(1)) == 0, (status, text)
