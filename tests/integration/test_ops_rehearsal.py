"""A rehearsal of the deployment checklist on a throwaway database, with the project's commands.

Order chosen: `maintenance on` needs the api schema (migration 0003), which the OLD database does
not have, so the rehearsal is: back up the old database -> `migrate` (adding `version` is a
catalogue-only change and 0003's CHECK is validated without blocking writes, so the ORM app could
keep running meanwhile) -> `maintenance on` -> writes answer 503 over HTTP while reads work ->
`migrate` again (the checklist's migrate step, now a no-op that must still succeed) -> `status`
-> `verify` (every product still at version 1: nothing was written yet) -> `maintenance off` -> a
checkout over HTTP (its product's version now above 1) -> `alerts` quiet -> `rollback
add_version_to_product` (refused while orders are PENDING_PAYMENT, then --force) -> the backup
restored with pg_restore into a fresh database, migrated there, and verified.
Every step is judged by its exit code and by the database.
"""
from __future__ import annotations

import subprocess
import uuid

import psycopg
import requests
from psycopg.types.json import Jsonb

from pyapp.db import migrate
from pyapp.db.localpg import bindir
from tests.integration.test_cli import pyapp
from tests.integration.test_http_api import make_user
from tests.sql.test_migrations import apply_only, has_column, mig_id
from tests.support.http_server import HttpServer
from tests.support.pg import APP_ROLE


def old_state(url: str) -> None:
    """The ORM's schema (0001 only) with users, products and a few orders written in plain SQL."""
    first = mig_id("initial_marketplace_schema")
    assert apply_only(url, {first}) == [first]
    with psycopg.connect(url, autocommit=True) as c:
        assert not has_column(c, "Product", "version")
        c.execute("""INSERT INTO "User" (id, email, name, role, "passwordHash") VALUES
                     ('s1', 'seller@old.example', 'Old Seller', 'SELLER', 'x'),
                     ('b1', 'buyer1@old.example', 'Old Buyer 1', 'BUYER', 'x'),
                     ('b2', 'buyer2@old.example', 'Old Buyer 2', 'BUYER', 'x')""")
        c.execute("""INSERT INTO "Product" (id, name, price, stock, "sellerId") VALUES
                     ('p1', 'Clay jug', 30.00, 4, 's1'), ('p2', 'Wool rug', 120.00, 1, 's1'),
                     ('p3', 'Tin lantern', 15.50, 0, 's1')""")
        c.execute("""INSERT INTO "Order" (id, "userId", status, total, "shippingAddress") VALUES
                     ('o1', 'b1', 'PAID', 60.00, '{"city": "Quito"}'),
                     ('o2', 'b2', 'PENDING_PAYMENT', 15.50, '{"city": "Lima"}'),
                     ('o3', 'b1', 'DELIVERED', 120.00, '{"city": "Quito"}')""")
        c.execute("""INSERT INTO "OrderItem" ("orderId", "productId", quantity, "unitPrice") VALUES
                     ('o1', 'p1', 2, 30.00), ('o2', 'p3', 1, 15.50), ('o3', 'p2', 1, 120.00)""")


