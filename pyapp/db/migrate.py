"""yoyo-migrations driven from DATABASE_URL (with the psycopg 3 backend)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from yoyo import get_backend, read_migrations

from pyapp.db.replicas import single_host

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "migrations"


def yoyo_url(url: str) -> str:
    """postgresql://... -> postgresql+psycopg://... so yoyo uses psycopg 3, not psycopg2."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


@contextmanager
def backend(url: str):
    b = get_backend(yoyo_url(single_host(url)))  # yoyo parses one host: a multi-host URL's primary
    try:
        yield b
    finally:
        b.connection.close()


def migrations():
    return read_migrations(str(MIGRATIONS))


def pending(url: str) -> list[str]:
    with backend(url) as b:
        return [m.id for m in b.to_apply(migrations())]


def applied(url: str) -> list[str]:
    with backend(url) as b:
        return [m.id for m in migrations() if b.is_applied(m)]


def apply(url: str, upto: str | None = None) -> list[str]:
    """Applies every pending migration, or (upto) those up to and including that id."""
    all_migs = migrations()
    with backend(url) as b, b.lock():
        todo = b.to_apply(all_migs)
        if upto is not None:
            ids = [m.id for m in all_migs]
            first = set(ids[:ids.index(resolve(upto)) + 1])
            todo = todo.filter(lambda m: m.id in first)
        b.apply_migrations(todo)
    return [m.id for m in todo]


def path_of(migration_id: str) -> Path:
    return MIGRATIONS / f"{migration_id}.sql"


def resolve(name: str) -> str:
    """The full id of a migration given its id, its number or its name (add_version_to_product)."""
    for i in (m.id for m in migrations()):
        if i == name or i.endswith("_" + name) or i.startswith(name + "_"):
            return i
    raise ValueError(f"no migration named {name!r}")


def rollback(url: str, target: str | None = None) -> list[str]:
    """Rolls back every migration (target None) or `target` and every migration after it."""
    all_migs = migrations()
    with backend(url) as b, b.lock():
        todo = b.to_rollback(all_migs)
        if target is not None:
            ids = [m.id for m in all_migs]
            later = set(ids[ids.index(resolve(target)):])
            todo = todo.filter(lambda m: m.id in later)
        b.rollback_migrations(todo)
    return [m.id for m in todo]
