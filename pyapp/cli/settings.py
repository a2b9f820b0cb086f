"""Commands for what the database keeps out of the HTTP app's reach: the payment-webhook keys
(`webhook-secret set|retire|status`), the login throttle (`unthrottle`) and the limits against
hoarding and mass sign-up (`limits`), plus `apply_env`, with which `serve` writes
PAYMENT_WEBHOOK_SECRET, MAX_UNPAID_ORDERS and REGISTRATIONS_PER_CLIENT_PER_HOUR there.

All of them go through the owner's connection to api functions the app role may not execute.
Their SQL is in pyapp.db.ops_calls.
Each command takes the parsed arguments and returns an exit code: 0 done; 1 for `webhook-secret
status` when no key is active (the webhook then refuses every delivery); 2 bad usage, including
a value the database refuses (e.g. a key shorter than 16 bytes); 3 (from pyapp.__main__) the
database could not be reached.
"""
from __future__ import annotations

import argparse
import getpass
import ipaddress
import sys

import psycopg

from pyapp import config
from pyapp.cli.tables import print_table
from pyapp.db import ops_calls as ops
from pyapp.db.calls import Session
from pyapp.db.runtime import database

# The keys of api.limits() and the environment variables that set them.
LIMITS = {"maxUnpaidOrders": "MAX_UNPAID_ORDERS",
          "registrationsPerClientPerHour": "REGISTRATIONS_PER_CLIENT_PER_HOUR"}
UNLIMITED = "none"


class Refused(Exception):
    """The database refused a value (an MK error, or a data or integrity error)."""


def _call(conn: psycopg.Connection, call, *args):
    """`call` (a pyapp.db.ops_calls function) on `conn`; a refusal becomes Refused."""
    try:
        return call(Session(conn), *args)
    except psycopg.Error as exc:
        state = exc.sqlstate or ""
        if state.startswith(("MK", "22", "23")):
            raise Refused(exc.diag.message_primary or str(exc)) from None
        raise


def limit_value(text: str):
    """argparse type of a limit: a whole number from 1 to 1,000,000, or `none` (no limit)."""
    if text.strip().lower() == UNLIMITED:
        return UNLIMITED
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 'none': {text!r}") from None
    if not 1 <= value <= 10**6:
        raise argparse.ArgumentTypeError(f"must be 1 to 1000000 or 'none', not {value}")
    return value


def _show_limits(limits: dict) -> None:
    print_table(["limit", "value", "variable"],
                [(k, UNLIMITED if limits.get(k) is None else limits[k], env) for k, env in LIMITS.items()])


def _limits_line(limits: dict) -> str:
    return ", ".join(f"{k} {UNLIMITED if limits.get(k) is None else limits[k]}" for k in LIMITS)


# ---------------------------------------------------------------- serve

def apply_env(owner_url: str, cfg) -> list[str]:
    """Writes the webhook key and the limits that the environment sets (pyapp.config) into the
    database; returns what it did, one line each, without the key. Raises Refused."""
    lines: list[str] = []
    changes = {k: v for k, v in (("maxUnpaidOrders", cfg.max_unpaid_orders),
                                 ("registrationsPerClientPerHour", cfg.registrations_per_client_per_hour))
               if v is not None}
    if not cfg.webhook_secret and not changes:
        return lines
    with psycopg.connect(owner_url, autocommit=True) as conn:
        if cfg.webhook_secret:
            r = _call(conn, ops.set_webhook_secret, cfg.webhook_secret)
            lines.append(f"webhook key from PAYMENT_WEBHOOK_SECRET: {'added' if r['added'] else 'unchanged'}"
                         f" ({r['active']} active)")
        if changes:
            limits = _call(conn, ops.set_limits, changes)
            lines.append(f"limits: {_limits_line(limits)}")
    return lines


# ---------------------------------------------------------------- commands

def _read_secret(args) -> str:
    if args.secret:
        return args.secret
    if config.webhook_secret():
        return config.webhook_secret()
    if sys.stdin.isatty():
        first = getpass.getpass("new webhook secret: ")
        if first and getpass.getpass("again: ") != first:
            raise Refused("the two entries differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def webhook_secret(args) -> int:
    try:
        if args.action == "set":
            secret = _read_secret(args)
            if not secret:
                print("pyapp: no secret given (--secret, PAYMENT_WEBHOOK_SECRET or the prompt)", file=sys.stderr)
                return 2
            with database() as db, psycopg.connect(db.owner_url, autocommit=True) as conn:
                r = _call(conn, ops.set_webhook_secret, secret)
            print(f"webhook-secret: {'added as the newest key' if r['added'] else 'unchanged: already the newest key'}"
                  f"; {r['active']} active")
            return 0
        if args.action == "retire":
            with database() as db, psycopg.connect(db.owner_url, autocommit=True) as conn:
                r = _call(conn, ops.retire_webhook_secrets)
            print(f"webhook-secret: retired {r['retired']}; {r['active']} active (the newest)")
            return 0
    except Refused as exc:
        print(f"pyapp: refused: {exc}", file=sys.stderr)
        return 2
    with database() as db, psycopg.connect(db.owner_url, autocommit=True) as conn:
        rows = ops.webhook_secrets(Session(conn))
    print_table(["id", "created", "state"],
                [(i, t.isoformat(timespec="seconds"), "active" if a else "retired") for i, t, a in rows])
    active = sum(1 for *_, a in rows if a)
    print(f"webhook-secret: {len(rows)} keys, {active} active"
          + ("" if active else "; the webhook refuses every delivery (webhook-secret set)"))
    return 0 if active else 1


def unthrottle(args) -> int:
    if args.client is not None:
        try:
            ipaddress.ip_address(args.client.strip())  # the database throttles an IPv6 one by its /64
        except ValueError:
            print(f"pyapp: --client must be an IP address, not {args.client!r}", file=sys.stderr)
            return 2
    try:
        with database() as db, psycopg.connect(db.owner_url, autocommit=True) as conn:
            n = _call(conn, ops.lift_login_throttle, args.email, args.client)
    except Refused as exc:
        print(f"pyapp: refused: {exc}", file=sys.stderr)
        return 2
    where = f" from {args.client}" if args.client else ""
    print(f"unthrottle: cleared {n} failed login{'' if n == 1 else 's'} of {args.email}{where}")
    return 0


def limits(args) -> int:
    changes = {}
    for key, value in (("maxUnpaidOrders", args.max_unpaid_orders),
                       ("registrationsPerClientPerHour", args.registrations_per_client_per_hour)):
        if value is not None:
            changes[key] = None if value == UNLIMITED else value
    try:
        with database() as db, psycopg.connect(db.owner_url, autocommit=True) as conn:
            current = _call(conn, ops.set_limits, changes) if changes \
                else _call(conn, ops.limits)
    except Refused as exc:
        print(f"pyapp: refused: {exc}", file=sys.stderr)
        return 2
    _show_limits(current)
    if changes:
        print(f"limits: set {', '.join(changes)}")
    return 0
