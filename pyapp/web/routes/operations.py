"""Operations: the admin's maintenance switch, /health, /metrics (Prometheus, with the database's
figures cached) and the API document."""
from __future__ import annotations

import hmac
import threading
import time

import psycopg
from bottle import request, response

from pyapp import config, openapi
from pyapp.db import calls
from pyapp.db.pool import DatabaseUnavailable
from pyapp.metrics import CONTENT_TYPE, METRICS
from pyapp.web.problems import unauthenticated
from pyapp.web.routes import app, token

_OPS = {"retry": False, "db_timeout": 2.0}


@app.post("/admin/maintenance/enable")
def maintenance_enable(db):
    return calls.set_maintenance(db, token(), True)


@app.post("/admin/maintenance/disable")
def maintenance_disable(db):
    return calls.set_maintenance(db, token(), False)


@app.get("/health", api=_OPS)
def health(db):
    # Without this version's schema the plugin answers 503 NOT_MIGRATED (pyapp.db.pool.SCHEMA_MISSING).
    state = calls.health(db)
    state["status"] = "ok" if state.get("migrations") == "ok" else "degraded"
    state["replication"] = calls.replication_state(db)  # the node, its standbys (Patroni)
    return state


_snapshot_lock = threading.Lock()
_snapshot: dict = {"at": float("-inf"), "value": None}


def _database_snapshot(db) -> dict | None:
    """api.ops_snapshot at most once per METRICS_DB_CACHE_SECONDS (15) per worker: a scrape storm
    costs the database nothing more. None when the database cannot be read (the scrape still
    answers, with mk_database_up 0)."""
    with _snapshot_lock:
        if time.monotonic() - _snapshot["at"] < config.get().metrics_cache_s:
            return _snapshot["value"]
    try:
        value = calls.ops_snapshot(db, config.get().order_hold_minutes)
    except (DatabaseUnavailable, psycopg.Error):
        return None
    with _snapshot_lock:
        _snapshot.update(at=time.monotonic(), value=value)
    return value


@app.get("/metrics", api=_OPS)
def metrics(db):
    # Every worker's counters (pyapp.metrics) and the database's figures, cached. With
    # METRICS_TOKEN set, only a scraper that sends it as a bearer token gets them.
    expected = config.get().metrics_token
    if expected:
        given = request.get_header("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            raise unauthenticated("GET /metrics needs Authorization: Bearer <METRICS_TOKEN>", 'Bearer realm="metrics"')
    snapshot = _database_snapshot(db)
    response.content_type = CONTENT_TYPE
    return METRICS.render(snapshot)


@app.get("/openapi.json")
def openapi_document():
    return openapi.document()
