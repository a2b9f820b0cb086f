"""The one Bottle plugin of the HTTP app, and what it needs.

ApiPlugin owns, for every route: the request id, the body limit (64 KiB, read once), a pooled
database connection (`db` keyword), retries of transient conflicts with exponential backoff and
full jitter, the mapping of every error to RFC 9457 application/problem+json (mechanically, from
api.error_codes() for the project's SQLSTATEs), JSON rendering and the metrics (pyapp.metrics:
Prometheus counters summed over the workers, and the per-minute figures each worker persists).

Each api call is a single statement on an autocommit connection, so it is its own transaction and
costs one round trip (authentication is nested into the same statement by the routes).
The connection pool is created lazily on the first request of each worker process, after
gunicorn's fork; lock_timeout and statement_timeout travel in the connection options.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import random
import re
import select
import sys
import threading
import time
import traceback
import uuid
from decimal import Decimal

import bottle
import psycopg
from bottle import request, response
from psycopg_pool import ConnectionPool, PoolTimeout

from pyapp import auth, config, openapi, replicas
from pyapp.metrics import METRICS, STATS, checkout_outcome

MAX_BODY = 64 * 1024
MAX_DEPTH = 32
INT32 = (-(2 ** 31), 2 ** 31 - 1)

# Retries: transient conflicts only (serialization failure, deadlock, lock timeout, and MK409 whose
# DETAIL says "retryable": true). A stale version the client sent is not retried: re-read first.
RETRY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
MAX_ATTEMPTS = 4
BACKOFF_BASE_S = 0.010
BACKOFF_CAP_S = 0.200
RETRY_DEADLINE_S = 2.0
# The database answers but lacks this version's schema app (not migrated yet, or rolled back): no
# schema, no such function, no grant on it. A 503, not a 500: the server is not ready.
SCHEMA_MISSING = frozenset({"3F000", "42883", "42501"})
CONFLICT_RETRY_AFTER = "1"
UNAVAILABLE_RETRY_AFTER = "5"

PROBLEM_TYPE = "https://marketplace.example/problems/"
PROBLEM_MEDIA = "application/problem+json"
RESERVED = frozenset({"type", "title", "status", "detail", "code", "instance", "requestId"})
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


# ---------------------------------------------------------------- problems


class Problem(Exception):
    """An HTTP error answered as application/problem+json; `ext` are extension members."""

    def __init__(self, status: int, code: str, title: str, detail: str = "",
                 headers: dict | None = None, **ext):
        super().__init__(detail or title)
        self.status, self.code, self.title, self.detail = status, code, title, detail or title
        self.headers = headers or {}
        self.ext = ext

    def body(self) -> dict:
        doc = {"type": PROBLEM_TYPE + self.code.lower().replace("_", "-"), "title": self.title,
               "status": self.status, "detail": self.detail, "code": self.code}
        doc.update({k: v for k, v in self.ext.items() if k not in RESERVED})
        doc["requestId"] = request_id()
        return doc


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


class DatabaseUnavailable(Exception):
    """No connection for this request. `database` says why, for the 503 body: "busy" when the
    pool's connections are in use by other requests (an overloaded app, the database is fine),
    "unreachable" when none is in use and none could be had."""

    def __init__(self, message: str, database: str = "unreachable"):
        super().__init__(message)
        self.database = database


# ---------------------------------------------------------------- logging and metrics


_CONFIGURED_LOGGERS: set[str] = set()  # loggers given their handlers in this process


def _logger() -> logging.Logger:
    log = logging.getLogger("marketplace.http")
    if log.name not in _CONFIGURED_LOGGERS:
        log.setLevel(logging.INFO)
        log.propagate = False
        out = logging.StreamHandler(sys.stdout)
        out.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(out)
        path = config.get().log_file
        if path:
            fh = logging.FileHandler(path, encoding="utf-8")
            fh.setFormatter(logging.Formatter("%(message)s"))
            log.addHandler(fh)
        _CONFIGURED_LOGGERS.add(log.name)
    return log


def log_event(event: str, level: int = logging.INFO, **fields) -> None:
    line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z", "level": logging.getLevelName(level),
            "event": event, "requestId": request_id(), "pid": os.getpid(), **fields}
    _logger().log(level, json.dumps(line, default=str, ensure_ascii=False))


def _stats_flush_failed(exc: Exception, minutes: int) -> None:
    """Logs a failed flush of the persisted checkout figures (kept for the next flush)."""
    line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z", "level": "WARNING",
            "event": "StatsFlushFailed", "pid": os.getpid(), "minutes": minutes,
            "error": type(exc).__name__, "message": str(exc)[:300]}
    _logger().warning(json.dumps(line, default=str, ensure_ascii=False))


# ---------------------------------------------------------------- database


class Database:
    """The worker's connection pool and error registry, both made on first use in this process."""

    def __init__(self, read: bool = False):
        self.read = read  # the pool of READ_DATABASE_URL (catalogue reads; pyapp.replicas)
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._pid: int | None = None
        self.errors: dict[str, tuple[int, str, str]] | None = None
        self._in_use = 0  # connections this process's requests hold now (tells "busy" from "unreachable")
        self._healthy_return = float("-inf")  # monotonic time a live connection last came back to the pool

    def pool(self) -> ConnectionPool:
        if self._pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    cfg = config.get()
                    kwargs = {"autocommit": True, "connect_timeout": 3, "application_name": "marketplace-http"}
                    if cfg.pgbouncer:
                        # PgBouncer transaction pooling: each statement may run on another server
                        # connection, so no server-side prepared statements; and PgBouncer refuses
                        # the startup `options`, so the timeouts are the role's (docs/scaling.md).
                        kwargs["prepare_threshold"] = None
                    else:
                        # mk.release_early: api.checkout may commit a queued sale without waiting
                        # for the disk; the checkout route then waits for it (Db.await_durable).
                        kwargs["options"] = (f"-c lock_timeout={cfg.lock_timeout_ms} "
                                             f"-c statement_timeout={cfg.statement_timeout_ms}"
                                             + (" -c mk.release_early=on" if cfg.release_early else ""))
                    pool = ConnectionPool(
                        cfg.read_database_url if self.read else cfg.database_url, min_size=1, max_size=cfg.pool_size, open=False,
                        timeout=cfg.pool_timeout_s, reconnect_timeout=30, max_idle=300,
                        name=f"marketplace-{os.getpid()}", kwargs=kwargs)
                    pool.open(wait=False)
                    self._pool, self._pid, self.errors, self._in_use = pool, os.getpid(), None, 0
        return self._pool

    def getconn(self, timeout: float | None = None) -> psycopg.Connection:
        pool = self.pool()
        wait_started = time.monotonic()
        deadline = wait_started + (pool.timeout if timeout is None else timeout)
        # A pooled connection the server has closed (restart, pg_terminate_backend) is discarded
        # here, before a statement is sent on it; the pool connects a new one in its place.
        for _ in range(pool.max_size + 1):
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise PoolTimeout()
                conn = pool.getconn(timeout=remaining)
            except PoolTimeout as exc:
                # Busy, not unreachable, while this process's requests hold connections or a live
                # one came back during this wait (and went to another waiter: between that return
                # and the next holder's count the in-use count can read 0). With the database
                # down, held connections fail fast and come back broken, so neither holds.
                if self._in_use > 0 or self._healthy_return >= wait_started:
                    raise DatabaseUnavailable("every pooled database connection stayed busy for the pool timeout",
                                              database="busy") from exc
                raise DatabaseUnavailable("no database connection within the pool timeout") from exc
            if not _closed_by_server(conn):
                break
            pool.putconn(conn)
        else:
            raise DatabaseUnavailable("every pooled database connection was found closed")
        with self._lock:
            self._in_use += 1
        if self.errors is None:
            try:
                rows = conn.execute("SELECT sqlstate, code, http_status, title FROM app.error_codes()").fetchall()
            except psycopg.Error as exc:
                if _is_unavailable(exc):
                    self.putconn(conn)
                    raise
                # A database without this version's schema (not migrated yet, or rolled back): the
                # request goes on without the registry (its errors then map by class), and the
                # next one tries to load it again.
                return conn
            self.errors = {s: (status, code, title) for s, code, status, title in rows}
        return conn

    def putconn(self, conn: psycopg.Connection) -> None:
        if self._pool is not None and self._pid == os.getpid():
            with self._lock:
                self._in_use -= 1
                if not (conn.closed or conn.broken):
                    self._healthy_return = time.monotonic()
            self._pool.putconn(conn)

    def close(self) -> None:
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None


