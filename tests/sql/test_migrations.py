"""Migrations: each test builds its own database from template0 (not from the migrated template)
and drops it afterwards."""
from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pyapp import auth
from pyapp.db import migrate
from tests.support.invariants import assert_invariants, make_products, make_users
from tests.support.pg import APP_ROLE
from tests.support.sqlmig_tool import sqlmig

ROOT = Path(__file__).resolve().parent.parent.parent

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
    """Applies just the pending migrations whose id is in `ids` (yoyo, bypassing pyapp.db.migrate)."""
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
                              AND c.relname NOT LIKE '\\_yoyo%' AND c.relname NOT LIKE 'yoyo%%'""").fetchall()
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


# ---- the catalogue: what a database built from migrations/ and one built from sql/ must share ----
# Each query gives (kind, name, detail) rows over schemas api, app, internal and public (yoyo's own
# tables left out). ACLs are compared with the default filled in: a REVOKE of what was never
# granted stores the default explicitly, which means the same.
SCHEMAS = "('api', 'app', 'internal', 'public')"
NOT_YOYO = "c.relname NOT LIKE '\\_yoyo%' AND c.relname <> 'yoyo_lock'"
CATALOGUE = {
    "schema": f"""
        SELECT n.nspname, concat_ws(' | ', 'owner ' || pg_get_userbyid(n.nspowner),
               'acl ' || coalesce(n.nspacl, acldefault('n', n.nspowner))::text,
               'comment ' || obj_description(n.oid, 'pg_namespace'))
        FROM pg_namespace n WHERE n.nspname IN {SCHEMAS}""",
    "extension": """
        SELECT e.extname, e.extnamespace::regnamespace::text || ' ' || e.extversion FROM pg_extension e""",
    "relation": f"""
        SELECT c.oid::regclass::text, concat_ws(' | ', 'kind ' || c.relkind::text, 'owner ' || pg_get_userbyid(c.relowner),
               'persistence ' || c.relpersistence::text, 'rls ' || c.relrowsecurity || '/' || c.relforcerowsecurity,
               'options ' || c.reloptions::text,
               'acl ' || coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char",
                                                        c.relowner))::text,
               'comment ' || obj_description(c.oid, 'pg_class'))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN {SCHEMAS} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND {NOT_YOYO}""",
    "column": f"""
        SELECT c.oid::regclass::text || '.' || quote_ident(a.attname), concat_ws(' | ',
               '#' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
               format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN 'not null' END,
               'default ' || pg_get_expr(d.adbin, d.adrelid), nullif('identity ' || a.attidentity::text, 'identity '),
               nullif('generated ' || a.attgenerated::text, 'generated '),
               'collation ' || nullif(a.attcollation, 0)::regcollation::text,
               'acl ' || a.attacl::text, 'comment ' || col_description(c.oid, a.attnum))
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname IN {SCHEMAS} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND {NOT_YOYO}
          AND a.attnum > 0 AND NOT a.attisdropped""",
    "constraint": f"""
        SELECT c.oid::regclass::text || ' ' || quote_ident(k.conname),
               pg_get_constraintdef(k.oid) || CASE WHEN k.convalidated THEN '' ELSE ' (not validated)' END
               || coalesce(' | comment ' || obj_description(k.oid, 'pg_constraint'), '')
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN {SCHEMAS} AND {NOT_YOYO}""",
    "index": f"""
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
               || CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END
               || coalesce(' | comment ' || obj_description(i.indexrelid, 'pg_class'), '')
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN {SCHEMAS} AND {NOT_YOYO}""",
    "sequence": f"""
        SELECT s.seqrelid::regclass::text, concat_ws(' | ', format_type(s.seqtypid, NULL),
               'start ' || s.seqstart, 'increment ' || s.seqincrement, 'min ' || s.seqmin, 'max ' || s.seqmax,
               'cache ' || s.seqcache, 'cycle ' || s.seqcycle,
               'owned by ' || (SELECT d.refobjid::regclass::text || '.' || d.refobjsubid FROM pg_depend d
                               WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                                 AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN {SCHEMAS} AND {NOT_YOYO}""",
    "type": f"""
        SELECT t.oid::regtype::text, concat_ws(' | ', 'kind ' || t.typtype::text,
               'labels ' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e
                             WHERE e.enumtypid = t.oid),
               'base ' || nullif(t.typbasetype, 0)::regtype::text,
               'checks ' || (SELECT string_agg(pg_get_constraintdef(k.oid), ', ' ORDER BY k.conname)
                             FROM pg_constraint k WHERE k.contypid = t.oid),
               'acl ' || t.typacl::text, 'comment ' || obj_description(t.oid, 'pg_type'))
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname IN {SCHEMAS} AND t.typtype IN ('e', 'd', 'r', 'm')
           OR n.nspname IN {SCHEMAS} AND t.typtype = 'c'
              AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'""",
    "function": f"""
        SELECT p.oid::regprocedure::text, concat_ws(E'\\n', 'owner ' || pg_get_userbyid(p.proowner),
               'acl ' || coalesce(p.proacl, acldefault('f', p.proowner))::text,
               'comment ' || obj_description(p.oid, 'pg_proc'), pg_get_functiondef(p.oid))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN {SCHEMAS} AND NOT EXISTS (
            SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')""",
    "trigger": """
        SELECT t.tgrelid::regclass::text || ' ' || quote_ident(t.tgname),
               pg_get_triggerdef(t.oid) || ' | enabled ' || t.tgenabled::text
               || coalesce(' | comment ' || obj_description(t.oid, 'pg_trigger'), '')
        FROM pg_trigger t WHERE NOT t.tgisinternal""",
    "policy": f"""
        SELECT c.oid::regclass::text || ' ' || quote_ident(p.polname),
               concat_ws(' | ', p.polcmd::text, p.polpermissive, p.polroles::regrole[]::text,
                         pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN {SCHEMAS}""",
    "rule": f"""
        SELECT r.schemaname || '.' || r.tablename || ' ' || r.rulename, r.definition
        FROM pg_rules r WHERE r.schemaname IN {SCHEMAS}""",
    "default acl": """
        SELECT pg_get_userbyid(d.defaclrole) || ' ' || coalesce(d.defaclnamespace::regnamespace::text, '*')
               || ' ' || d.defaclobjtype::text, d.defaclacl::text FROM pg_default_acl d""",
    "role": """
        SELECT r.rolname, concat_ws(' | ', 'login ' || r.rolcanlogin, 'super ' || r.rolsuper,
               'inherit ' || r.rolinherit, 'createrole ' || r.rolcreaterole, 'createdb ' || r.rolcreatedb,
               'bypassrls ' || r.rolbypassrls, 'member of ' || (SELECT string_agg(m.roleid::regrole::text, ',')
                                                               FROM pg_auth_members m WHERE m.member = r.oid))
        FROM pg_roles r WHERE r.rolname = 'marketplace_app'""",
    # The rows a new database starts with (not the catalogue, but what the schema promises).
    "seed row": """
        SELECT 'internal.settings', to_jsonb(s)::text FROM internal.settings s
        UNION ALL SELECT 'internal.login_secret', count(*) || ' row(s), pepper of ' || min(length(pepper)) || ' bytes'
        FROM internal.login_secret""",
}


