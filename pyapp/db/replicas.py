"""What the app needs to live on a replicated cluster (docs/scaling.md, "High availability").

- `single_host(url)`: a libpq multi-host URL (`postgresql://u@h1:p1,h2:p2/db?target_session_attrs=
  read-write`) resolved to the one node that answers it now, for the tools that parse URLs
  themselves (yoyo-migrations takes one host and port).
- `NOT_PRIMARY`: the SQLSTATEs a server answers when the connection reached a node that cannot
  write (a standby, or a primary being demoted): the request is a 503 with Retry-After and the
  connection is dropped, so that the pool connects anew and libpq finds the new primary.

The node a request is on and its replication state (for /health and the dashboard) come from
app.replication_state() (sql/api/replication_state.sql, pyapp.db.calls.replication_state).
"""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

# 25006 read_only_sql_transaction: a write on a hot standby (or in a session a demoted primary
# left read-only). 0A000 and 55000 are raised by some writes during recovery too, but also by
# real bugs, so they stay 500s.
NOT_PRIMARY = frozenset({"25006"})


def is_multi_host(url: str) -> bool:
    netloc = urlsplit(url).netloc.rsplit("@", 1)[-1]
    return "," in netloc


def single_host(url: str) -> str:
    """The URL of the node a multi-host URL reaches now (unchanged for a single-host URL)."""
    if not url or not is_multi_host(url):
        return url
    with psycopg.connect(url, autocommit=True) as conn:
        host, port = conn.info.host, conn.info.port
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "target_session_attrs"])
    return urlunsplit((parts.scheme, f"{userinfo}{host}:{port}", parts.path, query, ""))

