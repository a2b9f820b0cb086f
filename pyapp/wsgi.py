"""WSGI entry point for the HTTP server (pyapp/server.py, `python -m pyapp.server`).
Importing it opens no connection: each worker makes its pool on its first request, after the fork."""
from pyapp.app import app

__all__ = ["app"]
