import psycopg
import pytest


def test_app_role_cannot_touch_tables(conn, app_url):
    with psycopg.connect(app_url, autocommit=True) as app:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute('SELECT * FROM "Product"')
        assert app.execute("SELECT count(*) FROM app.error_codes()").fetchone()[0] >= 3
