"""Runs the pgTAP suite in tests/sql/ with pg_prove against a fresh migrated database."""
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg

SQL_DIR = Path(__file__).resolve().parent  # the pgTAP files beside this runner


def test_pgtap_suite(db_url, dbname):
    pg_prove = shutil.which("pg_prove")
    assert pg_prove, ("pg_prove not found on PATH: install the Debian packages postgresql-15-pgtap "
                      "and libtap-parser-sourcehandler-pgtap-perl")
    files = sorted(SQL_DIR.glob("*.sql"))
    assert files, f"no pgTAP files in {SQL_DIR}"

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgtap")

    url = urlsplit(db_url)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = unquote(url.password)
    cmd = [pg_prove, "--ext", ".sql",
           "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432),
           "-U", unquote(url.username or "postgres"), "-d", dbname, str(SQL_DIR)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    output = result.stdout + result.stderr
    print(output)  # so that CI logs show every file's result

    assert result.returncode == 0, f"pg_prove exited with {result.returncode}"
    summary = re.search(r"^Files=(\d+), Tests=(\d+)", output, re.M)
    assert summary, "pg_prove printed no summary"
    assert int(summary.group(1)) == len(files), (
        f"pg_prove ran {summary.group(1)} files, tests/sql/ has {len(files)}")
    assert int(summary.group(2)) > 0
    assert "Result: PASS" in output
