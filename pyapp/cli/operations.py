"""backup, maintenance, alerts and expire-orders: the operator's routine commands."""
from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from pyapp import config, notify
from pyapp.cli.tables import print_table
from pyapp.db import calls
from pyapp.db.localpg import bindir
from pyapp.db.runtime import database


class BackupFailed(Exception):
    """pg_dump failed, or its file is empty or not listable by pg_restore."""


def make_backup(owner_url: str, out_dir: Path) -> tuple[Path, int, int]:
    """A custom-format pg_dump to out_dir/marketplace-<UTC time>.dump, checked non-empty and
    listable by pg_restore --list; returns (path, size in bytes, entries). Raises BackupFailed.
    Used by `backup` and `deploy`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"marketplace-{stamp}.dump"
    print(f"backup: dumping to {path}", flush=True)
    r = subprocess.run([str(bindir() / "pg_dump"), "--format=custom", "--file", str(path),
                        "--dbname", owner_url], capture_output=True, text=True)
    if r.returncode != 0:
        path.unlink(missing_ok=True)
        raise BackupFailed(f"pg_dump failed: {r.stderr.strip()}")
    size = path.stat().st_size if path.exists() else 0
    listing = subprocess.run([str(bindir() / "pg_restore"), "--list", str(path)], capture_output=True, text=True)
    entries = [ln for ln in listing.stdout.splitlines() if ln and not ln.startswith(";")]
    if size == 0 or listing.returncode != 0 or not entries:
        raise BackupFailed(f"backup {path} is not readable by pg_restore: {listing.stderr.strip()}")
    return path, size, len(entries)


def backup(args) -> int:
    try:
        with database() as db:
            path, size, entries = make_backup(db.owner_url, Path(args.dir))
    except BackupFailed as exc:
        print(f"pyapp: {exc}", file=sys.stderr)
        return 1
    print(f"backup: {path} ({size} bytes, {entries} entries)")
    return 0


def maintenance(args) -> int:
    with database() as db, db.session() as s:
        state = calls.owner_set_maintenance(s, args.state == "on")
    print(f"maintenance: {'on' if state['maintenance'] else 'off'}"
          + (f" since {state['since']}" if state.get("since") else ""))
    return 0


SEVERITY_EXIT = {"critical": 2, "warning": 1}


def alerts(args) -> int:
    limits = (args.window_minutes, args.max_negative_stock, args.max_concurrency_errors,
              args.max_failed_orders, args.max_unpaid_past_hold)
    if args.window_minutes <= 0 or min(limits) < 0:
        print("pyapp: the window must be positive and thresholds not negative", file=sys.stderr)
        return 2
    hold = config.hold_minutes(args.hold_minutes)
    with database() as db, db.session() as s:
        rows = calls.evaluate_alerts(s, hold, *limits)
    print_table(["rule", "severity", "value", "threshold", "state", "detail"],
                [(r, sev, v, t, "FIRING" if f else "ok", d) for r, sev, v, t, f, d in rows])
    code = max((SEVERITY_EXIT.get(sev, 1) for _, sev, _, _, f, _ in rows if f), default=0)
    firing = [r for r, _, _, _, f, _ in rows if f]
    print("alerts: quiet" if not firing else f"alerts: {len(firing)} firing: {', '.join(firing)}")
    critical = [f"{r}: {d}" for r, sev, _, _, f, d in rows if f and sev == "critical"]
    if critical:
        notify.send(f"alerts on {notify.where(db.owner_url)}: CRITICAL: " + "; ".join(critical))
    return code


def expire_orders(args) -> int:
    hold = config.hold_minutes(args.hold_minutes)
    stop = threading.Event()
    if args.every is not None:
        if args.every <= 0:
            print("pyapp: --every must be positive", file=sys.stderr)
            return 2
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    # Each pass is recorded (api.record_expiry_run): `status` and `verify` tell a running worker
    # from a one-off pass, and both from pg_cron's job.
    runner, every = ("manual", None) if args.every is None else ("worker", args.every)
    with database() as db:
        total = 0
        while True:
            try:
                n, skipped = expire_once(db.owner_url, hold, args.batch_size, runner, every)
                total += n
                stamp = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
                print(f"{stamp} expire-orders: {n} expired (total {total})"
                      + (f", {len(skipped)} skipped" if skipped else ""), flush=True)
                for order_id, sqlstate, message, attempts in skipped:
                    print(f"{stamp} expire-orders: skipped order {order_id}: {sqlstate} {message}"
                          f" (attempt {attempts}; retried in 10 minutes, see api.expiry_failures())",
                          flush=True)
            except psycopg.Error as exc:
                if args.every is None:
                    raise
                print(f"expire-orders: pass failed ({exc.sqlstate}): {str(exc).splitlines()[0]}", flush=True)
            if args.every is None or stop.wait(args.every):
                break
    return 0


# After each batch, the expiry pass waits this many times as long as the batch took, so that a
# backlog (100,000 orders after an outage) is worked off at a fraction of one CPU, in minutes,
# instead of taking a full core from the buyers checking out meanwhile (bench/expiry_bench.py).
EXPIRY_YIELD = 2.0


def expire_once(url: str, hold: int, batch: int, runner: str = "manual",
                every: float | None = None, yield_ratio: float = EXPIRY_YIELD) -> tuple[int, list[tuple]]:
    """Expires every order past the window, one batch (one short transaction) at a time, pausing
    `yield_ratio` times a batch's duration after each full one, then records the pass as `runner`
    passing every `every` seconds (api.record_expiry_run). Returns how many it expired and the
    orders it had to skip, as (order_id, sqlstate, message, attempts): those
    api.expire_pending_orders recorded as failed in the same transaction."""
    total, skipped = 0, []
    with psycopg.connect(url, autocommit=True) as conn:
        s = calls.Session(conn)
        while True:
            started = time.monotonic()
            with conn.transaction():
                n = calls.expire_pending_orders(s, hold, batch)
                failed = calls.expiry_failures_now(s)
            total += n
            skipped += failed
            # A skipped order was still taken from the batch: a full batch may have more behind it.
            if n + len(failed) < batch:
                break
            if yield_ratio > 0:
                time.sleep((time.monotonic() - started) * yield_ratio)
        # A database whose migrations predate the record (a deploy that has not migrated yet)
        # still gets its orders expired.
        calls.record_expiry_run(s, runner, total, every)
    return total, skipped
