"""HTTP checkout benchmark: our app against the ORM peer, driven by wrk, one table.

    .venv/bin/python bench/http_bench.py [--rounds 3] [--seconds 15] [--warmup 5] [--connections 32]
                                         [--with-baseline] [--no-peer] [--no-journey] [--quick]

Starts a throwaway PostgreSQL cluster (or uses BENCH_DATABASE_URL, a role that may CREATE
DATABASE), builds one migrated, seeded template and copies it into one database per server of
ours. Serves, with the same shape (WORKERS processes x THREADS request threads, 127.0.0.1 on
free ports):

  ours      python -m pyapp.server (granian's WSGI mode serving pyapp.wsgi:app), as marketplace_app
  peer      the ORM peer of ../shared/peer (PEER_DIR), run from there in a virtual environment of
            its own (~/.cache/mk-bench-peer/), gunicorn -k gthread --reuse-port, fresh schema.sql
            before each of its runs
  baseline  (--with-baseline) bench/baseline_app.py, the older ORM-style stand-in, under granian's
            WSGI mode, and the floors

and drives them with wrk in two scenarios, hot (everyone buys one product) and spread (a random
one of 10,000), --rounds times each with the servers alternating; then the user-journey mix on
ours (bench/http_journey.lua). Every request of a checkout run is one checkout of one unit; our
buyers' carts are filled before the run (see bench/README.md). After every run it checks in the
database that orders and stock agree. The table gives medians over the rounds.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from benchpg import Postgres  # noqa: E402

from pyapp.db import migrate  # noqa: E402
from pyapp.db.localpg import free_port  # noqa: E402

APP_ROLE = "marketplace_app"
PREFIX = "mk_httpbench_"
PRODUCTS = 10_000
HUGE_STOCK = 100_000_000   # nothing sells out during a run
HISTORY = 20_000           # delivered past orders, as in bench/checkout_bench.py (planner steady state)
RATE_PER_CONN = 100        # buyers reserved per connection and second: far above what 2 cores serve
WRK_THREADS = 2
LUA = BENCH / "http_checkout.lua"
JOURNEY_LUA = BENCH / "http_journey.lua"
WEBHOOK_SECRET = "bench-webhook-secret-0123456789"
SCENARIOS = ("hot", "spread")
# The ORM peer (Flask + SQLAlchemy, version_id_col, 3 retries): run from the shared folder, never
# copied here, in a virtual environment of its own built at bench time from its requirements.txt.
PEER_DIR = Path(os.environ.get("PEER_DIR", str(ROOT.parent / "shared" / "peer")))
PEER_VENV_ROOT = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "mk-bench-peer"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- PostgreSQL


@dataclass
class Block:
    """A range of buyers b<first> .. b<first + size - 1>, used once each, by one wrk run."""
    name: str
    scenario: str
    first: int
    per_thread: int
    threads: int = WRK_THREADS

    @property
    def size(self) -> int:
        return self.per_thread * self.threads


def plan_blocks(connections: int, warmup: int, seconds: int, rounds: int, journey: bool = False) -> dict[str, Block]:
    """Buyer blocks: 'warmup', then '<scenario>.<round>' for each scenario and round, then
    'journey.<round>' (one wrk thread per connection, a journey being 5 requests). Each server has
    its own database, so every server uses the same blocks."""
    plan = [("warmup", "spread", warmup, RATE_PER_CONN, WRK_THREADS)]
    plan += [(f"{sc}.{r}", sc, seconds, RATE_PER_CONN, WRK_THREADS) for sc in SCENARIOS for r in range(rounds)]
    if journey:
        plan += [(f"journey.{r}", "journey", seconds, RATE_PER_CONN // 4, connections) for r in range(rounds)]
    blocks, first = {}, 1
    for name, scenario, secs, rate, threads in plan:
        per_thread = -(-connections * max(secs, 1) * rate // threads)
        blocks[name] = Block(name, scenario, first, per_thread, threads)
        first += blocks[name].size
    return blocks


def build_template(pg: Postgres, buyers: int) -> str:
    """A migrated database with a seller, PRODUCTS products '1'..'10000' and 'hot', `buyers` buyers
    'b1'.. with tokens 'bt1'.. (valid for a day), and HISTORY delivered past orders."""
    name = pg.create(PREFIX + "template")
    migrate.apply(pg.url(name))
    t0 = time.monotonic()
    with pg.connect(name) as conn:
        conn.execute("""
            INSERT INTO "User" (id, email, name, role, "passwordHash")
            VALUES ('seller', 'seller@bench.invalid', 'Bench seller', 'SELLER', 'x')""")
        conn.execute("""
            INSERT INTO "Product" (id, name, price, stock, "sellerId")
            SELECT g::text, 'Product ' || g, 10 + (g %% 90), %s, 'seller' FROM generate_series(1, %s::int) g
            UNION ALL SELECT 'hot', 'The last hand-made vase, in volume', 42, %s, 'seller'""",
                     (HUGE_STOCK, PRODUCTS, HUGE_STOCK))
        conn.execute("""
            INSERT INTO "User" (id, email, name, role, "passwordHash")
            SELECT 'b' || g, 'b' || g || '@bench.invalid', 'Buyer ' || g, 'BUYER', 'x'
            FROM generate_series(1, %s::int) g""", (buyers,))
        conn.execute("""
            INSERT INTO "ApiToken" ("tokenHash", "userId", "expiresAt")
            SELECT encode(sha256(convert_to('bt' || g, 'UTF8')), 'hex'), 'b' || g, now() + interval '1 day'
            FROM generate_series(1, %s::int) g""", (buyers,))
        conn.execute("""
            INSERT INTO "Order" (id, "userId", status, total, "shippingAddress", "createdAt", "updatedAt")
            SELECT 'past-' || g, 'b' || ((g %% %s) + 1), 'DELIVERED', 10 + (((g %% %s) + 1) %% 90),
                   '{"city":"X"}', now() - interval '30 days', now() - interval '30 days'
            FROM generate_series(1, %s::int) g""", (buyers, PRODUCTS, HISTORY))
        conn.execute("""
            INSERT INTO "OrderItem" ("orderId", "productId", quantity, "unitPrice")
            SELECT 'past-' || g, ((g %% %s) + 1)::text, 1, 10 + (((g %% %s) + 1) %% 90)
            FROM generate_series(1, %s::int) g""", (PRODUCTS, PRODUCTS, HISTORY))
        conn.execute("SELECT api.set_webhook_secret(%s)", (WEBHOOK_SECRET,))
    log(f"{name}: migrated; {PRODUCTS:,} products + 'hot', {buyers:,} buyers with tokens, "
        f"{HISTORY:,} past orders in {time.monotonic() - t0:.1f} s")
    return name


def fill_carts(pg: Postgres, dbname: str, blocks: dict[str, Block]) -> None:
    """One cart line of one unit per buyer of each block: 'hot', or a random product."""
    with pg.connect(dbname) as conn:
        for b in blocks.values():
            if b.scenario == "journey":
                continue  # the journey adds to the cart itself
            conn.execute("""
                INSERT INTO "CartItem" ("userId", "productId", quantity)
                SELECT 'b' || g, CASE WHEN %s THEN 'hot' ELSE (1 + floor(random() * %s))::int::text END, 1
                FROM generate_series(%s::int, %s::int) g""",
                         (b.scenario == "hot", PRODUCTS, b.first, b.first + b.size - 1))


def vacuum(pg: Postgres, dbname: str) -> None:
    with pg.connect(dbname) as conn:
        conn.execute('VACUUM ANALYZE "Product", "CartItem", "Order", "OrderItem", "StockLedger", "User", "ApiToken"')
        conn.execute("CHECKPOINT")


def snapshot(pg: Postgres, dbname: str) -> dict[str, int]:
    """The invariants, as the owner. Every product started at HUGE_STOCK and past orders did not
    touch stock, so for each product HUGE_STOCK - (units in orders made by the runs) = stock."""
    with pg.connect(dbname) as conn:
        row = conn.execute("""
            WITH sold AS (
                SELECT i."productId" AS id, sum(i.quantity) AS units
                FROM "OrderItem" i WHERE i."orderId" NOT LIKE 'past-%%' GROUP BY 1
            ), ledger AS (
                SELECT "productId" AS id, sum(delta) AS s FROM "StockLedger" GROUP BY 1
            )
            SELECT (SELECT count(*) FROM "Product" WHERE stock < 0),
                   (SELECT count(*) FROM "Product" p LEFT JOIN sold s ON s.id = p.id
                    WHERE p.stock <> %s - coalesce(s.units, 0)),
                   (SELECT count(*) FROM "Product" p LEFT JOIN ledger l ON l.id = p.id
                    WHERE p.stock <> coalesce(l.s, 0)),
                   (SELECT count(*) FROM "Order" WHERE id NOT LIKE 'past-%%'),
                   (SELECT count(*) FROM "Order" o WHERE o.id NOT LIKE 'past-%%' AND
                        (SELECT count(*) FROM "OrderItem" i WHERE i."orderId" = o.id) <> 1),
                   (SELECT coalesce(sum(units), 0) FROM sold),
                   (SELECT count(*) FROM "CartItem"),
                   (SELECT %s - stock FROM "Product" WHERE id = 'hot')""",
                           (HUGE_STOCK, HUGE_STOCK)).fetchone()
    keys = ("negative", "stock_vs_orders", "stock_vs_ledger", "orders", "bad_orders", "units",
            "cart_lines", "hot_sold")
    return dict(zip(keys, map(int, row)))


# ---------------------------------------------------------------- CPU accounting


def process_tree(root: int) -> dict[int, list[str]]:
    """Process `root` and its live descendants: pid -> the fields of /proc/<pid>/stat after the
    command name (so [0] is field 3, state, of proc(5))."""
    stats: dict[int, list[str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        stats[int(entry.name)] = text[text.rindex(")") + 2:].split()
    children: dict[int, list[int]] = {}
    for pid, f in stats.items():
        children.setdefault(int(f[1]), []).append(pid)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            tree[pid] = stats[pid]
            todo += children.get(pid, [])
    return tree


def tree_cpu_s(root: int | None) -> float:
    """CPU seconds (user + system) used so far by process `root` and all its descendants, including
    descendants already reaped (their time is in their parent's cutime/cstime). /proc/<pid>/stat
    counts every thread of the process, those that have already ended included: granian's native
    threads and its blocking threads, which it starts on demand and ends after 30 s idle."""
    if root is None:
        return float("nan")
    ticks = sum(sum(int(x) for x in f[11:15]) for f in process_tree(root).values())
    return ticks / os.sysconf("SC_CLK_TCK")


def postmaster_pid(pg: "Postgres") -> int | None:
    if pg.cluster is None:
        return None
    try:
        return int((pg.cluster.datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------- servers


def cpu_during(pg: "Postgres", srv: "Server", work) -> tuple[float, float]:
    """Runs work(); returns the CPU seconds the server's process tree and the PostgreSQL cluster
    used meanwhile (the cluster's is NaN on BENCH_DATABASE_URL)."""
    pm = postmaster_pid(pg)
    app0, db0 = tree_cpu_s(srv.proc.pid), tree_cpu_s(pm)
    work()
    return tree_cpu_s(srv.proc.pid) - app0, tree_cpu_s(pm) - db0


class Server:
    """One HTTP server process on a free 127.0.0.1 port, in its own session so that a Ctrl-C
    reaches only this script, which then stops it. By default our app as shipped: python -m
    pyapp.server (granian, WORKERS x THREADS from the environment, its own private metrics
    folder); `cmd` runs another server, "{port}" in it replaced by the port."""

    def __init__(self, name: str, database_url: str, logdir: Path, cmd: list[str] | None = None,
                 env: dict[str, str] | None = None, health: str = "/health", cwd: Path = ROOT):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logfile = logdir / f"server-{name}.log"
        self.health, self.cwd = health, cwd
        self.cmd = cmd or [sys.executable, "-m", "pyapp.server"]
        inherited = dict(os.environ)
        if cmd is None:  # pyapp.server then makes a private metrics folder, removed when it stops
            inherited.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.env = {**inherited, "DATABASE_URL": database_url, "HOST": "127.0.0.1",
                    "PORT": str(self.port), **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        self.out = open(self.logfile, "wb")
        self.proc = subprocess.Popen([c.replace("{port}", str(self.port)) for c in self.cmd], cwd=self.cwd,
                                     env=self.env, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: server exited with status {self.proc.returncode}: "
                                   f"{self.logfile.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + self.health, timeout=3) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: not healthy within 30 s: {self.logfile.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only its workers
                self.proc.wait(5)
        self.proc = None
        if getattr(self, "out", None):
            self.out.close()


# ---------------------------------------------------------------- wrk


@dataclass
class Run:
    server: str
    scenario: str
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    samples: dict[int, str] = field(default_factory=dict)
    socket_errors: int = 0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    issued: int = 0
    wrapped: int = 0
    check: str = ""
    check_ok: bool = True
    failed: str = ""
    cpu_app_s: float = float("nan")
    cpu_db_s: float = float("nan")
    cpu_wrk_s: float = float("nan")
    rounds: int = 0
    parts: list["Run"] = field(default_factory=list)
    journeys: int = 0          # journey runs: completed journeys (paid orders)
    requests: int = 0          # journey runs: every request sent

    @property
    def journeys_per_s(self) -> float:
        return self.journeys / self.seconds if self.seconds else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def med(self, f) -> float:
        """Median over the rounds of f(round)."""
        xs = sorted(x for x in (f(r) for r in (self.parts or [self])) if x == x)
        if not xs:
            return float("nan")
        mid = len(xs) // 2
        return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2

    @property
    def med_rate(self) -> float:
        return self.med(lambda r: r.rate)

    @property
    def answers(self) -> int:
        return sum(self.statuses.values())

    @property
    def conflict_share(self) -> float:
        return self.conflicts / self.answers if self.answers else float("nan")

    def add(self, r: "Run") -> None:
        """Accumulates one round: counts, durations and CPU add up; p50 and p99 are the worse of
        the rounds (wrk gives percentiles, not its histogram, so they cannot be merged exactly)."""
        first = self.rounds == 0
        self.rounds += 1
        self.parts.append(r)
        self.seconds += r.seconds
        for s, n in r.statuses.items():
            self.statuses[s] = self.statuses.get(s, 0) + n
        for s, body in r.samples.items():
            self.samples.setdefault(s, body)
        self.socket_errors += r.socket_errors
        self.p50_ms = r.p50_ms if first else max(self.p50_ms, r.p50_ms)
        self.p99_ms = r.p99_ms if first else max(self.p99_ms, r.p99_ms)
        self.issued += r.issued
        self.wrapped += r.wrapped
        self.journeys += r.journeys
        self.requests += r.requests
        for attr in ("cpu_app_s", "cpu_db_s", "cpu_wrk_s"):
            setattr(self, attr, getattr(r, attr) if first else getattr(self, attr) + getattr(r, attr))
        self.check = (self.check + "\n" + " " * 20 if self.check else "") + f"round {self.rounds}: {r.check}"
        self.check_ok = self.check_ok and r.check_ok
        self.failed = "; ".join(x for x in (self.failed, r.failed) if x)

    def per_checkout_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.created if self.created else float("nan")

    @property
    def created(self) -> int:
        return self.statuses.get(201, 0)

    @property
    def rate(self) -> float:
        return self.created / self.seconds if self.seconds else 0.0

    @property
    def conflicts(self) -> int:
        return self.statuses.get(409, 0)

    @property
    def other(self) -> int:
        return sum(n for s, n in self.statuses.items() if not 200 <= s < 300 and s != 409)


def wrk_result(r: subprocess.CompletedProcess, log: Path, run) -> dict | None:
    """Keeps wrk's output in `log` and returns the figures its Lua script printed (the
    HTTPBENCH_JSON line); None, with run.failed set, when wrk failed or printed none."""
    log.write_text(r.stdout + r.stderr)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("HTTPBENCH_JSON ")), None)
    if r.returncode != 0 or line is None:
        run.failed = f"wrk exited {r.returncode}: {(r.stderr or r.stdout).strip()[-500:]}"
        return None
    return json.loads(line.split(" ", 1)[1])

def wrk(srv: Server, block: Block, connections: int, seconds: int, logdir: Path, run: Run,
        mode: str | None = None) -> Run:
    mode = mode or ("ours" if srv.name == "ours" else "baseline")
    cmd = ["wrk", "-c", str(connections), "-t", str(WRK_THREADS), "-d", f"{seconds}s", "--latency",
           "-s", str(LUA), srv.url, "--", mode, block.scenario, str(block.first), str(block.per_thread),
           str(PRODUCTS)]
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.cpu_wrk_s = (ru2.ru_utime - ru.ru_utime) + (ru2.ru_stime - ru.ru_stime)
    doc = wrk_result(r, logdir / f"wrk-{mode}-{block.name}.txt", run)
    if doc is None:
        return run
    run.seconds = doc["duration_us"] / 1e6
    run.statuses = {int(k): v for k, v in doc["statuses"].items()}
    run.samples = {int(k): v for k, v in doc["samples"].items()}
    e = doc["errors"]
    run.socket_errors = e["connect"] + e["read"] + e["write"] + e["timeout"]
    run.p50_ms, run.p99_ms = doc["p50_us"] / 1000, doc["p99_us"] / 1000
    run.issued, run.wrapped = doc["issued"], doc["wrapped"]
    return run


def measured_run(pg: Postgres, dbname: str, srv: Server, block: Block, connections: int,
                 seconds: int, logdir: Path) -> Run:
    run = Run(srv.name, block.scenario, rounds=1)
    vacuum(pg, dbname)
    before = snapshot(pg, dbname)
    log(f"{srv.name}/{block.name}: wrk -c {connections} -t {WRK_THREADS} -d {seconds}s, "
        f"buyers b{block.first}..b{block.first + block.size - 1}")
    run.cpu_app_s, run.cpu_db_s = cpu_during(pg, srv, lambda: wrk(srv, block, connections, seconds, logdir, run))
    time.sleep(1.0)  # let requests still in flight when wrk stopped finish (and commit) first
    after = snapshot(pg, dbname)
    new_orders = after["orders"] - before["orders"]
    problems = []
    if after["negative"]:
        problems.append(f"{after['negative']} products below 0")
    if after["stock_vs_orders"]:
        problems.append(f"{after['stock_vs_orders']} products whose stock <> initial - units ordered")
    if after["stock_vs_ledger"]:
        problems.append(f"{after['stock_vs_ledger']} products whose stock <> their ledger")
    if after["bad_orders"]:
        problems.append(f"{after['bad_orders']} orders without exactly one item")
    if after["units"] - before["units"] != new_orders:
        problems.append(f"{after['units'] - before['units']} units for {new_orders} orders")
    # wrk stops counting at its deadline; requests in flight then may still commit: at most one
    # per connection more orders than 201s seen.
    if not run.failed and not run.created <= new_orders <= run.created + connections:
        problems.append(f"{new_orders} orders for {run.created} answers 201")
    if srv.name == "ours" and before["cart_lines"] - after["cart_lines"] != new_orders:
        problems.append(f"{before['cart_lines'] - after['cart_lines']} carts emptied for {new_orders} orders")
    if run.wrapped:
        problems.append(f"{run.wrapped} requests reused a buyer (blocks too small)")
    run.check_ok = not problems
    run.check = (f"orders +{new_orders} (201s {run.created}), hot sold +{after['hot_sold'] - before['hot_sold']}, "
                 f"negative {after['negative']}, stock<>initial-ordered {after['stock_vs_orders']}, "
                 f"stock<>ledger {after['stock_vs_ledger']}: " + ("OK" if not problems else "FAIL: " + "; ".join(problems)))
    log(f"  {run.rate:.1f} checkouts/s, statuses {dict(sorted(run.statuses.items()))}, "
        f"p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms; {run.check}")
    return run


def journey_run(pg: Postgres, dbname: str, srv: Server, block: Block, connections: int, seconds: int,
                logdir: Path) -> Run:
    """One wrk run of bench/http_journey.lua on ours (one thread per connection): browse, look at a
    product, add it to the cart, check out, pay through the signed webhook; then the checks."""
    run = Run(srv.name, "journey", rounds=1)
    vacuum(pg, dbname)
    before = snapshot(pg, dbname)
    with pg.connect(dbname) as conn:
        paid0 = conn.execute("""SELECT count(*) FROM "Order" WHERE status = 'PAID'""").fetchone()[0]
    cmd = ["wrk", "-c", str(connections), "-t", str(connections), "-d", f"{seconds}s", "--latency",
           "-s", str(JOURNEY_LUA), srv.url, "--", str(block.first), str(block.per_thread), str(PRODUCTS),
           WEBHOOK_SECRET]
    log(f"{srv.name}/{block.name}: wrk -c {connections} -t {connections} -d {seconds}s -s {JOURNEY_LUA.name}")
    done: list[subprocess.CompletedProcess] = []

    def work():
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        done.append(subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120))
        ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
        run.cpu_wrk_s = (ru2.ru_utime - ru.ru_utime) + (ru2.ru_stime - ru.ru_stime)

    run.cpu_app_s, run.cpu_db_s = cpu_during(pg, srv, work)
    r = done[0]
    doc = wrk_result(r, logdir / f"wrk-journey-{block.name}.txt", run)
    if doc is None:
        return run
    run.seconds = doc["duration_us"] / 1e6
    run.journeys, run.requests = doc["journeys"], doc["requests"]
    steps = ("browse", "product", "cart", "checkout", "pay")
    run.statuses = {201: run.journeys}  # a journey's success is its paid checkout
    step_statuses = {f"{steps[int(k.split(':')[0])]} {k.split(':')[1]}": n for k, n in doc["statuses"].items()}
    run.samples = {}
    e = doc["errors"]
    run.socket_errors = e["connect"] + e["read"] + e["write"] + e["timeout"]
    run.p50_ms, run.p99_ms = doc["p50_us"] / 1000, doc["p99_us"] / 1000
    run.issued, run.wrapped = doc["issued"], doc["wrapped"]
    time.sleep(1.0)
    after = snapshot(pg, dbname)
    with pg.connect(dbname) as conn:
        paid = conn.execute("""SELECT count(*) FROM "Order" WHERE status = 'PAID'""").fetchone()[0] - paid0
    new_orders = after["orders"] - before["orders"]
    problems = []
    for k in ("negative", "stock_vs_orders", "stock_vs_ledger", "bad_orders"):
        if after[k]:
            problems.append(f"{k} {after[k]}")
    if not run.journeys <= paid <= run.journeys + connections:
        problems.append(f"{paid} orders paid for {run.journeys} journeys")
    if not paid <= new_orders <= paid + connections:
        problems.append(f"{new_orders} orders for {paid} paid")
    if run.wrapped:
        problems.append(f"{run.wrapped} journeys reused a buyer (blocks too small)")
    bad_steps = {k: n for k, n in step_statuses.items() if not k.endswith((" 200", " 201"))}
    if bad_steps:
        problems.append(f"failed steps {bad_steps}: {doc['samples']}")
    run.check_ok = not problems
    run.check = (f"journeys {run.journeys}, orders +{new_orders}, paid +{paid}, broken {doc['broken']}, "
                 f"steps {dict(sorted(step_statuses.items()))}: " + ("OK" if not problems else "FAIL: " + "; ".join(problems)))
    log(f"  {run.journeys_per_s:.1f} journeys/s, {run.requests_per_s:.0f} requests/s, p50 {run.p50_ms:.1f} ms, "
        f"p99 {run.p99_ms:.1f} ms; {run.check}")
    return run


# ---------------------------------------------------------------- the ORM peer


def peer_venv() -> Path:
    """A virtual environment with the peer's requirements (from PyPI), built once per version of
    its requirements.txt under ~/.cache/mk-bench-peer/ and reused."""
    req = PEER_DIR / "requirements.txt"
    venv = PEER_VENV_ROOT / hashlib.sha256(req.read_bytes()).hexdigest()[:12]
    if not (venv / ".complete").exists():
        log(f"peer: building {venv} from {req}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-r", str(req)], check=True)
        (venv / ".complete").write_text(req.read_text())
    return venv


