"""The README's error table says what the registry in sql/ says."""
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent.parent / "README.md"


def readme_error_rows():
    rows = {}
    for line in README.read_text().splitlines():
        m = re.match(r"\|\s*`(MK\w{3})`\s*\|\s*`(\w+)`\s*\|\s*(\d{3})\s*\|", line)
        if m:
            rows[m.group(1)] = (m.group(2), int(m.group(3)))
    return rows


def test_readme_error_table_matches_registry(conn):
    registry = {s: (c, h) for s, c, h, _ in conn.execute("SELECT * FROM api.error_codes()")}
    assert registry, "the registry is empty"
    assert readme_error_rows() == registry


def test_every_raised_sqlstate_is_registered(conn):
    registry = {r[0] for r in conn.execute("SELECT sqlstate FROM api.error_codes()")}
    sql_dir = README.parent / "sql"
    raised = set()
    for f in sql_dir.rglob("*.sql"):
        raised |= set(re.findall(r"ERRCODE\s*=\s*'(MK\w{3})'", f.read_text()))
    assert raised, "no ERRCODE found in sql/"
    assert raised <= registry, f"raised but not registered: {sorted(raised - registry)}"


def test_readme_names_every_api_function(conn):
    names = {r[0] for r in conn.execute(
        "SELECT DISTINCT p.proname FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace")}
    assert len(names) > 20
    text = README.read_text()
    missing = sorted(n for n in names if f"`{n}(" not in text and f"/ `{n}(" not in text)
    assert not missing, f"README's function table lacks: {missing}"


def test_every_command_answers_help_and_is_in_the_readme_and_runbook_uses_real_ones():
    """The README's command table lists every `python -m pyapp` command, each answers --help, and
    every command the runbook names exists."""
    import subprocess
    import sys

    from pyapp.__main__ import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001
    assert len(commands) > 15
    text = README.read_text()
    table = {m for m in re.findall(r"^\| `([a-z][a-z-]*)[ `]", text, re.M)}
    assert commands <= table, f"README's command table lacks: {sorted(commands - table)}"
    for name in sorted(commands):
        r = subprocess.run([sys.executable, "-m", "pyapp", name, "--help"], cwd=README.parent,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "usage:" in r.stdout, (name, r.stdout[-300:], r.stderr[-300:])
    runbook = (README.parent / "docs" / "runbook.md").read_text()
    named = set(re.findall(r"python -m pyapp ([a-z][a-z-]*)", runbook))
    assert named and named <= commands, f"the runbook names unknown commands: {sorted(named - commands)}"


def test_the_registry_the_app_loads_is_the_one_the_api_document_reads(conn):
    """app.error_policy() (loaded by each worker) and sql/api/error_codes.sql (read for the API
    document and Bottle's own errors, pyapp.db.registry.shipped) hold the same rows."""
    from pyapp.db.registry import POLICY_QUERY, Registry, shipped

    loaded = Registry.from_rows(conn.execute(POLICY_QUERY).fetchall())
    assert loaded.codes == shipped().codes
