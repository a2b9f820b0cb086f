"""The bodies of `python -m pyapp` commands. Each takes the parsed arguments, returns an exit code.
The commands for the webhook keys, the login throttle and the limits are in settings_commands,
simulate-race in race, expiry-schedule in expiry_schedule."""
from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from pyapp import config, notify
from pyapp import migrate as mig
from pyapp.localpg import bindir
from pyapp.runtime import APP_ROLE, ROOT, database, open_database, scalar

DEMO_PASSWORD = "artisan-demo-2026"
DEMO_USERS = [("buyer@example.com", "Demo Buyer", "BUYER"),
              ("seller@example.com", "Demo Seller", "SELLER"),
              ("admin@example.com", "Demo Admin", "ADMIN")]
DEMO_PRODUCTS = [("Hand-thrown stoneware mug", "Glazed in ash blue; each one differs.", 24.00, 12),
                 ("Walnut serving board", "Oiled black walnut, 40 cm.", 58.50, 5),
                 ("Indigo-dyed linen scarf", "Shibori-folded, dyed by hand.", 42.00, 8),
                 ("Beeswax taper candles (pair)", "Hand-dipped, unscented.", 16.00, 20),
                 ("One-of-a-kind raku vase", "The only one there is.", 180.00, 1)]


def hold_minutes(args) -> int:
    value = args.hold_minutes if getattr(args, "hold_minutes", None) is not None \
        else int(os.environ.get("ORDER_HOLD_MINUTES", "30"))
    if value < 0:
        raise SystemExit("pyapp: the hold window must not be negative")
    return value


def print_table(headers, rows) -> None:
    rows = [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


# ---------------------------------------------------------------- migrations

def migrate(args) -> int:
    with database() as db:
        todo = mig.pending(db.owner_url)
        print(f"migrate: {len(todo)} pending" + (f": {', '.join(todo)}" if todo else ""), flush=True)
        done = mig.apply(db.owner_url)
        db.after_migrations()
    for m in done:
        print(f"applied {m}")
    print("migrations: up to date" if not done else f"migrations: {len(done)} applied")
    return 0


def rollback(args) -> int:
    with database() as db:
        ids = [m.id for m in mig.migrations()]
        applied = set(mig.applied(db.owner_url))
        if args.all:
            targets = [i for i in ids if i in applied]
        else:
            try:
                cut = ids.index(mig.resolve(args.name))
            except ValueError as exc:
                print(f"pyapp: {exc}", file=sys.stderr)
                return 2
            targets = [i for i in ids[cut:] if i in applied]
        drops_version = any(i.endswith("_add_version_to_product") for i in targets)
        if drops_version and not args.force:
            with psycopg.connect(db.owner_url) as conn:
                pending = scalar(conn, """SELECT count(*) FROM "Order" WHERE status = 'PENDING_PAYMENT'""")
            if pending:
                print(f"pyapp: refusing to drop the version column: {pending} orders are PENDING_PAYMENT "
                      "and their stock is held under optimistic locking. Wait for them to be paid or "
                      "expire (python -m pyapp expire-orders), or pass --force.", file=sys.stderr)
                return 1
        print(f"rollback: rolling back {len(targets)} migrations", flush=True)
        done = mig.rollback(db.owner_url, None if args.all else args.name)
    for m in done:
        print(f"rolled back {m}")
    print(f"rollback: {len(done)} migrations rolled back")
    if done:
        notify.send(f"rollback on {notify.where(db.owner_url)}: {len(done)} migration(s) rolled back "
                    f"({', '.join(done)})")
    return 0


def status(args) -> int:
    from pyapp.expiry_schedule import RUNNER_HEADERS, runner_rows

    with database() as db:
        applied = set(mig.applied(db.owner_url))
        with psycopg.connect(db.owner_url, autocommit=True) as conn:
            runners = runner_rows(conn)
    rows = [(m.id, "applied" if m.id in applied else "PENDING") for m in mig.migrations()]
    print_table(["migration", "state"], rows)
    pending = [r for r in rows if r[1] == "PENDING"]
    print(f"{len(rows) - len(pending)} applied, {len(pending)} pending")
    # Which runner expires unpaid orders (api.expiry_status); informative, not part of the exit code.
    if runners is not None:
        print()
        print_table(["expiry " + RUNNER_HEADERS[0], *RUNNER_HEADERS[1:]], runners)
    return 1 if pending else 0


def verify(args) -> int:
    with database() as db, psycopg.connect(db.owner_url) as conn:
        rows = conn.execute("SELECT check_name, ok, detail FROM api.integrity_report(make_interval(mins => %s))",
                            (hold_minutes(args),)).fetchall()
    print_table(["check", "ok", "detail"], [(n, "ok" if ok else "FAILED", d) for n, ok, d in rows])
    failed = [n for n, ok, _ in rows if not ok]
    print("verify: all checks passed" if not failed else f"verify: {len(failed)} failed: {', '.join(failed)}")
    return 1 if failed else 0


# ---------------------------------------------------------------- operations

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
    with database() as db, psycopg.connect(db.owner_url) as conn:
        state = scalar(conn, "SELECT api.set_maintenance(%s)", (args.state == "on",))
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
    with database() as db, psycopg.connect(db.owner_url) as conn:
        rows = conn.execute(
            """SELECT rule, severity, value, threshold, firing, detail
               FROM api.evaluate_alerts(make_interval(mins => %s), make_interval(mins => %s), %s, %s, %s, %s)""",
            (hold_minutes(args), *limits)).fetchall()
    print_table(["rule", "severity", "value", "threshold", "state", "detail"],
                [(r, sev, v, t, "FIRING" if f else "ok", d) for r, sev, v, t, f, d in rows])
    code = max((SEVERITY_EXIT.get(sev, 1) for _, sev, _, _, f, _ in rows if f), default=0)
    firing = [r for r, _, _, _, f, _ in rows if f]
    print("alerts: quiet" if not firing else f"alerts: {len(firing)} firing: {', '.join(firing)}")
    critical = [f"{r}: {d}" for r, sev, _, _, f, d in rows if f and sev == "critical"]
    if critical:
        notify.send(f"alerts on {notify.where(db.owner_url)}: CRITICAL: " + "; ".join(critical))
    return code


DURATION_UNITS = {"m": "mins", "h": "hours", "d": "days"}


def parse_duration(text: str) -> tuple[int, str]:
    """'30m', '6h', '7d' -> (30, 'mins') ...; ValueError otherwise."""
    m = re.fullmatch(r"\s*([0-9]{1,6})\s*([mhd])\s*", text or "")
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 6h or 7d)")
    return int(m.group(1)), DURATION_UNITS[m.group(2)]


