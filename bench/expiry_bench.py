"""Expiry benchmark: what one `expire-orders` pass does to buyers checking out the same products.

    .venv/bin/python bench/expiry_bench.py [--orders 100000] [--products 100] [--clients 16]
                                           [--seconds 30] [--batch-size 100] [--rounds 1] [--no-old]

Starts a throwaway PostgreSQL cluster (or uses BENCH_DATABASE_URL), builds one migrated template
with `--products` products, buyers, and `--orders` unpaid orders an hour old (one unit of one
product each, spread evenly over the products), and copies it into one database per run. Each run
drives `--clients` pgbench clients through bench/checkout.sql (add to cart + checkout, as the app
calls them, early release and durability barrier included) on those products for `--seconds`:

  alone     no expiry
  expiry    one pass (pyapp.cli.operations.expire_once, as `python -m pyapp expire-orders` runs it,
            `--batch-size` orders per transaction) starts 2 s into the run

for the current functions ("new") and, unless --no-old, for the definitions before migration 0022
("old": the database gets migrations/0022_expiry_short_locks.rollback.sql applied), in alternating
order. Latency percentiles of an expiry run are taken over the transactions that completed while
the pass ran (pgbench's per-transaction log has completion times), throughput over the same window.
After each run it checks, as the owner: stock = sum of its ledger for every product, every old order
expired exactly once (one EXPIRED ledger row per order, none twice), no product below 0.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from benchpg import Postgres  # noqa: E402

from pyapp.cli.operations import EXPIRY_YIELD, expire_once  # noqa: E402
from pyapp.db import migrate  # noqa: E402

PREFIX = "mk_expbench_"
PER_CLIENT = 100
HUGE_STOCK = 100_000_000
ROLLBACK_EXPIRY = ROOT / "migrations" / "0022_expiry_short_locks.rollback.sql"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_template(pg: Postgres, orders: int, products: int, clients: int) -> str:
    name = pg.create(PREFIX + "template")
    migrate.apply(pg.url(name))
    t0 = time.monotonic()
    with pg.connect(name) as c:
        c.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash")
                     VALUES ('seller', 'seller@bench.invalid', 'Bench seller', 'SELLER', 'x')""")
        # Buyers '1'..: the pgbench clients' (disjoint per client, as bench/checkout.sql expects).
        c.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash")
                     SELECT g::text, 'b' || g || '@bench.invalid', 'Buyer ' || g, 'BUYER', 'x'
                     FROM generate_series(1, %s::int) g""", ((clients + 1) * PER_CLIENT,))
        # Owners of the stale orders: 1,000 other buyers.
        c.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash")
                     SELECT 'old' || g, 'old' || g || '@bench.invalid', 'Old ' || g, 'BUYER', 'x'
                     FROM generate_series(1, 1000) g""")
        c.execute("""INSERT INTO "Product" (id, name, price, stock, "sellerId")
                     SELECT g::text, 'Product ' || g, 10 + (g %% 90), %s, 'seller'
                     FROM generate_series(1, %s::int) g""", (HUGE_STOCK, products))
        # The stale orders took their stock as a checkout does: one CHECKOUT ledger row each.
        c.execute("""INSERT INTO "Order" (id, "userId", status, total, "shippingAddress", "createdAt", "updatedAt")
                     SELECT 'old-' || g, 'old' || (1 + g %% 1000), 'PENDING_PAYMENT', 10 + ((1 + g %% %s) %% 90),
                            '{"city":"X"}', now() - interval '1 hour', now() - interval '1 hour'
                     FROM generate_series(1, %s::int) g""", (products, orders))
        c.execute("""INSERT INTO "OrderItem" ("orderId", "productId", quantity, "unitPrice")
                     SELECT 'old-' || g, (1 + g %% %s)::text, 1, 10 + ((1 + g %% %s) %% 90)
                     FROM generate_series(1, %s::int) g""", (products, products, orders))
        c.execute("""SELECT set_config('mk.stock_reason', 'ADJUSTMENT', false)""")
        c.execute("""UPDATE "Product" p SET stock = p.stock - s.n
                     FROM (SELECT "productId" AS id, count(*)::int AS n FROM "OrderItem" GROUP BY 1) s
                     WHERE p.id = s.id""")
    log(f"{name}: {products} products, {orders:,} unpaid orders an hour old in {time.monotonic() - t0:.1f} s")
    return name


