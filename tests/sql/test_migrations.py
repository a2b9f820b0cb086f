"""Migrations: each test builds its own database from template0 (not from the migrated template)
and drops it afterwards."""
from __future__ import annotations

import re
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pyapp import auth, migrate
from tests.support.invariants import assert_invariants, make_products, make_users
from tests.support.pg import APP_ROLE

ROOT = Path(__file__).resolve().parent.parent.parent
SQL_FILES = [f for d in ("internal", "api", "app") for f in sorted((ROOT / "sql" / d).glob("*.sql"))]

# The deployment checklist of CONTRACT.md, verbatim.
CHECKLIST = [
    '''SELECT COUNT(*) AS total, COUNT(CASE WHEN version = 1 THEN 1 END) AS with_version_1 FROM "Product";''',
    '''SELECT id, name, stock FROM "Product" WHERE stock < 0;''',
    '''SELECT id, name, version, stock FROM "Product" WHERE "updatedAt" > NOW() - INTERVAL '1 hour' ORDER BY version DESC LIMIT 10;''',  # noqa: E501 (verbatim)
    '''SELECT status, COUNT(*) FROM "Order" WHERE "createdAt" > NOW() - INTERVAL '1 hour' GROUP BY status;''',
    '''SELECT COUNT(*) FROM "Order" WHERE status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED') AND "createdAt" < NOW() - INTERVAL '30 minutes';''',  # noqa: E501 (verbatim)
    '''SELECT MIN(version), MAX(version), AVG(version) FROM "Product";''',
]
USES_VERSION = {0, 2, 5}
ADDRESS = Jsonb({"line1": "2 Loom Street", "city": "Cusco"})


@pytest.fixture
def empty_db(server):
    """(name, url) of a new, empty database (no migrations applied)."""
    name = server.prefix + "mig_" + uuid.uuid4().hex[:10]
    url = server.create_database(name, template="template0")
    yield name, url
    server.drop_database(name)


def apply_only(url: str, ids: set[str]) -> list[str]:
    """Applies just the pending migrations whose id is in `ids` (yoyo, bypassing pyapp.migrate)."""
    with migrate.backend(url) as b, b.lock():
        todo = b.to_apply(migrate.migrations()).filter(lambda m: m.id in ids)
        b.apply_migrations(todo)
    return [m.id for m in todo]


def all_ids() -> list[str]:
    return [m.id for m in migrate.migrations()]


def mig_id(suffix: str) -> str:
    return next(i for i in all_ids() if i.endswith("_" + suffix))


def filenode(c) -> int:
    return c.execute("""SELECT pg_relation_filenode('"Product"')""").fetchone()[0]


def has_column(c, table: str, column: str) -> bool:
    return c.execute("""SELECT EXISTS (SELECT 1 FROM information_schema.columns
                        WHERE table_schema = 'public' AND table_name = %s AND column_name = %s)""",
                     (table, column)).fetchone()[0]


def token_of(c, user_id: str) -> str:
    """The SHA-256 of a fresh bearer token of the user, issued by the owner: what the app passes."""
    digest = auth.token_hash(auth.new_token())
    c.execute("SELECT api.issue_token(%s, %s)", (user_id, digest))
    return digest


def buy(c, app_url: str, stock: int = 3) -> dict:
    """A seller, a product and a buyer who checks out one unit through the app's role."""
    seller = make_users(c, 1, role="SELLER", prefix="s")[0]
    buyer = token_of(c, make_users(c, 1, prefix="b")[0])
    product = make_products(c, seller, [stock])[0]
    with psycopg.connect(app_url, autocommit=True) as app:
        app.execute("SELECT app.add_to_cart(%s, %s, 1)", (buyer, product))
        return app.execute("SELECT app.checkout(%s, %s)", (buyer, ADDRESS)).fetchone()[0]


def test_apply_rollback_apply(server, empty_db):
    name, url = empty_db
    assert migrate.applied(url) == []
    assert migrate.apply(url) == all_ids()
    assert migrate.pending(url) == []
    assert sorted(migrate.rollback(url)) == sorted(all_ids())
    assert migrate.applied(url) == []
    with psycopg.connect(url, autocommit=True) as c:
        left = c.execute("""SELECT n.nspname || '.' || c.relname FROM pg_class c
                            JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname IN ('public', 'api', 'internal', 'app') AND c.relkind IN ('r', 'v', 'm')
                              AND c.relname NOT LIKE '\\_yoyo%%' AND c.relname NOT LIKE 'yoyo%%'""").fetchall()
        assert left == [], f"rollback left tables behind: {left}"
        assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname IN ('api', 'internal', 'app')").fetchone()[0] == 0
    assert migrate.apply(url) == all_ids()

    with psycopg.connect(url, autocommit=True) as c:
        order = buy(c, server.url(name, user=APP_ROLE))
        assert order["status"] == "PENDING_PAYMENT" and len(order["items"]) == 1
        report = c.execute("SELECT check_name, ok, detail FROM api.integrity_report()").fetchall()
        assert report and all(ok for _, ok, _ in report), report
        assert_invariants(c)