def _pct(x) -> str:
    return "n/a" if x is None else f"{float(x) * 100:.2f} %"


def _ms(x) -> str:
    return "n/a" if x is None else f"{float(x) * 1000:.1f} ms"


def _in_unit(x, unit: str) -> str:
    if x is None:
        return "n/a"
    return _pct(x) if unit == "ratio" else f"{float(x):.3f} s"


def _outcome_order(outcome: str) -> tuple:
    """The server's decisions first, then the checkouts it refused before deciding (pyapp.metrics)."""
    from pyapp.metrics import DECIDED, OUTCOMES

    return (outcome not in DECIDED, OUTCOMES.index(outcome) if outcome in OUTCOMES else len(OUTCOMES), outcome)


VERDICT_EXIT = {"PASS": 0, "WARN": 1, "FAIL": 2}
WARN_OP = {">": "<=", "<": ">="}


def print_verdict(verdict: dict) -> None:
    """The checklist's targets against the window's figures (api.deploy_verdict), one row each."""
    print()
    print(f"verdict: {verdict['decidedCheckouts']} checkouts decided by the server in the window; "
          f"at least {verdict['minCheckouts']} to judge")
    print_table(["target", "measured", "threshold", "warn at", "status", "note"], [
        (c["title"], _in_unit(c["value"], c["unit"]), f"{c['op']} {_in_unit(c['threshold'], c['unit'])}",
         f"{WARN_OP[c['op']]} {_in_unit(c['warnAt'], c['unit'])}", c["status"], c["reason"])
        for c in verdict["checks"]])
    print(f"verdict: {verdict['status']} (exit {VERDICT_EXIT[verdict['status']]})")


