"""Checkout benchmark: pgbench scenarios against a throwaway cluster, printed as one table.

    .venv/bin/python bench/checkout_bench.py [--clients 32] [--seconds 20] [--quick] [--stats]

Starts its own PostgreSQL cluster in a temporary folder (or uses BENCH_DATABASE_URL, a role that
may CREATE DATABASE), builds one migrated template database, copies it per catalogue, seeds users
and products with plain SQL, runs pgbench per scenario, and computes p50/p99 from pgbench's
per-transaction logs. After every scenario it checks the stock invariants in the database.
See bench/README.md.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from benchpg import Postgres  # noqa: E402

from pyapp.db import migrate  # noqa: E402

# The checkout connections run api.checkout as the owner, asking for early release as the app's pool
# does: the app's role itself may no longer call api.checkout (it takes user ids; the app goes
# through the token-bound app.checkout), and this bench measures the core function.
AS_APP_POOL = "as-app-pool"
PER_CLIENT = 100          # buyers per pgbench client (disjoint between clients)
HUGE_STOCK = 100_000_000  # never runs out during a run
PREFIX = "mk_bench_"
HISTORY = 20_000          # past orders seeded per catalogue
# pg_stat_wal's wal_sync_time: how long the WAL flushes every commit waits for take.
WAL_CONF = "track_wal_io_timing = on\n"
STATS_CONF = ("shared_preload_libraries = 'pg_stat_statements'\n"
              "pg_stat_statements.track = all\ntrack_functions = all\n")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_template(server: Postgres, buyers: int, stats: bool) -> str:
    """A migrated database with one seller and `buyers` buyers (ids '1'..'<buyers>')."""
    name = server.create(PREFIX + "template")
    migrate.apply(server.url(name))
    with psycopg.connect(server.dsn(name), autocommit=True) as conn:
        if stats:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("""
            INSERT INTO "User" (id, email, name, role, "passwordHash")
            VALUES ('seller', 'seller@bench.invalid', 'Bench seller', 'SELLER', 'x')""")
        conn.execute("""
            INSERT INTO "User" (id, email, name, role, "passwordHash")
            SELECT g::text, 'buyer' || g || '@bench.invalid', 'Buyer ' || g, 'BUYER', 'x'
            FROM generate_series(1, %s) g""", (buyers,))
    return name


def make_catalogue(server: Postgres, template: str, name: str, products: int, stock: int, buyers: int) -> str:
    """A copy of the template with products '1'..'<products>' (the triggers open a ledger row
    each) and HISTORY delivered orders."""
    dbname = server.create(PREFIX + name, template)
    t0 = time.monotonic()
    with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
        conn.execute("""
            INSERT INTO "Product" (id, name, price, stock, "sellerId")
            SELECT g::text, 'Product ' || g, 10 + (g %% 90), %s, 'seller'
            FROM generate_series(1, %s) g""", (stock, products))
        # A past order history, as any live shop has. With "Order" empty when a run starts, each
        # session caches the foreign-key check of "OrderItem"."orderId" as a sequential scan of
        # "Order" and keeps it as the table grows (measured: 0.23 ms per check instead of 0.004),
        # which would charge a fresh-install artefact to the checkout, inside its row lock.
        conn.execute("""
            INSERT INTO "Order" (id, "userId", status, total, "shippingAddress", "createdAt", "updatedAt")
            SELECT 'past-' || g, ((g %% %s) + 1)::text, 'DELIVERED', p.price, '{"city":"X"}',
                   now() - interval '30 days', now() - interval '30 days'
            FROM generate_series(1, %s) g JOIN "Product" p ON p.id = ((g %% %s) + 1)::text""",
                     (buyers, HISTORY, products))
        conn.execute("""
            INSERT INTO "OrderItem" ("orderId", "productId", quantity, "unitPrice")
            SELECT o.id, ((g %% %s) + 1)::text, 1, o.total
            FROM generate_series(1, %s) g JOIN "Order" o ON o.id = 'past-' || g""", (products, HISTORY))
        conn.execute("VACUUM ANALYZE")
    log(f"{dbname}: {products:,} products seeded in {time.monotonic() - t0:.1f} s")
    return dbname


@dataclass
class Result:
    scenario: str
    clients: int
    seconds: float
    txns: int = 0
    tps_x_seconds: float = 0.0  # pgbench's own tps (excluding connection time), weighted by duration
    failed: int = 0
    aborted: bool = False
    latencies_us: list[int] = field(default_factory=list)
    checks: str = ""
    wal_syncs: int = 0          # pg_stat_wal over the run(s): WAL flushes to disk,
    wal_sync_ms: float = 0.0    # the time they took (track_wal_io_timing),
    wal_bytes: int = 0          # and WAL written
    wal_known: bool = False

    @property
    def tps(self) -> float:
        return self.tps_x_seconds / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        """q-th percentile of per-transaction latency in ms (nearest rank)."""
        if not self.latencies_us:
            return float("nan")
        xs = sorted(self.latencies_us)
        return xs[min(len(xs) - 1, max(0, round(q * len(xs)) - 1))] / 1000.0

    @property
    def mean_ms(self) -> float:
        xs = self.latencies_us
        return sum(xs) / len(xs) / 1000.0 if xs else float("nan")


def pgbench(server: Postgres, dbname: str, user: str | None, script: str, clients: int,
            seconds: int, variables: dict[str, object], logdir: Path, tag: str) -> tuple[int, float, int, float, bool, list[int]]:
    """One pgbench run; returns (transactions, tps, failed, seconds, aborted, latencies in us)."""
    prefix = logdir / tag
    cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(2, clients)),
           "-T", str(seconds), "-f", str(BENCH / script), "-l", f"--log-prefix={prefix}"]
    for k, v in variables.items():
        cmd += ["-D", f"{k}={v}"]
    release_early = user == AS_APP_POOL
    cmd.append(server.dsn(dbname, None if release_early else user))
    env = dict(os.environ)
    if release_early:  # as the app's pool connects: queued checkouts may release early
        env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " -c mk.release_early=on").strip()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    out = r.stdout
    aborted = r.returncode != 0
    if aborted:
        log(f"pgbench {tag} exited {r.returncode}:\n{r.stderr.strip()[-2000:]}")
    txns = failed = 0
    tps = 0.0
    duration = float(seconds)
    for line in out.splitlines():
        if line.startswith("number of transactions actually processed:"):
            txns = int(line.split(":")[1].split("/")[0])
        elif line.startswith("number of failed transactions:"):
            failed = int(line.split(":")[1].split()[0])
        elif line.startswith("tps = "):
            tps = float(line.split()[2])
        elif line.startswith("duration:"):
            duration = float(line.split(":")[1].split()[0])
    lat: list[int] = []
    for path in glob.glob(f"{prefix}.*"):
        with open(path) as f:
            for row in f:
                parts = row.split()
                # client_id transaction_no time script_no time_epoch time_us; time is "failed" on failure
                if len(parts) >= 3 and parts[2].isdigit():
                    lat.append(int(parts[2]))
    return txns, tps, failed, duration, aborted, lat


def snapshot(server: Postgres, dbname: str) -> dict[str, int]:
    """Stock invariants and counters, read as the owner (the app role can only EXECUTE api)."""
    with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
        row = conn.execute("""
            SELECT (SELECT count(*) FROM "Product" WHERE stock < 0),
                   (SELECT count(*) FROM "Product" p
                    LEFT JOIN (SELECT "productId", sum(delta) AS s FROM "StockLedger" GROUP BY 1) l
                           ON l."productId" = p.id
                    WHERE p.stock <> coalesce(l.s, 0)),
                   (SELECT coalesce(sum(stock), 0) FROM "Product"),
                   (SELECT count(*) FROM "Order"),
                   (SELECT count(*) FROM "CartItem")""").fetchone()
    return dict(zip(("negative", "mismatched", "stock", "orders", "cart_lines"), map(int, row)))


def wal_counters(server: Postgres, dbname: str) -> tuple[int, float, int] | None:
    """(flushes, ms spent in them, bytes) from pg_stat_wal, or None when it cannot be read."""
    try:
        with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
            row = conn.execute("SELECT wal_sync, wal_sync_time, wal_bytes FROM pg_stat_wal").fetchone()
    except psycopg.Error:
        return None
    return int(row[0]), float(row[1]), int(row[2])


def prepare_run(server: Postgres, dbname: str, stats: bool) -> None:
    """Same starting conditions for every scenario: no dead rows left by the previous one."""
    with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
        conn.execute('VACUUM ANALYZE "Product", "CartItem", "Order", "OrderItem", "StockLedger"')
        conn.execute("CHECKPOINT")
        if stats:
            conn.execute("SELECT pg_stat_statements_reset()")
            conn.execute("SELECT pg_stat_reset()")


def run_scenario(server: Postgres, dbname: str, scenario: str, script: str, user: str | None,
                 clients: int, seconds: int, pid_range: tuple[int, int], logdir: Path,
                 stats: bool, rounds: int = 1, result: Result | None = None) -> Result:
    res = result or Result(scenario, clients, 0.0)
    before = snapshot(server, dbname)
    prepare_run(server, dbname, stats)
    variables = {"pid_lo": pid_range[0], "pid_hi": pid_range[1], "per_client": PER_CLIENT}
    tag = f"{scenario}.r{int(res.seconds)}"
    log(f"{scenario}: {clients} clients, {seconds} s, products {pid_range[0]}..{pid_range[1]}")
    wal0 = wal_counters(server, dbname)
    txns, tps, failed, duration, aborted, lat = pgbench(server, dbname, user, script, clients, seconds,
                                                   variables, logdir, tag)
    wal1 = wal_counters(server, dbname)
    if wal0 is not None and wal1 is not None:
        res.wal_known = True
        res.wal_syncs += wal1[0] - wal0[0]
        res.wal_sync_ms += wal1[1] - wal0[1]
        res.wal_bytes += wal1[2] - wal0[2]
    after = snapshot(server, dbname)
    res.txns += txns
    res.tps_x_seconds += tps * duration
    res.failed += failed
    res.seconds += duration
    res.aborted |= aborted
    res.latencies_us += lat
    # Every committed transaction sells exactly one unit; checkouts also make exactly one order.
    sold = before["stock"] - after["stock"]
    problems = []
    if after["negative"]:
        problems.append(f"{after['negative']} products below 0")
    if after["mismatched"]:
        problems.append(f"{after['mismatched']} products differ from their ledger")
    if sold != txns:
        problems.append(f"{sold} units sold for {txns} transactions")
    if script.startswith("checkout"):
        if after["orders"] - before["orders"] != txns:
            problems.append(f"{after['orders'] - before['orders']} orders for {txns} transactions")
        if after["cart_lines"]:
            problems.append(f"{after['cart_lines']} cart lines left")
    verdict = "OK" if not problems else "FAIL: " + "; ".join(problems)
    part = (f"negative stock {after['negative']}, stock<>ledger {after['mismatched']}, "
            f"units sold {sold} = txns {txns}")
    if script.startswith("checkout"):
        part += f", orders +{after['orders'] - before['orders']}"
    res.checks = (res.checks + " | " if res.checks else "") + f"{part}: {verdict}"
    if stats:
        print_stats(server, dbname, scenario)
    return res


def print_stats(server: Postgres, dbname: str, scenario: str) -> None:
    """Where the time went inside the database (needs --stats: pg_stat_statements, track=all)."""
    with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
        rows = conn.execute("""
            SELECT calls, round(total_exec_time::numeric, 0), round(mean_exec_time::numeric, 4),
                   regexp_replace(left(query, 90), '\\s+', ' ', 'g')
            FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY total_exec_time DESC LIMIT 12""").fetchall()
        funcs = conn.execute("""
            SELECT schemaname || '.' || funcname, calls, round(total_time::numeric, 0), round(self_time::numeric, 0)
            FROM pg_stat_user_functions ORDER BY total_time DESC LIMIT 10""").fetchall()
    print(f"\n-- {scenario}: pg_stat_statements (top by total time; nested statements included)")
    print(f"{'calls':>9} {'total ms':>10} {'mean ms':>9}  query")
    for calls, total, mean, q in rows:
        print(f"{calls:>9} {total:>10} {mean:>9}  {q}")
    print(f"-- {scenario}: pg_stat_user_functions")
    print(f"{'function':<40} {'calls':>9} {'total ms':>10} {'self ms':>9}")
    for name, calls, total, self_ms in funcs:
        print(f"{name:<40} {calls:>9} {total:>10} {self_ms:>9}")
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32, help="pgbench clients for hot/spread (default 32)")
    ap.add_argument("--seconds", type=int, default=20, help="seconds per scenario (default 20)")
    ap.add_argument("--latency-clients", type=int, default=8, help="clients for the catalogue-size runs")
    ap.add_argument("--quick", action="store_true", help="smoke run: 5 s runs, 100k instead of 1M products")
    ap.add_argument("--stats", action="store_true",
                    help="preload pg_stat_statements (track=all) and print where time goes; "
                         "slows everything, so its figures are not the reference ones")
    args = ap.parse_args()
    seconds = 5 if args.quick else args.seconds
    big = 100_000 if args.quick else 1_000_000
    spread = 10_000
    if shutil.which("pgbench") is None:
        print("pgbench not found in PATH", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="mk-bench-"))
    os.chmod(tmp, 0o755)  # the cluster's owner (postgres, when we are root) must traverse it
    if args.stats and os.environ.get("BENCH_DATABASE_URL"):
        log("--stats needs pg_stat_statements preloaded; on BENCH_DATABASE_URL it is up to you")
    server = Postgres(tmp, WAL_CONF + (STATS_CONF if args.stats else ""))
    logdir = tmp / "pgbench-logs"
    logdir.mkdir()
    results: list[Result] = []
    try:
        buyers = max(args.clients, args.latency_clients) * PER_CLIENT
        template = build_template(server, buyers, args.stats)
        main_db = make_catalogue(server, template, "spread", spread, HUGE_STOCK, buyers)
        small_db = make_catalogue(server, template, "cat_1k", 1_000, HUGE_STOCK, buyers)
        big_db = make_catalogue(server, template, f"cat_{big // 1000}k", big, HUGE_STOCK, buyers)

        c = args.clients
        co = "checkout.sql"
        for scenario, script, user, products in (
                ("hot-bare", "bare_update.sql", None, (1, 1)),
                ("hot-checkout", "checkout_one_tx.sql", AS_APP_POOL, (1, 1)),
                ("hot-checkout-2tx", co, AS_APP_POOL, (1, 1)),
                ("spread-bare", "bare_update.sql", None, (1, spread)),
                ("spread-checkout", co, AS_APP_POOL, (1, spread))):
            results.append(run_scenario(server, main_db, scenario, script, user, c, seconds, products, logdir, args.stats))

        # The two catalogue sizes are interleaved in two halves each, so that a burst of load from
        # elsewhere on the machine does not land on only one of them.
        lc = args.latency_clients
        half = max(1, seconds // 2)
        small = Result("checkout-1k-catalogue", lc, 0.0)
        large = Result(f"checkout-{big // 1000}k-catalogue" if big < 1_000_000 else "checkout-1M-catalogue", lc, 0.0)
        for _ in range(2):
            run_scenario(server, small_db, small.scenario, co, AS_APP_POOL, lc, half, (1, 1_000), logdir, args.stats,
                         result=small)
            run_scenario(server, big_db, large.scenario, co, AS_APP_POOL, lc, half, (1, big), logdir, args.stats,
                         result=large)
        results += [small, large]
    finally:
        try:
            server.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    print_table(results, big)
    return 0 if all(not r.aborted for r in results) else 1


def print_table(results: list[Result], big: int) -> None:
    head = f"{'scenario':<24} {'clients':>7} {'seconds':>7} {'tps':>9} {'failed':>7} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8}"
    print(head)
    print("-" * len(head))
    for r in results:
        name = r.scenario + (" (ABORTED)" if r.aborted else "")
        print(f"{name:<24} {r.clients:>7} {r.seconds:>7.0f} {r.tps:>9.1f} {r.failed:>7} "
              f"{r.mean_ms:>8.2f} {r.pct(0.50):>8.2f} {r.pct(0.99):>8.2f}")
    print()
    if any(r.wal_known for r in results):
        print("WAL per transaction (pg_stat_wal over the run; one commit = one flush unless grouped):")
        print(f"{'scenario':<24} {'flushes/tx':>10} {'flush ms/tx':>11} {'ms/flush':>9} {'WAL kB/tx':>10}")
        for r in results:
            if r.wal_known and r.txns:
                per = r.wal_sync_ms / r.wal_syncs if r.wal_syncs else float("nan")
                print(f"{r.scenario:<24} {r.wal_syncs / r.txns:>10.2f} {r.wal_sync_ms / r.txns:>11.3f} "
                      f"{per:>9.3f} {r.wal_bytes / r.txns / 1024:>10.2f}")
        print()
    by = {r.scenario: r for r in results}
    hot = by["hot-checkout"].tps / by["hot-bare"].tps if by["hot-bare"].tps else float("nan")
    hot2 = by["hot-checkout-2tx"].tps / by["hot-bare"].tps if by["hot-bare"].tps else float("nan")
    small, large = results[-2], results[-1]
    lat = large.pct(0.5) / small.pct(0.5)
    mean = large.mean_ms / small.mean_ms
    print(f"hot checkout tps / hot bare tps      = {hot:.2f}  (target >= 0.70)  {'PASS' if hot >= 0.70 else 'FAIL'}"
          "   [one transaction per sale, as the bare update, plus the durability barrier]")
    print(f"hot checkout-2tx tps / hot bare tps  = {hot2:.2f}  (not a target: cart and checkout in two "
          "transactions, as over HTTP)")
    label = "1M" if big == 1_000_000 else f"{big // 1000}k"
    print(f"p50({label}) / p50(1k) checkout latency   = {lat:.2f}  (target <= 1.20)  {'PASS' if lat <= 1.20 else 'FAIL'}"
          f"   [mean ratio {mean:.2f}]")
    print()
    print("invariants after each run (queried as the owner):")
    for r in results:
        print(f"  {r.scenario:<24} {r.checks}")


if __name__ == "__main__":
    sys.exit(main())
