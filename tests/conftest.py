"""Fixtures shared by every test folder (pytest finds them here; no test imports them): a
throwaway PostgreSQL server for the session (tests/support/pg.py), a fresh migrated database per
test (dbname, db_url, app_url, conn) or per module (http_db), and the HTTP app under its server on
it (http_app). Tests in tests/unit/ use none of them and start no PostgreSQL."""
import psycopg
import pytest

from tests.support.http_server import HttpServer, seed_webhook_secret
from tests.support.pg import APP_ROLE, Server


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def dbname(server):
    """A fresh, fully migrated database for one test."""
    name = server.fresh_database()
    yield name
    server.drop_database(name)


@pytest.fixture
def db_url(server, dbname):
    """Owner (superuser) URL of the fresh database: for setup and for checking invariants."""
    return server.url(dbname)


@pytest.fixture
def app_url(server, dbname):
    """URL of the fresh database as the HTTP app's role, which may only EXECUTE api functions."""
    return server.url(dbname, user=APP_ROLE)


@pytest.fixture
def core_url(db_url):
    """URL for racing the core api functions (api.checkout(user_id, ...) and friends) on real
    concurrent connections. They take user ids, so since migration 0011 only the owner and DBAs may
    call them; the app's role reaches them through schema app, which the HTTP tests race."""
    return db_url


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def http_db(server):
    """(superuser URL, app-role URL) of a fresh database for one test module."""
    name = server.fresh_database()
    yield server.url(name), server.url(name, user=APP_ROLE)
    server.drop_database(name)


@pytest.fixture(scope="module")
def http_app(http_db):
    """The app on http_db; with MK_VIA_PGBOUNCER=1 its DATABASE_URL goes through PgBouncer in
    transaction pooling mode (tests/support/pgbouncer.py), e.g.
    `MK_VIA_PGBOUNCER=1 .venv/bin/python -m pytest tests/integration/test_http_api.py`."""
    from tests.support import pgbouncer

    seed_webhook_secret(http_db[0])
    if not pgbouncer.enabled():
        srv = HttpServer(http_db[1]).start()
        try:
            yield srv
        finally:
            srv.stop()
        return
    with pgbouncer.via_pgbouncer(*http_db) as (bouncer, url, env):
        srv = HttpServer(url, **env).start()
        srv.pgbouncer = bouncer
        try:
            yield srv
        finally:
            srv.stop()
