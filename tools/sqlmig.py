"""Writes the next yoyo migration from the changes to sql/, and loads sql/ into an empty database.

    python tools/sqlmig.py NAME --reason "why, in one line" [--base REV] [--number NNNN] [--root DIR]
    python tools/sqlmig.py --check [--root DIR]
    python tools/sqlmig.py --verify [--root DIR]
    python tools/sqlmig.py --load URL [--root DIR]

NAME: compares every function and trigger that sql/ defines now (the working tree, committed or
not) with the same object as git holds it at REV, and writes
migrations/NNNN_NAME.sql restating only the objects that were added or changed, plus a DROP for
each object removed from sql/. Its rollback, migrations/NNNN_NAME.rollback.sql, is generated from
the REV definitions: it drops what the migration added and restates what it changed or dropped as
it was at REV. REV defaults to the last commit that changed migrations/ (leaving out the migration
being regenerated): there sql/ and migrations/ agreed (tests/sql/test_migrations.py holds every commit
to that), so whatever sql/ changed since is what the new migration must carry, however many
commits or merged branches it came in. Both files are generated whole; neither is edited by hand (regenerate instead:
running the tool again with the same NAME rewrites the not yet landed migration in place).

An object is a CREATE FUNCTION with the COMMENT ON FUNCTION, REVOKE and GRANT statements that
name its signature, a CREATE OR REPLACE TRIGGER, or a COMMENT ON TABLE/COLUMN/SCHEMA/INDEX/SEQUENCE
of sql/schema.sql (restating a comment is always safe; a comment that disappears is left alone, as
its table went with a hand-written migration). The -- comment above an object is carried along,
but a change to it alone is not a change. The number is the next free one, or --number's. When a changed function's
parameter list or RETURNS clause differs (which CREATE OR REPLACE refuses), the migration drops it
first and so does the rollback. A new signature is a new function: to change a signature while
older app servers still run, add the new one beside the old and drop the old in a later migration
(docs/migrations.md).

Before comparing, the tool rewrites sql/internal/expected_migrations.sql so that
internal.expected_migrations() lists every migration of migrations/ plus the new one; the function
is then a changed object like any other. `--check` exits 1 when the file and migrations/ disagree.
`--verify` regenerates every migration whose header says this tool wrote it, from sql/ at its base
and at the last commit that changed it (or sql/ now, before it is committed; so commit a migration
with the sql/ change it carries), and exits 1 unless the migration and its rollback are
exactly that (so "generated, do not edit" stays true).

Tables, indexes, roles and grants live in sql/schema.sql and are migrated by hand-written steps
(a table change needs thought about locks and existing rows); the tool warns when sql/schema.sql
differs from REV, and tests/sql/test_migrations.py diffs the whole catalogue of "all migrations" against
"sql/ loaded". Landed migrations are never edited: yoyo tracks files by name, not content.

`--load URL` applies sql/ to an empty database in the order of sql_files(): sql/schema.sql, then
sql/internal/, sql/api/ and sql/app/ (each sorted by name), in one transaction, with
check_function_bodies off so that a function may name one defined in a later file.

One file of about 440 lines on purpose: a script run from the repository root with no package
around it, whose parts (reading sql/ into objects, planning, writing, verifying) share one object
model and are read together; docs/migrations.md is its guide.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_DIRS = ("internal", "api", "app")
EXPECTED = Path("sql/internal/expected_migrations.sql")


# ---- the order sql/ is applied in ------------------------------------------------------------

def sql_files(root: Path = ROOT) -> list[Path]:
    """sql/schema.sql first (tables, roles, the id generator), then the function files."""
    sql = root / "sql"
    return [sql / "schema.sql"] + [f for d in FUNCTION_DIRS for f in sorted((sql / d).glob("*.sql"))]


def load(url: str, root: Path = ROOT) -> None:
    """Builds the database that sql/ describes in the empty database at `url`."""
    import psycopg
    with psycopg.connect(url) as conn:
        conn.execute("SET LOCAL check_function_bodies = off")
        for path in sql_files(root):
            conn.execute(path.read_text())


# ---- splitting SQL into statements -----------------------------------------------------------

TOKEN = re.compile(r"""--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|"(?:[^"]|"")*"|(\$\w*\$).*?\1|;""", re.S)