def peer_server(pg: Postgres, dbname: str, logdir: Path, workers: str, threads: str) -> Server:
    """The peer as its README runs it: gunicorn -w WORKERS -k gthread --threads THREADS --reuse-port,
    the same shape as ours, on the same PostgreSQL."""
    venv = peer_venv()
    b = pg.base
    url = (f"postgresql+psycopg://{b.get('user', 'postgres')}@{b.get('host') or '127.0.0.1'}:"
           f"{b.get('port', '5432')}/{dbname}")
    cmd = [str(venv / "bin" / "gunicorn"), "-w", workers, "-k", "gthread", "--threads", threads, "--reuse-port",
           "-b", "127.0.0.1:{port}", "orm_app:app"]
    return Server("peer", "", logdir, cmd=cmd, health="/healthz", cwd=PEER_DIR,
                  env={"PEER_DB_URL": url, "PEER_POOL_SIZE": threads})


def baseline_server(pg: Postgres, dbname: str, logdir: Path, workers: str, threads: str) -> Server:
    """bench/baseline_app.py under granian's WSGI mode with the same shape as ours (WORKERS
    processes of THREADS blocking threads, HTTP/1 only), run from bench/ with the project on
    PYTHONPATH (it imports pyapp.config), as the tables' owner. It keeps no metrics."""
    cmd = [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", workers,
           "--blocking-threads", threads, "--http", "1", "--no-ws", "--host", "127.0.0.1", "--port", "{port}",
           "--log-level", "warning", "baseline_app:app"]
    pythonpath = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH", "")) if x)
    return Server("baseline", pg.url(dbname), logdir, cmd=cmd, cwd=BENCH, env={"PYTHONPATH": pythonpath})


