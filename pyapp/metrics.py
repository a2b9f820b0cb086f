"""Metrics of the HTTP app: Prometheus counters shared by every server worker, and the per-minute
figures each worker persists for `python -m pyapp report` and `alerts`.

Prometheus: prometheus_client in multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (the server's
master sets it, see pyapp/server.py): each worker writes its counters to files in that
folder and a scrape, whichever worker answers it, adds up every worker's files, those of workers
that have exited included. Without the variable (a single process, in-process tests) the same
metrics live in the process's default registry. Database figures (orders by status, negative
stock, unpaid orders past the hold window, orders the expiry job had to skip) are read at scrape
time with one api.ops_snapshot() call.

Persistence: Prometheus counters die with the server's folder. So each worker also adds its
checkout outcomes, retries, ConcurrencyErrors and latency-bucket counts to an in-memory buffer
keyed by UTC minute, and a daemon thread flushes it every STATS_FLUSH_SECONDS (default 10) with
one app.record_checkout_stats(jsonb) call; the worker flushes once more when it exits. A failed
flush keeps the figures for the next one (at most MAX_BUFFERED_MINUTES minutes are kept).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from typing import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from pyapp.db.registry import shipped

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# 5 ms to 10 s, dense where checkouts usually land; 30 s (the worker timeout) above 10 s so that a
# P95 beyond 10 s stays visible.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
# A checkout's outcome. The server decided: success (an order, a replay included),
# insufficient_stock (a correct refusal), conflict (409 CONCURRENCY_CONFLICT after the server's
# retries) and error (a 5xx other than 503 MAINTENANCE: the server failed). It did not get that
# far: empty_cart, client_error (any other 4xx: 401, 400 invalid, 403, 404, 409
# TOO_MANY_UNPAID_ORDERS or MAX_PER_BUYER_EXCEEDED, 413, 422, 429) and maintenance (503 while
# maintenance mode is on). The success rate is 1 - (conflict + error) / DECIDED, so neither
# client errors nor maintenance move it (api.checkout_report, monitoring/alerts.yml); for the same
# reason only decided checkouts enter the latency histogram, so that a flood of quick refusals
# cannot hide slow sales from the P95.
OUTCOMES = ("success", "insufficient_stock", "conflict", "empty_cart", "client_error", "maintenance", "error")
DECIDED = ("success", "insufficient_stock", "conflict", "error")
# Problem codes with an outcome of their own; any other 4xx is client_error, any other 5xx error.
_OUTCOME_OF_CODE = {"INSUFFICIENT_STOCK": "insufficient_stock", "EMPTY_CART": "empty_cart",
                    "CONCURRENCY_CONFLICT": "conflict", "MAINTENANCE": "maintenance"}
# `python -m pyapp smoke`'s checkouts: exported as mk_checkout_total{outcome="smoke"} only, and
# neither persisted for report and alerts nor observed in the latency histogram.
SMOKE = "smoke"
MAX_BUFFERED_MINUTES = 24 * 60

CHECKOUTS = Counter("mk_checkout", "Checkouts by outcome: success, insufficient_stock, conflict, "
                    "error (a 5xx other than maintenance) were decided by the server; empty_cart, "
                    "client_error (any other 4xx) and maintenance (503) were not; smoke counts the smoke "
                    "test's, which are not sales.", ["outcome"])
CONFLICTS = Counter("mk_concurrency_conflicts", "ConcurrencyErrors (409-class conflicts, retried ones "
                    "included) of every route, by SQLSTATE.", ["sqlstate"])
RETRIES = Counter("mk_db_retries", "Statements retried after a transient conflict.")
RESPONSES = Counter("mk_http_responses", "HTTP responses by status class.", ["class"])
# The class alone cannot tell a 503 (maintenance, database unavailable or busy: expected during
# maintenance and failover) from a 500 (an unhandled error, logged as UnhandledError); the alert
# MarketplaceServerErrors needs the status.
SERVER_ERRORS = Counter("mk_http_server_errors", "HTTP 5xx responses by status code: 503 maintenance "
                        "or database unavailable, 500 an unhandled error (UnhandledError in the log).",
                        ["status"])
LATENCY = Histogram("mk_checkout_duration_seconds", "Latency of the checkouts the server decided (outcome success, "
                    "insufficient_stock, conflict or error), retries included.", buckets=BUCKETS)
# Every outcome is exported from the start, at 0, so rate() sees it. The labelled children are
# kept: looking one up by its label values costs more than the increment itself.
_CHECKOUT_CHILDREN = {_o: CHECKOUTS.labels(_o) for _o in OUTCOMES}
_RESPONSE_CHILDREN: dict = {}
for _code in shipped().codes:  # the conflicts a client may cause (registry: retryable "detail"), at 0
    if _code.retryable == "detail" and _code.sqlstate:
        CONFLICTS.labels(_code.sqlstate)
for _status in ("500", "503"):  # at 0 from the start, so increase() counts the first one
    SERVER_ERRORS.labels(_status)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def checkout_outcome(status: int, code: str | None, hint: str | None = None) -> str:
    """The outcome label of a finished checkout request from its status, its problem code (None
    when the answer was not a problem) and the route's hint (SMOKE for the smoke test's order):
    see OUTCOMES."""
    if 200 <= status < 300:
        if hint == SMOKE:
            return SMOKE  # the smoke test's checkout (its order said "smoke": true)
        return "success"  # a 201, an idempotent replay included
    outcome = _OUTCOME_OF_CODE.get(code or "")
    if outcome is not None:
        return outcome
    return "client_error" if 400 <= status < 500 else "error"


_minute_cache: tuple[int, str] = (-1, "")


def _minute(now: dt.datetime | None = None) -> str:
    """The UTC minute of `now` (default: the current time) as 'YYYY-MM-DDTHH:MM:00Z'. On every
    checkout's path, so the current minute's text is made once per minute, not per call."""
    global _minute_cache
    if now is not None:
        return now.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:00Z")
    epoch_minute = int(time.time() // 60)
    cached = _minute_cache
    if cached[0] != epoch_minute:
        cached = (epoch_minute, time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(epoch_minute * 60)))
        _minute_cache = cached
    return cached[1]


def _bucket_key(le: float) -> str:
    return "+Inf" if le == float("inf") else repr(le)


class StatsBuffer:
    """One worker's not yet persisted figures, per UTC minute; flushed by a daemon thread."""

    def __init__(self, interval: float | None = None):
        self.interval = interval if interval is not None else float(os.environ.get("STATS_FLUSH_SECONDS", "10"))
        self._lock = threading.Lock()
        self._rows: dict[str, dict] = {}
        self._pid: int | None = None
        self._stop = threading.Event()

    def _row(self, minute: str) -> dict:
        row = self._rows.get(minute)
        if row is None:
            row = {"minute": minute, **{o: 0 for o in OUTCOMES}, "retries": 0, "conflicts": 0,
                   "latency_sum_s": 0.0, "latency": {_bucket_key(b): 0 for b in (*BUCKETS, float("inf"))}}
            self._rows[minute] = row
        return row

    def checkout(self, outcome: str, seconds: float) -> None:
        """Counts one checkout; its latency only when the server decided it (see OUTCOMES)."""
        decided = outcome in DECIDED
        le = next((b for b in BUCKETS if seconds <= b), float("inf"))
        with self._lock:
            row = self._row(_minute())
            row[outcome] += 1
            if decided:
                row["latency_sum_s"] += seconds
                row["latency"][_bucket_key(le)] += 1

    def add(self, field: str, n: int = 1) -> None:
        with self._lock:
            self._row(_minute())[field] += n

    def take(self) -> list[dict]:
        with self._lock:
            rows, self._rows = self._rows, {}
        return [rows[k] for k in sorted(rows)]

    def put_back(self, rows: list[dict]) -> None:
        """Merges rows a failed flush took back into the buffer (the oldest go beyond the cap)."""
        with self._lock:
            for r in rows:
                row = self._row(r["minute"])
                for k in (*OUTCOMES, "retries", "conflicts", "latency_sum_s"):
                    row[k] += r[k]
                for k, v in r["latency"].items():
                    row["latency"][k] = row["latency"].get(k, 0) + v
            for k in sorted(self._rows)[:-MAX_BUFFERED_MINUTES]:
                del self._rows[k]

    def flush(self, database, on_error: Callable[[Exception, int], None] | None = None) -> int:
        """Persists the buffer with one app.record_checkout_stats call; returns the minutes written.
        `database` has getconn(timeout) and putconn(conn) (pyapp.db.pool.Pool)."""
        rows = self.take()
        if not rows:
            return 0
        try:
            conn = database.getconn(2.0)
            try:
                conn.execute("SELECT app.record_checkout_stats(%s::jsonb)", (json.dumps(rows),))
            finally:
                database.putconn(conn)
        except Exception as exc:  # noqa: BLE001 - keep the figures for the next flush, whatever failed
            self.put_back(rows)
            if on_error is not None:
                on_error(exc, len(rows))
            return 0
        return len(rows)

    def start(self, database, on_error=None) -> None:
        """Starts this process's flusher thread once (again after a fork)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop = threading.Event()
        stop = self._stop

        def loop():
            while not stop.wait(self.interval):
                self.flush(database, on_error)

        threading.Thread(target=loop, name="mk-stats-flush", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


class Metrics:
    """What pyapp.web.plugin records into: the Prometheus metrics and the persisted buffer at once.
    `retries` stays a plain per-process count for in-process tests."""

    def __init__(self, stats: StatsBuffer):
        self.stats = stats
        self.retries = 0

    def checkout(self, outcome: str, seconds: float) -> None:
        if outcome == SMOKE:
            CHECKOUTS.labels(SMOKE).inc()
            return
        _CHECKOUT_CHILDREN[outcome].inc()
        if outcome in DECIDED:
            LATENCY.observe(seconds)
        self.stats.checkout(outcome, seconds)

    def conflict(self, sqlstate: str) -> None:
        CONFLICTS.labels(sqlstate or "unknown").inc()
        self.stats.add("conflicts")

    def retry(self) -> None:
        self.retries += 1
        RETRIES.inc()
        self.stats.add("retries")

    def request(self, status: int) -> None:
        child = _RESPONSE_CHILDREN.get(status // 100)
        if child is None:
            child = _RESPONSE_CHILDREN[status // 100] = RESPONSES.labels(f"{status // 100}xx")
        child.inc()
        if status >= 500:
            SERVER_ERRORS.labels(str(status)).inc()

    @staticmethod
    def registry():
        """Every worker's metrics (prometheus_client multiprocess mode), or this process's."""
        path = multiprocess_dir()
        if not path:
            return REGISTRY
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        return registry

    def samples(self):
        """(name, labels, value) of every sample the registry holds, without a text round trip."""
        for family in self.registry().collect():
            for sample in family.samples:
                yield sample.name, sample.labels, sample.value

    def render(self, snapshot: dict | None) -> bytes:
        """The Prometheus text of every worker's metrics plus the database snapshot (None when the
        database could not be read: mk_database_up 0)."""
        db = CollectorRegistry()
        db.register(_Snapshot(snapshot))
        return generate_latest(self.registry()) + generate_latest(db)


class _Snapshot:
    """A collector of the figures api.ops_snapshot() returned at this scrape."""

    def __init__(self, snapshot: dict | None):
        self.snapshot = snapshot

    def collect(self):
        up = GaugeMetricFamily("mk_database_up", "Whether the scrape could read the database (1) or not (0).")
        up.add_metric([], 0 if self.snapshot is None else 1)
        yield up
        if self.snapshot is None:
            return
        orders = GaugeMetricFamily("mk_orders", "Orders by status, now.", labels=["status"])
        for status, n in sorted(self.snapshot.get("ordersByStatus", {}).items()):
            orders.add_metric([status], n)
        yield orders
        yield GaugeMetricFamily("mk_products_negative_stock", "Products whose stock is below 0 (must stay 0).",
                                value=self.snapshot.get("negativeStock", 0))
        yield GaugeMetricFamily("mk_orders_unpaid_past_hold",
                                "PENDING_PAYMENT or PAYMENT_FAILED orders older than the hold window "
                                "(ORDER_HOLD_MINUTES): the expiry job is not running.",
                                value=self.snapshot.get("unpaidPastHold", 0))
        yield GaugeMetricFamily("mk_orders_expiry_failed",
                                "Unpaid orders the expiry job had to skip because expiring them failed "
                                "(api.expiry_failures()); retried every 10 minutes.",
                                value=self.snapshot.get("expiryFailed", 0))


STATS = StatsBuffer()
METRICS = Metrics(STATS)