def _closed_by_server(conn: psycopg.Connection) -> bool:
    """Whether an idle pooled connection is dead. The server says nothing on an idle connection
    except when it ends it (a FATAL admin_shutdown, or the end of the stream after a crash), so
    a readable socket is checked with an empty query; a quiet one costs no round trip."""
    if conn.closed or conn.broken:
        return True
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        if not poller.poll(0):
            return False
        conn.execute("")
    except (psycopg.Error, OSError, ValueError):
        return True
    return False


class Db:
    """What a route gets as `db`: one connection, taken from the pool on first use."""

    def __init__(self, database: Database, timeout: float | None = None):
        self._database, self._timeout = database, timeout
        self._conn: psycopg.Connection | None = None

    def _c(self) -> psycopg.Connection:
        if self._conn is None:
            self._conn = self._database.getconn(self._timeout)
        return self._conn

    def one(self, query: str, params=()):
        """The first column of the first row (None when there is no row)."""
        row = self._c().execute(query, params).fetchone()
        return None if row is None else row[0]

    def row(self, query: str, params=()):
        return self._c().execute(query, params).fetchone()

    def await_durable(self) -> None:
        """Returns once every commit before it is on disk (and on the synchronous standbys). For
        a transaction committed with synchronous_commit off: a later commit waits for the flush
        of everything before it in the WAL, but only if its own transaction wrote WAL (an xid
        alone commits without a flush). A transactional logical-decoding message is the smallest
        WAL record any role may write."""
        self._c().execute("SELECT pg_logical_emit_message(true, 'marketplace.durable', '')")

    def discard(self) -> None:
        """Closes the connection (it reached a node that cannot write): the pool drops it."""
        if self._conn is not None:
            self._conn.close()

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._database.putconn(conn)