def reset_peer(pg: Postgres, dbname: str) -> None:
    """A fresh peer schema (its schema.sql, through psql): every product at HUGE_STOCK, no orders."""
    r = subprocess.run(["psql", "-X", "-q", "-v", f"initial_stock={HUGE_STOCK}", "-v", f"nproducts={PRODUCTS}",
                        "-f", str(PEER_DIR / "schema.sql"), "-d", pg.dsn(dbname)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"peer schema.sql failed: {r.stderr[-1000:]}")
    with pg.connect(dbname) as conn:
        conn.execute("CHECKPOINT")


def wrk_ms(text: str) -> float:
    """wrk's latency figure ('812.00us', '4.12ms', '1.20s', '1.50m') in ms."""
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 6e4)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float("nan")


def peer_run(pg: Postgres, dbname: str, srv: Server, scenario: str, connections: int, seconds: int,
             logdir: Path, tag: str) -> Run:
    """One wrk run of the peer's own load.lua (SCENARIO=hot buys product 1, spread a random one of
    PRODUCTS; random userId), after a fresh schema. Checks orders against 201s and stock."""
    run = Run("peer", scenario, rounds=1)
    reset_peer(pg, dbname)
    log(f"peer/{tag}: SCENARIO={scenario} wrk -c {connections} -t {WRK_THREADS} -d {seconds}s "
        f"{srv.url}/checkout (fresh schema)")
    cmd = ["wrk", "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
           "--latency", "-s", str(PEER_DIR / "load.lua"), srv.url + "/checkout"]
    env = {**os.environ, "SCENARIO": scenario, "NPRODUCTS": str(PRODUCTS)}
    done: list[subprocess.CompletedProcess] = []

    def work():
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        done.append(subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120))
        ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
        run.cpu_wrk_s = (ru2.ru_utime - ru.ru_utime) + (ru2.ru_stime - ru.ru_stime)

    run.cpu_app_s, run.cpu_db_s = cpu_during(pg, srv, work)
    r = done[0]
    (logdir / f"wrk-peer-{tag}.txt").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        run.failed = f"wrk exited {r.returncode}: {(r.stderr or r.stdout).strip()[-500:]}"
        return run
    in_latency = False
    for ln in r.stdout.splitlines():
        w = ln.split()
        if ln.startswith("STATUS "):
            counts = dict(kv.split("=") for kv in w[1:])
            run.statuses = {201: int(counts["201"]), 400: int(counts["400"]), 409: int(counts["409"]),
                            500: int(counts["5xx"]), 0: int(counts["other"])}
            run.statuses = {k: v for k, v in run.statuses.items() if v}
        elif len(w) >= 4 and w[1] == "requests" and w[2] == "in":
            run.seconds = float(w[3].rstrip("s,"))
        elif ln.strip().startswith("Latency Distribution"):
            in_latency = True
        elif in_latency and len(w) == 2 and w[0] in ("50%", "99%"):
            if w[0] == "50%":
                run.p50_ms = wrk_ms(w[1])
            else:
                run.p99_ms = wrk_ms(w[1])
        elif ln.strip().startswith("Socket errors:"):
            run.socket_errors = sum(int(x.strip(",")) for x in w[3::2][:4] if x.strip(",").isdigit())
    time.sleep(1.0)
    with pg.connect(dbname) as conn:
        orders, negative, off = conn.execute("""
            SELECT (SELECT count(*) FROM "order"),
                   (SELECT count(*) FROM product WHERE stock < 0),
                   (SELECT count(*) FROM product p LEFT JOIN
                        (SELECT product_id, sum(quantity) q FROM order_item GROUP BY 1) s ON s.product_id = p.id
                    WHERE p.stock <> %s - coalesce(s.q, 0))""", (HUGE_STOCK,)).fetchone()
    problems = []
    if negative:
        problems.append(f"{negative} products below 0")
    if off:
        problems.append(f"{off} products whose stock <> initial - units ordered")
    if not run.created <= orders <= run.created + connections:
        problems.append(f"{orders} orders for {run.created} answers 201")
    run.check_ok = not problems
    run.check = f"orders {orders} (201s {run.created}), negative {negative}, stock<>initial-ordered {off}: " + (
        "OK" if not problems else "FAIL: " + "; ".join(problems))
    log(f"  {run.rate:.1f} checkouts/s, statuses {dict(sorted(run.statuses.items()))}, "
        f"p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms; {run.check}")
    return run


