"""Configuration from the environment, read once per process.

DATABASE_URL, HOST, PORT (default 127.0.0.1:8080), PAYMENT_WEBHOOK_SECRET, ORDER_HOLD_MINUTES
(default 30), LOG_FILE (JSON lines), DB_POOL_SIZE (connections per worker process, default
THREADS), DB_POOL_TIMEOUT_S (how long a request waits for a connection, default 3),
LOCK_TIMEOUT_MS (default 2000), STATEMENT_TIMEOUT_MS (default 5000), WORKERS (HTTP server
processes, default 2), THREADS (threads per worker, default 8), DB_PGBOUNCER (1 when DATABASE_URL
goes through PgBouncer in transaction pooling mode: no server-side prepared statements and no
startup `options`, so LOCK_TIMEOUT_MS and STATEMENT_TIMEOUT_MS are not sent and must be set on the
role instead; see docs/scaling.md), DB_RELEASE_EARLY (default 1: a checkout that queued for its
product may commit without waiting for the disk, and its 201 waits for a durable commit after it;
0 for a durable commit every time; see docs/design.md).

Security (docs/security.md): METRICS_TOKEN (when set, GET /metrics wants `Authorization: Bearer
<it>`), METRICS_DB_CACHE_SECONDS (how long a worker reuses the database's figures for /metrics:
default and at most 15, 0 to read them at every scrape), TRUSTED_PROXIES (comma-separated
addresses or networks of the reverse proxies whose X-Forwarded-For names the client; default none,
so the client is the socket peer). Limits kept
in the database, which `python -m pyapp serve` writes there when set (the app role cannot):
MAX_UNPAID_ORDERS (default 3), REGISTRATIONS_PER_CLIENT_PER_HOUR (default 20).

High availability (docs/scaling.md): DATABASE_URL may name several hosts (libpq multi-host with
target_session_attrs=read-write); READ_DATABASE_URL (optional) is where product listing and
product reads go (a standby; e.g. the same hosts with target_session_attrs=prefer-standby).

Operations: NOTIFY_WEBHOOK_URL (a Slack-compatible incoming webhook; `notify`, `deploy`,
`rollback` and `alerts` post {"text": ...} to it; unset: nothing is sent). Read on its own by
notify_webhook_url(), so that a malformed unrelated variable never stops a notification.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field


def _int(name: str, default: int, lo: int = 0, hi: int = 10**9) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, not {raw!r}") from None
    if not lo <= value <= hi:
        raise SystemExit(f"{name} must be between {lo} and {hi}, not {value}")
    return value


def _networks(name: str) -> tuple:
    raw = os.environ.get(name, "").strip()
    nets = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise SystemExit(f"{name} must list IP addresses or networks, not {part!r}") from None
    return tuple(nets)


HOLD_MINUTES_RANGE = (1, 7 * 24 * 60)


def hold_minutes(value: int | None = None) -> int:
    """The hold window of unpaid orders in minutes, for the commands: `value` (their --hold-minutes)
    when given, which may be 0 (`expire-orders --hold-minutes 0` expires every unpaid order now, as
    the runbook's rollback does) but not negative; else ORDER_HOLD_MINUTES (default 30), 1 to 10080
    (a week) as the server reads it (Config.order_hold_minutes)."""
    if value is None:
        return _int("ORDER_HOLD_MINUTES", 30, *HOLD_MINUTES_RANGE)
    if value < 0:
        raise SystemExit("pyapp: the hold window must not be negative")
    return value


def database_urls() -> tuple[str, str]:
    """(DATABASE_URL, APP_DATABASE_URL or else DATABASE_URL); ('', '') when DATABASE_URL is unset
    (the project's own cluster, pyapp.db.runtime)."""
    owner = os.environ.get("DATABASE_URL", "")
    return owner, (os.environ.get("APP_DATABASE_URL") or owner) if owner else ""


def local_pgdata() -> str:
    """LOCAL_PGDATA: where the project's own cluster lives ('' for .pgdata/ in the repository)."""
    return os.environ.get("LOCAL_PGDATA", "")


def command_password() -> str:
    """MARKETPLACE_PASSWORD: create-user's password when not given as an argument ('' if unset)."""
    return os.environ.get("MARKETPLACE_PASSWORD", "")


def webhook_secret() -> str:
    """PAYMENT_WEBHOOK_SECRET, read on its own by the commands that set the key ('' if unset)."""
    return os.environ.get("PAYMENT_WEBHOOK_SECRET", "")


def server_url() -> str:
    """http://HOST:PORT of this machine's server (defaults 127.0.0.1 and 8080), as is."""
    return f"http://{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"


def notify_webhook_url() -> str:
    """NOTIFY_WEBHOOK_URL, stripped; '' when unset."""
    return os.environ.get("NOTIFY_WEBHOOK_URL", "").strip()


def _limit(name: str) -> int | None:
    """An optional positive limit: None when unset (the database keeps its own value)."""
    return _int(name, 0, 1, 10**6) if os.environ.get(name, "").strip() else None


@dataclass(frozen=True)
class Config:
    database_url: str
    host: str
    port: int
    webhook_secret: str
    order_hold_minutes: int
    log_file: str
    workers: int
    threads: int
    pool_size: int
    pool_timeout_s: float
    lock_timeout_ms: int
    statement_timeout_ms: int
    pgbouncer: bool = False
    release_early: bool = True
    metrics_token: str = ""
    metrics_cache_s: int = 15
    trusted_proxies: tuple = field(default_factory=tuple)
    max_unpaid_orders: int | None = None
    registrations_per_client_per_hour: int | None = None
    notify_webhook_url: str = ""
    read_database_url: str = ""  # READ_DATABASE_URL: catalogue reads from a standby (pyapp.db.replicas)

    @classmethod
    def from_env(cls) -> "Config":
        threads = _int("THREADS", 8, 1, 256)
        return cls(
            database_url=os.environ.get("DATABASE_URL", ""),
            host=os.environ.get("HOST", "127.0.0.1") or "127.0.0.1",
            port=_int("PORT", 8080, 1, 65535),
            webhook_secret=os.environ.get("PAYMENT_WEBHOOK_SECRET", ""),
            order_hold_minutes=hold_minutes(),
            log_file=os.environ.get("LOG_FILE", ""),
            workers=_int("WORKERS", _int("WEB_CONCURRENCY", 2, 1, 64), 1, 64),
            threads=threads,
            pool_size=_int("DB_POOL_SIZE", threads, 1, 500),
            pool_timeout_s=float(_int("DB_POOL_TIMEOUT_S", 3, 1, 60)),
            lock_timeout_ms=_int("LOCK_TIMEOUT_MS", 2000, 1, 600_000),
            statement_timeout_ms=_int("STATEMENT_TIMEOUT_MS", 5000, 1, 3_600_000),
            pgbouncer=bool(_int("DB_PGBOUNCER", 0, 0, 1)),
            release_early=bool(_int("DB_RELEASE_EARLY", 1, 0, 1)),
            metrics_token=os.environ.get("METRICS_TOKEN", ""),
            metrics_cache_s=_int("METRICS_DB_CACHE_SECONDS", 15, 0, 15),
            trusted_proxies=_networks("TRUSTED_PROXIES"),
            max_unpaid_orders=_limit("MAX_UNPAID_ORDERS"),
            registrations_per_client_per_hour=_limit("REGISTRATIONS_PER_CLIENT_PER_HOUR"),
            notify_webhook_url=notify_webhook_url(),
            read_database_url=os.environ.get("READ_DATABASE_URL", "").strip(),
        )


_config: Config | None = None


def get() -> Config:
    global _config
    if _config is None:
        _config = Config.from_env()
    return _config