# ---------------------------------------------------------------- request helpers


def request_id() -> str:
    rid = request.environ.get("mk.request_id")
    if rid is None:
        given = request.environ.get("HTTP_X_REQUEST_ID", "")
        rid = given if _REQUEST_ID_RE.match(given) else uuid.uuid4().hex
        request.environ["mk.request_id"] = rid
    return rid


def _read_body() -> bytes:
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
            raise Problem(413, "PAYLOAD_TOO_LARGE", "Payload too large",
                          f"request bodies are limited to {MAX_BODY} bytes")
        raw = stream.read(n) if (stream is not None and n > 0) else b""
    elif "chunked" in env.get("HTTP_TRANSFER_ENCODING", "").lower() and stream is not None:
        raw = stream.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise Problem(413, "PAYLOAD_TOO_LARGE", "Payload too large",
                          f"request bodies are limited to {MAX_BODY} bytes")
    else:
        raw = b""
    env["mk.body"] = raw
    return raw


def raw_body() -> bytes:
    return _read_body()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _depth(value) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if d > MAX_DEPTH:
                return d
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def json_body() -> dict:
    """The request body as a JSON object (numbers with a fraction as Decimal), or a 400 problem."""
    raw = _read_body()
    if not raw.strip():
        raise Problem(400, "INVALID_JSON", "Malformed JSON", "the request body must be a JSON object")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise Problem(400, "INVALID_JSON", "Malformed JSON", "the request body is not valid UTF-8") from None
    except RecursionError:
        raise Problem(400, "INVALID_JSON", "Malformed JSON", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers of more than 4300 digits
        raise Problem(400, "INVALID_JSON", "Malformed JSON", f"the request body is not valid JSON: {exc}"[:300]) from None
    if not isinstance(value, dict):
        raise Problem(400, "INVALID_JSON", "Malformed JSON", "the request body must be a JSON object")
    if _depth(value) > MAX_DEPTH:
        raise Problem(400, "INVALID_JSON", "Malformed JSON", f"JSON nested deeper than {MAX_DEPTH} levels")
    try:  # "\ud800" parses into a lone surrogate, which no UTF-8 database text can hold
        dumps(value).encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(400, "INVALID_JSON", "Malformed JSON", "the JSON holds an unpaired UTF-16 surrogate escape") from None
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


def query_int(name: str, default: int) -> int:
    """An integer query parameter, or `default` when it is absent; an empty value is refused."""
    _given_once(name)
    raw = request.query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]{1,10}", raw) or not INT32[0] <= int(raw) <= INT32[1]:
        raise bad_request(f"query parameter {name} must be an integer", name)
    return int(raw)