def catalogue(url: str) -> list[str]:
    """The database's catalogue as lines `kind name: detail`, sorted by kind and name, one line per
    line of detail (a function's definition keeps its own order)."""
    rows = []
    with psycopg.connect(url, autocommit=True) as c:
        for kind, query in CATALOGUE.items():
            rows += [(kind, name, detail or "") for name, detail in c.execute(query)]
    return [f"{kind} {name}: {line}" for kind, name, detail in sorted(rows)
            for line in detail.splitlines() or [""]]


def catalogue_diff(expected: list[str], got: list[str], labels: tuple[str, str]) -> str:
    """A readable unified diff of two catalogues ('' when they are the same)."""
    return "\n".join(difflib.unified_diff(expected, got, *labels, lineterm="", n=2))


def load_sql(url: str, root: Path = ROOT) -> None:
    sqlmig.load(url, root)


@pytest.fixture
def empty_db2(server):
    """A second new, empty database."""
    name = server.prefix + "sql_" + uuid.uuid4().hex[:10]
    url = server.create_database(name, template="template0")
    yield name, url
    server.drop_database(name)


def test_catalogue_of_migrations_equals_catalogue_of_sql_dir(empty_db, empty_db2):
    """procrastinate's migration test, for the whole catalogue: every table, column, constraint,
    index, sequence, type, function, trigger, policy, comment and ACL of a database built by all
    of migrations/ equals that of one built from sql/ (sql/schema.sql, then the function files)."""
    _, migrated = empty_db
    _, loaded = empty_db2
    migrate.apply(migrated)
    load_sql(loaded)
    want, got = catalogue(migrated), catalogue(loaded)
    kinds = {line.split(" ", 1)[0] for line in want}
    assert {"schema", "relation", "column", "constraint", "index", "sequence", "function", "trigger"} <= kinds
    assert len([x for x in want if x.startswith("relation ")]) >= 20
    diff = catalogue_diff(want, got, ("all migrations", "sql/ loaded"))
    assert not diff, "sql/ and migrations/ build different databases:\n" + diff


