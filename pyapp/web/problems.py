"""Problems: every HTTP error is an RFC 9457 application/problem+json document.

A Problem carries its status, code, title, detail, headers and extension members. The codes the
HTTP layer raises itself (no SQLSTATE: a malformed body, a missing precondition, no database) are
listed in APP_CODES beside the database's registry (pyapp.db.registry), so that the API document
and Bottle's own errors read both the same way.
"""
from __future__ import annotations

from pyapp.db.registry import Code, Registry, shipped

PROBLEM_TYPE = "https://marketplace.example/problems/"
RESERVED = frozenset({"type", "title", "status", "detail", "code", "instance", "requestId"})

# The HTTP layer's own codes, in the order Bottle's errors pick them (the first of a status).
APP_CODES = Registry((
    Code(None, "BAD_REQUEST", 400, "Bad Request", description="a request Bottle itself could not read"),
    Code(None, "INVALID_JSON", 400, "Malformed JSON",
         description="a body that is not a JSON object: malformed, not UTF-8, or nested too deep"),
    Code(None, "METHOD_NOT_ALLOWED", 405, "Method Not Allowed",
         description="the method is not allowed on this route"),
    Code(None, "PAYLOAD_TOO_LARGE", 413, "Payload too large", description="the body exceeds 64 KiB"),
    Code(None, "PRECONDITION_REQUIRED", 428, "Precondition required",
         description='PATCH without If-Match or a "version" field'),
    Code(None, "INTERNAL_ERROR", 500, "Internal server error",
         description="an unexpected error; no internals are disclosed, the requestId finds the log line"),
    Code(None, "NOT_MIGRATED", 503, "Service unavailable", retry_after=30,
         description="the database lacks this version's schema"),
    Code(None, "BUSY", 503, "Service unavailable", retry_after=1,
         description="login and sign-up: every password-hashing slot of the server is taken"),
    Code(None, "DATABASE_UNAVAILABLE", 503, "Service unavailable", retry_after=5,
         description="member `database`: `unreachable`, or `busy` when every pooled connection of the "
                     "server is in use"),
))
_BY_CODE = {c.code: c for c in APP_CODES.codes}


def all_codes() -> tuple[Code, ...]:
    """Every code an answer may carry: the HTTP layer's, then the shipped registry's."""
    return APP_CODES.codes + shipped().codes


def code_for_status(status: int) -> str:
    """The code of one of Bottle's own errors (unknown route, wrong method, ...) by its status."""
    c = APP_CODES.first_for_status(status) or shipped().first_for_status(status)
    return c.code if c else "HTTP_ERROR"


class Problem(Exception):
    """An HTTP error answered as application/problem+json; `ext` are extension members."""

    def __init__(self, status: int, code: str, title: str, detail: str = "",
                 headers: dict | None = None, **ext):
        super().__init__(detail or title)
        self.status, self.code, self.title, self.detail = status, code, title, detail or title
        self.headers = headers or {}
        self.ext = ext

    def body(self, request_id: str) -> dict:
        doc = {"type": PROBLEM_TYPE + self.code.lower().replace("_", "-"), "title": self.title,
               "status": self.status, "detail": self.detail, "code": self.code}
        doc.update({k: v for k, v in self.ext.items() if k not in RESERVED})
        doc["requestId"] = request_id
        return doc


def app_problem(code: str, detail: str, **ext) -> Problem:
    """A problem of the HTTP layer's own codes (APP_CODES), with its status, title and Retry-After."""
    c = _BY_CODE[code]
    headers = {"Retry-After": str(c.retry_after)} if c.retry_after else None
    return Problem(c.status, c.code, c.title, detail, headers=headers, **ext)


def with_ext(p: Problem, detail: dict, **more) -> Problem:
    """Adds a database error's DETAIL members (and `more`) as extension members; the standard
    members (type, title, status, detail, code) always win."""
    p.ext.update(detail)
    p.ext.update(more)
    return p


def bad_request(detail: str, field: str | None = None) -> Problem:
    if field:
        return Problem(400, "INVALID_ARGUMENT", "Invalid argument", detail, field=field)
    return Problem(400, "INVALID_ARGUMENT", "Invalid argument", detail)


def invalid_json(detail: str) -> Problem:
    return app_problem("INVALID_JSON", detail)


def unavailable(detail: str, database: str = "unreachable") -> Problem:
    """503: no database for this request; `database` is "unreachable" or "busy" (pool exhausted)."""
    return app_problem("DATABASE_UNAVAILABLE", detail, database=database)


def unauthenticated(detail: str, challenge: str | None = None) -> Problem:
    """401; `challenge` is the WWW-Authenticate header, when the request carried no credentials."""
    return Problem(401, "UNAUTHENTICATED", "Authentication required", detail,
                   headers={"WWW-Authenticate": challenge} if challenge else None)


def conflict(attempts: int, detail: dict, retry_after: str | None) -> Problem:
    """409 for a transient conflict the server gave up retrying (or may not retry)."""
    return with_ext(Problem(409, "CONCURRENCY_CONFLICT", "Concurrent modification",
                            f"the request collided with concurrent changes {attempts} time(s); retry it",
                            headers={"Retry-After": retry_after or "1"}),
                    detail, retryable=True, attempts=attempts)
