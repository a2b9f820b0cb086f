"""WSGI entry point for gunicorn: `gunicorn -c pyapp/gunicorn_conf.py pyapp.wsgi:app`.
Importing it opens no connection: each worker makes its pool on its first request, after the fork."""
from pyapp.app import app

__all__ = ["app"]
