"""deploy, smoke and notify, run as an operator would: `python -m pyapp ...` in a subprocess, judged
by exit codes, by the database and by what a local webhook sink received. Each deploy test builds
its own database from template0 up to a chosen migration; the smoke tests run against a real
the HTTP server (tests/support/http_server.py)."""
from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import psycopg
import pytest
import requests

from pyapp.db import migrate
from pyapp.db.localpg import free_port
from tests.integration.test_cli import pyapp
from tests.sql.test_migrations import all_ids, apply_only, mig_id
from tests.support.invariants import assert_invariants, make_products, make_users


class Sink:
    """A Slack-like incoming webhook on 127.0.0.1 that records every JSON body posted to it."""

    def __init__(self, status: int = 200):
        self.received: list[dict] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.received.append({"path": self.path, "type": self.headers.get("Content-Type"),
                                      "json": json.loads(body)})
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000/secret-part"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def texts(self) -> list[str]:
        return [r["json"]["text"] for r in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


DEAD_URL = f"http://127.0.0.1:{free_port()}/hook"  # a closed port: connection refused


@pytest.fixture
def db_at(server):
    """db_at(ids) -> URL of a new database with exactly those migrations applied."""
    names = []

    def make(ids) -> str:
        name = server.prefix + "deploy_" + uuid.uuid4().hex[:8]
        names.append(name)
        url = server.create_database(name, template="template0")
        assert apply_only(url, set(ids)) == [i for i in all_ids() if i in set(ids)]
        return url

    yield make
    for name in names:
        server.drop_database(name)


def upto(suffix: str) -> list[str]:
    ids = all_ids()
    return ids[:ids.index(mig_id(suffix)) + 1]


def old_data(url: str) -> None:
    """Users, products and orders written in plain SQL on the schema of 0002 (the ORM's, with version)."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash") VALUES
                     ('s1', 'seller@old.example', 'Old Seller', 'SELLER', 'x'),
                     ('b1', 'buyer@old.example', 'Old Buyer', 'BUYER', 'x')""")
        c.execute("""INSERT INTO "Product" (id, name, price, stock, "sellerId") VALUES
                     ('p1', 'Clay jug', 30.00, 4, 's1'), ('p2', 'Wool rug', 120.00, 1, 's1')""")
        c.execute("""INSERT INTO "Order" (id, "userId", status, total, "shippingAddress") VALUES
                     ('o1', 'b1', 'PAID', 60.00, '{"city": "Quito"}')""")
        c.execute("""INSERT INTO "OrderItem" ("orderId", "productId", quantity, "unitPrice") VALUES
                     ('o1', 'p1', 2, 30.00)""")