def test_catalogue_diff_sees_a_difference(empty_db, empty_db2):
    """The comparison is not blind: one changed default, one extra grant and one changed function
    body each show up in the diff."""
    _, a = empty_db
    _, b = empty_db2
    load_sql(a)
    load_sql(b)
    with psycopg.connect(b, autocommit=True) as c:
        c.execute("""ALTER TABLE "Order" ALTER COLUMN status SET DEFAULT 'PAID'""")
        c.execute("GRANT SELECT ON internal.settings TO marketplace_app")
        c.execute("""CREATE OR REPLACE FUNCTION internal.uuid7() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE
                     AS $$ SELECT gen_random_uuid() $$""")
    diff = catalogue_diff(catalogue(a), catalogue(b), ("a", "b"))
    assert """+column "Order".status: #3 | text | not null | default 'PAID'::text""" in diff, diff
    assert "marketplace_app=r/" in diff, diff
    assert "+function internal.uuid7(): AS $function$ SELECT gen_random_uuid() $function$" in diff, diff


def test_sqlmig_sees_every_function_and_trigger(db_url):
    """tools/sqlmig.py's reading of sql/ names exactly the functions and triggers of the database
    (so a migration it writes can miss none), and every function has its COMMENT ON FUNCTION."""
    found = sqlmig.objects(sqlmig.current_files(ROOT))
    with psycopg.connect(db_url, autocommit=True) as c:
        functions = {r[0] for r in c.execute("""
            SELECT p.oid::regprocedure::text FROM pg_proc p
            WHERE p.pronamespace IN ('api'::regnamespace, 'internal'::regnamespace, 'app'::regnamespace)""")}
        triggers = {f"{r[0]} ON {r[1]}" for r in c.execute(
            "SELECT t.tgname, t.tgrelid::regclass::text FROM pg_trigger t WHERE NOT t.tgisinternal")}
        sigs = {k: c.execute("SELECT to_regprocedure(%s)::text", (k,)).fetchone()[0]
                for k, o in found.items() if o.kind == "function"}
    assert None not in sigs.values(), [k for k, v in sigs.items() if v is None]
    assert set(sigs.values()) == functions
    assert {k for k, o in found.items() if o.kind == "trigger"} == triggers


