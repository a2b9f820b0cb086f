"""The one Bottle plugin of the HTTP app (Bottle plugin API v2).

ApiPlugin owns, for every route: the request id, the 401 of an operation that needs a bearer
token and got none (the token's hash, computed there once per request, is the caller the route's
token() reuses: pyapp.web.parsing.caller), the body limit (read once), a pooled database
connection (the `db` keyword, pyapp.db.pool), retries of transient conflicts with exponential
backoff and full jitter (which conflicts, from the registry's policy), the mapping of every error
to problem+json (pyapp.web.errors), JSON rendering and the metrics (pyapp.metrics).

Route options live under the plugin's name, `api`:
    @app.get("/health", api={"retry": False, "db_timeout": 2.0})
  api.retry       False: never retry a conflict on this route;
  api.metric      "checkout": count the route's outcome and latency;
  api.db_timeout  seconds: a shorter wait for a pooled connection;
  api.replica     True: a catalogue read, served from READ_DATABASE_URL's pool when that is set.
setup() installs the problem+json error handler and turns Bottle's JSON plugin off (this one
renders); close(), called by app.close() (pyapp/server.py's worker_exit), stops the metrics flusher,
flushes the persisted figures and closes the pools.
"""
from __future__ import annotations

import inspect
import logging
import random
import time
import traceback

import bottle
import psycopg
from bottle import request, response

from pyapp import config, openapi
from pyapp.db.pool import DatabaseUnavailable, Db, Pool
from pyapp.db.registry import detail_json, shipped
from pyapp.db.replicas import NOT_PRIMARY
from pyapp.metrics import METRICS, STATS, checkout_outcome
from pyapp.web.errors import UNEXPECTED, error_handler, problem_from_db
from pyapp.web.logs import log_event, stats_flush_failed
from pyapp.web.parsing import caller, read_body, request_id
from pyapp.web.problems import Problem, bad_request, conflict, unauthenticated, unavailable
from pyapp.web.render import dumps, render_problem

MAX_ATTEMPTS = 4
BACKOFF_BASE_S = 0.010
BACKOFF_CAP_S = 0.200
RETRY_DEADLINE_S = 2.0
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ApiPlugin:
    """See the module's docstring. `pool` is the worker's Pool (a new one by default)."""

    name = "api"
    api = 2

    def __init__(self, pool: Pool | None = None):
        self.pool = pool or Pool()
        self.read_pool = Pool(read=True)  # used only when READ_DATABASE_URL is set

    def setup(self, app: bottle.Bottle) -> None:
        app.config["json.enable"] = False
        app.default_error_handler = error_handler

    def close(self) -> None:
        STATS.stop()
        STATS.flush(self.pool)
        self.pool.close()
        self.read_pool.close()

    def apply(self, callback, route):
        # Not route.get_undecorated_callback(): it loops forever on a closure without callables.
        wants_db = "db" in inspect.signature(route.callback).parameters
        retry = route.config.get("api.retry", True)
        metric = route.config.get("api.metric")
        db_timeout = route.config.get("api.db_timeout")
        reads = route.config.get("api.replica", False)
        # The document's `security` says which operations need a bearer token: without one, 401
        # before the body, a header or the database is looked at (the token itself is checked there).
        bearer = openapi.bearer_required(route.method, route.rule)
        plugin = self

        def wrapper(*args, **kwargs):
            started = time.monotonic()
            STATS.start(plugin.pool, stats_flush_failed)  # once per worker process
            rid = request_id()
            status, code = 500, None
            counted_by_error_handler = False
            try:
                if bearer and caller() is None:
                    raise unauthenticated("send Authorization: Bearer <token> (from POST /api/auth/login)", "Bearer")
                if request.method in _WRITES:
                    read_body()
                if wants_db:
                    result = plugin._run(callback, args, kwargs, retry, db_timeout, reads)
                else:
                    result = callback(*args, **kwargs)
                status = response.status_code
                if isinstance(result, (dict, list)):
                    response.content_type = "application/json"
                    result = dumps(result)
                return result
            except Problem as p:
                status, code = p.status, p.code
                return render_problem(p, rid)
            except UnicodeDecodeError:
                # Bottle decodes a header (If-Match, Authorization, Idempotency-Key, ...) or the query
                # string as UTF-8 when a route reads it; the body is decoded apart (json_body).
                bad = bad_request("a request header or the query string is not valid UTF-8")
                status, code = bad.status, bad.code
                return render_problem(bad, rid)
            except bottle.HTTPResponse as resp:
                # Bottle renders it: an HTTPError through error_handler, which counts it, so only
                # a plain HTTPResponse (a redirect) is counted here, with its own status, not 500.
                status = resp.status_code
                counted_by_error_handler = isinstance(resp, bottle.HTTPError)
                raise
            except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a clean 500
                log_event("UnhandledError", logging.ERROR, method=request.method, path=request.path,
                          error=type(exc).__name__, message=str(exc)[:500],
                          traceback=traceback.format_exc()[-4000:])
                status = 500
                return render_problem(Problem(500, "INTERNAL_ERROR", "Internal server error", UNEXPECTED), rid)
            finally:
                response.set_header("X-Request-Id", rid)
                if not counted_by_error_handler:
                    METRICS.request(status)
                if metric == "checkout":
                    METRICS.checkout(checkout_outcome(status, code, request.environ.get("mk.outcome")),
                                     time.monotonic() - started)

        return wrapper

    def _run(self, callback, args, kwargs, retry: bool, db_timeout, reads: bool = False):
        pool = self.read_pool if reads and config.get().read_database_url else self.pool
        deadline = time.monotonic() + RETRY_DEADLINE_S
        attempt = 0
        while True:
            attempt += 1
            db = Db(pool, db_timeout)
            try:
                return callback(*args, db=db, **kwargs)
            except DatabaseUnavailable as exc:
                log_event("DatabaseUnavailable", logging.WARNING, path=request.path, message=str(exc),
                          database=exc.database)
                if exc.database == "busy":
                    raise unavailable("every database connection of this server is busy; retry shortly",
                                      database="busy") from None
                raise unavailable("no database connection is available") from None
            except psycopg.Error as exc:
                state = exc.sqlstate or ""
                registry = pool.errors or shipped()
                entry = registry.get(state)
                if state in NOT_PRIMARY:
                    db.discard()  # the pool connects anew; libpq finds the new primary
                if entry is None or not entry.conflict:
                    problem = problem_from_db(exc, registry)
                    if problem is None:
                        raise
                    if problem.status == 503 and problem.code == "DATABASE_UNAVAILABLE":
                        log_event("DatabaseUnavailable", logging.WARNING, path=request.path,
                                  sqlstate=state, message=str(exc)[:300])
                    raise problem from None
                detail = detail_json(exc)
                retryable = entry.retries(detail)
                METRICS.conflict(state)
                log_event("ConcurrencyError", logging.WARNING, path=request.path, sqlstate=state,
                          attempt=attempt, productId=detail.get("productId"), retryable=retryable,
                          message=(exc.diag.message_primary or "")[:300])
                if retry and retryable and attempt < MAX_ATTEMPTS:
                    delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))
                    if time.monotonic() + delay < deadline:
                        db.release()
                        METRICS.retry()
                        time.sleep(delay)
                        continue
                if retryable:
                    raise conflict(attempt, detail, entry.retry_after_header(detail)) from None
                refused = problem_from_db(exc, registry)
                assert refused is not None  # the registry has the code
                raise refused from None
            finally:
                db.release()
