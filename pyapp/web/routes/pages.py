"""Pages: the index (HTML for a browser, JSON links otherwise), the API reference and the operator
dashboard (pyapp/static/, no CDN, no inline script), and the dashboard's data (ADMIN)."""
from __future__ import annotations

import os
from pathlib import Path

from bottle import request, response

from pyapp import config, openapi
from pyapp.db import calls
from pyapp.metrics import DECIDED, METRICS, multiprocess_dir
from pyapp.web.routes import app, token

STATIC = Path(__file__).resolve().parent.parent.parent / "static"
_ASSETS = {"dashboard.html": "text/html; charset=utf-8",
           "dashboard.js": "text/javascript; charset=utf-8",
           "dashboard.css": "text/css; charset=utf-8",
           "docs.html": "text/html; charset=utf-8",
           "docs.js": "text/javascript; charset=utf-8",
           "docs.css": "text/css; charset=utf-8",
           "index.html": "text/html; charset=utf-8"}
_PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                  "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
DASHBOARD_REFRESH_S = 5


def checkout_counters() -> dict:
    """The app's checkout counters for the dashboard, read from the same registry /metrics exports
    (summed over the workers in multiprocess mode; names listed in docs/api.md). Counters are
    cumulative; the page derives per-interval figures."""
    by_outcome: dict[str, int] = {}
    seen = retries = 0
    buckets: list[tuple[float, int]] = []
    for name, labels, value in METRICS.samples():
        if name == "mk_checkout_total":
            by_outcome[labels.get("outcome", "")] = int(value)
        elif name == "mk_concurrency_conflicts_total":
            seen += int(value)
        elif name == "mk_db_retries_total":
            retries += int(value)
        elif name == "mk_checkout_duration_seconds_bucket":
            buckets.append((float(labels["le"]), int(value)))  # float("+Inf") is inf
    buckets.sort()
    return {
        "scope": "all" if multiprocess_dir() else "process", "pid": os.getpid(),
        # The smoke test's checkouts are shown in byOutcome but are not sales.
        "checkouts": sum(n for o, n in by_outcome.items() if o != "smoke"), "byOutcome": by_outcome,
        "decided": sum(by_outcome.get(o, 0) for o in DECIDED),  # the rates' denominator (pyapp.metrics)
        "conflicts": by_outcome.get("conflict", 0),  # checkouts answered 409 CONCURRENCY_CONFLICT
        "conflictsSeen": seen,  # every route, retried attempts included
        "retries": retries,  # every route's server-side retries
        "latency": {"le": [b if b != float("inf") else None for b, _ in buckets],
                    "counts": [n for _, n in buckets]},
    }


def _asset(name: str) -> bytes:
    """A packaged page of pyapp/static/ (no CDN, no inline script: the CSP allows only this server)."""
    response.content_type = _ASSETS[name]
    response.set_header("Content-Security-Policy", _PAGE_CSP)
    response.set_header("X-Content-Type-Options", "nosniff")
    response.set_header("Referrer-Policy", "no-referrer")
    response.set_header("Cache-Control", "no-cache")
    return (STATIC / name).read_bytes()


LINKS = {"health": "/health", "openapi": "/openapi.json", "docs": "/docs", "operatorPage": "/admin/dashboard",
         "metrics": "/metrics"}


@app.get("/")
def index():
    """What this server is and where to go: an HTML page for a browser, JSON for anything else."""
    if "text/html" in request.get_header("Accept", ""):
        return _asset("index.html")
    return {"name": "Artisan marketplace API", "version": openapi.document()["info"]["version"], "links": LINKS}


@app.get("/docs")
def docs_page():
    """A readable API reference, rendered in the browser from /openapi.json."""
    return _asset("docs.html")


@app.get("/docs/docs.js")
def docs_script():
    return _asset("docs.js")


@app.get("/docs/docs.css")
def docs_style():
    return _asset("docs.css")


@app.get("/admin/dashboard")
def dashboard_page():
    """The page's shell needs no token: every figure comes from /admin/dashboard/data (ADMIN)."""
    return _asset("dashboard.html")


@app.get("/admin/dashboard/dashboard.js")
def dashboard_script():
    return _asset("dashboard.js")


@app.get("/admin/dashboard/dashboard.css")
def dashboard_style():
    return _asset("dashboard.css")


@app.get("/admin/dashboard/data")
def dashboard_data(db):
    stats = calls.dashboard_stats(db, token(), config.get().order_hold_minutes)
    response.set_header("Cache-Control", "no-store")
    return {"database": stats, "checkout": checkout_counters(), "refreshSeconds": DASHBOARD_REFRESH_S,
            "replication": calls.replication_state(db)}  # the node and its standbys
