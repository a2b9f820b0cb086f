"""Request parsing: the request id, the caller (the bearer token's hash, computed once), the body
(64 KiB, read once), JSON objects, the shape of their fields and query parameters. Shapes only
(type, length, int32 range); the rules live in SQL. Everything refused here is a 400 (or 413)
problem, never a 500."""
from __future__ import annotations

import json
import os
import re
from decimal import Decimal

from bottle import request

from pyapp import auth
from pyapp.web.problems import Problem, bad_request, invalid_json
from pyapp.web.render import dumps

MAX_BODY = 64 * 1024
MAX_DEPTH = 32
INT32 = (-(2 ** 31), 2 ** 31 - 1)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_QUERY_INT_RE = re.compile(r"-?[0-9]{1,10}")


def request_id() -> str:
    """The request's id: the client's X-Request-Id when it is well formed, else a new one, 32
    random hex digits (the shape uuid4().hex had, from the same 16 random bytes without building
    a UUID)."""
    env = request.environ
    rid = env.get("mk.request_id")
    if rid is None:
        given = env.get("HTTP_X_REQUEST_ID")
        rid = given if given and _REQUEST_ID_RE.match(given) else os.urandom(16).hex()
        env["mk.request_id"] = rid
    return rid


def caller() -> str | None:
    """The caller: the SHA-256 hex of the request's bearer token (None without one), hashed once
    per request and kept in the environ, where the plugin's check and the route both find it."""
    env = request.environ
    if "mk.caller" not in env:
        # Bottle's get_header decodes the value as UTF-8 (the plugin answers 400 when it is not).
        env["mk.caller"] = auth.bearer_hash(request.get_header("Authorization"))
    return env["mk.caller"]


def _too_large() -> Problem:
    return Problem(413, "PAYLOAD_TOO_LARGE", "Payload too large", f"request bodies are limited to {MAX_BODY} bytes")


def read_body() -> bytes:
    """The raw body, read once (Content-Length or chunked), at most MAX_BODY bytes."""
    env = request.environ
    if "mk.body" in env:
        return env["mk.body"]
    length = env.get("CONTENT_LENGTH") or ""
    stream = env.get("wsgi.input")
    if length.strip():
        try:
            n = int(length)
        except ValueError:
            raise bad_request("Content-Length is not a number") from None
        if n > MAX_BODY:
            raise _too_large()
        raw = stream.read(n) if (stream is not None and n > 0) else b""
    elif "chunked" in env.get("HTTP_TRANSFER_ENCODING", "").lower() and stream is not None:
        raw = stream.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise _too_large()
    else:
        raw = b""
    env["mk.body"] = raw
    return raw


def raw_body() -> bytes:
    return read_body()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def depth(value) -> int:
    """How deep a parsed JSON value nests (stops counting past MAX_DEPTH)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if d > MAX_DEPTH:
                return d
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def parse_json_object(raw: bytes) -> tuple[dict, str]:
    """A body as a JSON object (numbers with a fraction as Decimal) and its text, or a 400 problem."""
    if not raw.strip():
        raise invalid_json("the request body must be a JSON object")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise invalid_json("the request body is not valid UTF-8") from None
    except RecursionError:
        raise invalid_json(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers of more than 4300 digits
        raise invalid_json(f"the request body is not valid JSON: {exc}"[:300]) from None
    if not isinstance(value, dict):
        raise invalid_json("the request body must be a JSON object")
    if depth(value) > MAX_DEPTH:
        raise invalid_json(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:  # "\ud800" parses into a lone surrogate, which no UTF-8 database text can hold
        dumps(value).encode("utf-8")
    except UnicodeEncodeError:
        raise invalid_json("the JSON holds an unpaired UTF-16 surrogate escape") from None
    return value, text


def json_body() -> dict:
    """The request body as a JSON object (numbers with a fraction as Decimal), or a 400 problem."""
    value, text = parse_json_object(read_body())
    request.environ["mk.body_text"] = text
    return value


def body_text() -> str:
    """The validated request body as text (after json_body), to hand to SQL as jsonb unchanged."""
    return request.environ["mk.body_text"]


def field(body: dict, name: str, kind: str, required: bool = True, max_len: int = 10_000):
    """Checks the *shape* of one field (type, int32 range for integers); rules live in SQL."""
    if name not in body or body[name] is None:
        if required:
            raise bad_request(f"{name} is required", name)
        return None
    v = body[name]
    if kind == "str":
        if not isinstance(v, str) or len(v) > max_len:
            raise bad_request(f"{name} must be a string of at most {max_len} characters", name)
        return v
    if kind == "int":
        if isinstance(v, Decimal) and v.is_finite() and v == v.to_integral_value() and INT32[0] <= v <= INT32[1]:
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or not INT32[0] <= v <= INT32[1]:
            raise bad_request(f"{name} must be an integer between {INT32[0]} and {INT32[1]}", name)
        return v
    if kind == "number":
        if isinstance(v, bool) or not isinstance(v, (int, Decimal)) or (isinstance(v, Decimal) and not v.is_finite()):
            raise bad_request(f"{name} must be a number", name)
        if abs(Decimal(v)) >= Decimal("1e15"):
            raise bad_request(f"{name} is out of range", name)
        return str(v)
    if kind == "object":
        if not isinstance(v, dict):
            raise bad_request(f"{name} must be a JSON object", name)
        return v
    raise ValueError(kind)


def _given_once(name: str) -> None:
    if len(request.query.getall(name)) > 1:
        raise bad_request(f"query parameter {name} may be given only once", name)


def parse_query_int(name: str, raw: str | None, default: int) -> int:
    """An integer query parameter's value, or `default` when it is absent; an empty value is refused."""
    if raw is None:
        return default
    if not _QUERY_INT_RE.fullmatch(raw) or not INT32[0] <= int(raw) <= INT32[1]:
        raise bad_request(f"query parameter {name} must be an integer", name)
    return int(raw)


def query_int(name: str, default: int) -> int:
    """An integer query parameter, or `default` when it is absent; an empty value is refused."""
    _given_once(name)
    return parse_query_int(name, request.query.get(name), default)


def query_str(name: str, max_len: int = 200) -> str | None:
    _given_once(name)
    raw = request.query.getunicode(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_len:
        raise bad_request(f"query parameter {name} is too long", name)
    return raw


def etag_version(if_match: str, pattern: re.Pattern) -> int:
    """The version an If-Match ETag names; one past int32 reads as 0 (stale, as any other)."""
    m = pattern.match(if_match)
    if not m:
        raise bad_request('If-Match must be an ETag such as "3"', "If-Match")
    version = int(m.group(2))
    return 0 if version > INT32[1] else version
