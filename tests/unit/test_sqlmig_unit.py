"""tools/sqlmig.py's reading of SQL and its plan of a migration, in pure Python (no PostgreSQL):
statements split where PostgreSQL would split them, objects found with their COMMENT, REVOKE and
GRANT, a change of comments alone is no change, and a reshaped function is dropped first both ways.
tests/sql/test_migrations.py applies what the tool writes to real databases."""
from __future__ import annotations

import pytest

from tests.support.sqlmig_tool import sqlmig

ADD = """-- api.add: adds; the header of the function.
-- Raises: nothing. Callers: tests.
CREATE OR REPLACE FUNCTION api.add(p_a integer, p_b integer DEFAULT 1)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
BEGIN
    -- a ; inside a body, and 'a quoted ; too'
    RETURN p_a + p_b;
END
$fn$;
COMMENT ON FUNCTION api.add(integer, integer) IS 'Adds; nothing else.';
REVOKE ALL ON FUNCTION api.add(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.add(integer, integer) TO marketplace_app;
"""
TRIGGER = """
CREATE OR REPLACE TRIGGER t_add
    BEFORE UPDATE ON "Product"
    FOR EACH ROW EXECUTE FUNCTION internal.t();
"""


def test_statements_split_outside_quotes_and_bodies():
    stmts = sqlmig.statements(ADD + "SELECT ';', \"a;b\" /* ; */;\n-- trailing comment\n")
    assert len(stmts) == 5
    assert stmts[0].startswith("-- api.add") and stmts[0].endswith("$fn$;")
    assert stmts[4] == "SELECT ';', \"a;b\" /* ; */;"
    with pytest.raises(ValueError, match="without its closing"):
        sqlmig.statements("SELECT 1")


def test_objects_gather_a_function_with_its_comment_and_grants():
    found = sqlmig.objects({"sql/api/add.sql": ADD + TRIGGER})
    assert list(found) == ["api.add(integer, integer)", 't_add ON "Product"']
    fn = found["api.add(integer, integer)"]
    assert fn.kind == "function" and len(fn.parts) == 4 and fn.where == "sql/api/add.sql"
    assert fn.shape == "CREATE OR REPLACE FUNCTION api.add(p_a integer, p_b integer DEFAULT 1) RETURNS integer"
    assert found['t_add ON "Product"'].drop() == 'DROP TRIGGER IF EXISTS t_add ON "Product";'


@pytest.mark.parametrize("text, message", [
    (ADD.replace("COMMENT ON FUNCTION api.add(integer, integer) IS 'Adds; nothing else.';\n", ""), "has no COMMENT"),
    ("CREATE FUNCTION api.x() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n", "has no COMMENT"),
    ("CREATE TABLE t (id int);\n", "tables go in sql/schema.sql"),
])
def test_objects_refuse_what_the_tool_cannot_migrate(text, message):
    with pytest.raises(ValueError, match=message):
        sqlmig.objects({"sql/api/x.sql": text})


def test_comment_lines_alone_are_no_change():
    old = sqlmig.objects({"f.sql": ADD})
    new = sqlmig.objects({"f.sql": ADD.replace("-- Raises: nothing.", "-- Raises: nothing at all.")
                          .replace("RETURNS integer\n", "RETURNS integer  -- the sum\n")})
    up, down, counts = sqlmig.plan(old, new)
    assert (up, down) == ([], [])
    assert counts == {"added": 0, "changed": 0, "dropped": 0}


def test_a_changed_body_is_restated_and_rolled_back():
    old = sqlmig.objects({"f.sql": ADD})
    new = sqlmig.objects({"f.sql": ADD.replace("RETURN p_a + p_b;", "RETURN p_b + p_a;")})
    up, down, counts = sqlmig.plan(old, new)
    assert counts == {"added": 0, "changed": 1, "dropped": 0}
    assert len(up) == 1 and "RETURN p_b + p_a;" in up[0] and "GRANT EXECUTE" in up[0]
    assert len(down) == 1 and "RETURN p_a + p_b;" in down[0]


def test_a_reshaped_function_is_dropped_first_both_ways():
    old = sqlmig.objects({"f.sql": ADD})
    new = sqlmig.objects({"f.sql": ADD.replace("p_b integer DEFAULT 1", "p_c integer DEFAULT 1")
                          .replace("p_a + p_b", "p_a + p_c")})
    up, down, _ = sqlmig.plan(old, new)
    assert up[0] == "DROP FUNCTION api.add(integer, integer);" and "p_c integer" in up[1]
    assert down[0] == "DROP FUNCTION api.add(integer, integer);" and "p_b integer" in down[1]


def test_added_and_removed_objects():
    old = sqlmig.objects({"f.sql": ADD + TRIGGER})
    new = sqlmig.objects({"f.sql": ADD.replace("api.add", "api.plus")})
    up, down, counts = sqlmig.plan(old, new)
    assert counts == {"added": 1, "changed": 0, "dropped": 2}
    assert up[:2] == ['DROP TRIGGER IF EXISTS t_add ON "Product";', "DROP FUNCTION IF EXISTS api.add(integer, integer);"]
    assert "api.plus" in up[2]
    assert down[0] == "DROP FUNCTION IF EXISTS api.plus(integer, integer);"
    assert "FUNCTION api.add(" in down[1] and "CREATE OR REPLACE TRIGGER t_add" in down[2]


def test_schema_comments_are_objects_and_tables_are_not():
    schema = """CREATE TABLE t (id int); -- a table
COMMENT ON TABLE t IS 'A table.';
COMMENT ON COLUMN t.id IS 'Its id.';
"""
    found = sqlmig.objects({"sql/schema.sql": schema})
    assert list(found) == ["COMMENT ON TABLE t", "COMMENT ON COLUMN t.id"]
    assert sqlmig.schema_rest(schema) == ["CREATE TABLE t (id int);"]
    assert sqlmig.schema_rest(schema.replace("-- a table", "-- the table")) == sqlmig.schema_rest(schema)