def maintenance_on(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute("SELECT api.maintenance_status()").fetchone()[0]["maintenance"]


# ---------------------------------------------------------------- notify

def test_notify_posts_the_text_or_says_why_not(sink, db_url):
    r = pyapp(db_url, "notify", "deploy", "of", "v1.1", NOTIFY_WEBHOOK_URL=sink.url)
    assert r.returncode == 0, r.stderr
    assert "sent" in r.stdout
    assert sink.received == [{"path": "/hooks/T000/B000/secret-part", "type": "application/json",
                              "json": {"text": "deploy of v1.1"}}]

    r = pyapp(db_url, "notify", "hello", NOTIFY_WEBHOOK_URL="")
    assert r.returncode == 0 and "NOTIFY_WEBHOOK_URL is unset; nothing was sent" in r.stdout

    r = pyapp(db_url, "notify", "hello", NOTIFY_WEBHOOK_URL=DEAD_URL)
    assert r.returncode == 1
    assert "WARNING: notification not sent" in r.stderr and "/hook" not in r.stderr  # never the URL

    refusing = Sink(status=500)
    try:
        r = pyapp(db_url, "notify", "hello", NOTIFY_WEBHOOK_URL=refusing.url)
        assert r.returncode == 1 and "HTTP 500" in r.stderr and "secret-part" not in r.stderr + r.stdout
    finally:
        refusing.close()
    assert len(sink.received) == 1
    assert pyapp(db_url, "notify", "--help").returncode == 0


def test_rollback_and_critical_alerts_notify_and_a_dead_webhook_fails_neither(sink, db_url):
    last = all_ids()[-1]
    r = pyapp(db_url, "rollback", last, NOTIFY_WEBHOOK_URL=sink.url)
    assert r.returncode == 0, r.stderr
    assert len(sink.texts) == 1 and "rollback" in sink.texts[0] and last in sink.texts[0]
    assert pyapp(db_url, "migrate").returncode == 0

    r = pyapp(db_url, "alerts", NOTIFY_WEBHOOK_URL=sink.url)
    assert r.returncode == 0 and len(sink.texts) == 1  # quiet: nothing sent
    with psycopg.connect(db_url, autocommit=True) as c:
        seller = make_users(c, 1, role="SELLER")[0]
        pid = make_products(c, seller, [1])[0]
        c.execute('ALTER TABLE "Product" DROP CONSTRAINT "Product_stock_nonnegative"')
        c.execute('UPDATE "Product" SET stock = -1 WHERE id = %s', (pid,))
    r = pyapp(db_url, "alerts", NOTIFY_WEBHOOK_URL=sink.url)
    assert r.returncode == 2, r.stdout
    assert len(sink.texts) == 2 and "CRITICAL" in sink.texts[1] and "negative_stock" in sink.texts[1]

    r = pyapp(db_url, "alerts", NOTIFY_WEBHOOK_URL=DEAD_URL)
    assert r.returncode == 2 and "WARNING: notification not sent" in r.stderr
    r = pyapp(db_url, "rollback", last, NOTIFY_WEBHOOK_URL=DEAD_URL)
    assert r.returncode == 0 and "WARNING: notification not sent" in r.stderr
    assert last not in migrate.applied(db_url)


# ---------------------------------------------------------------- deploy

def test_deploy_dry_run_changes_nothing(db_at, sink, tmp_path):
    url = db_at(upto("add_version_to_product"))
    old_data(url)
    r = pyapp(url, "deploy", "--maintenance", "--dry-run", "--backup-dir", str(tmp_path / "b"),
              NOTIFY_WEBHOOK_URL=sink.url)
    assert r.returncode == 0, r.stdout + r.stderr
    assert migrate.applied(url) == upto("add_version_to_product")
    assert not (tmp_path / "b").exists()
    assert sink.received == []
    out = r.stdout
    assert "[1/7] preflight" in out and "dry run" in out
    assert f"{len(all_ids()) - 2} pending migration(s)" in out
    assert "-- 0003_core_rules" in out and "| SET LOCAL lock_timeout = '5s';" in out  # its SQL, first lines
    assert f"after applying {mig_id('core_rules')}, {mig_id('api_functions')}" in out
    assert "[2/7]" not in out
    last_line = migrate.path_of(all_ids()[-1]).read_text().rstrip().splitlines()[-1]
    assert f"| {last_line}" not in out
    r = pyapp(url, "deploy", "--dry-run", "--verbose", "--backup-dir", str(tmp_path / "b"), NOTIFY_WEBHOOK_URL=sink.url)
    assert r.returncode == 0 and f"| {last_line}" in r.stdout  # --verbose: the whole SQL
    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute("SELECT to_regnamespace('api')").fetchone()[0] is None
    assert migrate.applied(url) == upto("add_version_to_product") and sink.received == []


def test_deploy_stops_in_preflight_without_disk_for_a_backup(db_url, tmp_path, monkeypatch, capsys):
    from pyapp.cli import deploy

    monkeypatch.delenv("NOTIFY_WEBHOOK_URL", raising=False)
    monkeypatch.setattr(deploy.shutil, "disk_usage", lambda _path: SimpleNamespace(free=1000))
    args = argparse.Namespace(url=None, maintenance=False, dry_run=False, verbose=False,
                              backup_dir=str(tmp_path / "b"), hold_minutes=None)
    assert deploy.Deploy(args, db_url, "test").run() == 1
    err = capsys.readouterr().err
    assert "FAILED at step 1/7 preflight: not enough free disk for a backup" in err and "nothing was changed" in err
    assert not (tmp_path / "b").exists()


def test_deploy_from_0002_with_maintenance(db_at, sink, tmp_path):
    url = db_at(upto("add_version_to_product"))
    old_data(url)
    r = pyapp(url, "deploy", "--maintenance", "--backup-dir", str(tmp_path), NOTIFY_WEBHOOK_URL=sink.url,
              timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert migrate.pending(url) == []
    # The switch first (0003 and 0004), maintenance on, then the rest; off after verify.
    order = [out.index(s) for s in (f"applying {mig_id('core_rules')}", f"applying {mig_id('api_functions')}",
                                     "maintenance on since", f"applying {mig_id('checkout_stats')}",
                                     "[5/7] verify", "[6/7] maintenance off")]
    assert order == sorted(order), out
    assert "predates the maintenance switch" in out
    assert not maintenance_on(url)
    assert pyapp(url, "verify").returncode == 0
    dumps = list(tmp_path.glob("marketplace-*.dump"))
    assert len(dumps) == 1 and dumps[0].stat().st_size > 0
    assert len(sink.texts) == 2
    assert sink.texts[0].startswith("deploy started") and "maintenance" in sink.texts[0]
    assert sink.texts[1].startswith("deploy finished") and "verify passed" in sink.texts[1]
    with psycopg.connect(url, autocommit=True) as c:
        assert dict(c.execute('SELECT id, "version" FROM "Product"').fetchall()) == {"p1": 1, "p2": 1}
        assert_invariants(c, order_ledger=False)


def test_deploy_stops_in_preflight_behind_a_long_transaction(db_at, sink, tmp_path):
    url = db_at(all_ids()[:-1])
    with psycopg.connect(url) as blocker:  # not autocommit: a transaction stays open
        blocker.execute('SELECT count(*) FROM "Product"').fetchone()
        pid = blocker.info.backend_pid
        time.sleep(5.5)  # older than the migrations' lock_timeout of 5 s
        r = pyapp(url, "deploy", "--backup-dir", str(tmp_path), NOTIFY_WEBHOOK_URL=sink.url)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED at step 1/7 preflight" in r.stderr and str(pid) in r.stderr
    assert "nothing was changed" in r.stderr
    assert str(pid) in r.stdout  # the table of long transactions: pid, age, query
    assert 'SELECT count(*) FROM "Product"' in r.stdout
    assert migrate.pending(url) == [all_ids()[-1]]
    assert list(tmp_path.iterdir()) == []
    assert len(sink.texts) == 1 and "FAILED" in sink.texts[0] and "Nothing was changed" in sink.texts[0]


def test_deploy_whose_verify_fails_prints_the_rollback_and_notifies(db_at, sink, tmp_path):
    first_new = all_ids()[-2]
    url = db_at(all_ids()[:-2])
    with psycopg.connect(url, autocommit=True) as c:
        seller = make_users(c, 1, role="SELLER")[0]
        pid = make_products(c, seller, [5])[0]
        # A plain UPDATE with the ledger trigger off: stock no longer equals its ledger.
        c.execute('ALTER TABLE "Product" DISABLE TRIGGER product_stock_ledger_update')
        c.execute('UPDATE "Product" SET stock = 7 WHERE id = %s', (pid,))
        c.execute('ALTER TABLE "Product" ENABLE TRIGGER product_stock_ledger_update')
    r = pyapp(url, "deploy", "--maintenance", "--backup-dir", str(tmp_path), NOTIFY_WEBHOOK_URL=sink.url)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED at step 5/7 verify" in r.stderr and "stock_matches_ledger" in r.stderr
    assert f"python -m pyapp rollback {first_new}" in r.stderr
    dump = next(tmp_path.glob("marketplace-*.dump"))
    assert f"pg_restore --exit-on-error --dbname <URL of a new, empty database> {dump}" in r.stderr
    assert "maintenance mode stays on" in r.stderr and maintenance_on(url)
    assert migrate.pending(url) == []
    assert len(sink.texts) == 2 and sink.texts[0].startswith("deploy started")
    failure = sink.texts[1]
    assert "FAILED" in failure and "verify" in failure and f"python -m pyapp rollback {first_new}" in failure

    # The printed rollback works.
    r = pyapp(url, "rollback", first_new)
    assert r.returncode == 0, r.stderr
    assert migrate.pending(url) == all_ids()[-2:]


def test_a_dead_webhook_never_fails_a_deploy(db_url, tmp_path):
    r = pyapp(db_url, "deploy", "--backup-dir", str(tmp_path), NOTIFY_WEBHOOK_URL=DEAD_URL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.count("WARNING: notification not sent") == 2  # start and success
    assert "0 migration(s) applied" in r.stdout


def test_deploy_usage_and_unreachable(db_url, tmp_path):
    assert pyapp(db_url, "deploy", "--bogus").returncode == 2
    assert pyapp(db_url, "deploy", "--help").returncode == 0
    r = pyapp(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere", "deploy", "--backup-dir", str(tmp_path))
    assert r.returncode == 3 and "database unreachable" in r.stderr
    r = pyapp(db_url, "deploy", "--url", "http://127.0.0.1:9", "--backup-dir", str(tmp_path))
    assert r.returncode == 3 and "server unreachable" in r.stderr
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- smoke, against the HTTP server

def business_figures(owner_url: str, base: str) -> dict:
    with psycopg.connect(owner_url, autocommit=True) as c:
        figures = {
            "report": c.execute("SELECT api.checkout_report('1 hour') -> 'ordersByStatus'").fetchone()[0],
            "alerts": dict(c.execute("SELECT rule, value FROM api.evaluate_alerts()").fetchall()),
            "snapshot": c.execute("SELECT api.ops_snapshot() - 'holdMinutes'").fetchone()[0],
            "hour": c.execute("SELECT api.dashboard_stats() -> 'ordersLastHour'").fetchone()[0],
            "stock": dict(c.execute('SELECT id, stock FROM "Product"').fetchall()),
        }
    figures["listing"] = requests.get(base + "/api/marketplace/products?limit=200").json()
    return figures


def metric(base: str, outcome: str) -> float:
    for line in requests.get(base + "/metrics").text.splitlines():
        if line.startswith(f'mk_checkout_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_smoke_passes_and_leaves_everything_as_it_was(http_app, http_db):  # noqa: F811
    owner = http_db[0]
    with psycopg.connect(owner, autocommit=True) as c:  # a real product and order, so the figures are not empty
        seller, buyer = make_users(c, 1, role="SELLER")[0], make_users(c, 1)[0]
        pid = make_products(c, seller, [5])[0]
        c.execute("SELECT api.add_to_cart(%s, %s, 1)", (buyer, pid))
        c.execute("""SELECT api.checkout(%s, '{"city": "Lima"}')""", (buyer,))
    r = pyapp(owner, "smoke", "--url", http_app.url)  # makes the fixture
    assert r.returncode == 0, r.stdout + r.stderr
    before = business_figures(owner, http_app.url)
    success_before = metric(http_app.url, "success")

    r = pyapp(owner, "smoke", "--url", http_app.url)  # reuses it
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout and "reused" in r.stdout
    for check in ("product unlisted", "checkout", "order marked smoke", "stock taken", "ledger CHECKOUT",
                  "cancel", "stock returned", "ledger CANCEL", "left as it was"):
        assert f"ok      {check}:" in r.stdout, (check, r.stdout)

    after = business_figures(owner, http_app.url)
    assert after == before  # stock, report, alerts, /metrics and dashboard figures, listing
    with psycopg.connect(owner, autocommit=True) as c:
        user, product = c.execute("SELECT user_id, product_id FROM internal.smoke_account").fetchone()
        assert c.execute("""SELECT count(*) FROM "Order" WHERE "userId" = %s AND status <> 'CANCELLED'""",
                         (user,)).fetchone()[0] == 0
        assert c.execute("""SELECT count(*) FROM "ApiToken" WHERE "userId" = %s AND "revokedAt" IS NULL""",
                         (user,)).fetchone()[0] == 0
        assert_invariants(c)
    assert product not in {p["id"] for p in after["listing"]["items"]}
    assert requests.get(f"{http_app.url}/api/marketplace/products/{product}").status_code == 200
    assert metric(http_app.url, "smoke") == 2.0
    assert metric(http_app.url, "success") == success_before


def test_smoke_refuses_in_maintenance_and_reports_unreachable(http_app, http_db):  # noqa: F811
    owner = http_db[0]
    assert pyapp(owner, "maintenance", "on").returncode == 0
    try:
        r = pyapp(owner, "smoke", "--url", http_app.url)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "maintenance mode is on" in r.stdout and "cannot check out" in r.stdout
    finally:
        assert pyapp(owner, "maintenance", "off").returncode == 0
    r = pyapp(owner, "smoke", "--url", "http://127.0.0.1:9")
    assert r.returncode == 3 and "server unreachable" in r.stderr
    assert pyapp(owner, "smoke", "--help").returncode == 0
    assert pyapp(owner, "smoke").returncode == 2  # --url is required


def test_deploy_with_url_checks_health_and_smokes(http_app, http_db, sink, tmp_path):  # noqa: F811
    r = pyapp(http_db[0], "deploy", "--url", http_app.url, "--maintenance", "--backup-dir", str(tmp_path),
              NOTIFY_WEBHOOK_URL=sink.url)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "GET /health: HTTP 200, migrations ok" in r.stdout and "smoke passed" in r.stdout
    assert not maintenance_on(http_db[0])
    assert "health and smoke passed" in sink.texts[-1]
