"""gunicorn settings, from the environment (see pyapp/config.py): HOST, PORT, WORKERS, THREADS,
TRUSTED_PROXIES.

Proxies: gunicorn honours forwarding headers (X-Forwarded-Proto and friends, SCRIPT_NAME) only
from the peers in forwarded_allow_ips, which is exactly TRUSTED_PROXIES: by default nobody (an
empty list), not gunicorn's own default of 127.0.0.1 and ::1 (nor FORWARDED_ALLOW_IPS), since
any local process may connect from there. pyapp reads the client's address (X-Forwarded-For)
from the same setting.

gthread workers: each process runs THREADS request threads sharing one psycopg_pool
ConnectionPool, which pyapp.db.pool creates lazily on the worker's first request, i.e. after the fork
(a pool made in the master would share sockets between processes). Not preloaded, for the same
reason.

Metrics: prometheus_client's multiprocess mode. At master start, PROMETHEUS_MULTIPROC_DIR is a
private temporary folder made here (removed at exit) unless the environment names one, whose
*.db files are then cleared (counters of a previous run must not be added to this one's). Workers
inherit the variable; child_exit marks a dead worker so its live gauges go, while its counters
stay in the sums. Each worker also flushes its persisted checkout figures when it exits.

HTTP/1: requests are parsed by gunicorn_h1c, gunicorn's C parser (http_parser = "fast"); the
master refuses to start without it (_check_fast_parser), where gunicorn would otherwise fail
every request. Answers go out in one send each (pyapp/gunicorn_response.py, installed in every
worker by post_worker_init).
"""
import glob
import importlib
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyapp import gunicorn_response  # noqa: E402
from pyapp.config import get as _get_config  # noqa: E402

_cfg = _get_config()

bind = f"{_cfg.host}:{_cfg.port}"
workers = _cfg.workers
worker_class = "gthread"
http_parser = "fast"
threads = _cfg.threads
preload_app = False
timeout = 30
graceful_timeout = 10
keepalive = 5
# Request-line and header limits (the 64 KiB body limit is enforced by pyapp.web.parsing).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "warning")
proc_name = "marketplace-http"
forwarded_allow_ips = ",".join(str(net) for net in _cfg.trusted_proxies)


_private_metrics_dir = None


def _check_fast_parser() -> None:
    """Raises RuntimeError (gunicorn prints it and exits 1) unless gunicorn_h1c, with the limits
    gunicorn's fast path needs (0.4.1 on), can be imported: a lost dependency stops the server
    at start instead of failing every request, and is never silently replaced."""
    try:
        h1c = importlib.import_module("gunicorn_h1c")
    except ImportError as exc:
        raise RuntimeError(f"http_parser = 'fast' needs gunicorn_h1c, which cannot be imported ({exc}): "
                           "scripts/setup.sh installs it from requirements.txt") from None
    if not hasattr(h1c, "LimitRequestLine"):
        raise RuntimeError(f"gunicorn_h1c {getattr(h1c, '__version__', '?')} is too old for "
                           "http_parser = 'fast': install the version in requirements.txt")


def on_starting(server):
    """Checks the HTTP parser, then gives the workers a folder for their metric files before any
    of them is forked."""
    global _private_metrics_dir
    _check_fast_parser()
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for f in glob.glob(os.path.join(path, "*.db")):
            os.remove(f)
    else:
        _private_metrics_dir = tempfile.mkdtemp(prefix="mk-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _private_metrics_dir


def post_worker_init(worker):
    """In each worker, before it serves: one send per response."""
    gunicorn_response.install()


def child_exit(server, worker):
    """In the master, after a worker has exited: its live gauges no longer count."""
    try:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
    except Exception:  # noqa: BLE001 - best effort
        pass


def on_exit(server):
    if _private_metrics_dir:
        shutil.rmtree(_private_metrics_dir, ignore_errors=True)


def worker_exit(server, worker):
    """Flushes the worker's persisted checkout figures, then closes its pool so PostgreSQL sees
    its connections end cleanly."""
    try:
        from pyapp.app import app
        app.close()  # ApiPlugin.close: stops the flusher, flushes the figures, closes the pool
    except Exception:  # noqa: BLE001 - best effort at exit
        pass