def report(args) -> int:
    try:
        amount, unit = parse_duration(args.since)
    except ValueError as exc:
        print(f"pyapp: {exc}", file=sys.stderr)
        return 2
    if args.min_checkouts is not None and args.min_checkouts < 1:
        print("pyapp: --min-checkouts must be at least 1", file=sys.stderr)
        return 2
    # The targets and the default minimum are api.deploy_verdict's. One statement: the figures and
    # the verdict see the same rows and the same now().
    verdict_sql = "api.deploy_verdict(w)" if args.min_checkouts is None else "api.deploy_verdict(w, %(min)s)"
    with database() as db, psycopg.connect(db.owner_url) as conn:
        row = conn.execute(
            f"SELECT api.checkout_report(w), {verdict_sql} FROM make_interval({unit} => %(amount)s) AS w",
            {"amount": amount, "min": args.min_checkouts}).fetchone()
    assert row is not None, "a SELECT from one interval returns one row"
    rep, verdict = row
    code = VERDICT_EXIT[verdict["status"]] if args.check else 0
    if args.json:
        print(json.dumps({**rep, "verdict": verdict}, indent=2, sort_keys=True))
        return code
    lat = rep["latencySeconds"]
    print(f"report: {rep['from']} to {rep['until']} (--since {args.since})")
    print_table(["figure", "value"], [
        ("checkouts", rep["checkouts"]),
        *((f"  {k}", rep["byOutcome"][k]) for k in sorted(rep["byOutcome"], key=_outcome_order)),
        ("decided by the server", rep["decidedCheckouts"]),
        ("  failed (conflict, error)", rep["failedCheckouts"]),
        ("success rate", _pct(rep["successRate"])),
        ("ConcurrencyErrors", rep["concurrencyErrors"]),
        ("ConcurrencyError rate", _pct(rep["concurrencyErrorRate"])),
        ("retries", rep["retries"]),
        ("retries per checkout", "n/a" if rep["retriesPerCheckout"] is None else rep["retriesPerCheckout"]),
        ("latency P50", _ms(lat["p50"])),
        ("latency P95", _ms(lat["p95"])),
        ("latency P99", _ms(lat["p99"])),
        ("latency mean", _ms(lat["mean"])),
        ("products with negative stock", rep["negativeStock"]),
        *((f"orders {k}", v) for k, v in sorted(rep["ordersByStatus"].items())),
    ])
    if args.check:
        print_verdict(verdict)
    return code


def expire_orders(args) -> int:
    hold = hold_minutes(args)
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
        while True:
            started = time.monotonic()
            with conn.transaction():
                n = scalar(conn, "SELECT api.expire_pending_orders(make_interval(mins => %s), %s)",
                           (hold, batch))
                failed = conn.execute("""SELECT order_id, sqlstate, message, attempts
                                         FROM api.expiry_failures() WHERE last_failed_at = now()""").fetchall()
            total += n
            skipped += failed
            # A skipped order was still taken from the batch: a full batch may have more behind it.
            if n + len(failed) < batch:
                break
            if yield_ratio > 0:
                time.sleep((time.monotonic() - started) * yield_ratio)
        # A database whose migrations predate the record (a deploy that has not migrated yet)
        # still gets its orders expired.
        if scalar(conn, "SELECT to_regprocedure('api.record_expiry_run(text, integer, interval)')"):
            conn.execute("SELECT api.record_expiry_run(%s, %s, make_interval(secs => %s))",
                         (runner, total, every))
    return total, skipped


def create_user(args) -> int:
    from pyapp.auth import hash_password

    password = args.password or os.environ.get("MARKETPLACE_PASSWORD") or getpass.getpass("password: ")
    with database() as db, psycopg.connect(db.owner_url) as conn:
        try:
            user = scalar(conn, "SELECT api.create_user(%s, %s, %s, %s)",
                          (args.email, args.name, hash_password(password), args.role))
        except psycopg.Error as exc:
            if exc.sqlstate and exc.sqlstate.startswith("MK"):
                print(f"pyapp: {exc.diag.message_primary}", file=sys.stderr)
                return 1
            raise
    print(f"create-user: {user['email']} ({user['role']}) id {user['id']}")
    return 0


