"""`python -m pyapp deploy [--url URL] [--maintenance] [--dry-run]`: the production section of the
deployment checklist as one command. Each step says what it is about to do before doing it:

  1 preflight    the database answers; no transaction older than the migrations' lock_timeout
                 (5 s) that could block them; the pending migrations with their SQL; free disk for
                 a backup; with --url, the server answers.
  2 backup       `backup`'s pg_dump, verified with pg_restore --list.
  3 maintenance  with --maintenance: on. A schema older than the switch (no api.set_maintenance:
                 before 0004_api_functions) first gets the migrations that add it, one by one.
  4 migrate      the rest of the pending migrations, one by one.
  5 verify       api.integrity_report(); a failed check fails the deploy.
  6 maintenance  off, if step 3 turned it on.
  7 health       with --url: GET URL/health answers 200 with migrations ok; then the smoke test.

A failure stops at its step. Nothing is undone automatically: every migration is atomic, so the
database is as the last completed step left it, and the deploy prints the exact commands that
undo it (`rollback <first migration this deploy applied>`, or a restore of the backup it took).
Maintenance mode stays on after a failure once step 3 turned it on: the checks failed on this
database, and new orders written meanwhile would be lost by a restore and block the rollback of
`add_version_to_product` (it refuses while orders are PENDING_PAYMENT). deploy notifies
(NOTIFY_WEBHOOK_URL) when it starts, when it succeeds and when it fails; --dry-run runs the
preflight, prints the plan, changes nothing and notifies nobody.

A module of its own, and one piece past 300 lines: its seven steps are methods of one Deploy,
as they share the state a failure must report (what this deploy applied, whether it turned
maintenance on, the backup it took); split across modules, that state would have to travel
between them. Its SQL is in pyapp.db.calls and pyapp.db.ops_calls; the one SQL text left here is
the `SELECT pg_terminate_backend(pid)` that the preflight prints for the operator to run.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pyapp import config, notify
from pyapp.cli import operations, smoke
from pyapp.cli.race import _http
from pyapp.cli.tables import print_table
from pyapp.db import calls
from pyapp.db import migrate as mig
from pyapp.db import ops_calls as ops
from pyapp.db.calls import Session
from pyapp.db.runtime import database

EPILOG = """\
Exit codes: 0 deployed; 1 a check failed: preflight (a long transaction, too little disk), the
backup (unreadable), verify, health or smoke; nothing changed when it stops in preflight or
backup, otherwise the rollback is printed; 2 bad usage; 3 the database or the --url server could
not be reached before anything changed; 4 a step failed after changes (a migration, the
maintenance switch, the database or server lost, Ctrl-C): the rollback is printed.

Without --maintenance, sales go on during the migrations (each one holds its locks briefly, under
lock_timeout). With it, writes through the api pause from step 3 to step 6; the switch only
exists from migration 0004_api_functions on, so an older schema first gets the migrations up to it.
"""
STEPS = ("preflight", "backup", "maintenance on", "migrate", "verify", "maintenance off", "health and smoke")
SWITCH = "api.set_maintenance(boolean)"
DEFAULT_LOCK_TIMEOUT_S = 5.0
SQL_LINES = 8  # lines of each pending migration shown without --verbose


class Failed(Exception):
    def __init__(self, reason: str, code: int):
        super().__init__(reason)
        self.reason, self.code = reason, code


def _seconds(text: str) -> float:
    """A PostgreSQL duration such as '5s', '500ms', '1min' (bare: milliseconds) in seconds."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|min|h)?\s*", text)
    if not m:
        return DEFAULT_LOCK_TIMEOUT_S
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "min": 60, "h": 3600, None: 0.001}[m.group(2)]


def lock_timeout_s() -> float:
    """The shortest `SET LOCAL lock_timeout` of the migrations (5 s): a transaction older than that
    may hold a lock a migration would give up waiting for."""
    found = [_seconds(v) for p in sorted(mig.MIGRATIONS.glob("*.sql")) if not p.name.endswith(".rollback.sql")
             for v in re.findall(r"SET\s+LOCAL\s+lock_timeout\s*=\s*'([^']+)'", p.read_text(), re.I)]
    return min(found, default=DEFAULT_LOCK_TIMEOUT_S)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _free_space(folder: Path) -> int:
    """Free bytes where `folder` is (or would be created)."""
    p = folder.resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


