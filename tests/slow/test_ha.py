"""High availability on Patroni, Jepsen-style, with real processes (docs/scaling.md, issue #12).

One etcd and two PostgreSQL 15 nodes under Patroni (pyapp.db.ha, synchronous_mode on), the app under
the HTTP server on a multi-host DATABASE_URL (target_session_attrs=read-write) and a READ_DATABASE_URL
(prefer-standby). Buyers check out in a loop with an Idempotency-Key each and retry a 503 or a
lost answer with the same key; meanwhile the primary's postmaster is killed with SIGKILL, a
switchover is made with patronictl, or the primary's whole node (Patroni too) is killed.
Afterwards, on the new primary: every order answered 201 exists exactly once, the buyers have no
other order, nothing is oversold, stock equals the ledger for every product; and the window (the
longest time without a 201 from the last one before the event) is printed and stays under 30 s,
a bound only a hang breaks. Also: the read/write split, a write on a standby (503, never 500), the
durability barrier of early lock release against a stopped standby, the old primary's rejoin
through pg_rewind, and the commands against the multi-host URL.

Run alone: `.venv/bin/python -m pytest tests/slow/test_ha.py -q -s` (about two minutes; needs Debian's
patroni and etcd-server, which scripts/setup.sh installs). Tests run in file order and share one
cluster: the rejoin test follows the failover test, the node-crash test the switchover test.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from pyapp import auth
from pyapp.db.ha import HaCluster, bootstrap_database
from tests.support.http_server import HttpServer, seed_webhook_secret
from tests.support.invariants import assert_invariants, make_products, make_users

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent
WINDOW_BOUND_S = 30.0  # a bound only a hang breaks; the measured windows are printed
# Three products that outlast the load, and one that sells out during it (nothing oversold
# across the failover is then a real check).
STOCKS = [3000, 3000, 3000, 40]
BUYERS = 8
EVENT_AFTER_S = 4.0  # load runs this long before the kill or the switchover
LOAD_AFTER_S = 8.0  # and this long after the first 201 that follows it
RESULTS: dict[str, dict] = {}
SEEDED_BUYERS: list[str] = []  # the user ids of the last seed()


@pytest.fixture(scope="module")
def ha():
    cluster = HaCluster()
    try:
        cluster.start()
        owner = bootstrap_database(cluster)
        with psycopg.connect(owner, autocommit=True) as c:
            c.execute("""SELECT api.set_limits('{"maxUnpaidOrders": null}'::jsonb)""")
        seed_webhook_secret(owner)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def app(ha):
    srv = HttpServer(ha.url(user="marketplace_app"),
                     READ_DATABASE_URL=ha.url(user="marketplace_app", attrs="prefer-standby"),
                     DB_POOL_TIMEOUT_S="2").start()
    try:
        yield srv
    finally:
        srv.stop()


def owner_conn(ha: HaCluster) -> psycopg.Connection:
    return psycopg.connect(ha.url(), autocommit=True)


def seed(ha: HaCluster, buyers: int) -> tuple[list[str], list[str], dict[str, int]]:
    """(product ids, buyer bearer tokens, initial stock) made as the owner on the primary."""
    with owner_conn(ha) as c:
        seller = make_users(c, 1, role="SELLER", prefix="ha-s")[0]
        products = make_products(c, seller, STOCKS)
        tokens = []
        SEEDED_BUYERS.clear()
        for uid in make_users(c, buyers, prefix="ha-b"):
            SEEDED_BUYERS.append(uid)
            tok = auth.new_token()
            c.execute("SELECT api.issue_token(%s, %s)", (uid, auth.token_hash(tok)))
            tokens.append(tok)
    return products, tokens, dict(zip(products, STOCKS))


class Load:
    """BUYERS threads: add one unit to the cart, check out with a new Idempotency-Key, retrying
    with the same key until an answer decides it. Records every 201 (time, order id) and every
    request that failed (503, connection error, timeout)."""

    def __init__(self, base: str, products: list[str], tokens: list[str]):
        self.base, self.products, self.tokens = base, products, tokens
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acks: list[tuple[float, str, str, float]] = []  # (answered, order id, key, sent), monotonic
        self.failed = 0
        self.failed_at: list[float] = []
        self.statuses: dict[int, int] = {}
        self.replays = 0
        self.errors: list[str] = []
        self.local = threading.local()
        self.threads = [threading.Thread(target=self._buyer, args=(i,), daemon=True) for i in range(len(tokens))]

    def _note(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status in (0, 503):
                self.failed += 1
                self.failed_at.append(time.monotonic())

    def _send(self, s: requests.Session, method: str, path: str, **kw) -> requests.Response | None:
        self.local.sent = time.monotonic()
        try:
            r = s.request(method, self.base + path, timeout=(3, 25), **kw)
        except requests.RequestException:
            self._note(0)
            return None
        self._note(r.status_code)
        if r.status_code >= 500:
            if r.status_code != 503 or "Retry-After" not in r.headers or \
                    not r.headers.get("Content-Type", "").startswith("application/problem+json"):
                with self.lock:
                    self.errors.append(f"{method} {path}: {r.status_code} {r.headers} {r.text[:300]}")
        return r

    def _until_decided(self, s, method, path, **kw) -> requests.Response | None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = self._send(s, method, path, **kw)
            if r is not None and r.status_code != 503:
                return r
            time.sleep(0.2)
        with self.lock:
            self.errors.append(f"{method} {path}: undecided after 60 s")
        return None

    def _buyer(self, i: int) -> None:
        s = requests.Session()
        s.headers["Authorization"] = "Bearer " + self.tokens[i]
        n = 0
        while not self.stop.is_set():
            n += 1
            pid = self.products[(i + n) % len(self.products)]
            r = self._until_decided(s, "POST", "/api/marketplace/cart/items", json={"productId": pid, "quantity": 1})
            if r is None or r.status_code != 201:
                continue
            key = uuid.uuid4().hex
            r = self._until_decided(s, "POST", "/api/marketplace/checkout", json={"shippingAddress": {"line": "1 HA St"}},
                                    headers={"Idempotency-Key": key})
            if r is not None and r.status_code == 201:
                with self.lock:
                    self.acks.append((time.monotonic(), r.json()["id"], key, self.local.sent))
                    self.replays += r.headers.get("Idempotent-Replayed") == "true"
            elif r is not None and r.status_code == 400:  # sold out (or an emptied cart): clear it
                self._until_decided(s, "DELETE", f"/api/marketplace/cart/items/{pid}")

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(90)

    def acked_after(self, t: float) -> int:
        """201s to requests sent after `t` (an answer in flight at `t` does not count)."""
        with self.lock:
            return sum(1 for a in self.acks if a[3] > t)

    def window(self, event: float) -> float:
        """The unavailability window: the longest time without a 201 from the last 201 before
        `event` on (so a checkout still answered by the old primary after a switchover began
        does not hide the gap that follows it), in seconds."""
        with self.lock:
            times = sorted(a[0] for a in self.acks)
        before = max(t for t in times if t <= event)
        after = [t for t in times if t >= before]
        return max(b - a for a, b in zip(after, after[1:]))


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


def check_outcome(ha: HaCluster, load: Load, initial: dict[str, int], buyers: list[str]) -> None:
    assert not load.errors, load.errors[:5]
    assert 500 not in load.statuses, load.statuses
    ids = [a[1] for a in load.acks]
    assert len(ids) == len(set(ids)) or load.replays, "an order id answered twice without a replay"
    with owner_conn(ha) as c:
        assert not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        found = dict(c.execute('SELECT id, count(*) FROM "Order" WHERE id = ANY(%s) GROUP BY id',
                               (list(set(ids)),)).fetchall())
        missing = [i for i in set(ids) if i not in found]
        assert not missing, f"{len(missing)} acknowledged orders are not on the new primary: {missing[:5]}"
        assert all(n == 1 for n in found.values())
        # Every checkout was retried until it was decided, so the buyers' orders are exactly the
        # acknowledged ones: a retry that made a second order would show here.
        made = c.execute('SELECT count(*) FROM "Order" WHERE "userId" = ANY(%s)', (buyers,)).fetchone()[0]
        assert made == len(set(ids)), f"{made} orders made, {len(set(ids))} acknowledged"
        assert_invariants(c, initial=initial)


def run_scenario(ha: HaCluster, app: HttpServer, name: str, event) -> dict:
    old, sync = ha.wait_synchronous()
    products, tokens, initial = seed(ha, BUYERS)
    buyers = list(SEEDED_BUYERS)
    with owner_conn(ha) as c:
        lsn_before = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    with Load(app.url, products, tokens) as load:
        wait_for(lambda: load.acked_after(0) >= 20, 60, "20 checkouts before the event")
        time.sleep(EVENT_AFTER_S)
        event_at = time.monotonic()
        event(old)
        wait_for(lambda: load.acked_after(event_at) > 0, WINDOW_BOUND_S + 30, "201 after the event")
        first_after = time.monotonic()
        new = wait_for(lambda: (n := ha.leader()) is not None and n.name != old.name and n, 60,
                       "new primary")
        while time.monotonic() - first_after < LOAD_AFTER_S:
            time.sleep(0.2)
    window = load.window(event_at)
    with owner_conn(ha) as c:
        wal = c.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (str(lsn_before),)).fetchone()[0]
    spread = [round(t - event_at, 1) for t in load.failed_at]
    print(f"\n[ha] {name}: failed requests at (s after the event): {spread}")
    result = {"window_s": round(window, 2), "acks": len(load.acks), "failed": load.failed,
              "replays": load.replays, "statuses": load.statuses, "old": old.name, "new": new.name}
    print(f"\n[ha] {name}: window {window:.2f} s (longest time without a 201 from the last one before the event), "
          f"{len(load.acks)} orders acknowledged, {load.failed} failed requests, {load.replays} replays, "
          f"statuses {load.statuses}, primary {old.name} -> {new.name}, "
          f"{float(wal) / max(1, len(load.acks)) / 1024:.1f} kB of WAL per acknowledged order")
    RESULTS[name] = result
    check_outcome(ha, load, initial, buyers)
    assert window < WINDOW_BOUND_S, result
    return result


def test_reads_go_to_the_standby_and_writes_to_the_primary(ha, app):
    primary, sync = ha.wait_synchronous()
    standby = ha.node(sync)
    products, tokens, _ = seed(ha, 1)
    h = {"Authorization": "Bearer " + tokens[0]}
    health = requests.get(app.url + "/health", timeout=10).json()
    assert health["replication"]["node"] == f"127.0.0.1:{primary.pg_port}", health
    assert health["replication"]["role"] == "primary"
    assert health["replication"]["synchronousStandbyNames"], health
    assert [s["name"] for s in health["replication"]["standbys"]] == [sync], health
    tag = uuid.uuid4().hex[:8]
    for _ in range(20):
        assert requests.get(app.url + "/api/marketplace/products", timeout=10,
                            headers={"X-Request-Id": tag}).status_code == 200
        assert requests.get(app.url + f"/api/marketplace/products/{products[0]}", timeout=10).status_code == 200
    r = requests.post(app.url + "/api/marketplace/cart/items", json={"productId": products[0], "quantity": 1},
                      headers=h, timeout=10)
    assert r.status_code == 201, r.text

    def app_sessions(node):
        with psycopg.connect(ha.node_url(node), autocommit=True) as c:
            return c.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'marketplace_app' "
                             "AND application_name = 'marketplace-http'").fetchone()[0]
    # The read pool's connections are on the standby; the cart line is on the primary (and,
    # replicated, on the standby), and no app session on the standby ever wrote.
    assert app_sessions(standby) >= 1
    assert app_sessions(primary) >= 1
    with psycopg.connect(ha.node_url(standby), autocommit=True) as c:
        assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0]


def test_dashboard_shows_the_node_and_its_synchronous_standby(ha, app):
    from tests.support.browser import Figures, run_chromium

    primary, sync = ha.wait_synchronous()
    tok = auth.new_token()
    with owner_conn(ha) as c:
        uid = c.execute("SELECT api.create_user(%s, 'Admin', %s, 'ADMIN')",
                        (f"ha-admin-{uuid.uuid4().hex[:8]}@example.com", auth.hash_password("irrelevant"))
                        ).fetchone()[0]["id"]
        c.execute("SELECT api.issue_token(%s, %s)", (uid, auth.token_hash(tok)))
    data = requests.get(app.url + "/admin/dashboard/data", headers={"Authorization": "Bearer " + tok},
                        timeout=10).json()
    standbys = data["replication"]["standbys"]
    assert [(s["name"], s["state"], s["syncState"]) for s in standbys] == [(sync, "streaming", "sync")], data
    assert isinstance(standbys[0]["lagBytes"], (int, float)), standbys
    dom = run_chromium(["--dump-dom", "--virtual-time-budget=5000",
                        f"{app.url}/admin/dashboard?refresh=2#token={tok}"]).decode()
    page = Figures()
    page.feed(dom)
    assert page.body.get("data-state") == "ready", dom[:2000]
    assert page.found["db-node"] == [f"127.0.0.1:{primary.pg_port}"] * 2, page.found.get("db-node")
    assert page.found["db-role"][0] == "primary"
    assert page.found["db-standbys"][0] == "1" and sync in page.found["db-standbys"][1], page.found["db-standbys"]


def test_a_write_sent_to_a_standby_is_503_and_never_500(ha):
    _, sync = ha.wait_synchronous()
    standby = ha.node(sync)
    products, tokens, _ = seed(ha, 1)
    srv = HttpServer(ha.node_url(standby, user="marketplace_app")).start()
    try:
        h = {"Authorization": "Bearer " + tokens[0]}
        assert requests.get(srv.url + "/api/marketplace/products", timeout=10).status_code == 200
        health = requests.get(srv.url + "/health", timeout=10).json()
        assert health["replication"]["role"] == "standby" and health["replication"]["inRecovery"] is True
        for _ in range(3):
            r = requests.post(srv.url + "/api/marketplace/cart/items", json={"productId": products[0], "quantity": 1},
                              headers=h, timeout=10)
            assert r.status_code == 503, r.text
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["code"] == "DATABASE_UNAVAILABLE" and r.json()["database"] == "read-only"
    finally:
        srv.stop()


def test_an_early_released_checkout_answers_201_only_once_the_standby_has_it(ha, app):
    """Early lock release (docs/design.md): a checkout that queued for its product commits without
    waiting, and its 201 waits for a durable commit after it. Here the synchronous standby's WAL
    receiver is stopped (SIGSTOP) while the checkout runs: the order is committed and visible on the
    primary, yet no 201 comes until the standby receives the WAL again; then the order is on it."""
    import signal

    primary, sync = ha.wait_synchronous()
    standby = ha.node(sync)
    products, tokens, _ = seed(ha, 1)
    h = {"Authorization": "Bearer " + tokens[0]}
    r = requests.post(app.url + "/api/marketplace/cart/items", json={"productId": products[0], "quantity": 1},
                      headers=h, timeout=10)
    assert r.status_code == 201, r.text
    with psycopg.connect(ha.node_url(standby), autocommit=True) as sc:
        receiver = sc.execute("SELECT pid FROM pg_stat_wal_receiver").fetchone()[0]
    answer: dict = {}

    def buy():
        answer["r"] = requests.post(app.url + "/api/marketplace/checkout", json={"shippingAddress": {"line": "1"}},
                                    headers={**h, "Idempotency-Key": uuid.uuid4().hex}, timeout=90)
    with psycopg.connect(ha.node_url(primary)) as holder:  # holds the product's sale queue
        holder.execute("SELECT pg_advisory_xact_lock(1296782161, hashtext(%s))", (products[0],))
        buyer = threading.Thread(target=buy)
        buyer.start()
        with owner_conn(ha) as c:
            wait_for(lambda: c.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                       "AND wait_event = 'advisory'").fetchone()[0], 30, "the checkout queued")
        os.kill(receiver, signal.SIGSTOP)
    try:  # the holder's transaction ended (it wrote nothing, so it did not wait): the checkout goes on
        with psycopg.connect(ha.node_url(primary), autocommit=True) as c:
            order = wait_for(lambda: c.execute('SELECT id FROM "Order" WHERE "userId" = %s', (SEEDED_BUYERS[0],)
                                               ).fetchone(), 30, "the order committed on the primary")[0]
        buyer.join(3)  # a bound only a broken barrier breaks: the standby cannot answer while stopped
        assert buyer.is_alive() and "r" not in answer, "a 201 came before the standby had the order"
    finally:
        os.kill(receiver, signal.SIGCONT)
    buyer.join(60)
    assert answer["r"].status_code == 201 and answer["r"].json()["id"] == order, answer["r"].text
    with psycopg.connect(ha.node_url(standby), autocommit=True) as sc:
        assert wait_for(lambda: sc.execute('SELECT 1 FROM "Order" WHERE id = %s', (order,)).fetchone(), 30,
                        "the order replayed on the standby")


def test_failover_kill9_of_the_primary_postmaster_under_checkout_load(ha, app):
    pids: list[int] = []
    run_scenario(ha, app, "failover", lambda old: pids.append(ha.kill_postmaster(old)))


def test_the_old_primary_rejoins_as_a_synchronous_standby(ha):
    result = RESULTS.get("failover")
    assert result is not None, "runs after the failover test"
    old = ha.node(result["old"])

    def rejoined():
        members = {m["name"]: m for m in ha.cluster().get("members", [])}
        m = members.get(old.name, {})
        return m.get("role") == "sync_standby" and m.get("state") in ("running", "streaming")
    started = time.monotonic()
    wait_for(rejoined, 120, f"{old.name} back as the synchronous standby")
    print(f"\n[ha] rejoin: {old.name} is the synchronous standby again {time.monotonic() - started:.1f} s "
          "after the failover test ended")
    log = "\n".join(p.read_text(errors="replace") for p in old.home.glob("patroni.log*"))
    print("[ha] rejoin log lines: " + " | ".join(line.strip()[-140:] for line in log.splitlines()
                                               if "rewind" in line.lower())[-1200:])
    # A write acknowledged now is on the rejoined node: synchronous again.
    with owner_conn(ha) as c:
        marker = uuid.uuid4().hex
        c.execute("SELECT pg_logical_emit_message(true, 'ha-test', %s)", (marker,))
        c.execute("CREATE TABLE IF NOT EXISTS public.ha_probe (v text)")
        c.execute("INSERT INTO public.ha_probe VALUES (%s)", (marker,))
        row = c.execute("SELECT application_name, sync_state FROM pg_stat_replication").fetchall()
        assert (old.name, "sync") in [tuple(r) for r in row], row
    with psycopg.connect(ha.node_url(old), autocommit=True) as c:
        assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        wait_for(lambda: c.execute("SELECT count(*) FROM public.ha_probe WHERE v = %s", (marker,)).fetchone()[0],
                 30, "the probe row replayed on the rejoined node")
    with owner_conn(ha) as c:
        c.execute("DROP TABLE public.ha_probe")


def test_switchover_under_checkout_load(ha, app):
    run_scenario(ha, app, "switchover", lambda old: ha.switchover())


def test_node_crash_under_checkout_load_and_the_node_comes_back(ha, app):
    """kill -9 of the primary's Patroni and postmaster (the node is gone): the standby is promoted
    when the leader key expires. A planned switchover fails fewer requests than this crash."""
    result = run_scenario(ha, app, "node crash", lambda old: ha.kill_node(old))
    old = ha.node(result["old"])
    ha.start_node(old)
    wait_for(lambda: ha.sync_standby() == old.name, 120, f"{old.name} back as the synchronous standby")
    switchover = RESULTS.get("switchover")
    assert switchover is not None, "runs after the switchover test"
    assert switchover["failed"] < result["failed"], (switchover, result)


def test_migrations_verify_backup_and_expiry_against_the_cluster_url(ha, tmp_path):
    env = {**os.environ, "DATABASE_URL": ha.url()}

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "pyapp", *args], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=180)
        return r.returncode, r.stdout + r.stderr
    assert cli("migrate")[0] == 0
    code, out = cli("status")
    assert code == 0, out
    code, out = cli("verify")
    assert code == 0, out
    code, out = cli("backup", "--dir", str(tmp_path))
    assert code == 0, out
    assert any(tmp_path.iterdir()), out
    code, out = cli("expire-orders")
    assert code == 0, out
    # Expire every unpaid order of the earlier tests (hold window 0): stock comes back exactly once.
    with owner_conn(ha) as c:
        while c.execute("SELECT api.expire_pending_orders(interval '0 seconds', 5000)").fetchone()[0]:
            pass
        assert_invariants(c)
        assert c.execute("SELECT count(*) FROM \"Order\" WHERE status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED')"
                         ).fetchone()[0] == 0