def test_generated_migrations_are_as_sqlmig_wrote_them():
    """Every migration whose header says tools/sqlmig.py generated it is exactly what the tool
    generates from sql/ at its base and at the last commit that changed it: nobody edited it or its
    rollback by hand (0020 onwards; 0001-0019 predate the header and stay as they are)."""
    generated = [i for i in sqlmig.migration_ids(ROOT)
                 if sqlmig.HEADER.match((ROOT / "migrations" / f"{i}.sql").read_text())]
    assert generated, "no migration written by tools/sqlmig.py"
    assert sqlmig.verify(ROOT) == []


def test_expected_migrations_lists_migrations_dir():
    """internal.expected_migrations() is derived from migrations/ (tools/sqlmig.py rewrites it):
    the file and the folder agree, and `--check` says so."""
    assert sqlmig.expected_in_file(ROOT) == sqlmig.migration_ids(ROOT)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "sqlmig.py"), "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


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


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=root,
                   check=True, capture_output=True, timeout=60)


def _remove_object(path: Path, key: str) -> None:
    """Deletes one function (with its COMMENT, REVOKE and GRANT) from a file of sql/."""
    text = path.read_text()
    for part in sqlmig.objects({path.name: text})[key].parts:
        text = text.replace(part, "", 1)
    path.write_text(text)


def _yoyo(url: str, folder: Path, action: str, only: str | None = None) -> list[str]:
    from yoyo import get_backend, read_migrations
    b = get_backend(migrate.yoyo_url(url))
    try:
        with b.lock():
            migs = read_migrations(str(folder))
            todo = b.to_apply(migs) if action == "apply" else b.to_rollback(migs)
            if only is not None:
                todo = todo.filter(lambda m: m.id == only)
            (b.apply_migrations if action == "apply" else b.rollback_migrations)(todo)
            return [m.id for m in todo]
    finally:
        b.connection.close()