def statements(text: str) -> list[str]:
    """The statements of a file, each with the comment lines just above it and its `;`."""
    out, start = [], 0
    for m in TOKEN.finditer(text):
        if m.group(0) == ";":
            out.append(text[start:m.end()].strip())
            start = m.end()
    if text[start:].strip() and not all(line.strip().startswith("--") or not line.strip()
                                        for line in text[start:].splitlines()):
        raise ValueError(f"a statement without its closing ';': {text[start:].strip()[:80]}")
    return out


def code_of(stmt: str) -> str:
    """A statement without the comment lines above it: what the database sees."""
    lines = stmt.splitlines()
    while lines and (lines[0].strip().startswith("--") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines)


def squash(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def uncommented(code: str) -> str:
    """The code without its -- and /* */ comments (those inside quotes or a $$ body stay)."""
    return TOKEN.sub(lambda m: " " if m[0].startswith(("--", "/*")) else m[0], code)


# ---- the objects sql/ defines ----------------------------------------------------------------

CREATE_FN = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+([\w.]+)\s*\(", re.I)
ON_FN = re.compile(r"(?:COMMENT\s+ON|REVOKE\s.*?\sON|GRANT\s.*?\sON)\s+FUNCTION\s+([\w.]+\s*\(.*?\))(?:\s+IS|\s+FROM|\s+TO)",
                   re.I | re.S)
CREATE_TRIGGER = re.compile(r"CREATE\s+OR\s+REPLACE\s+TRIGGER\s+(\w+)\s.*?\bON\s+(\"?[\w.]+\"?)", re.I | re.S)
COMMENT_ON = re.compile(r"COMMENT\s+ON\s+(TABLE|COLUMN|SCHEMA|INDEX|SEQUENCE)\s+([\w.\"]+)\s+IS\b", re.I)
SHAPE_END = re.compile(r"\n\s*(?:LANGUAGE|AS|SET|SECURITY|STABLE|IMMUTABLE|VOLATILE|STRICT|PARALLEL|CALLED|COST|ROWS|"
                       r"LEAKPROOF|RETURNS\s+NULL)\b", re.I)


@dataclass
class Obj:
    kind: str                       # "function", "trigger" or "comment"
    key: str                        # the signature, "name ON table" or "COMMENT ON TABLE name"
    where: str                      # the file it is defined in, relative to the root
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.parts)

    @property
    def code(self) -> str:
        return squash(uncommented("\n".join(code_of(p) for p in self.parts)))

    @property
    def shape(self) -> str:
        """A function's parameter list and RETURNS clause: what CREATE OR REPLACE cannot change."""
        create = code_of(self.parts[0])
        end = SHAPE_END.search(create)
        return squash(create[:end.start()] if end else create)

    def drop(self) -> str:
        if self.kind == "comment":
            return f"{self.key} IS NULL;"
        if self.kind == "trigger":
            name, table = self.key.split(" ON ")
            return f"DROP TRIGGER IF EXISTS {name} ON {table};"
        return f"DROP FUNCTION IF EXISTS {self.key};"


def objects(files: dict[str, str], strict: bool = True) -> dict[str, Obj]:
    """The functions and triggers of the given files ({relative path: text}), in file order.
    Statements of sql/schema.sql that are neither are left out (see schema_rest); elsewhere they
    are an error, unless not `strict` (an older sql/ kept DROPs of superseded signatures)."""
    found: dict[str, Obj] = {}
    for where, text in files.items():
        pending: list[str] = []           # a CREATE FUNCTION waiting for its COMMENT
        for stmt in statements(text):
            code = code_of(stmt)
            if m := CREATE_FN.match(code):
                if pending:
                    raise ValueError(f"{where}: {CREATE_FN.match(code_of(pending[0]))[1]} has no COMMENT ON FUNCTION")
                pending = [stmt]
            elif m := ON_FN.match(code):
                sig = squash(m[1]).replace("( ", "(").replace(" )", ")")
                if pending:
                    if not re.match(r"COMMENT\s", code, re.I):
                        raise ValueError(f"{where}: {sig} has no COMMENT ON FUNCTION right after its CREATE")
                    if not sig.startswith(CREATE_FN.match(code_of(pending[0]))[1] + "("):
                        raise ValueError(f"{where}: {sig} does not follow its CREATE FUNCTION")
                    if sig in found:
                        raise ValueError(f"{where}: {sig} is defined twice")
                    found[sig] = Obj("function", sig, where, pending)
                    pending = []
                if sig not in found:
                    raise ValueError(f"{where}: {sig} is named before it is created")
                found[sig].parts.append(stmt)
            elif m := CREATE_TRIGGER.match(code):
                key = f"{m[1]} ON {m[2]}"
                found[key] = Obj("trigger", key, where, [stmt])
            elif (m := COMMENT_ON.match(code)) and where.endswith("schema.sql") and not pending:
                key = f"COMMENT ON {m[1].upper()} {m[2]}"
                found[key] = Obj("comment", key, where, [stmt])
            elif pending:
                raise ValueError(f"{where}: a statement between a CREATE FUNCTION and its COMMENT: {code[:60]}")
            elif strict and not where.endswith("schema.sql"):
                raise ValueError(f"{where}: not a function or trigger (tables go in sql/schema.sql): {code[:60]}")
        if pending:
            raise ValueError(f"{where}: the last CREATE FUNCTION has no COMMENT ON FUNCTION")
    return found


def schema_rest(text: str) -> list[str]:
    """The statements of sql/schema.sql that tools/sqlmig.py does not migrate (tables and the like)."""
    return [squash(uncommented(code_of(s))) for s in statements(text)
            if not (CREATE_FN.match(code_of(s)) or ON_FN.match(code_of(s)) or CREATE_TRIGGER.match(code_of(s))
                    or COMMENT_ON.match(code_of(s)))]


def current_files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sql_files(root) if p.exists()}


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def files_at(root: Path, base: str) -> dict[str, str]:
    """The sql/ files as git holds them at `base`, in the order of sql_files()."""
    names = set(git(root, "ls-tree", "-r", "--name-only", base, "--", "sql").split())
    order = ["sql/schema.sql"] + sorted((n for n in names if n.count("/") == 2 and n.split("/")[1] in FUNCTION_DIRS),
                                        key=lambda n: (FUNCTION_DIRS.index(n.split("/")[1]), n))
    return {n: git(root, "show", f"{base}:{n}") for n in order if n in names and n.endswith(".sql")}


