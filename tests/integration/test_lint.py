"""The deployment checklist's "linter passing" and "no type errors", for both languages of the project:
ruff over the Python tree (rules in ruff.toml), mypy over pyapp/ (settings in mypy.ini), and
plpgsql_check over every PL/pgSQL function of schemas api, internal and app, with its extra
warnings (unused variables, implicit casts, shadowed names): none may report anything."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing():
    r = _run(sys.executable, "-m", "ruff", "check", ".")
    if "No module named ruff" in r.stderr:
        pytest.fail("ruff is missing: scripts/setup.sh installs requirements.txt")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_mypy_finds_no_type_error_in_pyapp():
    r = _run(sys.executable, "-m", "mypy", "pyapp")
    if "No module named mypy" in r.stderr:
        pytest.fail("mypy is missing: scripts/setup.sh installs requirements.txt")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


CHECK_ALL = """
    SELECT p.oid::regprocedure::text, r.lineno, r.level, r.sqlstate, r.message, r.detail
    FROM pg_proc p
    JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
    CROSS JOIN LATERAL plpgsql_check_function_tb(
        p.oid,
        coalesce((SELECT t.tgrelid FROM pg_trigger t WHERE t.tgfoid = p.oid ORDER BY t.oid LIMIT 1), 0),
        fatal_errors => false, other_warnings => true, extra_warnings => true) r
    WHERE p.pronamespace IN ('api'::regnamespace, 'internal'::regnamespace, 'app'::regnamespace)
    ORDER BY 1, 2"""


def test_plpgsql_check_finds_no_error_or_warning(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        if c.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'plpgsql_check'").fetchone() is None:
            pytest.fail("plpgsql_check is missing: scripts/setup.sh installs postgresql-15-plpgsql-check")
        c.execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
        checked = c.execute("""SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
                               WHERE l.lanname = 'plpgsql' AND p.pronamespace IN
                               ('api'::regnamespace, 'internal'::regnamespace, 'app'::regnamespace)""").fetchone()[0]
        findings = c.execute(CHECK_ALL).fetchall()
    assert checked > 40, f"only {checked} PL/pgSQL functions were checked"
    assert findings == [], "\n".join(" | ".join(str(x) for x in f) for f in findings)
