"""Errors to problems: a database error by the registry's policy (pyapp.db.registry), and Bottle's
own errors (unknown route, wrong method, anything that escaped the plugin) as problem+json.

Nothing here names a SQLSTATE of the project: status, title, retry and Retry-After come from the
registry the worker loaded from the database (or, before it could, the one this version ships).
What stays here is what holds when the registry cannot be read: a database without this
version's schema, a node that cannot write (a standby during a failover), a malformed value
(class 22), and an unavailable database.
"""
from __future__ import annotations

import logging

import bottle
import psycopg
from bottle import request, response

from pyapp.db.pool import SCHEMA_MISSING, is_unavailable
from pyapp.db.registry import PROJECT_CLASS, Registry, detail_json, shipped
from pyapp.db.replicas import NOT_PRIMARY
from pyapp.metrics import METRICS
from pyapp.web.logs import log_event
from pyapp.web.parsing import request_id
from pyapp.web.problems import Problem, app_problem, bad_request, code_for_status, unavailable, with_ext
from pyapp.web.render import PROBLEM_MEDIA, dumps

UNEXPECTED = "an unexpected error occurred; the request id identifies it in the logs"


def problem_from_db(exc: psycopg.Error, registry: Registry | None) -> Problem | None:
    """The problem for a database error, mechanically; None for one that is a bug (answered 500).
    A transient conflict the caller gave up retrying is answered by problems.conflict instead."""
    state = exc.sqlstate or ""
    code = (registry or shipped()).get(state)
    if code is not None:
        detail = detail_json(exc)
        after = code.retry_after_header(detail)
        if state.startswith(PROJECT_CLASS):
            text = (exc.diag.message_primary if exc.diag else None) or ""
        else:  # PostgreSQL's own message is not for clients: the registry says what it means
            text = code.description
        return with_ext(Problem(code.status, code.code, code.title, text,
                                headers={"Retry-After": after} if after else {}), detail)
    if state in NOT_PRIMARY:  # a standby, or a demoted primary: the plugin drops the connection
        return unavailable("the database node this request reached cannot write (failover or switchover in progress); "
                           "retry shortly", database="read-only")
    if state in SCHEMA_MISSING:
        return app_problem("NOT_MIGRATED",
                           "the database has not got this version's schema: run python -m pyapp migrate (or deploy)",
                           database="ok", migrations="missing")
    if state.startswith("22") or (isinstance(exc, psycopg.DataError) and not state):
        message = (exc.diag.message_primary if exc.diag else None) or ""
        return bad_request(message or "a value is malformed or out of range")
    if is_unavailable(exc):
        return unavailable("the database is unreachable")
    return None


def error_handler(err: bottle.HTTPError) -> str:
    """Replaces Bottle's HTML error page: unknown routes, wrong methods, bad paths, and anything that
    escaped the plugin all become problem+json."""
    status = err.status_code
    code = code_for_status(status)
    if status >= 500:
        log_event("UnhandledError", logging.ERROR, method=request.method, path=request.path,
                  error=type(err.exception).__name__ if err.exception else "HTTPError",
                  traceback=(err.traceback or "")[-4000:])
        detail = UNEXPECTED
    elif status == 404:
        detail = "no such resource"
    elif status == 405:
        detail = f"method {request.method} is not allowed here"
    else:
        detail = err.body if isinstance(err.body, str) else ""
    title = bottle.HTTP_CODES.get(status, "Error")
    rid = request_id()
    response.status = status
    response.content_type = PROBLEM_MEDIA
    response.set_header("X-Request-Id", rid)
    METRICS.request(status)
    return dumps(Problem(status, code, title, detail).body(rid))
