"""python -m pyapp <command>: the marketplace's operations commands. `--help` on any of them.

Exit codes: 0 success; 1 a check failed (pending migrations, failed integrity check, race not
won exactly once, refused rollback, no active webhook key for webhook-secret status) or, for
alerts, a warning fires, or for report --check, a target warns; 2 bad usage (also a value the
database refuses, or serve --demo outside the project's own cluster or on a non-loopback HOST;
always with a message on stderr) or, for alerts, a critical alert fires, or for report --check, a
target fails; 3 the database (or, for simulate-race, smoke and deploy, the server or the database)
could not be reached; 4 (deploy) a step failed after it changed the database: the rollback is
printed.
"""
from __future__ import annotations

import argparse
import sys
import urllib.error

import psycopg

from pyapp import notify
from pyapp.cli import accounts, deploy, expiry_schedule, migrations, operations, race, report, serve, settings, smoke


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyapp", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="serve the HTTP API (local cluster when DATABASE_URL is unset)")
    s.add_argument("--demo", action="store_true",
                   help="load the demo catalogue and users when the database has no users; only in the project's "
                        "own cluster (DATABASE_URL unset) with a loopback HOST, else exit 2")
    s.add_argument("--workers", type=int, default=None, help="HTTP server worker processes (default: WORKERS or 2)")
    s.epilog = ("After migrating, writes PAYMENT_WEBHOOK_SECRET, MAX_UNPAID_ORDERS and "
                "REGISTRATIONS_PER_CLIENT_PER_HOUR into the database when they are set, then runs the HTTP server "
                "(pyapp/server.py) as the app role. Exit 2 on a malformed variable or a value the database refuses.")
    s.set_defaults(func=serve.serve)

    s = sub.add_parser("migrate", help="apply every pending migration")
    s.set_defaults(func=migrations.migrate)

    s = sub.add_parser("rollback", help="roll back one named migration (and those after it), or all")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("name", nargs="?", help="migration id or name, e.g. add_version_to_product")
    g.add_argument("--all", action="store_true", help="roll back every migration")
    s.add_argument("--force", action="store_true",
                   help="drop the version column even while orders are PENDING_PAYMENT")
    s.set_defaults(func=migrations.rollback)

    s = sub.add_parser("status", help="list applied and pending migrations; exit 1 when any is pending")
    s.set_defaults(func=migrations.status)

    s = sub.add_parser("verify", help="run api.integrity_report(); exit 1 on any failed check")
    s.add_argument("--hold-minutes", type=int, default=None, help="hold window (default ORDER_HOLD_MINUTES or 30)")
    s.set_defaults(func=migrations.verify)

    s = sub.add_parser("backup", help="pg_dump (custom format) to a timestamped file, verified with pg_restore --list")
    s.add_argument("--dir", default="backups", help="folder for the dump (default: backups/)")
    s.set_defaults(func=operations.backup)

    s = sub.add_parser("maintenance", help="turn maintenance mode on or off")
    s.add_argument("state", choices=["on", "off"])
    s.set_defaults(func=operations.maintenance)

    s = sub.add_parser("expire-orders", help="cancel unpaid orders past the hold window and return their stock")
    s.add_argument("--every", type=float, default=None, metavar="SECONDS",
                   help="keep running, one pass every SECONDS, until SIGTERM or Ctrl-C")
    s.add_argument("--hold-minutes", type=int, default=None, help="hold window (default ORDER_HOLD_MINUTES or 30)")
    s.add_argument("--batch-size", type=int, default=100,
                   help="orders per transaction (default 100: few products locked at once, see bench/expiry_bench.py)")
    s.set_defaults(func=operations.expire_orders)

    s = sub.add_parser("expiry-schedule", help="run the order expiry inside PostgreSQL with pg_cron: on, off, status",
                       description="on: schedules api.expire_pending_orders as a pg_cron job of this database "
                                   "(CREATE EXTENSION pg_cron in pg_cron's database where missing; idempotent); "
                                   "exit 1 when pg_cron is not loaded on the server: run the worker instead "
                                   "(expire-orders --every 60). off: unschedules it. status: which runner runs "
                                   "(pg_cron, the worker) and when each last succeeded; exit 1 when none runs.")
    s.add_argument("action", choices=["on", "off", "status"])
    s.add_argument("--every-minutes", type=int, default=1, choices=range(1, 60), metavar="N",
                   help="on: run every N minutes, 1 to 59 (default 1)")
    s.add_argument("--hold-minutes", type=int, default=None,
                   help="on: hold window (default ORDER_HOLD_MINUTES or 30), fixed in the job when it is scheduled")
    s.add_argument("--batch-size", type=int, default=1000,
                   help="on: orders per run, 1 to 10000 (default 1000); each run is one batch")
    s.set_defaults(func=expiry_schedule.expiry_schedule)

    s = sub.add_parser("alerts", help="evaluate the alert rules on live data; exit 2 on a critical, 1 on a warning")
    s.add_argument("--hold-minutes", type=int, default=None, help="hold window (default ORDER_HOLD_MINUTES or 30)")
    s.add_argument("--window-minutes", type=int, default=60,
                   help="window of the ConcurrencyError and failed-order rules (default 60)")
    s.add_argument("--max-negative-stock", type=int, default=0, help="critical above this many (default 0)")
    s.add_argument("--max-concurrency-errors", type=int, default=100, help="warning above this many in the window (default 100)")
    s.add_argument("--max-failed-orders", type=int, default=50,
                   help="warning above this many PAYMENT_FAILED or CANCELLED orders in the window (default 50)")
    s.add_argument("--max-unpaid-past-hold", type=int, default=0,
                   help="warning above this many unpaid orders older than the hold window (default 0)")
    s.set_defaults(func=operations.alerts)

    s = sub.add_parser("report", help="the day-one report: checkouts, success rate, conflicts, retries, latency, "
                                      "orders; with --check, the checklist's verdict (exit 0 pass, 1 warn, 2 fail)",
                       description="Checkouts by outcome, success rate and ConcurrencyError rate (over the checkouts "
                                   "the server decided: client errors and maintenance 503s count neither way), "
                                   "retries, latency, negative stock and orders over the window, from the figures "
                                   "the HTTP workers persist. --check adds the deployment checklist's verdict "
                                   "(api.deploy_verdict, which holds the targets and prints them): success rate, "
                                   "checkout P95 and ConcurrencyError rate, each PASS, WARN (80 % of the way to its "
                                   "threshold, or fewer than --min-checkouts checkouts) or FAIL.",
                       epilog="Exit codes: 0, or with --check 0 PASS, 1 WARN, 2 FAIL; 2 also for bad usage (a "
                              "message on stderr, nothing on stdout); 3 the database could not be reached.")
    s.add_argument("--since", default="24h", help="window such as 30m, 6h or 7d (default 24h; the checklist's "
                                                  "checks are 1h and 24h)")
    s.add_argument("--json", action="store_true", help="print the report as JSON, the verdict included")
    s.add_argument("--check", action="store_true",
                   help="judge the window against the checklist's targets; exit 0 PASS, 1 WARN, 2 FAIL")
    s.add_argument("--min-checkouts", type=int, default=None, metavar="N",
                   help="fewer checkouts decided by the server than N in the window is WARN (insufficient "
                        "data), unless a rate misses its target even counted against N "
                        "(default: api.deploy_verdict's, 200)")
    s.set_defaults(func=report.report)

    s = sub.add_parser("create-user", help="create a user of any role (ADMIN included)")
    s.add_argument("--email", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--role", choices=["BUYER", "SELLER", "ADMIN"], default="BUYER")
    s.add_argument("--password", default=None, help="default: read from the MARKETPLACE_PASSWORD variable or prompt")
    s.set_defaults(func=accounts.create_user)

    s = sub.add_parser("simulate-race", help="N buyers race for the last unit over HTTP; exit 0 only if exactly one wins",
                       description="As the owner (DATABASE_URL, or the project's own cluster) make a product with "
                                   "stock 1 and N buyers with it in their cart, then all check out at once over "
                                   "HTTP. Exit 0 exactly one winner, 1 otherwise, 3 server or database unreachable.")
    s.add_argument("--url", default=None, help="base URL of the running server (default http://HOST:PORT)")
    s.add_argument("--buyers", type=int, default=100, help="how many buyers race (default 100)")
    s.set_defaults(func=race.simulate_race)

    s = sub.add_parser("webhook-secret", help="set, retire or list the payment webhook's HMAC keys (never shown)",
                       description="The payment webhook accepts signatures made with either of the two newest "
                                   "keys, so a key is rotated without refusing a delivery: `set` the new one, "
                                   "move every sender to it, then `retire` the older.")
    acts = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = acts.add_parser("set", help="add a key as the newest (no change when it already is the newest)",
                        description="Key from --secret, else PAYMENT_WEBHOOK_SECRET, else a prompt (or one line "
                                    "of standard input). Exit 2 when none is given or the database refuses it "
                                    "(at least 16 bytes).")
    a.add_argument("--secret", default=None,
                   help="the key (visible to other local users in the process list: prefer the variable or the prompt)")
    acts.add_parser("retire", help="keep only the newest key, once every sender signs with it")
    acts.add_parser("status", help="list the keys (id, time, active; never the key); exit 1 when none is active")
    s.set_defaults(func=settings.webhook_secret)

    s = sub.add_parser("unthrottle", help="lift the login throttle of an email (all clients, or one)",
                       description="Deletes the recorded failed logins of EMAIL (only those from --client when "
                                   "given) and prints how many it cleared.")
    s.add_argument("email", metavar="EMAIL")
    s.add_argument("--client", default=None, metavar="ADDRESS",
                   help="only the failures from this client address (an IPv6 one stands for its /64)")
    s.set_defaults(func=settings.unthrottle)

    s = sub.add_parser("limits", help="show, and with options set, the limits kept in the database",
                       description="Without options, prints the limits. Each option sets one (a whole number, "
                                   "or `none` for no limit) and leaves the other unchanged.")
    s.add_argument("--max-unpaid-orders", type=settings.limit_value, default=None, metavar="N|none",
                   help="unpaid orders one buyer may hold (MAX_UNPAID_ORDERS)")
    s.add_argument("--registrations-per-client-per-hour", type=settings.limit_value, default=None,
                   metavar="N|none", help="sign-ups per client address and hour (REGISTRATIONS_PER_CLIENT_PER_HOUR)")
    s.set_defaults(func=settings.limits)

    s = sub.add_parser("notify", help="post a message to NOTIFY_WEBHOOK_URL (Slack-compatible {\"text\": ...})",
                       description="Posts {\"text\": TEXT} to NOTIFY_WEBHOOK_URL with a 5-second timeout. deploy, "
                                   "rollback and alerts send their own messages the same way, and never fail "
                                   "because of it.",
                       epilog="Exit 0 sent, or NOTIFY_WEBHOOK_URL is unset (nothing sent, and it says so); 1 the "
                              "webhook failed or did not answer (a warning says why; the URL is never printed); "
                              "2 empty TEXT.")
    s.add_argument("text", nargs="+", metavar="TEXT", help="the message (several words are joined by spaces)")
    s.set_defaults(func=notify.notify)

    s = sub.add_parser("smoke", help="a production-safe checkout and cancel over HTTP against a running server",
                       description=smoke.__doc__.split("\n\n", 1)[1].rsplit("\n\nExit", 1)[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Exit 0 every check passed; 1 a check failed (printed as FAILED), maintenance mode\n"
                              "is on (smoke cannot check out then), or another smoke run is in progress; 3 the\n"
                              "server or the database could not be reached.")
    s.add_argument("--url", required=True, help="base URL of the running server, e.g. http://127.0.0.1:8080")
    s.set_defaults(func=smoke.smoke)

    s = sub.add_parser("deploy", help="the checklist's production steps as one command: preflight, backup, "
                                      "[maintenance on], migrate, verify, [maintenance off], [health and smoke]",
                       description=deploy.__doc__.split("\n\nA module of its own", 1)[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=deploy.EPILOG)
    s.add_argument("--url", default=None, help="base URL of the server to check after migrating (GET /health, "
                                                "then the smoke test); without it those steps are skipped")
    s.add_argument("--maintenance", action="store_true",
                   help="pause writes (maintenance mode) from before the migrations until verify has passed")
    s.add_argument("--dry-run", action="store_true", help="run the preflight and print the plan; change nothing")
    s.add_argument("--verbose", action="store_true", help="show each pending migration's whole SQL")
    s.add_argument("--backup-dir", default="backups", help="folder for the backup (default: backups/)")
    s.add_argument("--hold-minutes", type=int, default=None,
                   help="hold window for verify (default ORDER_HOLD_MINUTES or 30)")
    s.set_defaults(func=deploy.deploy)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except psycopg.OperationalError as exc:
        print(f"pyapp: database unreachable: {exc}".strip(), file=sys.stderr)
        return 3
    except urllib.error.URLError as exc:
        print(f"pyapp: server unreachable: {exc.reason}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
