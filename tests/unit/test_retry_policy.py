"""The error registry and its retry policy without a database (pyapp.db.registry, pyapp.web.errors):
the rows are read from sql/api/error_codes.sql as the API document reads them, and a database
error becomes the problem its row says."""
from __future__ import annotations

import pytest

from pyapp.db.registry import Code, Registry, detail_json, parse, shipped
from pyapp.web.errors import problem_from_db
from tests.support.db_errors import DbError


def by_code(name: str) -> Code:
    return next(c for c in shipped().codes if c.code == name and (c.sqlstate or "").startswith("MK"))


def test_the_shipped_registry_is_read_from_the_sql_file():
    reg = shipped()
    assert len(reg.by_state) == len(reg.codes) >= 20  # one row per SQLSTATE
    assert reg.code_name("40001") == reg.code_name("40P01") == reg.code_name("55P03") == "CONCURRENCY_CONFLICT"
    assert {c.retryable for c in reg.codes} <= {"yes", "detail", "no"}
    assert all(c.retry_after for c in reg.codes if c.status in (429, 503))
    assert by_code("INSUFFICIENT_STOCK").title == "Stock insuficiente"


def test_parse_reads_quotes_and_nulls_and_refuses_text_without_rows():
    reg = parse("""VALUES ('MKX01', 'SOME_CODE', 409, 'It''s taken', 'no', NULL::integer, 'the user''s'),
                          ('40001', 'CONFLICT', 409, 'T', 'yes', 1, 'd')""")
    assert reg.codes == (Code("MKX01", "SOME_CODE", 409, "It's taken", "no", None, "the user's"),
                         Code("40001", "CONFLICT", 409, "T", "yes", 1, "d"))
    with pytest.raises(ValueError):
        parse("SELECT 1")


def test_which_errors_are_retried():
    transient, stale = shipped().get("40P01"), by_code("CONCURRENCY_CONFLICT")
    assert transient.retries({}) and transient.conflict
    assert stale.conflict and stale.retries({"retryable": True})
    assert not stale.retries({}) and not stale.retries({"retryable": "true"})
    assert not by_code("MAINTENANCE").retries({"retryable": True}) and not by_code("MAINTENANCE").conflict


def test_retry_after_the_detail_wins_for_any_status():
    stale, limited = by_code("CONCURRENCY_CONFLICT"), by_code("TOO_MANY_ATTEMPTS")
    assert limited.retry_after_header({}) == str(limited.retry_after)
    assert limited.retry_after_header({"retryAfter": 90}) == "90"
    assert limited.retry_after_header({"retryAfter": 0}) == "1"
    assert limited.retry_after_header({"retryAfter": True}) == str(limited.retry_after)
    assert stale.retry_after_header({}) is None  # a stale version: re-read, do not just retry
    assert stale.retry_after_header({"retryable": True}) == "1"
    assert by_code("INVALID_STATE").retry_after_header({"retryAfter": 12}) == "12"
    assert by_code("INVALID_STATE").retry_after_header({}) is None


def test_a_project_error_becomes_its_registry_problem_with_the_detail_members():
    exc = DbError(shipped().codes[0].sqlstate or "", "not enough stock",
                  {"products": [{"productId": "p", "requested": 3, "available": 1}]})
    p = problem_from_db(exc, None)
    assert p is not None and (p.status, p.code, p.title, p.detail) == (
        400, "INSUFFICIENT_STOCK", "Stock insuficiente", "not enough stock")
    assert p.ext["products"][0]["available"] == 1 and p.headers == {}


def test_maintenance_carries_the_detail_retry_after():
    state = by_code("MAINTENANCE").sqlstate or ""
    p = problem_from_db(DbError(state, "maintenance mode is on", {"retryAfter": 30, "maintenance": True}), None)
    assert p is not None and p.status == 503 and p.headers == {"Retry-After": "30"} and p.ext["maintenance"]


def test_postgresql_own_codes_answer_with_the_registry_text():
    p = problem_from_db(DbError("57014", "canceling statement due to statement timeout"), None)
    assert p is not None and (p.status, p.code, p.headers) == (503, "TIMEOUT", {"Retry-After": "5"})
    assert p.detail == "the database took too long to answer"


def test_errors_outside_the_registry():
    missing = problem_from_db(DbError("42883", "function app.x() does not exist"), None)
    assert missing is not None and missing.code == "NOT_MIGRATED" and missing.headers == {"Retry-After": "30"}
    bad = problem_from_db(DbError("22P02", "invalid input syntax for type integer"), None)
    assert bad is not None and (bad.status, bad.code, bad.detail) == (
        400, "INVALID_ARGUMENT", "invalid input syntax for type integer")
    down = problem_from_db(DbError("57P01", "terminating connection due to administrator command"), None)
    assert down is not None and down.code == "DATABASE_UNAVAILABLE" and down.ext == {"database": "unreachable"}
    assert problem_from_db(DbError("42P01", "relation does not exist"), None) is None  # a bug: 500


def test_a_loaded_registry_is_used_before_the_shipped_one():
    reg = Registry.from_rows([("MKZ99", "LOADED_CODE", 418, "Teapot", "no", None, "from the database")])
    p = problem_from_db(DbError("MKZ99", "short and stout"), reg)
    assert p is not None and (p.status, p.code, p.detail) == (418, "LOADED_CODE", "short and stout")


def test_detail_json_accepts_only_objects():
    assert detail_json(DbError("MKZ99", detail={"a": 1})) == {"a": 1}
    assert detail_json(DbError("MKZ99", detail="[1]")) == {}
    assert detail_json(DbError("MKZ99", detail="not json")) == {}
    assert detail_json(DbError("MKZ99", detail=None)) == {}
