"""Checkout SQL benchmark: the database's CPU per checkout, and how it holds up while unpaid orders
pile up on statistics taken when none were unpaid, for the current functions ("new") against the
definitions before migration 0024 ("old").

    .venv/bin/python bench/checkout_sql_bench.py [--history 500000] [--clients 16] [--seconds 20]
                                                 [--windows 3] [--fresh-stats]

Starts a throwaway PostgreSQL cluster (or uses BENCH_DATABASE_URL; then the CPU column is NaN),
builds one migrated template with 10,000 products, `--clients` x 1,000 buyers with tokens, and
`--history` delivered past orders, runs VACUUM ANALYZE on it (so the statistics say: no order is
unpaid, as after a quiet night or a fresh restore), and copies it into two databases; "old" gets
migrations/0024_lean_checkout.rollback.sql. Then `--windows` windows of `--seconds` each per
database, the databases alternating, with nothing in between: no VACUUM, no ANALYZE, so every
window starts with the unpaid orders of the windows before it (autovacuum analyzes "Order" only
after 50 + 10 % of its rows changed, which the default history keeps out of reach). Each window is
pgbench (`-M prepared`, -j 2) of bench/app_checkout.sql as marketplace_app: add to cart +
app.checkout, one unit of a random product. CPU per checkout is the cluster's processes' user +
system time over the window (from /proc) divided by the checkouts made; "unpaid-index reads/co"
the entries read from the expiry job's partial index of all unpaid orders (pg_stat_user_indexes)
per checkout. After the last window it checks, as the owner, that stock equals the ledger and
nothing is below 0 in both databases. With --fresh-stats, each window starts with ANALYZE "Order",
"OrderItem" instead: what is left is the functions' own cost, with the statistics right. Prints
one table; asserts nothing about time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from benchpg import Postgres  # noqa: E402
from http_bench import postmaster_pid, tree_cpu_s  # noqa: E402

from pyapp.db import migrate  # noqa: E402

PREFIX = "mk_sqlbench_"
APP_ROLE = "marketplace_app"
PRODUCTS = 10_000
PER_CLIENT = 1_000
HUGE_STOCK = 100_000_000
ROLLBACK_0024 = ROOT / "migrations" / "0024_lean_checkout.rollback.sql"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_template(pg: Postgres, history: int, clients: int) -> str:
    name = pg.create(PREFIX + "template")
    migrate.apply(pg.url(name))
    buyers = (clients + 1) * PER_CLIENT
    t0 = time.monotonic()
    with pg.connect(name) as c:
        c.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash")
                     VALUES ('seller', 'seller@bench.invalid', 'Bench seller', 'SELLER', 'x')""")
        c.execute("""INSERT INTO "Product" (id, name, price, stock, "sellerId")
                     SELECT g::text, 'Product ' || g, 10 + (g %% 90), %s, 'seller'
                     FROM generate_series(1, %s::int) g""", (HUGE_STOCK, PRODUCTS))
        c.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash")
                     SELECT g::text, 'b' || g || '@bench.invalid', 'Buyer ' || g, 'BUYER', 'x'
                     FROM generate_series(1, %s::int) g""", (buyers,))
        c.execute("""INSERT INTO "ApiToken" ("tokenHash", "userId", "expiresAt")
                     SELECT lpad(g::text, 64, '0'), g::text, now() + interval '1 day'
                     FROM generate_series(1, %s::int) g""", (buyers,))
        # The shop's history: delivered orders of the same buyers, none of them unpaid.
        c.execute("""INSERT INTO "Order" (id, "userId", status, total, "shippingAddress", "createdAt", "updatedAt")
                     SELECT 'past-' || g, (1 + g %% %s)::text, 'DELIVERED', 10, '{"city":"X"}',
                            now() - interval '30 days', now() - interval '30 days'
                     FROM generate_series(1, %s::int) g""", (buyers, history))
        c.execute("""INSERT INTO "OrderItem" ("orderId", "productId", quantity, "unitPrice")
                     SELECT 'past-' || g, (1 + g %% %s)::text, 1, 10 FROM generate_series(1, %s::int) g""",
                  (PRODUCTS, history))
        # A limit no buyer reaches, so app.checkout counts the unpaid orders on every checkout.
        c.execute("""SELECT api.set_limits('{"maxUnpaidOrders": 1000000}')""")
        c.execute("VACUUM ANALYZE")
    log(f"{name}: {PRODUCTS:,} products, {buyers:,} buyers, {history:,} delivered orders "
        f"in {time.monotonic() - t0:.1f} s")
    return name


def window(pg: Postgres, db: str, clients: int, seconds: int, fresh_stats: bool) -> dict:
    with pg.connect(db) as c:
        if fresh_stats:
            c.execute('ANALYZE "Order", "OrderItem"')
        # Counted without the partial index, whose reads the last column is about.
        unpaid = c.execute("""SELECT count(*) FILTER (WHERE status = 'PENDING_PAYMENT') FROM "Order" """).fetchone()[0]
        read0 = partial_index_reads(c)
    cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(2, clients)),
           "-T", str(seconds), "-f", str(BENCH / "app_checkout.sql"),
           "-D", f"products={PRODUCTS}", "-D", f"per_client={PER_CLIENT}", pg.dsn(db, APP_ROLE)]
    env = dict(os.environ)
    env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " -c mk.release_early=on").strip()
    pm = postmaster_pid(pg)
    cpu0 = tree_cpu_s(pm)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    cpu = tree_cpu_s(pm) - cpu0
    if r.returncode != 0:
        raise SystemExit(f"pgbench on {db} exited {r.returncode}: {r.stderr[-1500:]}")
    n = tps = lat = None
    for line in r.stdout.splitlines():
        if line.startswith("number of transactions actually processed:"):
            n = int(line.split(":")[1].split("/")[0])
        elif line.startswith("latency average"):
            lat = float(line.split("=")[1].split()[0])
        elif line.startswith("tps ="):
            tps = float(line.split()[2])
    if not n:
        raise SystemExit(f"pgbench on {db} made no checkout:\n{r.stdout[-1500:]}")
    time.sleep(1.5)  # the sessions' statistics reach pg_stat_* within a second of their end
    with pg.connect(db) as c:
        reads = partial_index_reads(c) - read0
    return {"unpaid": unpaid, "n": n, "tps": tps, "lat": lat, "cpu_ms": cpu * 1000 / n, "reads": reads / n}


def partial_index_reads(c) -> int:
    """Index entries read so far from the expiry job's partial index of all unpaid orders."""
    return c.execute("""SELECT idx_tup_read FROM pg_stat_user_indexes
                        WHERE indexrelid = '"Order_unpaid_createdAt_idx"'::regclass""").fetchone()[0]


