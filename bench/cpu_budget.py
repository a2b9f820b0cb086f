"""Where a spread checkout's CPU goes, layer by layer, beside the ORM peer's.

    .venv/bin/python bench/cpu_budget.py [--requests 2000] [--rounds 3] [--clients 16] [--no-peer]

Starts a throwaway PostgreSQL cluster with autovacuum off (or uses BENCH_DATABASE_URL; the database
CPU is then not measured), seeds it as bench/http_bench.py does (10,000 products, one cart line of
one unit per buyer, a random product each) and measures, --rounds times with the rows alternating,
--requests checkouts per row:

  peer        POST /checkout of the ORM peer (../shared/peer) under gunicorn, --clients keep-alive
              clients at once
  ours        POST /api/marketplace/checkout under our HTTP server (python -m pyapp.server, granian's
              WSGI mode, as marketplace_app), --clients keep-alive clients at once
  in-process  the same request handed to our WSGI app in this process, one at a time: no HTTP server
  psycopg     the checkout's one statement (pyapp.db.calls.checkout) through psycopg, one
              connection, one at a time
  async       the same with synchronous_commit off: what remains without the WAL flush
  writes      the sale's writes as one prepared statement, synchronous_commit off: the token
              lookup, the cart line's DELETE, the stock UPDATE (both product triggers, the ledger
              row), the order and its item (their indexes, foreign keys and CHECKs); none of the
              checkout's rules, no order JSON
  empty       `SELECT $1::text, $2::text, $3::text`: a round trip and a transaction, nothing else

"app" is the CPU of the server's processes (ours, peer: every thread of every process of the
server's tree) or of this process (the other rows); "db" is the whole cluster's. Each row prints
medians per request. The lines under the table take differences of rows: HTTP server (granian) =
ours - in-process (app), Bottle + plugin + route = in-process - psycopg (app), WAL flush =
psycopg - async (db), rules = async - writes (db). They say where each 0.1 ms of a checkout goes
and how much a checkout may cost at a given multiple of the peer. The HTTP rows run under load as
bench/http_bench.py does (its figures are the ones the targets are judged by); the others run one
request at a time, so each is what that layer costs by itself.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import psycopg  # noqa: E402
from benchpg import Postgres  # noqa: E402
from http_bench import (  # noqa: E402
    APP_ROLE,
    PEER_DIR,
    PREFIX,
    PRODUCTS,
    Block,
    Server,
    build_template,
    fill_carts,
    log,
    peer_server,
    postmaster_pid,
    process_tree,
    reset_peer,
    vacuum,
)

from pyapp.db import calls  # noqa: E402
from pyapp.db.calls import Session  # noqa: E402

ADDRESS = {"street": "1 Main St", "city": "Lisbon", "zip": "1000-001"}
BODY = json.dumps({"shippingAddress": ADDRESS}).encode()
# The checkout's writes and nothing else, as one statement: what any checkout of this schema pays.
WRITES_SQL = """
WITH u AS (SELECT u.id FROM "ApiToken" t JOIN "User" u ON u.id = t."userId"
           WHERE t."tokenHash" = %s AND t."revokedAt" IS NULL AND t."expiresAt" > now()),
     c AS (DELETE FROM "CartItem" ci USING u WHERE ci."userId" = u.id RETURNING ci."productId", ci.quantity),
     p AS (UPDATE "Product" p SET stock = p.stock - c.quantity FROM c
           WHERE p.id = c."productId" AND p.stock >= c.quantity RETURNING p.id, p.price, c.quantity),
     o AS (INSERT INTO "Order" (id, "userId", status, total, "shippingAddress", "createdAt", "updatedAt")
           SELECT internal.uuid7()::text, u.id, 'PENDING_PAYMENT', (SELECT sum(price * quantity) FROM p),
                  %s::jsonb -> 'shippingAddress', now(), now() FROM u RETURNING id)