@dataclass
class Deploy:
    args: argparse.Namespace
    owner_url: str
    where: str
    n: int = 0
    step: str = "preflight"
    pending: list = field(default_factory=list)
    applied: list = field(default_factory=list)
    backup: Path | None = None
    maintenance_was_on: bool = False
    turned_on: bool = False
    switch_exists: bool = True

    # ------------------------------------------------------------ output

    def begin(self, step: str, text: str) -> None:
        self.step = step
        self.n = STEPS.index(step) + 1
        print(f"deploy: [{self.n}/{len(STEPS)}] {step}: {text}", flush=True)

    def say(self, text: str) -> None:
        print(f"  {text}", flush=True)

    @property
    def changed(self) -> bool:
        return bool(self.applied) or self.turned_on

    def undo_lines(self) -> list[str]:
        lines = []
        if self.applied:
            lines.append(f"python -m pyapp rollback {self.applied[0]}"
                         + ("   (add --force if it refuses while orders are PENDING_PAYMENT)"
                            if any(i.endswith("_add_version_to_product") for i in self.applied) else ""))
        if self.backup is not None and self.changed:
            lines.append(f"or restore the backup taken before: pg_restore --exit-on-error --dbname "
                         f"<URL of a new, empty database> {self.backup}   (docs/runbook.md, \"Rolling back\")")
        return lines

    # ------------------------------------------------------------ steps

    def preflight(self) -> None:
        self.begin("preflight", f"checking {self.where}")
        try:
            conn = psycopg.connect(self.owner_url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise Failed(f"database unreachable: {str(exc).strip()}", 3) from None
        with conn:
            db = Session(conn)
            version = ops.server_version(db)
            size = ops.database_size(db)
            self.switch_exists = ops.function_exists(db, SWITCH)
            if ops.function_exists(db, "api.maintenance_status()"):
                self.maintenance_was_on = ops.maintenance_status(db)["maintenance"]
            limit = lock_timeout_s()
            long_tx = ops.long_transactions(db, limit)
            hidden = ops.hidden_sessions(db)
        self.pending = mig.pending(self.owner_url)
        self.say(f"database reachable: PostgreSQL {version}, {_mb(size)}; maintenance "
                 + ("on" if self.maintenance_was_on else "off" if self.switch_exists else "not there yet (schema predates it)"))

        self.say(f"{len(self.pending)} pending migration(s)" + (":" if self.pending else ": nothing to migrate"))
        for mid in self.pending:
            text = mig.path_of(mid).read_text().rstrip().splitlines()
            shown = text if getattr(self.args, "verbose", False) else text[:SQL_LINES]
            self.say(f"-- {mid} ({len(text)} lines{'' if len(shown) == len(text) else '; --verbose shows all'})")
            for line in shown:
                self.say(f"   | {line}")

        problems = []
        if long_tx:
            self.say(f"transactions older than the migrations' lock_timeout ({limit:g} s):")
            print_table(["pid", "age (s)", "state", "user", "query"], long_tx)
            if self.pending:
                problems.append(f"{len(long_tx)} transaction(s) older than {limit:g} s could block the migrations "
                                f"(pids {', '.join(str(r[0]) for r in long_tx)}): let them finish or end them "
                                "(SELECT pg_terminate_backend(pid)), then deploy again")
        else:
            self.say(f"no transaction older than the migrations' lock_timeout ({limit:g} s)")
        if hidden:
            self.say(f"WARNING: {hidden} session(s) of other roles are hidden from this role; grant it "
                     "pg_read_all_stats to see their transactions")

        backup_dir = Path(self.args.backup_dir)
        free = _free_space(backup_dir)
        self.say(f"backup: at most about {_mb(size)} (the database's size); {_mb(free)} free in {backup_dir}")
        if free < size:
            problems.append(f"not enough free disk for a backup in {backup_dir}: {_mb(free)} free, "
                            f"the database is {_mb(size)}")

        if self.args.url:
            try:
                status, _ = _http("GET", self.args.url.rstrip("/") + "/health", timeout=10)
            except (urllib.error.URLError, OSError) as exc:
                raise Failed(f"server unreachable at {self.args.url}: {getattr(exc, 'reason', exc)}", 3) from None
            self.say(f"server at {self.args.url} answers (GET /health: HTTP {status})")
        if problems:
            raise Failed("; ".join(problems), 1)

    def print_plan(self) -> None:
        url, maint = self.args.url, self.args.maintenance
        early = self._switch_migrations() if maint and not self.switch_exists else []
        print("deploy: plan (dry run: nothing was changed)")
        self.say(f"2 backup: pg_dump to {self.args.backup_dir}/marketplace-<UTC time>.dump, then pg_restore --list")
        if not maint:
            self.say("3 maintenance on: skipped (no --maintenance): sales go on during the migrations")
        elif self.maintenance_was_on:
            self.say("3 maintenance on: already on; the deploy leaves it on")
        else:
            self.say("3 maintenance on" + (f", after applying {', '.join(early)} (they add the switch)" if early else ""))
        rest = [m for m in self.pending if m not in early]
        self.say(f"4 migrate: {', '.join(rest) if rest else 'nothing pending'}")
        self.say("5 verify: api.integrity_report(), every check must pass")
        self.say("6 maintenance off" if maint and not self.maintenance_was_on else "6 maintenance off: skipped")
        self.say(f"7 health and smoke against {url}" if url else "7 health and smoke: skipped (no --url)")

    def take_backup(self) -> None:
        self.begin("backup", f"pg_dump of {self.where} into {self.args.backup_dir}/")
        try:
            self.backup, size, entries = operations.make_backup(self.owner_url, Path(self.args.backup_dir))
        except operations.BackupFailed as exc:
            raise Failed(str(exc), 1) from None
        self.say(f"{self.backup}: {size} bytes, {entries} entries listed by pg_restore --list")

    def _switch_migrations(self) -> list[str]:
        """The pending migrations up to the one that defines api.set_maintenance."""
        ids = list(self.pending)
        defines = re.compile(r"CREATE\s+(OR\s+REPLACE\s+)?FUNCTION\s+api\.set_maintenance\s*\(", re.I)
        cut = next((i for i, m in enumerate(ids) if defines.search(mig.path_of(m).read_text())), None)
        return ids[:cut + 1] if cut is not None else ids

    def _apply(self, mid: str) -> None:
        self.say(f"applying {mid}")
        try:
            mig.apply(self.owner_url, upto=mid)
        except BaseException:
            self._record_applied()
            raise
        self.applied.append(mid)
        self.pending.remove(mid)

    def _record_applied(self) -> None:
        """After a failed apply: what is applied now that was pending at the start."""
        try:
            now = set(mig.applied(self.owner_url))
        except Exception:  # noqa: BLE001 - best effort; self.applied stays as far as we know
            return
        for mid in [m for m in self.pending if m in now]:
            self.applied.append(mid)
            self.pending.remove(mid)

    def maintenance_on(self) -> None:
        if not self.args.maintenance:
            return
        if self.maintenance_was_on:
            self.begin("maintenance on", "already on before this deploy; it stays on at the end")
            return
        if not self.switch_exists:
            early = self._switch_migrations()
            self.begin("maintenance on", f"the schema predates the maintenance switch: applying {', '.join(early)} first")
            self.say("note: maintenance pauses writes made through the api functions only; an application "
                     "still running on the old schema writes tables directly and must be stopped separately")
            for mid in early:
                self._apply(mid)
        else:
            self.begin("maintenance on", "pausing writes (they answer 503 with Retry-After; reads go on)")
        with psycopg.connect(self.owner_url, autocommit=True) as conn:
            state = calls.owner_set_maintenance(Session(conn), True)
        self.turned_on = True
        self.say(f"maintenance on since {state.get('since')}")

    def migrate(self) -> None:
        self.begin("migrate", f"{len(self.pending)} pending" + (f": {', '.join(self.pending)}" if self.pending else ""))
        for mid in list(self.pending):
            self._apply(mid)
        self.say(f"migrations up to date ({len(self.applied)} applied by this deploy)")

    def verify(self) -> None:
        self.begin("verify", "api.integrity_report()")
        hold = config.hold_minutes(getattr(self.args, "hold_minutes", None))
        with psycopg.connect(self.owner_url, autocommit=True) as conn:
            rows = calls.integrity_report(Session(conn), hold)
        print_table(["check", "ok", "detail"], [(c, "ok" if ok else "FAILED", d) for c, ok, d in rows])
        failed = [c for c, ok, _ in rows if not ok]
        if failed:
            raise Failed(f"{len(failed)} integrity check(s) failed: {', '.join(failed)}", 1)

    def maintenance_off(self) -> None:
        if not self.turned_on:
            return
        self.begin("maintenance off", "resuming writes")
        with psycopg.connect(self.owner_url, autocommit=True) as conn:
            calls.owner_set_maintenance(Session(conn), False)
        self.turned_on = False
        self.say("maintenance off")

    def health_and_smoke(self) -> None:
        if not self.args.url:
            return
        base = self.args.url.rstrip("/")
        self.begin("health and smoke", f"GET {base}/health, then a smoke checkout")
        try:
            status, body = _http("GET", base + "/health", timeout=10)
        except (urllib.error.URLError, OSError) as exc:
            raise Failed(f"GET {base}/health: server unreachable: {getattr(exc, 'reason', exc)}", 1) from None
        migrations = body.get("migrations") if isinstance(body, dict) else None
        self.say(f"GET /health: HTTP {status}, migrations {migrations}")
        if status != 200 or migrations != "ok":
            raise Failed(f"GET {base}/health answered HTTP {status} with migrations {migrations!r} "
                         "(expected 200 and 'ok'): is the server running the new code on this database?", 1)
        if self.maintenance_was_on:
            self.say("smoke: skipped: maintenance was on before this deploy and stays on "
                     f"(after ending it: python -m pyapp smoke --url {base})")
            return
        try:
            code, failed = smoke.run(self.owner_url, base, out=self.say)
        except (urllib.error.URLError, OSError) as exc:
            raise Failed(f"smoke: server unreachable: {getattr(exc, 'reason', exc)}", 1) from None
        if code != 0:
            raise Failed(f"smoke failed: {', '.join(failed)}", 1)
        self.say("smoke passed")

    # ------------------------------------------------------------ the procedure

    def run(self) -> int:
        started = time.monotonic()
        try:
            self.preflight()
            if self.args.dry_run:
                self.print_plan()
                print("deploy: dry run: preflight passed")
                return 0
            notify.send(f"deploy started on {self.where}: {len(self.pending)} pending migration(s)"
                        + (f" ({', '.join(self.pending)})" if self.pending else "")
                        + ("; maintenance on during the migrations" if self.args.maintenance else "")
                        + (f"; smoke against {self.args.url}" if self.args.url else ""))
            self.take_backup()
            self.maintenance_on()
            self.migrate()
            self.verify()
            self.maintenance_off()
            self.health_and_smoke()
        except Failed as exc:
            return self.fail(exc.reason, exc.code)
        except KeyboardInterrupt:
            return self.fail("interrupted (Ctrl-C)", 4 if self.changed else 1)
        except Exception as exc:  # noqa: BLE001 - a step failed: say where, what to undo, and notify
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            state = getattr(exc, "sqlstate", None)
            reason = f"{type(exc).__name__}" + (f" ({state})" if state else "") + f": {first}"
            if self.changed:
                return self.fail(reason, 4)
            return self.fail(reason, 3 if isinstance(exc, psycopg.OperationalError) else 1)
        done = (f"deploy finished on {self.where} in {time.monotonic() - started:.0f} s: "
                f"{len(self.applied)} migration(s) applied" + (f" ({', '.join(self.applied)})" if self.applied else "")
                + "; verify passed" + (f"; health and smoke passed at {self.args.url}" if self.args.url else "")
                + (f"; backup {self.backup}" if self.backup else ""))
        print(f"deploy: {done.split(': ', 1)[1]}")
        notify.send(done)
        return 0

    def fail(self, reason: str, code: int) -> int:
        err = sys.stderr
        print(f"deploy: FAILED at step {self.n}/{len(STEPS)} {self.step}: {reason}", file=err, flush=True)
        if self.args.dry_run:
            print("deploy: dry run: nothing was changed", file=err)
            return code
        undo = self.undo_lines()
        if not self.changed:
            print("deploy: nothing was changed" + (f" (backup {self.backup} kept)" if self.backup else ""), file=err)
        else:
            print(f"deploy: the database is as step {self.step} left it ({len(self.applied)} migration(s) applied: "
                  f"{', '.join(self.applied) or 'none'}); to undo this deploy:", file=err)
            for line in undo:
                print(f"  {line}", file=err)
        if self.turned_on:
            print("deploy: maintenance mode stays on (writes paused) until the database is checked; "
                  "end it with: python -m pyapp maintenance off", file=err)
        notify.send(f"deploy FAILED on {self.where} at step {self.step}: {reason}. "
                    + ("Nothing was changed." if not self.changed else "Undo: " + " | ".join(undo))
                    + (" Maintenance mode stays on." if self.turned_on else ""))
        return code


def deploy(args) -> int:
    with database() as db:
        return Deploy(args, db.owner_url, notify.where(db.owner_url)).run()