def check(pg: Postgres, db: str) -> str:
    with pg.connect(db) as c:
        neg, off, orders = c.execute("""
            SELECT (SELECT count(*) FROM "Product" WHERE stock < 0),
                   (SELECT count(*) FROM "Product" p LEFT JOIN
                        (SELECT "productId", sum(delta) s FROM "StockLedger" GROUP BY 1) l ON l."productId" = p.id
                    WHERE p.stock <> coalesce(l.s, 0)),
                   (SELECT count(*) FROM "Order" WHERE status = 'PENDING_PAYMENT')""").fetchone()
    ok = neg == 0 and off == 0
    return f"{orders:,} orders made, {neg} below 0, {off} stock<>ledger: " + ("OK" if ok else "FAIL")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--history", type=int, default=500_000, help="delivered past orders (default 500,000)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=20, help="seconds per window (default 20)")
    ap.add_argument("--windows", type=int, default=3, help="windows per database (default 3)")
    ap.add_argument("--fresh-stats", action="store_true", help='ANALYZE "Order", "OrderItem" before each window')
    args = ap.parse_args()
    if shutil.which("pgbench") is None:
        print("pgbench not found in PATH", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="mk-sqlbench-"))
    os.chmod(tmp, 0o755)
    pg = None
    rows: list[tuple[str, int, dict]] = []
    checks = {}
    try:
        pg = Postgres(tmp)
        template = build_template(pg, args.history, args.clients)
        dbs = {code: pg.create(PREFIX + code, template) for code in ("new", "old")}
        with pg.connect(dbs["old"]) as c:
            c.execute(ROLLBACK_0024.read_text())
        with pg.admin() as c:
            c.execute("CHECKPOINT")
        for w in range(1, args.windows + 1):
            for code in (("old", "new") if w % 2 else ("new", "old")):
                res = window(pg, dbs[code], args.clients, args.seconds, args.fresh_stats)
                log(f"{code} window {w}: {res['tps']:.0f} checkouts/s, {res['cpu_ms']:.2f} ms db CPU per checkout, "
                    f"{res['unpaid']:,} unpaid at its start")
                rows.append((code, w, res))
        checks = {code: check(pg, db) for code, db in dbs.items()}
    finally:
        if pg is not None:
            pg.close()
        shutil.rmtree(tmp, ignore_errors=True)

    stats = ("statistics taken before each window" if args.fresh_stats else
             f"statistics from before the first window ({args.history:,} delivered orders, 0 unpaid)")
    print(f"\napp.checkout through pgbench (-c {args.clients}, bench/app_checkout.sql), {args.seconds} s windows, "
          f"databases alternating; {stats}")
    head = (f"{'code':<5} {'window':>6} {'unpaid at start':>15} {'checkouts/s':>11} {'avg ms':>7} {'db ms/co':>8} "
            f"{'unpaid-index reads/co':>21}")
    print(head)
    print("-" * len(head))
    for code in ("old", "new"):
        for c, w, r in rows:
            if c == code:
                print(f"{c:<5} {w:>6} {r['unpaid']:>15,} {r['tps']:>11.0f} {r['lat']:>7.1f} {r['cpu_ms']:>8.3f} "
                      f"{r['reads']:>21,.0f}")

    def med(xs: list[float]) -> float:
        xs = sorted(xs)
        return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2

    first = {c: r for c, w, r in rows if w == 1}
    last = {c: r for c, w, r in rows if w == args.windows}
    print()
    for code in ("old", "new"):
        cpus = [r["cpu_ms"] for c, _, r in rows if c == code]
        print(f"{code}: db CPU per checkout median {med(cpus):.3f} ms; last window / first = "
              f"{last[code]['cpu_ms'] / first[code]['cpu_ms']:.2f}x; {checks.get(code, 'not checked')}")
    print(f"new / old, first window: {first['new']['cpu_ms'] / first['old']['cpu_ms']:.2f} of the CPU, "
          f"{first['new']['tps'] / first['old']['tps']:.2f}x the checkouts/s")
    print(f"new / old, last window:  {last['new']['cpu_ms'] / last['old']['cpu_ms']:.2f} of the CPU, "
          f"{last['new']['tps'] / last['old']['tps']:.2f}x the checkouts/s")
    return 0 if all(v.endswith("OK") for v in checks.values()) and len(checks) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