INSERT INTO "OrderItem" ("orderId", "productId", quantity, "unitPrice")
SELECT o.id, p.id, p.quantity, p.price FROM o, p RETURNING "orderId", %s::text"""
EMPTY_SQL = "SELECT %s::text, %s::text, %s::text"
ROWS = ("peer", "ours", "in-process", "psycopg", "async", "writes", "empty")
WARMUP = 100


def token_hash(buyer: int) -> str:
    return hashlib.sha256(f"bt{buyer}".encode()).hexdigest()


class Buyers:
    """Hands out buyer numbers; each buyer checks out once (one cart line, one unit)."""

    def __init__(self) -> None:
        self.next = 1

    def take(self, n: int) -> range:
        r = range(self.next, self.next + n)
        self.next += n
        return r


def process_clock(pid: int) -> int:
    """The clock id of process `pid`'s CPU time (clock_getcpuclockid(3), which Python lacks: the
    kernel's MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)). Linux lets any process read it."""
    return (~pid << 3) | 2


def tree_runtime_s(root: int | None) -> float:
    """CPU seconds that the processes of `root`'s tree have run, every thread of each counted,
    those already ended included: clock_gettime of each process's CPU clock (nanoseconds, the sum
    of /proc/<pid>/task/<tid>/schedstat over its threads, live or not; /proc/<pid>/stat counts
    10 ms ticks, too coarse for 0.02 ms per request). Threads come and go: granian starts a
    worker's blocking threads on demand and ends them after 30 s idle. Every process a row uses
    lives through the row: the servers' workers, the pooled backends."""
    if root is None:
        return float("nan")
    total = 0
    for pid in process_tree(root):
        try:
            total += time.clock_gettime_ns(process_clock(pid))
        except OSError:  # gone since the walk
            pass
    return total / 1e9


class Measure:
    """CPU seconds of one row's requests: the app side (a process tree, or this process) and the cluster."""

    def __init__(self, pg: Postgres, app_pid: int | None):
        self.pm, self.app_pid = postmaster_pid(pg), app_pid

    def _app(self) -> float:
        return tree_runtime_s(self.app_pid) if self.app_pid else time.process_time()

    def __enter__(self):
        self.app0, self.db0 = self._app(), tree_runtime_s(self.pm)
        return self

    def __exit__(self, *exc):
        self.app_s, self.db_s = self._app() - self.app0, tree_runtime_s(self.pm) - self.db0


