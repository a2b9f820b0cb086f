import psycopg
import pytest

from tests.pg import APP_ROLE, Server


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