def versions(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as c:
        return dict(c.execute('SELECT id, "version" FROM "Product"').fetchall())


def test_deployment_rehearsal(server, tmp_path):
    name = server.prefix + "rehearsal_" + uuid.uuid4().hex[:8]
    url = server.create_database(name, template="template0")
    restored_name = server.prefix + "restored_" + uuid.uuid4().hex[:8]
    srv = None
    try:
        old_state(url)

        # 1. back up the old database
        r = pyapp(url, "backup", "--dir", str(tmp_path))
        assert r.returncode == 0, r.stderr
        dumps = list(tmp_path.glob("marketplace-*.dump"))
        assert len(dumps) == 1 and dumps[0].stat().st_size > 0

        # 2. migrate (maintenance mode only exists from here on)
        assert pyapp(url, "status").returncode == 1
        r = pyapp(url, "migrate")
        assert r.returncode == 0, r.stderr
        assert migrate.pending(url) == []
        assert versions(url) == {"p1": 1, "p2": 1, "p3": 1}

        # 3. maintenance on: writes 503 over HTTP, reads fine
        _, seller = make_user((url, None), "SELLER")
        buyer_id, buyer = make_user((url, None))
        assert pyapp(url, "maintenance", "on").returncode == 0
        srv = HttpServer(server.url(name, user=APP_ROLE)).start()
        r = requests.post(srv.url + "/api/marketplace/cart/items", headers=buyer, json={"productId": "p1", "quantity": 1})
        assert r.status_code == 503 and "Retry-After" in r.headers
        r = requests.post(srv.url + "/api/marketplace/products", headers=seller, json={"name": "X", "price": 1, "stock": 1})
        assert r.status_code == 503
        r = requests.get(srv.url + "/api/marketplace/products/p1")
        assert r.status_code == 200 and r.json()["stock"] == 4 and r.headers["ETag"] == '"1"'
        assert requests.get(srv.url + "/health").json()["maintenance"] is True

        # 4. the checklist's migrate, status and verify, still in maintenance
        assert pyapp(url, "migrate").returncode == 0
        assert pyapp(url, "status").returncode == 0
        r = pyapp(url, "verify")
        assert r.returncode == 0, r.stdout
        with psycopg.connect(url, autocommit=True) as c:
            assert c.execute('SELECT COUNT(*), COUNT(CASE WHEN version = 1 THEN 1 END) FROM "Product"').fetchone() == (3, 3)
            assert c.execute('SELECT count(*) FROM "CartItem"').fetchone()[0] == 0  # the 503 wrote nothing

        # 5. maintenance off: a checkout over HTTP succeeds and raises the product's version
        assert pyapp(url, "maintenance", "off").returncode == 0
        r = requests.post(srv.url + "/api/marketplace/cart/items", headers=buyer, json={"productId": "p1", "quantity": 1})
        assert r.status_code == 201, r.text
        r = requests.post(srv.url + "/api/marketplace/checkout", headers=buyer, json={"shippingAddress": {"city": "Cusco"}})
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "PENDING_PAYMENT"
        v = versions(url)
        assert v["p1"] > 1 and v["p2"] == 1 and v["p3"] == 1
        with psycopg.connect(url, autocommit=True) as c:
            assert c.execute("""SELECT stock FROM "Product" WHERE id = 'p1'""").fetchone()[0] == 3
        srv.stop()
        srv = None

        # 6. alerts quiet
        r = pyapp(url, "alerts")
        assert r.returncode == 0, r.stdout

        # 7. rollback add_version_to_product: refused while orders are PENDING_PAYMENT, then forced
        r = pyapp(url, "rollback", "add_version_to_product")
        assert r.returncode == 1 and "PENDING_PAYMENT" in r.stderr
        with psycopg.connect(url, autocommit=True) as c:
            assert has_column(c, "Product", "version")
        r = pyapp(url, "rollback", "add_version_to_product", "--force")
        assert r.returncode == 0, r.stderr
        with psycopg.connect(url, autocommit=True) as c:
            assert not has_column(c, "Product", "version")
            assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname IN ('api', 'internal')").fetchone()[0] == 0
            assert c.execute('SELECT count(*) FROM "Order"').fetchone()[0] == 4  # data kept
        assert migrate.applied(url) == [mig_id("initial_marketplace_schema")]
        assert pyapp(url, "status").returncode == 1

        # 8. restore the backup into a fresh database, migrate it, verify it
        restored = server.create_database(restored_name, template="template0")
        r = subprocess.run([str(bindir() / "pg_restore"), "--exit-on-error", "--dbname", restored, str(dumps[0])],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        with psycopg.connect(restored, autocommit=True) as c:
            assert not has_column(c, "Product", "version")
            assert c.execute('SELECT count(*) FROM "Order"').fetchone()[0] == 3
        assert pyapp(restored, "migrate").returncode == 0
        r = pyapp(restored, "verify")
        assert r.returncode == 0, r.stdout
        assert versions(restored) == {"p1": 1, "p2": 1, "p3": 1}
        with psycopg.connect(restored, autocommit=True) as c:
            assert dict(c.execute('SELECT id, stock FROM "Product"').fetchall()) == {"p1": 4, "p2": 1, "p3": 0}
            c.execute("SELECT api.add_to_cart('b2', 'p2', 1)")
            order = c.execute("SELECT api.checkout('b2', %s)", (Jsonb({"city": "Lima"}),)).fetchone()[0]
            assert order["status"] == "PENDING_PAYMENT"
        assert pyapp(restored, "verify").returncode == 0
    finally:
        if srv is not None:
            srv.stop()
        server.drop_database(restored_name)
        server.drop_database(name)