def load_demo(owner_url: str) -> bool:
    """Loads the demo users and catalogue into an empty database; returns whether it did."""
    from pyapp.auth import hash_password

    with psycopg.connect(owner_url) as conn:
        if scalar(conn, 'SELECT EXISTS (SELECT 1 FROM "User")'):
            return False
        ids = {}
        for email, name, role in DEMO_USERS:
            ids[role] = scalar(conn, "SELECT api.create_user(%s, %s, %s, %s)",
                               (email, name, hash_password(DEMO_PASSWORD), role))["id"]
        for name, desc, price, stock in DEMO_PRODUCTS:
            conn.execute("SELECT api.create_product(%s, %s, %s::numeric, %s::integer, %s)",
                         (ids["SELLER"], name, price, stock, desc))
    return True


# ---------------------------------------------------------------- serving

def is_loopback(host: str) -> bool:
    """Whether `host` (an address, or a name such as localhost) means only this machine."""
    host = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return False
    return bool(found) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in found)


def demo_refusal(host: str) -> str | None:
    """Why `serve --demo` must not run here, or None. Its users' password is in the README."""
    if os.environ.get("DATABASE_URL"):
        return ("serve --demo loads users whose password is published, so only into the project's own "
                "cluster: unset DATABASE_URL, or serve without --demo")
    if not is_loopback(host):
        return (f"serve --demo listens only on a loopback address, not HOST={host!r}: its users' password "
                "is published. Set HOST=127.0.0.1, or serve without --demo")
    return None


def serve(args) -> int:
    from pyapp import settings_commands

    try:
        cfg = config.Config.from_env()
    except SystemExit as exc:  # a malformed variable: bad usage, before anything starts
        print(f"pyapp: {exc}", file=sys.stderr)
        return 2
    if args.demo and (why := demo_refusal(cfg.host)):
        print(f"pyapp: refused: {why}", file=sys.stderr)
        return 2
    db = open_database()
    try:
        for m in mig.apply(db.owner_url):
            print(f"applied {m}")
        db.after_migrations()
        try:
            for line in settings_commands.apply_env(db.owner_url, cfg):
                print(f"serve: {line}")
        except settings_commands.Refused as exc:
            print(f"pyapp: refused: {exc}", file=sys.stderr)
            return 2
        if args.demo and load_demo(db.owner_url):
            print("serve: loaded the demo catalogue")
        if args.demo:
            print(f"serve: demo users ({DEMO_PASSWORD!r} for each): "
                  + ", ".join(f"{e} ({r})" for e, _, r in DEMO_USERS))
        if db.cluster is None and db.app_url == db.owner_url:
            # The app's role is the security boundary (docs/security.md); the owner can do anything.
            print("serve: WARNING: APP_DATABASE_URL is unset, so the HTTP app connects with DATABASE_URL, "
                  "as the database owner. Point APP_DATABASE_URL at the marketplace_app role "
                  "(ALTER ROLE marketplace_app PASSWORD ...) to keep a stolen app credential harmless.",
                  file=sys.stderr, flush=True)
        env = dict(os.environ)
        env["DATABASE_URL"] = db.app_url
        # The app needs neither the webhook key (checked in the database) nor, on the own
        # cluster, the owner's password: its PGPASSFILE holds marketplace_app's alone.
        env.pop("PAYMENT_WEBHOOK_SECRET", None)
        if db.cluster is not None:
            env["PGPASSFILE"] = str(db.cluster.passfile_for(APP_ROLE))
        if args.workers:
            env["WORKERS"] = str(args.workers)
        print(f"serve: http://{cfg.host}:{cfg.port}/ (Ctrl-C stops)", flush=True)
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "pyapp" / "gunicorn_conf.py"),
                                 "pyapp.wsgi:app"], env=env, cwd=ROOT)

        def forward(signum, _frame):
            proc.send_signal(signum)

        # Ctrl-C or SIGTERM: gunicorn stops gracefully, then the cluster this command started.
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return proc.wait()
    finally:
        db.stop_if_started()