def http_row(srv: Server, path: str, body_of, headers_of, clients: int, want: int = 201):
    """`clients` keep-alive connections sending one request at a time each, the buyers shared among
    them; run(buyers) returns how many answers were not `want`."""
    host, port = srv.url.removeprefix("http://").split(":")

    def run(buyers) -> int:
        todo, lock, bad = iter(buyers), threading.Lock(), [0]

        def client() -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                while True:
                    with lock:
                        b = next(todo, None)
                    if b is None:
                        return
                    conn.request("POST", path, body=body_of(b), headers=headers_of(b))
                    r = conn.getresponse()
                    r.read()
                    if r.status != want:
                        with lock:
                            bad[0] += 1
            finally:
                conn.close()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return bad[0]
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000, help="checkouts per row and round (default 2000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, rows alternating (default 3); medians")
    ap.add_argument("--clients", type=int, default=16,
                    help="concurrent keep-alive clients of the two HTTP rows (default 16)")
    ap.add_argument("--no-peer", action="store_true", help="leave the ORM peer out")
    args = ap.parse_args()
    n, rounds = max(100, args.requests), max(1, args.rounds)
    with_peer = not args.no_peer
    if with_peer and not (PEER_DIR / "orm_app.py").exists():
        print(f"the ORM peer is not at {PEER_DIR} (set PEER_DIR, or pass --no-peer)", file=sys.stderr)
        return 2
    os.environ.update(WORKERS=os.environ.get("WORKERS", "2"), THREADS=os.environ.get("THREADS", "8"))
    rows = [r for r in ROWS if with_peer or r != "peer"]
    buyers_needed = (len(rows) - (1 if with_peer else 0)) * rounds * (n + WARMUP) + 10

    tmp = Path(tempfile.mkdtemp(prefix="mk-cpubudget-"))
    os.chmod(tmp, 0o755)
    pg: Postgres | None = None
    servers: list[Server] = []
    connections: list[psycopg.Connection] = []
    results: dict[str, list[tuple[float, float]]] = {r: [] for r in rows}
    failures: list[str] = []
    try:
        pg = Postgres(tmp, extra_conf="\nautovacuum = off\n")
        template = build_template(pg, buyers_needed)
        db = pg.create(PREFIX + "budget", template)
        fill_carts(pg, db, {"budget": Block("budget", "spread", 1, buyers_needed, threads=1)})
        vacuum(pg, db)
        app_url = pg.url(db, APP_ROLE)
        ours = Server("ours", app_url, tmp).start()
        servers.append(ours)
        peer = None
        if with_peer:
            peer_db = pg.create(PREFIX + "budget_peer")
            reset_peer(pg, peer_db)
            peer = peer_server(pg, peer_db, tmp, os.environ["WORKERS"], os.environ["THREADS"]).start()
            servers.append(peer)

        # Our WSGI app in this process, on its own pool of marketplace_app connections.
        prom = tmp / "inproc-metrics"
        prom.mkdir()
        os.environ.update(DATABASE_URL=app_url, PROMETHEUS_MULTIPROC_DIR=str(prom))
        from pyapp.wsgi import app as wsgi_app
        statuses: list[str] = []

        def wsgi(buyers) -> int:
            bad = 0
            for b in buyers:
                environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/marketplace/checkout", "SERVER_NAME": "bench",
                           "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
                           "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(BODY)),
                           "wsgi.input": io.BytesIO(BODY), "wsgi.errors": sys.stderr, "REMOTE_ADDR": "127.0.0.1",
                           "HTTP_AUTHORIZATION": f"Bearer bt{b}"}
                statuses.clear()
                b"".join(wsgi_app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
                bad += not statuses[0].startswith("201")
            return bad

        def statement(url: str, options: str, one):
            """`one(session, buyer)` sends one statement and returns its row, on a connection of its own."""
            conn = psycopg.connect(url, autocommit=True, options=options)
            connections.append(conn)
            session = Session(conn)

            def run(buyers) -> int:
                return sum(one(session, b) is None for b in buyers)
            return run

        def checkout(session: Session, b: int):  # the app's own call (pyapp.db.calls), as marketplace_app
            return calls.checkout(session, token_hash(b), body_text, None)

        body_text = BODY.decode()
        runners = {
            "ours": (ours.proc.pid, http_row(ours, "/api/marketplace/checkout", lambda b: BODY,
                                             lambda b: {"Authorization": f"Bearer bt{b}",
                                                        "Content-Type": "application/json"}, args.clients)),
            "in-process": (None, wsgi),
            "psycopg": (None, statement(app_url, "", checkout)),
            "async": (None, statement(app_url, "-c synchronous_commit=off", checkout)),
            # The owner runs the writes: the app's role may not touch the tables.
            "writes": (None, statement(pg.dsn(db), "-c synchronous_commit=off",
                                       lambda s, b: s.row(WRITES_SQL, (token_hash(b), body_text, "x")))),
            "empty": (None, statement(pg.dsn(db), "", lambda s, b: s.row(EMPTY_SQL, ("a", "b", "c")))),
        }
        if peer is not None:
            runners["peer"] = (peer.proc.pid, http_row(
                peer, "/checkout",
                lambda b: json.dumps({"userId": f"u{1 + b % 1000}",
                                      "items": [{"productId": str(1 + (b * 7919) % PRODUCTS), "quantity": 1}]}),
                lambda b: {"Content-Type": "application/json"}, args.clients))
        pool = Buyers()
        for rnd in range(rounds):
            order = rows if rnd % 2 == 0 else list(reversed(rows))
            for name in order:
                pid, run = runners[name]
                # The peer's buyers are its own 1,000 users; its requests need no cart.
                warm = pool.take(WARMUP) if name != "peer" else range(WARMUP)
                measured = pool.take(n) if name != "peer" else range(rnd * n, (rnd + 1) * n)
                run(warm)
                with Measure(pg, pid) as m:
                    bad = run(measured)
                if bad:
                    failures.append(f"{name}, round {rnd + 1}: {bad} of {n} requests did not succeed")
                results[name].append((m.app_s, m.db_s))
                log(f"round {rnd + 1} {name}: app {1000 * m.app_s / n:.3f} ms, db {1000 * m.db_s / n:.3f} ms "
                    f"per request ({bad} failed)")
    finally:
        for conn in connections:
            conn.close()
        for srv in servers:
            srv.stop()
        if pg is not None:
            pg.close()
        shutil.rmtree(tmp, ignore_errors=True)

    def med(name: str, i: int) -> float:
        return 1000 * statistics.median(x[i] for x in results[name]) / n

    print()
    print(f"CPU per spread checkout: {n} requests per row, {rounds} round(s), rows alternating; HTTP rows with "
          f"{args.clients} clients at once, the others one request at a time; medians, ms per request")
    print("(app: the server's processes, or this process; db: the whole cluster, autovacuum off)")
    print(f"{'row':<12}{'app ms':>9}{'db ms':>9}{'total':>9}  what runs")
    print("-" * 100)
    what = {
        "peer": "ORM peer: POST /checkout over HTTP (Flask + SQLAlchemy under gunicorn)",
        "ours": "POST /api/marketplace/checkout over HTTP (granian, Bottle, plugin, psycopg)",
        "in-process": "the same request, WSGI app called in this process (no HTTP server)",
        "psycopg": "the checkout's one statement through psycopg (no web layer)",
        "async": "the same, synchronous_commit off (no WAL flush wait)",
        "writes": "the sale's writes only, one prepared statement, synchronous_commit off",
        "empty": "an empty statement: round trip and transaction",
    }
    for name in rows:
        a, d = med(name, 0), med(name, 1)
        print(f"{name:<12}{a:>9.3f}{d:>9.3f}{a + d:>9.3f}  {what[name]}")
    print()
    g = med("ours", 0) - med("in-process", 0)
    web = med("in-process", 0) - med("psycopg", 0)
    flush = med("psycopg", 1) - med("async", 1)
    rules = med("async", 1) - med("writes", 1)
    writes = med("writes", 1) - med("empty", 1)
    ours_total = med("ours", 0) + med("ours", 1)
    print("where ours goes (differences of medians, ms per checkout):")
    print(f"  app: HTTP server (granian) {g:.3f}, Bottle + plugin + route {web:.3f}, psycopg {med('psycopg', 0):.3f}")
    print(f"  db:  round trip + transaction {med('empty', 1):.3f}, the writes {writes:.3f}, "
          f"the checkout's rules and order JSON {rules:.3f}, WAL flush {flush:.3f}")
    print(f"  ours over HTTP: {ours_total:.3f} ms in all")
    if "peer" in results:
        peer_total = med("peer", 0) + med("peer", 1)
        floor = med("empty", 1) + writes + max(flush, 0.0) + med("psycopg", 0)
        print(f"  the peer over HTTP: {peer_total:.3f} ms; peer / ours = {peer_total / ours_total:.2f}x")
        print(f"  at 4x the peer's checkouts/s on the same CPU-bound cores a checkout may cost {peer_total / 4:.3f} ms "
              f"in all;\n  the writes, the WAL flush, the round trip and psycopg take {floor:.3f} ms of it, "
              f"with this HTTP server {floor + g:.3f} ms,\n  which leaves {peer_total / 4 - floor - g:.3f} ms for "
              f"the web framework and every rule of the checkout (ours now: {web + rules:.3f} ms)")
    if failures:
        print("\nFAILED: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
