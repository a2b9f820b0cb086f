"""The README's error table says what the registry in sql/ says."""
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


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