@dataclass
class Floor:
    """The cheapest request this stack can answer with a database round trip: the baseline's
    GET /health (one SELECT 1 through the same pool, server settings and wrk load)."""
    seconds: float = 0.0
    requests: int = 0
    non_2xx: int = 0
    cpu_app_s: float = float("nan")
    cpu_db_s: float = float("nan")
    failed: str = ""

    @property
    def rate(self) -> float:
        return (self.requests - self.non_2xx) / self.seconds if self.seconds else 0.0

    def per_request_ms(self, seconds: float) -> float:
        ok = self.requests - self.non_2xx
        return seconds * 1000 / ok if ok else float("nan")


def floor_run(pg: Postgres, srv: Server, connections: int, seconds: int, logdir: Path) -> Floor:
    """wrk GET <baseline>/health with no script: requests/s and CPU per request."""
    fl = Floor()
    log(f"floor: wrk -c {connections} -t {WRK_THREADS} -d {seconds}s GET {srv.url}/health")
    cmd = ["wrk", "-c", str(connections), "-t", str(WRK_THREADS), "-d", f"{seconds}s", srv.url + "/health"]
    done: list[subprocess.CompletedProcess] = []
    fl.cpu_app_s, fl.cpu_db_s = cpu_during(pg, srv, lambda: done.append(
        subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)))
    r = done[0]
    (logdir / "wrk-floor.txt").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        fl.failed = f"wrk exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}"
        return fl
    for ln in r.stdout.splitlines():
        words = ln.split()
        # "  123456 requests in 15.00s, 20.1MB read" and "  Non-2xx or 3xx responses: 12"
        if len(words) >= 4 and words[1] == "requests" and words[2] == "in":
            fl.requests, fl.seconds = int(words[0]), float(words[3].rstrip("s,"))
        elif ln.strip().startswith("Non-2xx or 3xx responses:"):
            fl.non_2xx = int(words[-1])
    if not fl.seconds:
        fl.failed = "could not read wrk's summary"
    log(f"  floor: {fl.rate:.1f} requests/s, {fl.non_2xx} non-2xx")
    return fl