def query_str(name: str, max_len: int = 200) -> str | None:
    _given_once(name)
    raw = request.query.getunicode(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_len:
        raise bad_request(f"query parameter {name} is too long", name)
    return raw


# ---------------------------------------------------------------- rendering


def _json_default(v):
    if isinstance(v, Decimal):
        return float(v)
    return str(v)


def dumps(value) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def render_problem(p: Problem) -> str:
    response.status = p.status
    response.content_type = PROBLEM_MEDIA
    for k, v in p.headers.items():
        response.set_header(k, v)
    return dumps(p.body())


def _detail_json(exc: psycopg.Error) -> dict:
    text = exc.diag.message_detail if exc.diag else None
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _is_unavailable(exc: psycopg.Error) -> bool:
    state = exc.sqlstate or ""
    if not state:
        return isinstance(exc, psycopg.OperationalError)
    return state[:2] in ("08", "53", "57") and state != "57014"


def unavailable(detail: str, database: str = "unreachable") -> Problem:
    """503: no database for this request; `database` is "unreachable" or "busy" (pool exhausted)."""
    return Problem(503, "DATABASE_UNAVAILABLE", "Service unavailable", detail,
                   headers={"Retry-After": UNAVAILABLE_RETRY_AFTER}, database=database)


def problem_from_db(exc: psycopg.Error, registry: dict | None) -> Problem | None:
    """The problem for a database error, mechanically; None for one that is a bug (answered 500)."""
    state = exc.sqlstate or ""
    detail = _detail_json(exc)
    message = (exc.diag.message_primary if exc.diag else None) or ""
    if registry and state in registry:
        status, code, title = registry[state]
        headers = {}
        if status in (429, 503):  # the database says when (DETAIL retryAfter), else a default
            after = detail.get("retryAfter")
            headers["Retry-After"] = str(max(1, after)) if isinstance(after, int) and not isinstance(after, bool) else "30"
        if state == "MK409" and detail.get("retryable"):
            headers["Retry-After"] = CONFLICT_RETRY_AFTER
        return with_ext(Problem(status, code, title, message, headers=headers), detail)
    if state in RETRY_SQLSTATES:
        return Problem(409, "CONCURRENCY_CONFLICT", "Concurrent modification",
                       "the request kept colliding with concurrent changes; retry it",
                       headers={"Retry-After": CONFLICT_RETRY_AFTER}, retryable=True)
    if state == "57014":
        return Problem(503, "TIMEOUT", "Service unavailable", "the database took too long to answer",
                       headers={"Retry-After": UNAVAILABLE_RETRY_AFTER})
    if state in replicas.NOT_PRIMARY:  # a standby, or a demoted primary: the plugin drops the connection
        return unavailable("the database node this request reached cannot write (failover or switchover in progress); "
                           "retry shortly", database="read-only")
    if state in SCHEMA_MISSING:
        return Problem(503, "NOT_MIGRATED", "Service unavailable",
                       "the database has not got this version's schema: run python -m pyapp migrate (or deploy)",
                       headers={"Retry-After": "30"}, database="ok", migrations="missing")
    if state.startswith("22") or (isinstance(exc, psycopg.DataError) and not state):
        return bad_request(message or "a value is malformed or out of range")
    if _is_unavailable(exc):
        return unavailable("the database is unreachable")
    return None


# ---------------------------------------------------------------- the plugin


def _is_conflict(state: str) -> bool:
    return state in RETRY_SQLSTATES or state == "MK409"


class ApiPlugin:
    """Bottle plugin (API v2). Route options: retry=False to never retry; metric='checkout' to count
    the route's outcome and latency; db_timeout=<seconds> for a shorter pool wait."""

    name = "api"
    api = 2

    def __init__(self, database: Database | None = None):
        self.database = database or Database()
        self.read_database = Database(read=True)  # used only when READ_DATABASE_URL is set

    def apply(self, callback, route):
        # Not route.get_undecorated_callback(): it loops forever on a closure without callables.
        wants_db = "db" in inspect.signature(route.callback).parameters
        retry = route.config.get("retry", True)
        metric = route.config.get("metric")
        db_timeout = route.config.get("db_timeout")
        reads = route.config.get("replica", False)  # catalogue reads: READ_DATABASE_URL when set
        # The document's `security` says which operations need a bearer token: without one, 401
        # before the body, a header or the database is looked at (the token itself is checked there).
        bearer = openapi.bearer_required(route.method, route.rule)
        plugin = self

        def wrapper(*args, **kwargs):
            started = time.monotonic()
            STATS.start(plugin.database, _stats_flush_failed)  # once per worker process
            request_id()
            status, code = 500, None
            counted_by_error_handler = False
            try:
                if bearer and auth.bearer_hash(request.get_header("Authorization")) is None:
                    raise Problem(401, "UNAUTHENTICATED", "Authentication required",
                                  "send Authorization: Bearer <token> (from POST /api/auth/login)",
                                  headers={"WWW-Authenticate": "Bearer"})
                if request.method in ("POST", "PUT", "PATCH", "DELETE"):
                    _read_body()
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
                return render_problem(p)
            except UnicodeDecodeError:
                # Bottle decodes a header (If-Match, Authorization, Idempotency-Key, ...) or the query
                # string as UTF-8 when a route reads it; the body is decoded apart (json_body).
                bad = bad_request("a request header or the query string is not valid UTF-8")
                status, code = bad.status, bad.code
                return render_problem(bad)
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
                return render_problem(Problem(500, "INTERNAL_ERROR", "Internal server error",
                                              "an unexpected error occurred; the request id identifies it in the logs"))
            finally:
                response.set_header("X-Request-Id", request_id())
                if not counted_by_error_handler:
                    METRICS.request(status)
                if metric == "checkout":
                    METRICS.checkout(checkout_outcome(status, code, request.environ.get("mk.outcome")),
                                     time.monotonic() - started)

        return wrapper

    def _run(self, callback, args, kwargs, retry: bool, db_timeout, reads: bool = False):
        database = self.read_database if reads and config.get().read_database_url else self.database
        deadline = time.monotonic() + RETRY_DEADLINE_S
        attempt = 0
        while True:
            attempt += 1
            db = Db(database, db_timeout)
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
                detail = _detail_json(exc)
                problem = problem_from_db(exc, database.errors)
                if state in replicas.NOT_PRIMARY:
                    db.discard()
                if not _is_conflict(state):
                    if problem is None:
                        raise
                    if problem.status == 503 and problem.code == "DATABASE_UNAVAILABLE":
                        log_event("DatabaseUnavailable", logging.WARNING, path=request.path,
                                  sqlstate=state, message=str(exc)[:300])
                    raise problem from None
                retryable = state in RETRY_SQLSTATES or detail.get("retryable") is True
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
                    raise with_ext(Problem(409, "CONCURRENCY_CONFLICT", "Concurrent modification",
                                           f"the request collided with concurrent changes {attempt} time(s); retry it",
                                           headers={"Retry-After": CONFLICT_RETRY_AFTER}),
                                   detail, retryable=True, attempts=attempt) from None
                if problem is None:  # an MK409 while the registry could not be loaded
                    raise
                raise problem from None
            finally:
                db.release()


# ---------------------------------------------------------------- Bottle's own errors


_HTTP_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND",
               405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE", 500: "INTERNAL_ERROR"}


def error_handler(err: bottle.HTTPError) -> str:
    """Replaces Bottle's HTML error page: unknown routes, wrong methods, bad paths, and anything that
    escaped the plugin all become problem+json."""
    status = err.status_code
    code = _HTTP_CODES.get(status, "HTTP_ERROR")
    if status >= 500:
        log_event("UnhandledError", logging.ERROR, method=request.method, path=request.path,
                  error=type(err.exception).__name__ if err.exception else "HTTPError",
                  traceback=(err.traceback or "")[-4000:])
        detail = "an unexpected error occurred; the request id identifies it in the logs"
    elif status == 404:
        detail = "no such resource"
    elif status == 405:
        detail = f"method {request.method} is not allowed here"
    else:
        detail = err.body if isinstance(err.body, str) else ""
    title = bottle.HTTP_CODES.get(status, "Error")
    response.status = status
    response.content_type = PROBLEM_MEDIA
    response.set_header("X-Request-Id", request_id())
    METRICS.request(status)
    return dumps(Problem(status, code, title, detail).body())
