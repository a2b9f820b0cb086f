"""The HTTP server: granian's WSGI mode serving pyapp.wsgi:app, with the settings and start/stop
steps this app needs. `python -m pyapp.server` runs it in the foreground (what `python -m pyapp
serve` starts as its child, after migrations); SIGTERM or SIGINT stops it gracefully, SIGHUP
replaces its workers one at a time (new code from disk; same environment and settings).

Settings come from the environment (pyapp/config.py): HOST, PORT, WORKERS processes of THREADS
request threads each, and SERVER_LOGLEVEL (granian's own messages; default warning).

Processes: a master that owns the listening socket and WORKERS worker processes forked from it.
Each worker imports the app after the fork and makes its psycopg_pool on its first request (a
pool made in the master would share sockets between processes). HTTP parsing, keep-alive and
writing the answers happen in granian's native code; only the WSGI call holds the GIL.

Proxies: granian reads no forwarding header (no X-Forwarded-Proto, no SCRIPT_NAME from a
header), so a client cannot change what the app sees by sending one; pyapp.clients reads the
client's address from X-Forwarded-For only when the socket peer is in TRUSTED_PROXIES.

Limits: granian refuses with 431 a request head (request line and headers) that outgrows its
read buffer of HEAD_BUFFER_BYTES; it checks between reads, so a head that arrives in one piece
may pass at up to about twice that. A client that has not sent a whole head within
HEAD_TIMEOUT_MS is disconnected, idle keep-alive connections included. Neither reaches the app.
A header value that is not visible ASCII reaches the app as an empty string. The 64 KiB body
limit is the app's (pyapp.web.parsing).

Metrics: prometheus_client's multiprocess mode. Before the workers are forked,
PROMETHEUS_MULTIPROC_DIR becomes a private temporary folder (removed when the server stops)
unless the environment names one, whose *.db files are then cleared: counters of a previous run
must not be added to this one's. The app has counters and histograms only, no live gauges, so a
worker that dies leaves nothing that must be taken out of the sums.

Stopping: the master stops accepting and gives each worker GRACE_SECONDS to finish the requests
it has; a worker that is still busy then is killed. As it exits, each worker flushes its
persisted checkout figures and closes its pools (worker_exit), so PostgreSQL sees its
connections end cleanly. A worker that dies is replaced at once; one that dies again within
5.5 s of being replaced makes granian stop the whole server with exit status 1 (a crash loop),
and the process manager (systemd's Restart=on-failure) takes over.
"""
from __future__ import annotations

import glob
import logging
import multiprocessing.util
import os
import shutil
import sys
import tempfile

from pyapp import config

TARGET = "pyapp.wsgi:app"
GRACE_SECONDS = 10
HEAD_TIMEOUT_MS = 10_000
HEAD_BUFFER_BYTES = 64 * 1024
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

_LOGGING = {  # granian's messages on stderr, with a time stamp (the journal and the tests read it)
    "formatters": {
        "generic": {"()": "logging.Formatter", "fmt": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"},
        "access": {"()": "logging.Formatter", "fmt": "%(message)s"},
    },
    "handlers": {
        "console": {"formatter": "generic", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
    },
}


def log_level() -> str:
    """SERVER_LOGLEVEL (default warning). Raises SystemExit on a value granian does not know."""
    raw = (os.environ.get("SERVER_LOGLEVEL") or "warning").strip().lower()
    if raw not in LOG_LEVELS:
        raise SystemExit(f"SERVER_LOGLEVEL must be one of {', '.join(LOG_LEVELS)}, not {raw!r}")
    return raw


class MetricsFolder:
    """PROMETHEUS_MULTIPROC_DIR for the workers: prepared in the master before any fork."""

    def __init__(self) -> None:
        self.private: str | None = None

    def prepare(self) -> str:
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if path:
            os.makedirs(path, exist_ok=True)
            for f in glob.glob(os.path.join(path, "*.db")):
                os.remove(f)
            return path
        self.private = tempfile.mkdtemp(prefix="mk-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.private
        return self.private

    def remove(self) -> None:
        if self.private:
            shutil.rmtree(self.private, ignore_errors=True)
            self.private = None


def worker_exit() -> None:
    """In a worker, as it exits: flushes the persisted checkout figures, then closes the pools."""
    try:
        from pyapp.app import app
        app.close()  # ApiPlugin.close: stops the flusher, flushes the figures, closes the pools
    except Exception:  # noqa: BLE001 - best effort at exit
        logging.getLogger("_granian").exception("worker %d: closing the app failed", os.getpid())


def load_app(target: str):
    """granian's loader, called in each worker after the fork: the WSGI app, with worker_exit
    registered to run when the worker process ends. A multiprocessing finalizer, not atexit: a
    forked worker leaves through os._exit, which skips atexit but runs these."""
    from pyapp.wsgi import app
    if target != TARGET:
        raise ValueError(f"unexpected target {target!r}")
    multiprocessing.util.Finalize(None, worker_exit, exitpriority=10)
    return app


def build(cfg: config.Config, level: str):
    """The granian server for `cfg`, not started. Raises ImportError without granian."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    return Granian(
        TARGET,
        address=cfg.host,
        port=cfg.port,
        interface=Interfaces.WSGI,
        workers=cfg.workers,
        blocking_threads=cfg.threads,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(header_read_timeout=HEAD_TIMEOUT_MS, keep_alive=True,
                                     max_buffer_size=HEAD_BUFFER_BYTES),
        log_level=LogLevels(level),
        log_dictconfig=_LOGGING,
        log_access=False,
        respawn_failed_workers=True,
        workers_kill_timeout=GRACE_SECONDS,
    )


def main() -> int:
    try:
        cfg = config.Config.from_env()
        level = log_level()
    except SystemExit as exc:
        print(f"pyapp.server: {exc}", file=sys.stderr)
        return 2
    server = build(cfg, level)
    metrics = MetricsFolder()
    server.on_startup(metrics.prepare)
    server.on_shutdown(metrics.remove)
    try:
        server.serve(target_loader=load_app)
    except SystemExit as exc:  # granian leaves with sys.exit(1) after a crash loop
        return exc.code if isinstance(exc.code, int) else 1
    except (RuntimeError, OSError) as exc:  # e.g. the address is in use: one line, no traceback
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"pyapp.server: cannot serve on {cfg.host}:{cfg.port}: {reason}", file=sys.stderr)
        return 1
    finally:
        metrics.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