@dataclass
class Run:
    code: str          # "new" or "old"
    mode: str          # "alone" or "expiry"
    done_us: list[tuple[float, int]] = field(default_factory=list)  # (completion epoch s, latency us)
    window: tuple[float, float] = (0.0, 0.0)
    pass_s: float = float("nan")
    expired: int = 0
    check: str = ""
    ok: bool = True

    def in_window(self) -> list[int]:
        lo, hi = self.window
        return sorted(lat for t, lat in self.done_us if lo <= t <= hi)

    def pct(self, q: float) -> float:
        xs = self.in_window()
        return xs[min(len(xs) - 1, max(0, round(q * len(xs)) - 1))] / 1000 if xs else float("nan")

    @property
    def tps(self) -> float:
        lo, hi = self.window
        return len(self.in_window()) / (hi - lo) if hi > lo else 0.0


def pgbench(pg: Postgres, dbname: str, clients: int, seconds: int, products: int, prefix: Path,
            result: dict) -> None:
    cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(2, clients)),
           "-T", str(seconds), "-f", str(BENCH / "checkout.sql"), "-l", f"--log-prefix={prefix}",
           "-D", "pid_lo=1", "-D", f"pid_hi={products}", "-D", f"per_client={PER_CLIENT}", pg.dsn(dbname)]
    env = dict(os.environ)
    env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " -c mk.release_early=on").strip()
    result["start"] = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    result["end"] = time.time()
    result["rc"], result["err"] = r.returncode, r.stderr[-1500:]


def read_log(prefix: Path) -> list[tuple[float, int]]:
    out = []
    for path in glob.glob(f"{prefix}.*"):
        with open(path) as f:
            for row in f:
                p = row.split()
                # client_id transaction_no time script_no time_epoch time_us
                if len(p) >= 6 and p[2].isdigit():
                    out.append((int(p[4]) + int(p[5]) / 1e6, int(p[2])))
    return out


def check(pg: Postgres, dbname: str, orders: int, expect_all: bool) -> tuple[bool, str, int]:
    with pg.connect(dbname) as c:
        c.execute('ANALYZE "Order", "StockLedger", "Product"')
        neg, off, expired, twice, left = c.execute("""
            WITH exp AS (SELECT "orderId", count(*) AS n FROM "StockLedger" WHERE reason = 'EXPIRED' GROUP BY 1)
            SELECT (SELECT count(*) FROM "Product" WHERE stock < 0),
                   (SELECT count(*) FROM "Product" p LEFT JOIN
                        (SELECT "productId", sum(delta) s FROM "StockLedger" GROUP BY 1) l ON l."productId" = p.id
                    WHERE p.stock <> coalesce(l.s, 0)),
                   (SELECT count(*) FROM "Order" WHERE id LIKE 'old-%%' AND status = 'CANCELLED'),
                   (SELECT count(*) FROM exp WHERE n <> 1),
                   (SELECT count(*) FROM "Order" o LEFT JOIN exp ON exp."orderId" = o.id
                    WHERE o.id LIKE 'old-%%' AND o.status = 'CANCELLED' AND exp."orderId" IS NULL)
        """).fetchone()
    problems = []
    if neg:
        problems.append(f"{neg} products below 0")
    if off:
        problems.append(f"{off} products whose stock <> ledger")
    if twice:
        problems.append(f"{twice} orders with other than one EXPIRED ledger row")
    if left:
        problems.append(f"{left} expired orders without their EXPIRED ledger row")
    if expect_all and expired != orders:
        problems.append(f"{expired} of {orders} old orders expired")
    text = f"expired {expired:,}, negative {neg}, stock<>ledger {off}, double restock {twice}"
    return not problems, text + (": OK" if not problems else ": FAIL: " + "; ".join(problems)), expired