# ---- migrations/ and internal.expected_migrations --------------------------------------------

def migration_ids(root: Path = ROOT) -> list[str]:
    return sorted(p.name[:-4] for p in (root / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql")
                  if not p.name.endswith(".rollback.sql"))


ARRAY = re.compile(r"(SELECT ARRAY\[\n)(.*?)(\n\s*\])", re.S)


def expected_in_file(root: Path = ROOT) -> list[str]:
    m = ARRAY.search((root / EXPECTED).read_text())
    if not m:
        raise ValueError(f"{EXPECTED}: no SELECT ARRAY[...] list")
    return re.findall(r"'([^']+)'", m[2])


def write_expected(root: Path, ids: list[str]) -> None:
    path = root / EXPECTED
    body = ",\n".join(f"        '{i}'" for i in ids)
    path.write_text(ARRAY.sub(lambda m: m[1] + body + m[3], path.read_text(), count=1))


def next_number(root: Path, name: str) -> str:
    existing = sorted((root / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))
    for path in existing:
        if path.name.split(".")[0][5:] == name:
            return path.name[:4]  # regenerate an existing (not yet landed) migration in place
    return f"{max((int(p.name[:4]) for p in existing), default=0) + 1:04d}"


# ---- writing a migration ---------------------------------------------------------------------

def plan(old: dict[str, Obj], new: dict[str, Obj]) -> tuple[list[str], list[str], dict[str, int]]:
    """(the migration's statements, the rollback's statements, counts) for going from old to new."""
    added = [o for k, o in new.items() if k not in old]
    changed = [o for k, o in new.items() if k in old and o.code != old[k].code]
    # A comment that is gone went with its table (a hand-written migration dropped it) or was
    # removed by hand: neither is restated nor cleared here.
    removed = [o for k, o in old.items() if k not in new and o.kind != "comment"]
    reshaped = {o.key for o in changed if o.kind == "function" and o.shape != old[o.key].shape}
    triggers_first = sorted(removed, key=lambda o: o.kind != "trigger")

    up = [o.drop() for o in triggers_first]
    for o in new.values():
        if o in added or o in changed:
            if o.key in reshaped:
                up.append(f"DROP FUNCTION {o.key};")
            up.append(f"-- ==== {o.kind} {o.key} ({o.where})\n{o.text}")

    down = [o.drop() for o in sorted(added, key=lambda o: o.kind != "trigger")]
    for o in old.values():
        if o.key in new and new[o.key] in changed or o in removed:
            if o.key in reshaped:
                down.append(f"DROP FUNCTION {o.key};")
            down.append(f"-- ==== {o.kind} {o.key} ({o.where})\n{o.text}")
    return up, down, {"added": len(added), "changed": len(changed), "dropped": len(removed)}


def default_base(root: Path, mig_id: str) -> str:
    """The last commit that changed migrations/ other than `mig_id` itself."""
    rev = git(root, "log", "-1", "--format=%H", "--", "migrations",
              f":(exclude)migrations/{mig_id}.sql", f":(exclude)migrations/{mig_id}.rollback.sql").strip()
    if not rev:
        raise SystemExit("no commit has changed migrations/ yet: give --base")
    return rev


def generate(root: Path, name: str, reason: str, base: str | None = None,
             number: str | None = None) -> tuple[Path, Path]:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise SystemExit(f"NAME must be snake_case: {name!r}")
    reason = squash(reason)
    if not reason:
        raise SystemExit("--reason is required: one line saying why this migration exists")
    if re.match(r"(depends|transactional)\s*:", reason, re.I):
        raise SystemExit("--reason must not start like a yoyo directive (depends:, transactional:)")
    number = number or next_number(root, name)
    if not re.fullmatch(r"\d{4}", number):
        raise SystemExit(f"--number takes four digits: {number!r}")
    mig_id = f"{number}_{name}"
    previous = [i for i in migration_ids(root) if i < mig_id]
    base = base or default_base(root, mig_id)
    before = files_at(root, base)
    listed_before = expected_in_file(root)
    write_expected(root, previous + [mig_id] + [i for i in migration_ids(root) if i > mig_id])
    try:
        return _write(root, mig_id, previous, reason, base, before, listed_before)
    except BaseException:
        write_expected(root, listed_before)
        raise


def _write(root: Path, mig_id: str, previous: list[str], reason: str, base: str, before: dict[str, str],
           listed_before: list[str]) -> tuple[Path, Path]:
    now = current_files(root)
    if "sql/schema.sql" in before and schema_rest(before["sql/schema.sql"]) != schema_rest(now["sql/schema.sql"]):
        print(f"sqlmig: sql/schema.sql differs from {base} outside its functions: that change needs a"
              " hand-written migration (tests/sql/test_migrations.py compares the catalogues)", file=sys.stderr)
    rev = git(root, "rev-parse", "--short=12", base).strip()
    label = rev if re.fullmatch(r"[0-9a-f]{40}", base) else f"{base} ({rev})"
    up, down, differ = render(mig_id, previous, reason, label, before, now)
    if not differ - {"internal.expected_migrations()"} and listed_before == previous:
        raise SystemExit(f"sqlmig: no function or trigger of sql/ differs from {base}: nothing to migrate")
    out = root / "migrations" / f"{mig_id}.sql"
    out.write_text(up)
    back = root / "migrations" / f"{mig_id}.rollback.sql"
    back.write_text(down)
    return out, back


def render(mig_id: str, previous: list[str], reason: str, label: str, before: dict[str, str],
           now: dict[str, str]) -> tuple[str, str, set[str]]:
    """The migration's text, its rollback's, and the keys of the objects that differ."""
    old, new = objects(before, strict=False), objects(now)
    if "sql/schema.sql" not in before:   # a base older than sql/schema.sql: its comments are not known
        old.update({k: o for k, o in new.items() if o.kind == "comment"})
    up, down, counts = plan(old, new)
    differ = {k for k in old.keys() ^ new.keys()} | {k for k in old.keys() & new.keys() if old[k].code != new[k].code}
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    return (f"-- {reason}\n"
            f"-- Generated by tools/sqlmig.py from sql/ against {label}: objects {summary}."
            " Do not edit; regenerate.\n"
            f"-- depends: {previous[-1] if previous else ''}\n\n"
            + "\n\n".join(up) + "\n",
            f"-- Undoes {mig_id}: drops what it added, restates what it changed or dropped as at {label}.\n"
            f"-- Generated by tools/sqlmig.py from sql/ at {label}. Do not edit; regenerate.\n\n"
            + "\n\n".join(down) + "\n",
            differ)


def _committed(root: Path, rev: str, path: Path) -> str | None:
    try:
        return git(root, "show", f"{rev}:{path.relative_to(root).as_posix()}")
    except subprocess.CalledProcessError:
        return None


HEADER = re.compile(r"-- (?P<reason>.*)\n-- Generated by tools/sqlmig\.py from sql/ against (?P<label>.*?): objects .*\n"
                    r"-- depends: (?P<depends>\S*)\n")


def verify(root: Path, only: set[str] | None = None) -> list[str]:
    """Regenerates every migration whose header says tools/sqlmig.py wrote it, from sql/ at its base
    and at the last commit that changed it (sql/ now, when not committed yet), and returns what
    differs: a generated migration or rollback edited by hand, in the tree or in a commit. So a
    migration is committed together with the sql/ change it carries."""
    problems = []
    for mig_id in migration_ids(root):
        if only is not None and mig_id not in only:
            continue
        up_path = root / "migrations" / f"{mig_id}.sql"
        m = HEADER.match(up_path.read_text())
        if not m:
            continue                                      # hand-written, or the old whole-file style
        added = git(root, "log", "--format=%H", "-1", "--", f"migrations/{mig_id}.sql",
                    f"migrations/{mig_id}.rollback.sql").strip()
        rev = re.search(r"([0-9a-f]{7,40})\)?$", m["label"])
        if not rev:
            problems.append(f"{mig_id}: no base revision in its header")
            continue
        try:
            before = files_at(root, rev[1])
        except subprocess.CalledProcessError:
            problems.append(f"{mig_id}: its base {rev[1]} is not in this clone's history (a shallow clone?)")
            continue
        previous = [i for i in migration_ids(root) if i < mig_id]
        paths = [up_path, root / "migrations" / f"{mig_id}.rollback.sql"]
        # Changed since its last commit, or never committed: checked against sql/ as it is now.
        dirty = not added or any(_committed(root, added, p) != p.read_text() for p in paths)
        now = current_files(root) if dirty else files_at(root, added)
        up, down, _ = render(mig_id, previous, m["reason"], m["label"], before, now)
        for path, want in zip(paths, (up, down)):
            if path.read_text() != want:
                problems.append(f"{path.relative_to(root).as_posix()}: differs from what tools/sqlmig.py generates for it")
    return problems


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tools/sqlmig.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", help="the migration's name, snake_case")
    ap.add_argument("--reason", default="", help="one line: why this migration exists")
    ap.add_argument("--base", help="the git revision holding the previous sql/ (default: the last commit that"
                                   " changed migrations/)")
    ap.add_argument("--number", help="the migration's number, four digits (default: the next free one)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    ap.add_argument("--check", action="store_true", help="exit 1 unless expected_migrations.sql lists migrations/")
    ap.add_argument("--load", metavar="URL", help="apply sql/ to the empty database at URL")
    ap.add_argument("--verify", action="store_true",
                    help="exit 1 unless every generated migration is what the tool generates for it")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    if args.check:
        listed, present = expected_in_file(root), migration_ids(root)
        if listed != present:
            print(f"{EXPECTED} lists {len(listed)} migration(s), migrations/ holds {len(present)}:\n"
                  f"  only listed: {sorted(set(listed) - set(present))}\n"
                  f"  only in migrations/: {sorted(set(present) - set(listed))}", file=sys.stderr)
            return 1
        return 0
    if args.load:
        load(args.load, root)
        return 0
    if args.verify:
        problems = verify(root)
        print("\n".join(problems) or "every generated migration is as tools/sqlmig.py wrote it",
              file=sys.stderr if problems else sys.stdout)
        return 1 if problems else 0
    if not args.name:
        ap.print_usage(sys.stderr)
        return 2
    for path in generate(root, args.name, args.reason, args.base, args.number):
        print(path.relative_to(root))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
