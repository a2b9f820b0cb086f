"""The HTTP application: one Bottle app (pyapp.web.routes) with the ApiPlugin installed and the
routes of every resource. pyapp/server.py serves it through pyapp.wsgi; app.close() (the server's
worker_exit) closes the plugin, which flushes the worker's figures and closes its pool."""
from __future__ import annotations

from pyapp.web.routes import accounts, app, cart, catalogue, operations, orders, pages

RESOURCES = (accounts, catalogue, cart, orders, operations, pages)  # imported for their routes

__all__ = ["app"]
