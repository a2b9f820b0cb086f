"""HTTP routes, grouped by resource: accounts, catalogue, cart, orders (checkout, orders, the
payment webhook), operations (maintenance, health, metrics, the API document) and pages (the
static pages and the operator dashboard).

Each route parses the request's shape (pyapp.web.parsing), makes one call of the SQL API
(pyapp.db.calls: functions of schema `app`, the only ones the app's role may execute, each
identifying the caller by the SHA-256 of the bearer token) and returns its result. Connections,
retries, errors and JSON are the business of pyapp.web.plugin.ApiPlugin, installed here on the
one Bottle application; pyapp.app imports every resource module so that their routes exist.
"""
from __future__ import annotations

import bottle
from bottle import response

from pyapp.web.parsing import caller
from pyapp.web.plugin import ApiPlugin

app = bottle.Bottle(catchall=True)
app.install(ApiPlugin())


def token() -> str | None:
    """The caller: the SHA-256 of the request's bearer token (None without one), as the plugin
    already hashed it for an operation that needs one."""
    return caller()


def etag(doc: dict) -> None:
    response.set_header("ETag", f'"{doc["version"]}"')
