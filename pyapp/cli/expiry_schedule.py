"""`python -m pyapp expiry-schedule on|off|status`: the order expiry as a pg_cron job inside
PostgreSQL, with the `expire-orders --every` worker as the fallback where pg_cron is not loaded.

The database decides and remembers (sql/api/expiry_schedule.sql): api.schedule_expiry refuses
where pg_cron is not loaded and returns the job to schedule; api.expiry_status says which runner
runs. pg_cron keeps its jobs in one database per server (`cron.database_name`, often `postgres`),
so this module's one task of its own is to carry that job there over a second connection, as the
same role: CREATE EXTENSION pg_cron where it is missing, then cron.schedule_in_database (or
cron.unschedule). The record in the app's database is committed only once pg_cron took the job.
"""
from __future__ import annotations

import sys

import psycopg

from pyapp import config
from pyapp.db import ops_calls as ops
from pyapp.db import registry
from pyapp.db.calls import Session
from pyapp.db.runtime import database

RUNNER_HEADERS = ["runner", "state", "last success", "detail"]


def _fmt(ts) -> str:
    return "never" if ts is None else f"{ts:%Y-%m-%d %H:%M:%S %Z}"


def runner_rows(conn) -> list[tuple] | None:
    """api.expiry_status() as table rows, or None when the database predates it (migrations
    pending)."""
    db = Session(conn)
    if not ops.function_exists(db, "api.expiry_status()"):
        return None
    return [(runner, state, _fmt(last), detail) for runner, state, last, detail in ops.expiry_runners(db)]


def _refused(exc: psycopg.Error) -> int:
    """Prints a refusal from the database (a SQLSTATE of the project's class) and returns its exit
    code: 2 for a bad argument, 1 otherwise. Anything else is re-raised."""
    if not (exc.sqlstate or "").startswith(registry.PROJECT_CLASS):
        raise exc
    print(f"pyapp: expiry-schedule: {exc.diag.message_primary}", file=sys.stderr)
    if exc.diag.message_hint:
        print(f"pyapp: {exc.diag.message_hint}", file=sys.stderr)
    return 2 if registry.shipped().code_name(exc.sqlstate) == "INVALID_ARGUMENT" else 1


def _cron_connect(owner_url: str, cron_db: str) -> psycopg.Connection:
    """The same server and role as `owner_url`, in pg_cron's database."""
    return psycopg.connect(owner_url, dbname=cron_db, autocommit=True, connect_timeout=10)


def expiry_schedule(args) -> int:
    with database() as db:
        with psycopg.connect(db.owner_url, autocommit=True) as conn:
            if not ops.function_exists(Session(conn), "api.expiry_status()"):
                print("pyapp: expiry-schedule: this database predates it: python -m pyapp migrate", file=sys.stderr)
                return 1
        if args.action == "on":
            return schedule_on(db, args.every_minutes, config.hold_minutes(args.hold_minutes), args.batch_size)
        if args.action == "off":
            return schedule_off(db)
        return schedule_status(db)