def test_sqlmig_writes_only_what_changed_and_its_rollback(tmp_path, server):
    """tools/sqlmig.py on a copy of the repository with four kinds of change to sql/ (a changed
    comment, a renamed parameter, a new function, a removed function): the migration restates just
    those objects plus internal.expected_migrations, drops the removed one, and carries its reason;
    on a database it yields the catalogue of sql/ loaded, and its rollback the catalogue before."""
    repo = tmp_path / "repo"
    for folder in ("sql", "migrations", "tools"):
        shutil.copytree(ROOT / folder, repo / folder)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    previous = sqlmig.migration_ids(repo)[-1]

    limits = repo / "sql" / "api" / "limits.sql"
    text = limits.read_text()
    assert "'Unpaid orders per buyer" in text and text.count("p_limits") > 2
    limits.write_text(text.replace("'Unpaid orders per buyer", "'Unpaid orders per buyer (changed)")
                      .replace("p_limits", "p_new_limits"))
    health = repo / "sql" / "api" / "health.sql"
    health.write_text(health.read_text() + """
-- api.sqlmig_probe: a function that only the new sql/ defines.
-- Raises: nothing. Callers: tests/test_migrations.py.
CREATE OR REPLACE FUNCTION api.sqlmig_probe()
RETURNS integer
LANGUAGE sql IMMUTABLE
AS $$ SELECT 7 $$;
COMMENT ON FUNCTION api.sqlmig_probe() IS 'Seven.';
REVOKE ALL ON FUNCTION api.sqlmig_probe() FROM PUBLIC;
""")
    _remove_object(repo / "sql" / "api" / "webhook.sql", "api.webhook_secrets()")
    schema = repo / "sql" / "schema.sql"
    text = schema.read_text()
    assert "'One row of switches;" in text
    schema.write_text(text.replace("'One row of switches;", "'One row of switches (changed);"))

    r = subprocess.run([sys.executable, str(ROOT / "tools" / "sqlmig.py"), "probe_change", "--root", str(repo),
                        "--reason", "Exercises the tool: one of each kind of change."],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    new_id = f"{int(previous[:4]) + 1:04d}_probe_change"
    up = (repo / "migrations" / f"{new_id}.sql").read_text()
    down = (repo / "migrations" / f"{new_id}.rollback.sql").read_text()
    assert up.startswith("-- Exercises the tool: one of each kind of change.\n-- Generated by tools/sqlmig.py")
    assert f"-- depends: {previous}\n" in up
    assert "Do not edit" in down.splitlines()[1]
    restated = re.findall(r"^-- ==== (\w+ \S+)", up, re.M)
    assert sorted(restated) == sorted(["function internal.expected_migrations()", "function api.limits()",
                                       "function api.set_limits(jsonb)", "function api.sqlmig_probe()",
                                       "comment COMMENT"])
    assert "DROP FUNCTION IF EXISTS api.webhook_secrets();" in up
    assert "DROP FUNCTION api.set_limits(jsonb);" in up        # a renamed parameter: drop, then create
    assert f"'{new_id}'" in up and sqlmig.expected_in_file(repo) == sqlmig.migration_ids(repo)
    assert "DROP FUNCTION IF EXISTS api.sqlmig_probe();" in down
    assert sorted(re.findall(r"^-- ==== (\w+ \S+)", down, re.M)) == sorted([
        "function internal.expected_migrations()", "function api.limits()", "function api.set_limits(jsonb)",
        "function api.webhook_secrets()", "comment COMMENT"])
    assert len(up) < 20000, "the migration restates more than what changed"
    assert sqlmig.verify(repo, {new_id}) == []                    # before it is committed: against sql/ now
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "probe_change")
    assert sqlmig.verify(repo, {new_id}) == []
    rollback_path = repo / "migrations" / f"{new_id}.rollback.sql"
    rollback_path.write_text(down.replace("DROP FUNCTION IF EXISTS api.sqlmig_probe();\n", ""))
    assert sqlmig.verify(repo, {new_id}) == [
        f"migrations/{new_id}.rollback.sql: differs from what tools/sqlmig.py generates for it"]
    rollback_path.write_text(down)

    migrated = server.create_database(server.prefix + "tool_" + uuid.uuid4().hex[:8], template="template0")
    loaded = server.create_database(server.prefix + "tool_" + uuid.uuid4().hex[:8], template="template0")
    _yoyo(migrated, repo / "migrations", "apply")
    sqlmig.load(loaded, repo)
    assert_same = catalogue_diff(catalogue(migrated), catalogue(loaded), ("migrations", "sql/ loaded"))
    assert not assert_same, assert_same
    with psycopg.connect(migrated, autocommit=True) as c:
        assert c.execute("SELECT api.sqlmig_probe()").fetchone()[0] == 7
        assert new_id in c.execute("SELECT internal.expected_migrations()").fetchone()[0]
        assert all(ok for _, ok, _ in c.execute("SELECT * FROM api.integrity_report()"))

    assert _yoyo(migrated, repo / "migrations", "rollback", only=new_id) == [new_id]
    base = server.create_database(server.prefix + "tool_" + uuid.uuid4().hex[:8], template="template0")
    sqlmig.load(base, ROOT)
    rolled_back = catalogue_diff(catalogue(base), catalogue(migrated), ("sql/ before", "rolled back"))
    assert not rolled_back, rolled_back
    assert _yoyo(migrated, repo / "migrations", "apply") == [new_id]
    with psycopg.connect(migrated, autocommit=True) as c:
        assert c.execute("SELECT to_regprocedure('api.webhook_secrets()')").fetchone()[0] is None

    # An expected_migrations list that lags behind migrations/ fails --check.
    (repo / "migrations" / "9999_later.sql").write_text("-- later\n-- depends: " + new_id + "\nSELECT 1;\n")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "sqlmig.py"), "--check", "--root", str(repo)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "9999_later" in r.stderr