def one_run(pg: Postgres, template: str, code: str, mode: str, args, tmp: Path, n: int) -> Run:
    run = Run(code, mode)
    db = pg.create(f"{PREFIX}{code}_{mode}_{n}", template)
    if code == "old":
        with pg.connect(db) as c:
            c.execute(ROLLBACK_EXPIRY.read_text())
    with pg.connect(db) as c:
        c.execute('VACUUM ANALYZE')
        c.execute("CHECKPOINT")
    prefix = tmp / f"log-{code}-{mode}-{n}"
    res: dict = {}
    log(f"{code}/{mode}: pgbench -c {args.clients} -T {args.seconds} over {args.products} products")
    t = threading.Thread(target=pgbench, args=(pg, db, args.clients, args.seconds, args.products, prefix, res))
    t.start()
    if mode == "expiry":
        time.sleep(2)
        t0 = time.time()
        run.expired, skipped = expire_once(pg.url(db), 30, args.batch_size, yield_ratio=args.yield_ratio)
        t1 = time.time()
        run.pass_s = t1 - t0
        run.window = (t0, t1)
        log(f"  pass: {run.expired:,} expired, {len(skipped)} skipped in {run.pass_s:.1f} s")
    t.join()
    if res.get("rc"):
        run.ok, run.check = False, f"pgbench exited {res['rc']}: {res['err']}"
        return run
    if mode == "alone":
        run.window = (res["start"] + 2, res["end"])
    elif run.window[1] > res["end"]:
        log("  the pass outlasted pgbench: figures cover only the part it overlapped")
        run.window = (run.window[0], res["end"])
    run.done_us = read_log(prefix)
    run.ok, run.check, expired = check(pg, db, args.orders, mode == "expiry")
    log(f"  {run.tps:.0f} checkouts/s, p50 {run.pct(0.5):.1f} ms, p99 {run.pct(0.99):.1f} ms; {run.check}")
    with pg.admin() as c:
        c.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
    pg.created.remove(db)
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=100)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=100, help="orders per expiry transaction (expire-orders' default)")
    ap.add_argument("--yield-ratio", type=float, default=EXPIRY_YIELD,
                    help=f"pause after each batch, as a multiple of its duration (default {EXPIRY_YIELD}, "
                         "the runner's; 0: none)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-old", action="store_true", help="measure the current functions only")
    args = ap.parse_args()
    if shutil.which("pgbench") is None:
        print("pgbench not found in PATH", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="mk-expbench-"))
    os.chmod(tmp, 0o755)
    pg = None
    runs: list[Run] = []
    try:
        pg = Postgres(tmp)
        template = build_template(pg, args.orders, args.products, args.clients)
        codes = ["new"] if args.no_old else ["new", "old"]
        n = 0
        for r in range(args.rounds):
            order = codes if r % 2 == 0 else codes[::-1]
            for code in order:
                for mode in ("alone", "expiry"):
                    n += 1
                    runs.append(one_run(pg, template, code, mode, args, tmp, n))
    finally:
        if pg is not None:
            pg.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nExpiry while buyers check out: {args.orders:,} unpaid orders an hour old over {args.products} "
          f"products, pgbench -c {args.clients} bench/checkout.sql on the same products, expire-orders "
          f"batches of {args.batch_size}, yield ratio {args.yield_ratio}; {args.rounds} round(s), medians")
    print("alone: transactions from 2 s after the start to the end; expiry: transactions that completed "
          "while the pass ran")
    head = f"{'code':<5} {'mode':<7} {'checkouts/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'pass s':>7}"
    print(head)
    print("-" * len(head))

    def med(xs: list[float]) -> float:
        xs = sorted(x for x in xs if x == x)
        return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2 if xs else float("nan")

    summary = {}
    for code in ("new", "old"):
        for mode in ("alone", "expiry"):
            rs = [r for r in runs if r.code == code and r.mode == mode and r.ok]
            if not rs:
                continue
            row = (med([r.tps for r in rs]), med([r.pct(0.5) for r in rs]), med([r.pct(0.99) for r in rs]),
                   med([r.pct(1.0) for r in rs]), med([r.pass_s for r in rs]))
            summary[(code, mode)] = row
            print(f"{code:<5} {mode:<7} {row[0]:>11.0f} {row[1]:>7.1f} {row[2]:>7.1f} {row[3]:>7.1f} "
                  + (f"{row[4]:>7.1f}" if mode == "expiry" else f"{'':>7}"))
    print()
    for code in ("new", "old"):
        if (code, "alone") in summary and (code, "expiry") in summary:
            a, e = summary[(code, "alone")], summary[(code, "expiry")]
            p99x, tput = e[2] / a[2], e[0] / a[0]
            verdict = "PASS" if p99x <= 2.0 and tput >= 0.8 else "FAIL"
            print(f"{code}: p99 with / without expiry = {p99x:.2f}x (target <= 2), throughput = {tput:.0%} "
                  f"(target >= 80 %), pass {e[4]:.1f} s  {verdict if code == 'new' else ''}")
    print("\ndatabase after each run:")
    for r in runs:
        print(f"  {r.code:<4} {r.mode:<7} {r.check}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
