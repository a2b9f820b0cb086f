"""gunicorn settings, from the environment (see pyapp/config.py): HOST, PORT, WORKERS, THREADS.

gthread workers: each process runs THREADS request threads sharing one psycopg_pool
ConnectionPool, which pyapp.web creates lazily on the worker's first request, i.e. after the fork
(a pool made in the master would share sockets between processes). Not preloaded, for the same
reason.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyapp.config import get as _get_config  # noqa: E402

_cfg = _get_config()

bind = f"{_cfg.host}:{_cfg.port}"
workers = _cfg.workers
worker_class = "gthread"
threads = _cfg.threads
preload_app = False
timeout = 30
graceful_timeout = 10
keepalive = 5
# Request-line and header limits (the 64 KiB body limit is enforced by pyapp.web).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "warning")
proc_name = "marketplace-http"


def worker_exit(server, worker):
    """Closes the worker's pool so PostgreSQL sees its connections end cleanly."""
    try:
        from pyapp import app as app_module
        for plugin in app_module.app.plugins:
            if getattr(plugin, "name", None) == "api":
                plugin.database.close()
    except Exception:  # noqa: BLE001 - best effort at exit
        pass