def test_add_version_to_100k_products_without_rewrite(empty_db):
    name, url = empty_db
    first = mig_id("initial_marketplace_schema")
    assert apply_only(url, {first}) == [first]
    with psycopg.connect(url, autocommit=True) as c:
        assert not has_column(c, "Product", "version")
        seller = make_users(c, 1, role="SELLER", prefix="s")[0]
        c.execute("""INSERT INTO "Product" (name, price, stock, "sellerId")
                     SELECT 'Item ' || g, (g %% 500) + 0.99, g %% 7, %s
                     FROM generate_series(1, 100000) g""", (seller,))
        c.execute('ANALYZE "Product"')
        before = filenode(c)
        with_stock = c.execute('SELECT count(*) FROM "Product" WHERE stock <> 0').fetchone()[0]
        stock_sum = c.execute('SELECT sum(stock) FROM "Product"').fetchone()[0]

        # How long the ALTER holds its ACCESS EXCLUSIVE lock, measured on the same 100k rows in a
        # transaction that is rolled back (the lock is held from the ALTER to the end of the
        # transaction; the migration commits right after it). A rewriting ALTER, for contrast.
        timings = {}
        for label, ddl in [
            ("ADD COLUMN version INTEGER NOT NULL DEFAULT 1 (the migration)",
             'ALTER TABLE "Product" ADD COLUMN "version" INTEGER NOT NULL DEFAULT 1'),
            ("ADD COLUMN x INTEGER DEFAULT random() (rewrites, for contrast)",
             'ALTER TABLE "Product" ADD COLUMN x integer NOT NULL DEFAULT (random() * 10)::integer'),
        ]:
            with c.transaction(force_rollback=True):
                c.execute("SET LOCAL lock_timeout = '5s'")
                t0 = c.execute("SELECT clock_timestamp()").fetchone()[0]
                c.execute(ddl)
                t1, node = c.execute("SELECT clock_timestamp(), pg_relation_filenode('\"Product\"')").fetchone()
                held = c.execute("""SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()
                                    AND relation = '"Product"'::regclass AND mode = 'AccessExclusiveLock'""").fetchone()[0]
                assert held == 1
                timings[label] = ((t1 - t0).total_seconds() * 1000, node != before)
        assert filenode(c) == before

    applied = migrate.apply(url)
    assert applied == all_ids()[1:]
    with psycopg.connect(url, autocommit=True) as c:
        assert filenode(c) == before, "the migrations rewrote \"Product\""
        total, ones, lo, hi = c.execute(
            'SELECT count(*), count(*) FILTER (WHERE "version" = 1), min("version"), max("version") FROM "Product"'
        ).fetchone()
        assert (total, ones, lo, hi) == (100000, 100000, 1, 1)
        opening = c.execute("""SELECT count(*), count(DISTINCT "productId"), sum(delta) FROM "StockLedger"
                               WHERE reason = 'OPENING_BALANCE'""").fetchone()
        assert opening == (with_stock, with_stock, stock_sum)
        assert c.execute('SELECT count(*) FROM "StockLedger"').fetchone()[0] == with_stock
        assert_invariants(c)
        report = {r[0]: r[1] for r in c.execute("SELECT check_name, ok FROM api.integrity_report()")}
        assert all(report.values()), report

    print("\nALTER on 100,000 products          lock held until the ALTER returns   rewrote")
    for label, (ms, rewrote) in timings.items():
        print(f"  {label:<66}{ms:8.1f} ms   {rewrote}")


def test_rollback_add_version_to_product(server, empty_db):
    name, url = empty_db
    migrate.apply(url)
    with psycopg.connect(url, autocommit=True) as c:
        seller = make_users(c, 1, role="SELLER", prefix="s")[0]
        products = make_products(c, seller, [5, 0, 9])
        for pid in products[:2]:
            c.execute("""SELECT api.update_product(%s, 1, '{"price": 11.5}')""", (pid,))
        assert c.execute('SELECT max("version") FROM "Product"').fetchone()[0] == 2

    # Down to just after add_version_to_product, then give the column dependants of the kind a
    # DBA might have added; its rollback must take them along.
    rolled = migrate.rollback(url, "core_rules")
    assert mig_id("add_version_to_product") not in rolled
    with psycopg.connect(url, autocommit=True) as c:
        c.execute('CREATE INDEX product_version_idx ON "Product" ("version")')
        c.execute('CREATE VIEW product_versions AS SELECT id, "version" FROM "Product"')

    rolled = migrate.rollback(url, "add_version_to_product")
    assert rolled == [mig_id("add_version_to_product")]
    assert migrate.applied(url) == [mig_id("initial_marketplace_schema")]
    with psycopg.connect(url, autocommit=True) as c:
        assert not has_column(c, "Product", "version")
        assert c.execute("SELECT to_regclass('product_version_idx'), to_regclass('product_versions')").fetchone() == (None, None)
        for i, q in enumerate(CHECKLIST):
            if i in USES_VERSION:
                with pytest.raises(psycopg.errors.UndefinedColumn):
                    c.execute(q)
            else:
                c.execute(q).fetchall()
        assert c.execute(CHECKLIST[1]).fetchall() == []
        assert c.execute('SELECT count(*) FROM "Product"').fetchone()[0] == 3

    assert migrate.apply(url) == all_ids()[1:]
    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute(CHECKLIST[0]).fetchone() == (3, 3)
        assert c.execute(CHECKLIST[5]).fetchone()[:2] == (1, 1)
        assert assert_invariants(c) == dict(zip(products, [5, 0, 9]))
        order = buy(c, server.url(name, user=APP_ROLE))
        assert order["status"] == "PENDING_PAYMENT"
        assert all(ok for _, ok, _ in c.execute("SELECT * FROM api.integrity_report()"))


