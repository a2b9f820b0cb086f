"""Request parsing without a server or a database: JSON bodies, field shapes, query integers and
If-Match versions (pyapp.web.parsing)."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest

from pyapp import openapi
from pyapp.web.parsing import INT32, MAX_DEPTH, depth, etag_version, field, parse_json_object, parse_query_int
from pyapp.web.problems import Problem


def refused(fn, *args) -> Problem:
    with pytest.raises(Problem) as info:
        fn(*args)
    return info.value


def test_a_json_object_parses_with_exact_numbers_and_keeps_its_text():
    value, text = parse_json_object(b'{"price": 12.30, "stock": 5}')
    assert value == {"price": Decimal("12.30"), "stock": 5} and isinstance(value["price"], Decimal)
    assert text == '{"price": 12.30, "stock": 5}'


@pytest.mark.parametrize("raw, says", [
    (b"", "must be a JSON object"),
    (b"   ", "must be a JSON object"),
    (b"[1, 2]", "must be a JSON object"),
    (b"{", "not valid JSON"),
    (b'{"a": NaN}', "not valid JSON"),
    (b'{"a": Infinity}', "not valid JSON"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (b'{"a": "\\ud800"}', "unpaired UTF-16 surrogate"),
    (b'{"a": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", f"deeper than {MAX_DEPTH}"),
])
def test_a_body_that_is_not_a_json_object_is_a_400_invalid_json(raw, says):
    p = refused(parse_json_object, raw)
    assert (p.status, p.code, p.title) == (400, "INVALID_JSON", "Malformed JSON")
    assert says in p.detail


def test_depth_counts_nesting_and_stops_past_the_limit():
    assert depth({}) == 1 and depth({"a": [1, {"b": []}]}) == 4 and depth(5) == 0
    deep: list = []
    for _ in range(MAX_DEPTH + 10):
        deep = [deep]
    assert depth(deep) == MAX_DEPTH + 1


def test_field_shapes():
    body = {"name": "x", "n": Decimal("3"), "big": 2 ** 31, "t": True, "price": Decimal("1.50"), "o": {}}
    assert field(body, "name", "str") == "x"
    assert field(body, "n", "int") == 3  # an integral Decimal is an integer
    assert field(body, "price", "number") == "1.50"  # to SQL as exact text
    assert field(body, "o", "object") == {}
    assert field(body, "missing", "str", required=False) is None
    for name, kind in (("big", "int"), ("t", "int"), ("t", "number"), ("name", "object"), ("n", "str")):
        p = refused(field, body, name, kind)
        assert (p.status, p.code, p.ext["field"]) == (400, "INVALID_ARGUMENT", name)
    p = refused(field, {"name": "x" * 11}, "name", "str", True, 10)
    assert "at most 10 characters" in p.detail
    p = refused(field, {}, "quantity", "int")
    assert p.detail == "quantity is required" and p.ext == {"field": "quantity"}
    assert refused(field, {"p": Decimal("1e15")}, "p", "number").detail == "p is out of range"


def test_query_integers():
    assert parse_query_int("limit", None, 50) == 50
    assert parse_query_int("limit", "-7", 50) == -7
    assert parse_query_int("limit", str(INT32[1]), 50) == INT32[1]
    for raw in ("", "1.5", "abc", "12345678901", str(INT32[1] + 1), " 3"):
        p = refused(parse_query_int, "limit", raw, 50)
        assert p.code == "INVALID_ARGUMENT" and p.ext["field"] == "limit", raw


def test_if_match_versions():
    pattern = re.compile(openapi.ETAG_PATTERN)
    assert etag_version('"3"', pattern) == 3
    assert etag_version('W/"12"', pattern) == 12
    assert etag_version(" 7 ", pattern) == 7
    assert etag_version('"9999999999"', pattern) == 0  # no product has it: stale, answered 409
    p = refused(etag_version, '"abc"', pattern)
    assert p.code == "INVALID_ARGUMENT" and p.ext["field"] == "If-Match"
