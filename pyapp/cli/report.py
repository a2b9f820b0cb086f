"""report: the checkout figures of a window and, with --check, the deployment checklist's verdict
(api.checkout_report, api.deploy_verdict)."""
from __future__ import annotations

import json
import re
import sys

from pyapp.cli.tables import print_table
from pyapp.db import calls
from pyapp.db.runtime import database

DURATION_UNITS = {"m": "mins", "h": "hours", "d": "days"}


def parse_duration(text: str) -> tuple[int, str]:
    """'30m', '6h', '7d' -> (30, 'mins') ...; ValueError otherwise."""
    m = re.fullmatch(r"\s*([0-9]{1,6})\s*([mhd])\s*", text or "")
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 6h or 7d)")
    return int(m.group(1)), DURATION_UNITS[m.group(2)]


def _pct(x) -> str:
    return "n/a" if x is None else f"{float(x) * 100:.2f} %"


def _ms(x) -> str:
    return "n/a" if x is None else f"{float(x) * 1000:.1f} ms"


def _in_unit(x, unit: str) -> str:
    if x is None:
        return "n/a"
    return _pct(x) if unit == "ratio" else f"{float(x):.3f} s"


def _outcome_order(outcome: str) -> tuple:
    """The server's decisions first, then the checkouts it refused before deciding (pyapp.metrics)."""
    from pyapp.metrics import DECIDED, OUTCOMES

    return (outcome not in DECIDED, OUTCOMES.index(outcome) if outcome in OUTCOMES else len(OUTCOMES), outcome)


VERDICT_EXIT = {"PASS": 0, "WARN": 1, "FAIL": 2}
WARN_OP = {">": "<=", "<": ">="}


def print_verdict(verdict: dict) -> None:
    """The checklist's targets against the window's figures (api.deploy_verdict), one row each."""
    print()
    print(f"verdict: {verdict['decidedCheckouts']} checkouts decided by the server in the window; "
          f"at least {verdict['minCheckouts']} to judge")
    print_table(["target", "measured", "threshold", "warn at", "status", "note"], [
        (c["title"], _in_unit(c["value"], c["unit"]), f"{c['op']} {_in_unit(c['threshold'], c['unit'])}",
         f"{WARN_OP[c['op']]} {_in_unit(c['warnAt'], c['unit'])}", c["status"], c["reason"])
        for c in verdict["checks"]])
    print(f"verdict: {verdict['status']} (exit {VERDICT_EXIT[verdict['status']]})")


def report(args) -> int:
    try:
        amount, unit = parse_duration(args.since)
    except ValueError as exc:
        print(f"pyapp: {exc}", file=sys.stderr)
        return 2
    if args.min_checkouts is not None and args.min_checkouts < 1:
        print("pyapp: --min-checkouts must be at least 1", file=sys.stderr)
        return 2
    # The targets and the default minimum are api.deploy_verdict's.
    with database() as db, db.session() as s:
        rep, verdict = calls.report_and_verdict(s, amount, unit, args.min_checkouts)
    code = VERDICT_EXIT[verdict["status"]] if args.check else 0
    if args.json:
        print(json.dumps({**rep, "verdict": verdict}, indent=2, sort_keys=True))
        return code
    lat = rep["latencySeconds"]
    print(f"report: {rep['from']} to {rep['until']} (--since {args.since})")
    print_table(["figure", "value"], [
        ("checkouts", rep["checkouts"]),
        *((f"  {k}", rep["byOutcome"][k]) for k in sorted(rep["byOutcome"], key=_outcome_order)),
        ("decided by the server", rep["decidedCheckouts"]),
        ("  failed (conflict, error)", rep["failedCheckouts"]),
        ("success rate", _pct(rep["successRate"])),
        ("ConcurrencyErrors", rep["concurrencyErrors"]),
        ("ConcurrencyError rate", _pct(rep["concurrencyErrorRate"])),
        ("retries", rep["retries"]),
        ("retries per checkout", "n/a" if rep["retriesPerCheckout"] is None else rep["retriesPerCheckout"]),
        ("latency P50", _ms(lat["p50"])),
        ("latency P95", _ms(lat["p95"])),
        ("latency P99", _ms(lat["p99"])),
        ("latency mean", _ms(lat["mean"])),
        ("products with negative stock", rep["negativeStock"]),
        *((f"orders {k}", v) for k, v in sorted(rep["ordersByStatus"].items())),
    ])
    if args.check:
        print_verdict(verdict)
    return code