def sale_floor_run(pg: Postgres, dbname: str, srv: Server, scenario: str, connections: int,
                   seconds: int, logdir: Path) -> Run:
    """wrk POST <baseline>/floor/sale: one conditional UPDATE per request, no authentication and no
    order, through the same stack. Its 201s/s bound what any sale served by this stack can reach
    when requests do not wait on each other (spread). Run last: it sells stock without orders, so
    the baseline's database no longer passes the checks afterwards."""
    run = Run("floor", scenario, rounds=1)
    block = Block(f"floor.{scenario}", scenario, 1, 10 ** 9)  # buyers are not used
    vacuum(pg, dbname)
    log(f"floor/{scenario}: wrk -c {connections} -t {WRK_THREADS} -d {seconds}s POST {srv.url}/floor/sale")
    run.cpu_app_s, run.cpu_db_s = cpu_during(
        pg, srv, lambda: wrk(srv, block, connections, seconds, logdir, run, mode="floor"))
    run.check = "not checked (sells stock without orders)"
    log(f"  {run.rate:.1f} sales/s, statuses {dict(sorted(run.statuses.items()))}, "
        f"p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms")
    return run


# ---------------------------------------------------------------- report


def print_report(runs: list[Run], connections: int, seconds: int, rounds: int, workers: str,
                 threads: str, floor: Floor | None = None, sale_floors: list[Run] | None = None,
                 journey: "Run | None" = None) -> bool:
    print(f"\nHTTP checkout, wrk -c {connections} -t {WRK_THREADS} -d {seconds}s --latency, {rounds} round(s) "
          f"per row, servers alternating; WORKERS={workers} THREADS={threads} for every server")
    print("checkouts/s = successful (201) checkouts per second, p50/p99 and CPU per checkout: medians over "
          "the rounds; 409 = share of all answers")
    head = (f"{'server':<9} {'scenario':<8} {'checkouts/s':>11} {'201':>7} {'409':>6} {'other':>6} "
            f"{'sockerr':>7} {'p50 ms':>8} {'p99 ms':>8} {'app ms/co':>9} {'db ms/co':>9}")
    print(head)
    print("-" * len(head))
    for r in runs:
        print(f"{r.server:<9} {r.scenario:<8} {r.med_rate:>11.1f} {r.created:>7} {r.conflict_share:>6.0%} "
              f"{r.other:>6} {r.socket_errors:>7} {r.med(lambda x: x.p50_ms):>8.1f} {r.med(lambda x: x.p99_ms):>8.1f} "
              f"{r.med(lambda x: x.per_checkout_ms(x.cpu_app_s)):>9.2f} "
              f"{r.med(lambda x: x.per_checkout_ms(x.cpu_db_s)):>9.2f}" + (f"  ({r.failed})" if r.failed else ""))
    print()
    print("per round (checkouts/s; p99 ms):")
    for r in runs:
        print(f"  {r.server:<9} {r.scenario:<8} " + "  ".join(f"{x.rate:.0f}; {x.p99_ms:.0f}" for x in r.parts))
    print()
    print("CPU during the runs, summed over the rounds (seconds), on "
          f"{os.cpu_count()} cores shared with the rest of the machine (db: the whole cluster):")
    print(f"{'server':<9} {'scenario':<8} {'app s':>7} {'db s':>7} {'wrk s':>7} {'(app+db) ms/co':>15}")
    for r in runs:
        print(f"{r.server:<9} {r.scenario:<8} {r.cpu_app_s:>7.1f} {r.cpu_db_s:>7.1f} {r.cpu_wrk_s:>7.1f} "
              f"{r.med(lambda x: x.per_checkout_ms(x.cpu_app_s + x.cpu_db_s)):>15.2f}")
    print()
    by = {(r.server, r.scenario): r for r in runs}

    def ratio(other: str, scenario: str) -> float:
        b = by[(other, scenario)].med_rate
        return by[("ours", scenario)].med_rate / b if b else float("inf")

    oh = by[("ours", "hot")]
    targets = [(f"hot:    ours 409s = {oh.conflicts}  (target 0)", oh.conflicts == 0 and not oh.failed),
               (f"hot:    ours p99 = {oh.med(lambda x: x.p99_ms):.1f} ms (median; worst round "
                f"{max(x.p99_ms for x in oh.parts or [oh]):.1f})  (target < 100)", oh.med(lambda x: x.p99_ms) < 100.0)]
    if ("peer", "hot") in by:
        ph, ps, os_ = by[("peer", "hot")], by[("peer", "spread")], by[("ours", "spread")]
        targets += [
            (f"hot:    ours / peer checkouts/s = {oh.med_rate:.1f} / {ph.med_rate:.1f} = {ratio('peer', 'hot'):.2f}x  "
             f"(target >= 20)", ratio("peer", "hot") >= 20.0),
            (f"spread: ours / peer checkouts/s = {os_.med_rate:.1f} / {ps.med_rate:.1f} = "
             f"{ratio('peer', 'spread'):.2f}x  (target >= 4)", ratio("peer", "spread") >= 4.0)]
    for text, ok in targets:
        print(f"{text:<90} {'PASS' if ok else 'FAIL'}")
    if ("baseline", "hot") in by:
        print(f"against the old baseline (bench/baseline_app.py): hot {ratio('baseline', 'hot'):.2f}x, "
              f"spread {ratio('baseline', 'spread'):.2f}x")
    print()
    if journey is not None:
        print("journey (ours, tokens made beforehand): browse the catalogue, look at a product, add to cart, "
              "check out, pay (webhook), "
              f"{journey.rounds} round(s) of {seconds} s: {journey.med(lambda x: x.journeys_per_s):.1f} journeys/s "
              f"= {journey.med_rate:.1f} paid checkouts/s, {journey.med(lambda x: x.requests_per_s):.0f} requests/s, "
              f"request p50 {journey.med(lambda x: x.p50_ms):.1f} ms, p99 {journey.med(lambda x: x.p99_ms):.1f} ms; "
              f"statuses {dict(sorted(journey.statuses.items()))}")
        print(f"  {journey.check}")
        print()
    if floor is not None:
        bs = by[("baseline", "spread")]
        if floor.failed:
            print(f"floor: {floor.failed}")
        else:
            print(f"floor (not a checkout): GET /health of the baseline, one SELECT 1 through the same pool, "
                  f"{seconds} s:\n  {floor.rate:.1f} requests/s, {floor.non_2xx} non-2xx; CPU per request "
                  f"app {floor.per_request_ms(floor.cpu_app_s):.2f} ms + db {floor.per_request_ms(floor.cpu_db_s):.2f} ms")
            print(f"  floor / baseline spread checkouts/s = {floor.rate:.1f} / {bs.med_rate:.1f} = "
                  f"{floor.rate / bs.med_rate if bs.med_rate else float('inf'):.2f}x")
        print()
    for fl in sale_floors or []:
        if fl.failed:
            print(f"sale floor, {fl.scenario}: {fl.failed}")
            continue
        print(f"sale floor (not a checkout), {fl.scenario}: POST /floor/sale of the baseline, one conditional "
              f"UPDATE, no auth, no order, {seconds} s:\n  {fl.rate:.1f} sales/s, p50 {fl.p50_ms:.1f} ms, "
              f"p99 {fl.p99_ms:.1f} ms; CPU per sale app {fl.per_checkout_ms(fl.cpu_app_s):.2f} ms + "
              f"db {fl.per_checkout_ms(fl.cpu_db_s):.2f} ms")
    if sale_floors:
        print()
    print("database after each run (queried as the owner):")
    for r in runs + ([journey] if journey else []):
        print(f"  {r.server:<9} {r.scenario:<7} {r.check}")
    samples = [(r, s, body) for r in runs for s, body in sorted(r.samples.items())]
    if samples:
        print("\nfirst body seen per non-201 status:")
        for r, s, body in samples:
            print(f"  {r.server:<9} {r.scenario:<7} {s}: {body[:200]}")
    return all(r.check_ok and not r.failed for r in runs + ([journey] if journey else []))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=15, help="seconds per measured wrk run (default 15)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--warmup", type=int, default=5, help="seconds of unmeasured spread load per server first")
    ap.add_argument("--rounds", type=int, default=3,
                    help="wrk runs per server and scenario, servers alternating (default 3); medians")
    ap.add_argument("--with-baseline", action="store_true",
                    help="also run the old ORM-style baseline (bench/baseline_app.py) and the floors")
    ap.add_argument("--no-peer", action="store_true", help="leave the ORM peer out")
    ap.add_argument("--no-journey", action="store_true", help="leave the user-journey mix out")
    ap.add_argument("--quick", action="store_true", help="smoke run: one round of 5 s, 1 s warm-up")
    args = ap.parse_args()
    seconds, warmup, rounds = (5, 1, 1) if args.quick else (args.seconds, args.warmup, max(1, args.rounds))
    if args.connections < WRK_THREADS:
        ap.error(f"--connections must be at least {WRK_THREADS}")
    if shutil.which("wrk") is None:
        print("wrk not found in PATH (scripts/setup.sh installs it; or: apt-get install wrk)", file=sys.stderr)
        return 2
    if not args.no_peer and not (PEER_DIR / "orm_app.py").exists():
        print(f"the ORM peer is not at {PEER_DIR} (set PEER_DIR, or pass --no-peer)", file=sys.stderr)
        return 2
    workers, threads = os.environ.get("WORKERS", "2"), os.environ.get("THREADS", "8")
    os.environ.update(WORKERS=workers, THREADS=threads)  # every server inherits the same settings
    names = ["ours"] + ([] if args.no_peer else ["peer"]) + (["baseline"] if args.with_baseline else [])

    tmp = Path(tempfile.mkdtemp(prefix="mk-httpbench-"))
    os.chmod(tmp, 0o755)  # the cluster's owner (postgres, when we are root) must traverse it
    pg: Postgres | None = None
    servers: dict[str, Server] = {}
    runs: list[Run] = []
    journey: Run | None = None
    ok = False
    try:
        pg = Postgres(tmp)
        blocks = plan_blocks(args.connections, warmup, seconds, rounds, journey=not args.no_journey)
        buyers = sum(b.size for b in blocks.values())
        template = build_template(pg, buyers)
        dbs = {"ours": pg.create(PREFIX + "ours", template)}
        if "baseline" in names:
            dbs["baseline"] = pg.create(PREFIX + "baseline", template)
        if "peer" in names:
            dbs["peer"] = pg.create(PREFIX + "peer")
            reset_peer(pg, dbs["peer"])
        fill_carts(pg, dbs["ours"], blocks)
        for name in ("ours", "baseline"):
            if name in dbs:
                vacuum(pg, dbs[name])
        servers["ours"] = Server("ours", pg.url(dbs["ours"], APP_ROLE), tmp)
        if "peer" in names:
            servers["peer"] = peer_server(pg, dbs["peer"], tmp, workers, threads)
        if "baseline" in names:
            servers["baseline"] = baseline_server(pg, dbs["baseline"], tmp, workers, threads)
        for srv in servers.values():
            srv.start()
            log(f"{srv.name}: {srv.url} (WORKERS={workers} THREADS={threads}), log {srv.logfile}")

        def one(name: str, block: Block, secs: int) -> Run:
            srv = servers[name]
            if name == "peer":
                return peer_run(pg, dbs[name], srv, block.scenario, args.connections, secs, tmp, block.name)
            return measured_run(pg, dbs[name], srv, block, args.connections, secs, tmp)

        # Warm-up: pools filled, code paths and caches hot; its orders are checked like the rest.
        for name in names:
            one(name, blocks["warmup"], warmup)
        # Rounds with the servers alternating (ours, peer, peer, ours, ...) so that a drift in the
        # load from elsewhere on the machine does not land on one server only.
        for scenario in SCENARIOS:
            total = {name: Run(name, scenario) for name in names}
            for r in range(rounds):
                for name in (names if r % 2 == 0 else names[::-1]):
                    total[name].add(one(name, blocks[f"{scenario}.{r}"], seconds))
            runs += [total[name] for name in names]
        if not args.no_journey:
            journey = Run("ours", "journey")
            for r in range(rounds):
                journey.add(journey_run(pg, dbs["ours"], servers["ours"], blocks[f"journey.{r}"],
                                        args.connections, seconds, tmp))
        floor, sale_floors = None, None
        if "baseline" in names:
            base = servers["baseline"]
            floor = floor_run(pg, base, args.connections, seconds, tmp)
            sale_floors = [sale_floor_run(pg, dbs["baseline"], base, sc, args.connections, seconds, tmp)
                           for sc in SCENARIOS]
        ok = print_report(runs, args.connections, seconds, rounds, workers, threads, floor, sale_floors, journey)
    finally:
        for srv in servers.values():
            srv.stop()
        if pg is not None:
            pg.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
