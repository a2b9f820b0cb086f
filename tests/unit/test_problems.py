"""Problem rendering without a server: the RFC 9457 members, extension members from DETAIL, the
HTTP layer's own codes and the code Bottle's own errors get (pyapp.web.problems, render)."""
from __future__ import annotations

import json

from bottle import response

from pyapp.web.problems import (
    APP_CODES,
    PROBLEM_TYPE,
    Problem,
    all_codes,
    app_problem,
    bad_request,
    code_for_status,
    conflict,
    unavailable,
    with_ext,
)
from pyapp.web.render import PROBLEM_MEDIA, dumps, render_problem


def test_the_body_has_the_standard_members_and_they_win_over_extensions():
    p = with_ext(Problem(409, "CONCURRENCY_CONFLICT", "Concurrent modification", "stale"),
                 {"currentVersion": 4, "status": 200, "code": "X", "requestId": "forged"}, retryable=False)
    body = p.body("rid-1")
    assert body == {"type": PROBLEM_TYPE + "concurrency-conflict", "title": "Concurrent modification",
                    "status": 409, "detail": "stale", "code": "CONCURRENCY_CONFLICT", "currentVersion": 4,
                    "retryable": False, "requestId": "rid-1"}


def test_detail_defaults_to_the_title():
    assert Problem(404, "NOT_FOUND", "Not found").body("r")["detail"] == "Not found"


def test_render_sets_status_media_type_and_headers():
    response.bind()
    text = render_problem(unavailable("no database connection is available", database="busy"), "rid-2")
    assert response.status_code == 503 and response.content_type == PROBLEM_MEDIA
    assert response.get_header("Retry-After") == "5"
    doc = json.loads(text)
    assert (doc["code"], doc["database"], doc["requestId"]) == ("DATABASE_UNAVAILABLE", "busy", "rid-2")


def test_app_codes_carry_their_status_title_and_retry_after():
    busy = app_problem("BUSY", "every slot is taken")
    assert (busy.status, busy.title, busy.headers) == (503, "Service unavailable", {"Retry-After": "1"})
    missing = app_problem("NOT_MIGRATED", "run migrate", database="ok", migrations="missing")
    assert missing.headers == {"Retry-After": "30"} and missing.ext == {"database": "ok", "migrations": "missing"}
    assert app_problem("PRECONDITION_REQUIRED", "send If-Match").headers == {}
    assert bad_request("x", "quantity").ext == {"field": "quantity"} and bad_request("x").ext == {}


def test_a_conflict_given_up_says_how_often_and_when_to_retry():
    p = conflict(4, {"productId": "p1"}, None)
    assert (p.status, p.code, p.headers) == (409, "CONCURRENCY_CONFLICT", {"Retry-After": "1"})
    assert p.ext == {"productId": "p1", "retryable": True, "attempts": 4} and "4 time(s)" in p.detail
    assert conflict(1, {}, "7").headers == {"Retry-After": "7"}


def test_bottle_errors_get_the_registry_codes():
    assert [code_for_status(s) for s in (400, 401, 403, 404, 405, 413, 500, 418)] == [
        "BAD_REQUEST", "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "METHOD_NOT_ALLOWED", "PAYLOAD_TOO_LARGE",
        "INTERNAL_ERROR", "HTTP_ERROR"]


def test_every_code_has_an_error_status_a_title_and_a_description():
    for c in all_codes():
        assert 400 <= c.status <= 599 and c.title and c.description, c
    assert not {c.code for c in APP_CODES.codes} & {c.code for c in all_codes() if c.sqlstate}


def test_dumps_writes_decimals_as_numbers_and_keeps_unicode():
    from decimal import Decimal
    assert dumps({"p": Decimal("1.50"), "n": "é"}) == '{"p": 1.5, "n": "é"}'


def test_the_api_document_error_texts_come_from_the_registry():
    from pyapp import openapi

    responses = openapi.document()["components"]["responses"]
    for c in all_codes():
        r = responses[f"E{c.status}"]
        assert f"{c.code} (" in r["description"], c
        if c.retry_after:
            assert "Retry-After" in r["headers"], c
    assert responses["E503"]["headers"]["Retry-After"]["required"] is True
    assert "required" not in responses["E409"]["headers"]["Retry-After"]  # only where a retry can succeed
