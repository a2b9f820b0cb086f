"""The HTTP app's log: one JSON object per line on stdout (and LOG_FILE when set)."""
from __future__ import annotations

import json
import logging
import os
import sys
import time

from pyapp import config
from pyapp.web.parsing import request_id

_CONFIGURED_LOGGERS: set[str] = set()  # loggers given their handlers in this process


def _logger() -> logging.Logger:
    log = logging.getLogger("marketplace.http")
    if log.name not in _CONFIGURED_LOGGERS:
        log.setLevel(logging.INFO)
        log.propagate = False
        out = logging.StreamHandler(sys.stdout)
        out.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(out)
        path = config.get().log_file
        if path:
            fh = logging.FileHandler(path, encoding="utf-8")
            fh.setFormatter(logging.Formatter("%(message)s"))
            log.addHandler(fh)
        _CONFIGURED_LOGGERS.add(log.name)
    return log


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


def log_event(event: str, level: int = logging.INFO, **fields) -> None:
    """One line about the current request (its id included)."""
    line = {"ts": _now(), "level": logging.getLevelName(level), "event": event, "requestId": request_id(),
            "pid": os.getpid(), **fields}
    _logger().log(level, json.dumps(line, default=str, ensure_ascii=False))


def stats_flush_failed(exc: Exception, minutes: int) -> None:
    """Logs a failed flush of the persisted checkout figures (kept for the next flush)."""
    line = {"ts": _now(), "level": "WARNING", "event": "StatsFlushFailed", "pid": os.getpid(), "minutes": minutes,
            "error": type(exc).__name__, "message": str(exc)[:300]}
    _logger().warning(json.dumps(line, default=str, ensure_ascii=False))