def schedule_on(db, every_minutes: int, hold: int, batch: int) -> int:
    with psycopg.connect(db.owner_url) as conn:  # one transaction: committed once pg_cron has the job
        try:
            row = ops.schedule_expiry(Session(conn), every_minutes, hold, batch)
        except psycopg.Error as exc:
            conn.rollback()
            code = _refused(exc)
            if registry.shipped().code_name(exc.sqlstate) == "INVALID_STATE" and db.local:
                print("pyapp: the project's own cluster loads pg_cron from its next start when "
                      "postgresql-15-cron is installed (scripts/setup.sh installs it)", file=sys.stderr)
            return code
        assert row is not None, "api.schedule_expiry returns one row"
        job, schedule, command, dbname, cron_db = row
        try:
            with _cron_connect(db.owner_url, cron_db) as cron_conn:
                cron = Session(cron_conn)
                if not ops.extension_exists(cron, "pg_cron"):
                    print(f"expiry-schedule: creating extension pg_cron in database {cron_db}", flush=True)
                    ops.create_pg_cron(cron)
                jobid = ops.cron_schedule(cron, job, schedule, command, dbname)
                ops.cron_activate(cron, jobid, dbname)
        except psycopg.Error as exc:
            conn.rollback()
            print(f"pyapp: expiry-schedule: pg_cron in database {cron_db} refused the job: "
                  f"{str(exc).strip().splitlines()[0]}", file=sys.stderr)
            print("pyapp: CREATE EXTENSION pg_cron and cron.schedule_in_database need a superuser, or a "
                  "role granted USAGE ON SCHEMA cron and EXECUTE on cron.schedule_in_database and "
                  "cron.alter_job; until then, run the worker: python -m pyapp expire-orders --every 60",
                  file=sys.stderr)
            return 1
        conn.commit()
    print(f"expiry-schedule: on: pg_cron job {job} (id {jobid}) runs every {every_minutes} min "
          f"({schedule}) in database {dbname}, kept in database {cron_db}: {command}")
    return 0


def schedule_off(db) -> int:
    with psycopg.connect(db.owner_url) as conn:
        row = ops.unschedule_expiry(Session(conn))
        assert row is not None, "api.unschedule_expiry returns one row"
        job, cron_db, was_scheduled = row
        removed = 0
        if cron_db is not None:
            try:
                with _cron_connect(db.owner_url, cron_db) as cron_conn:
                    cron = Session(cron_conn)
                    if ops.extension_exists(cron, "pg_cron"):
                        removed = ops.cron_unschedule(cron, job)
            except psycopg.Error as exc:
                conn.rollback()
                print(f"pyapp: expiry-schedule: could not unschedule {job} in database {cron_db}: "
                      f"{str(exc).strip().splitlines()[0]}", file=sys.stderr)
                return 1
        conn.commit()
    if removed:
        print(f"expiry-schedule: off: removed pg_cron job {job} from database {cron_db}")
    elif cron_db is None:
        print(f"expiry-schedule: off: pg_cron is not loaded on this server, so no job {job} can run"
              + (" (the schedule is forgotten)" if was_scheduled else ""))
    else:
        print(f"expiry-schedule: off: no pg_cron job {job} was scheduled")
    return 0


def schedule_status(db) -> int:
    """Prints api.expiry_status() and, where pg_cron runs, its own view of the job (cron.job and
    the latest cron.job_run_details). Exit 0 when some runner runs (or a new job waits), else 1."""
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        rows = ops.expiry_status(Session(conn))
    from pyapp.cli.tables import print_table

    print_table(RUNNER_HEADERS, [r[:2] + (_fmt(r[3]), r[4]) for r in rows])
    job, cron_db = next(((r[5], r[6]) for r in rows if r[0] == "pg_cron"), (None, None))
    if job is not None and cron_db is not None:
        try:
            with _cron_connect(db.owner_url, cron_db) as cron_conn:
                cron = Session(cron_conn)
                if not ops.relation_exists(cron, "cron.job"):
                    print(f"pg_cron: no extension pg_cron in database {cron_db}: the job does not exist")
                else:
                    found = ops.cron_job(cron, job)
                    if found is None:
                        print(f"pg_cron: no job {job} in database {cron_db}: python -m pyapp expiry-schedule on")
                    else:
                        jobid, schedule, active, target = found
                        last = ops.cron_last_run(cron, jobid)
                        print(f"pg_cron: job {job} (id {jobid}) {schedule} in database {target}, "
                              f"{'active' if active else 'INACTIVE'}; last run: "
                              + ("none yet" if last is None else
                                 f"{last[0]} at {_fmt(last[1])}" + (f" ({last[2]})" if last[2] else "")))
        except psycopg.Error as exc:
            print(f"pg_cron: cannot read database {cron_db}: {str(exc).strip().splitlines()[0]}")
    return 0 if any(r[2] for r in rows) else 1