SNAPSHOT = """
    SELECT p.oid::regprocedure::text AS signature,
           pg_get_functiondef(p.oid) AS definition,
           obj_description(p.oid, 'pg_proc') AS comment,
           coalesce(p.proacl::text, '(default)') AS acl,
           pg_get_userbyid(p.proowner) AS owner
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname IN ('api', 'internal', 'app')
    ORDER BY 1"""
TRIGGERS = """
    SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid)
    FROM pg_trigger t WHERE NOT t.tgisinternal ORDER BY 1, 2"""


def snapshot(c):
    return {r[0]: r[1:] for r in c.execute(SNAPSHOT)}, c.execute(TRIGGERS).fetchall()


def test_sql_dir_agrees_with_migrations(empty_db):
    name, url = empty_db
    migrate.apply(url)
    with psycopg.connect(url, autocommit=True) as c:
        functions, triggers = snapshot(c)
        assert functions, "no functions in api, internal and app"
        for path in SQL_FILES:
            with c.transaction():
                c.execute(path.read_text())
        functions_again, triggers_again = snapshot(c)
        changed = sorted(sig for sig in functions if functions[sig] != functions_again.get(sig))
        assert not changed, f"sql/ differs from migrations for: {changed}"
        assert functions_again == functions
        assert triggers_again == triggers

        # Every function of the database is defined in sql/, and nothing in sql/ is missing from
        # the database. Each file names its functions' exact signatures in COMMENT ON FUNCTION.
        text = "\n".join(p.read_text() for p in SQL_FILES)
        created = set(re.findall(r"^CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+\.\w+)\s*\(", text, re.M | re.I))
        commented = re.findall(r"^COMMENT\s+ON\s+FUNCTION\s+(\w+\.\w+\(.*?\))\s+IS", text, re.M | re.I)
        in_db = {sig.split("(")[0] for sig in functions}
        assert created == in_db, (f"only in sql/: {sorted(created - in_db)}; "
                                  f"only in the database: {sorted(in_db - created)}")
        oids = [c.execute("SELECT to_regprocedure(%s)::text", (sig,)).fetchone()[0] for sig in commented]
        assert None not in oids, [s for s, o in zip(commented, oids) if o is None]
        assert sorted(oids) == sorted(functions), "a function lacks its COMMENT or is overloaded outside sql/"


def test_checklist_queries_run_verbatim(conn, app_url):
    seller = make_users(conn, 1, role="SELLER", prefix="s")[0]
    buyer = token_of(conn, make_users(conn, 1, prefix="b")[0])
    products = make_products(conn, seller, [4, 2, 0])
    conn.execute("""SELECT api.update_product(%s, 1, '{"stockDelta": 3}')""", (products[2],))
    with psycopg.connect(app_url, autocommit=True) as app:
        app.execute("SELECT app.add_to_cart(%s, %s, 2)", (buyer, products[0]))
        old = app.execute("SELECT app.checkout(%s, %s)", (buyer, ADDRESS)).fetchone()[0]
        app.execute("SELECT app.add_to_cart(%s, %s, 1)", (buyer, products[1]))
        new = app.execute("SELECT app.checkout(%s, %s)", (buyer, ADDRESS)).fetchone()[0]
    conn.execute("SELECT api.record_payment(%s, true, 'pay-1')", (new["id"],))
    conn.execute("""UPDATE "Order" SET "createdAt" = now() - interval '2 hours' WHERE id = %s""", (old["id"],))

    results = [conn.execute(q).fetchall() for q in CHECKLIST]
    assert results[0] == [(3, 0)]                                   # every product changed once
    assert results[1] == []
    assert {(r[0], r[2], r[3]) for r in results[2]} == {(products[0], 2, 2), (products[1], 2, 1),
                                                       (products[2], 2, 3)}
    assert results[3] == [("PAID", 1)]
    assert results[4] == [(1,)]
    lo, hi, avg = results[5][0]
    assert (lo, hi, float(avg)) == (2, 2, 2.0)
    assert_invariants(conn)
