"""migrate, rollback, status and verify: the schema's migrations (pyapp.db.migrate, yoyo) and the
integrity report."""
from __future__ import annotations

import sys

from pyapp import config, notify
from pyapp.cli.tables import print_table
from pyapp.db import calls
from pyapp.db import migrate as mig
from pyapp.db.runtime import database


def migrate(args) -> int:
    with database() as db:
        todo = mig.pending(db.owner_url)
        print(f"migrate: {len(todo)} pending" + (f": {', '.join(todo)}" if todo else ""), flush=True)
        done = mig.apply(db.owner_url)
        db.after_migrations()
    for m in done:
        print(f"applied {m}")
    print("migrations: up to date" if not done else f"migrations: {len(done)} applied")
    return 0


def rollback(args) -> int:
    with database() as db:
        ids = [m.id for m in mig.migrations()]
        applied = set(mig.applied(db.owner_url))
        if args.all:
            targets = [i for i in ids if i in applied]
        else:
            try:
                cut = ids.index(mig.resolve(args.name))
            except ValueError as exc:
                print(f"pyapp: {exc}", file=sys.stderr)
                return 2
            targets = [i for i in ids[cut:] if i in applied]
        drops_version = any(i.endswith("_add_version_to_product") for i in targets)
        if drops_version and not args.force:
            with db.session() as s:
                pending = calls.pending_payment_orders(s)
            if pending:
                print(f"pyapp: refusing to drop the version column: {pending} orders are PENDING_PAYMENT "
                      "and their stock is held under optimistic locking. Wait for them to be paid or "
                      "expire (python -m pyapp expire-orders), or pass --force.", file=sys.stderr)
                return 1
        print(f"rollback: rolling back {len(targets)} migrations", flush=True)
        done = mig.rollback(db.owner_url, None if args.all else args.name)
    for m in done:
        print(f"rolled back {m}")
    print(f"rollback: {len(done)} migrations rolled back")
    if done:
        notify.send(f"rollback on {notify.where(db.owner_url)}: {len(done)} migration(s) rolled back "
                    f"({', '.join(done)})")
    return 0


def status(args) -> int:
    from pyapp.cli.expiry_schedule import RUNNER_HEADERS, runner_rows

    with database() as db:
        applied = set(mig.applied(db.owner_url))
        with db.session() as s:
            runners = runner_rows(s.conn)
    rows = [(m.id, "applied" if m.id in applied else "PENDING") for m in mig.migrations()]
    print_table(["migration", "state"], rows)
    pending = [r for r in rows if r[1] == "PENDING"]
    print(f"{len(rows) - len(pending)} applied, {len(pending)} pending")
    # Which runner expires unpaid orders (api.expiry_status); informative, not part of the exit code.
    if runners is not None:
        print()
        print_table(["expiry " + RUNNER_HEADERS[0], *RUNNER_HEADERS[1:]], runners)
    return 1 if pending else 0


def verify(args) -> int:
    hold = config.hold_minutes(getattr(args, "hold_minutes", None))
    with database() as db, db.session() as s:
        rows = calls.integrity_report(s, hold)
    print_table(["check", "ok", "detail"], [(n, "ok" if ok else "FAILED", d) for n, ok, d in rows])
    failed = [n for n, ok, _ in rows if not ok]
    print("verify: all checks passed" if not failed else f"verify: {len(failed)} failed: {', '.join(failed)}")
    return 1 if failed else 0
