"""Schemathesis checks that the served OpenAPI document says what the server enforces: it runs
`schemathesis run <url>/openapi.json --checks all` (every check, in the examples, coverage,
fuzzing and stateful phases) as an ADMIN, who passes every role check so that requests reach the
deepest code, and requires 0 failures. schemathesis.toml (read by the same command from the
repository root) says which answers this API gives by design where schemathesis' defaults expect
another, and tests/support/schemathesis_hooks.py keeps each of those exact.

Beyond the checks, from every request the runs recorded (the HAR report): no answer is a 5xx (a
webhook key is set, so not even WEBHOOK_NOT_CONFIGURED), every error is problem+json, and the
ADMIN's token stayed valid for the whole run: no request sent with it to an operation that takes a
bearer token was refused as unauthenticated, the ADMIN-only operations answered 200 to it, and the
same operations answered only 401 to the probes without it (missing or invalid token).

Two operations stay out of the CLI runs: POST /admin/maintenance/enable (maintenance would turn
every later write into a correct 503) and POST /api/auth/logout (it revokes the token it is sent
with), which is fuzzed here with a token minted for each request, under the same checks."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import psycopg
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks

from pyapp import auth
from tests.integration.test_http_api import PASSWORD
from tests.support.http_server import ROOT, create_admin

SEED = 20261201  # the runs are reproducible: `st run ... --seed` with the same numbers
EXAMPLES = 15  # per operation in the coverage and fuzzing phases: ~1,100 requests
STATEFUL_EXAMPLES = 80  # scenarios of up to 6 linked calls: ~500 requests
LOGOUT_EXAMPLES = 15
LOGOUT = ("POST", "/api/auth/logout")
# Switching maintenance on would turn every later write into a (correct) 503.
LEFT_OUT = [LOGOUT[1], "/admin/maintenance/enable"]
# Operations only an ADMIN may use, and those a SELLER or an ADMIN may use.
ADMIN_ONLY = {("POST", "/admin/maintenance/disable"), ("GET", "/admin/dashboard/data")}
SELLER_OR_ADMIN = {("POST", "/api/marketplace/products"), ("PATCH", "/api/marketplace/products/{productId}")}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _token(url: str, email: str) -> str:
    r = requests.post(url + "/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def _mint(owner_url: str, user_id: str) -> str:
    """A new bearer token for user_id, issued by a DBA (no login, so no login throttle)."""
    token = auth.new_token()
    with psycopg.connect(owner_url, autocommit=True) as c:
        c.execute("SELECT api.issue_token(%s, %s)", (user_id, auth.token_hash(token)))
    return token


def _fresh_start(owner_url: str, user_id: str, max_unpaid_orders: int | None) -> None:
    """Before the stateful phase: the ADMIN's cart emptied, its unpaid orders cancelled and the
    unpaid-order limit set, as a DBA would, so that the phase's chains (list a product, add it to
    the cart, check out, read or cancel the order) can succeed instead of meeting the lines and the
    unpaid orders the earlier phases left behind, on every checkout after the third."""
    with psycopg.connect(owner_url, autocommit=True) as c:
        c.execute('DELETE FROM "CartItem" WHERE "userId" = %s', (user_id,))
        c.execute("""SELECT api.cancel_order(o.id) FROM "Order" o
                     WHERE o."userId" = %s AND o.status IN ('PENDING_PAYMENT', 'PAYMENT_FAILED')""", (user_id,))
        c.execute("SELECT api.set_limits(jsonb_build_object('maxUnpaidOrders', %s::integer))", (max_unpaid_orders,))


def _run_cli(url: str, token: str, phases: str, examples: int, out: Path) -> tuple[dict, list[dict]]:
    """`schemathesis run` with every check as the ADMIN; its JSON report and its HAR entries."""
    out.mkdir(parents=True)
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(ROOT / "schemathesis.toml"), "run",
           f"{url}/openapi.json", "--checks", "all", "-H", f"Authorization: Bearer {token}",
           *[arg for path in LEFT_OUT for arg in ("--exclude-path", path)],
           "--phases", phases, "--max-examples", str(examples), "--seed", str(SEED), "--workers", "1",
           "--continue-on-failure", "--no-color", "--report", "json,har", "--report-dir", str(out),
           "--output-sanitize", "false", "--request-timeout", "30"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    print(run.stdout[-3000:])
    reports = {p.name.split("-")[0]: p for p in out.iterdir()}
    assert "json" in reports and "har" in reports, (run.returncode, run.stdout[-4000:], run.stderr[-2000:])
    report = json.loads(reports["json"].read_text())
    entries = json.loads(reports["har"].read_text())["log"]["entries"]
    assert run.returncode == 0 and not report["failures"] and not report["errors"], (
        f"schemathesis ({phases}) found {len(report['failures'])} failures and {len(report['errors'])} errors:\n"
        + run.stdout[run.stdout.find("FAILURES"):][:12000])
    return report, entries


def _operation(doc: dict):
    """A function from a request's method and URL to the document's (METHOD, path template)."""
    templates = [(re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(p)) + "$"), p) for p in doc["paths"]]
    templates.sort(key=lambda t: t[1].count("{"))  # a literal path wins over a template

    def find(method: str, url: str) -> tuple[str, str] | None:
        path = "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        for rx, template in templates:
            if rx.match(path):
                return method.upper(), template
        return None
    return find


def test_the_document_says_what_the_server_enforces(http_app, http_db, tmp_path):  # noqa: F811
    admin_id = create_admin(http_db[0], "fuzz-admin@example.com", PASSWORD)
    admin_token = _token(http_app.url, "fuzz-admin@example.com")
    doc = requests.get(http_app.url + "/openapi.json", timeout=10).json()
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items() if m in METHODS}
    assert ADMIN_ONLY | SELLER_OR_ADMIN | {LOGOUT} <= set(ops), sorted(ops)
    # Operations that take a bearer token (the webhook authenticates by signature, login by password).
    bearer_ops = {key for key, op in ops.items() if op.get("security") == [{"bearer": []}]}
    assert ADMIN_ONLY | SELLER_OR_ADMIN | {LOGOUT} <= bearer_ops, sorted(bearer_ops)
    # The stateful phase chains checkout to the order, and a new product to reading and editing it.
    links = {(op["operationId"], status): set(r.get("links", {})) for op in ops.values()
             for status, r in op["responses"].items()}
    assert {"GetOrder", "CancelOrder"} <= links[("checkout", "201")]
    assert {"GetProduct", "UpdateProduct"} <= links[("createProduct", "201")]

    report, entries = _run_cli(http_app.url, admin_token, "examples,coverage,fuzzing", EXAMPLES, tmp_path / "ops")
    _fresh_start(http_db[0], admin_id, max_unpaid_orders=None)
    stateful, stateful_entries = _run_cli(http_app.url, admin_token, "stateful", STATEFUL_EXAMPLES,
                                          tmp_path / "stateful")
    _fresh_start(http_db[0], admin_id, max_unpaid_orders=3)
    cases = report["test_cases"]["generated"] + stateful["test_cases"]["generated"]
    print(f"schemathesis --checks all: {report['test_cases']['generated']} cases per operation, "
          f"{stateful['test_cases']['generated']} in the stateful phase, 0 failures; "
          f"{len(entries) + len(stateful_entries)} requests")
    assert cases > 1000

    # Every request the runs sent, checks' probes included.
    find = _operation(doc)
    answers: dict[tuple[str, str, str], Counter] = defaultdict(Counter)  # (method, path, who) -> statuses
    problems = []
    for e in entries + stateful_entries:
        req, resp = e["request"], e["response"]
        key = find(req["method"], req["url"])
        sent = next((h["value"] for h in req["headers"] if h["name"].lower() == "authorization"), None)
        who = "admin" if sent == f"Bearer {admin_token}" else "other"
        status = resp["status"]
        answers[(*(key or (req["method"], req["url"])), who)][status] += 1
        ctype = resp["content"].get("mimeType", "")
        if status >= 500:
            problems.append(f"{req['method']} {req['url']} -> {status}: {resp['content'].get('text', '')[:200]}")
        elif status >= 400 and not ctype.startswith("application/problem+json"):
            problems.append(f"{req['method']} {req['url']} -> {status} as {ctype!r}")
    for (method, path, who), statuses in sorted(answers.items()):
        if (method, path) in ops:  # not the probes of undocumented methods (405)
            print(f"  {who:<6} {method:<6} {path:<45} {dict(sorted(statuses.items()))}")
    assert not problems, "\n".join(problems[:20])
    # The stateful phase followed the links from a checkout's 201 to the new order.
    reached: Counter = Counter()
    for e in stateful_entries:
        key = find(e["request"]["method"], e["request"]["url"])
        if key is not None and e["response"]["status"] < 300:
            reached[key] += 1
    print(f"  stateful, answered 2xx: {dict(sorted(reached.items()))}")
    assert reached[("POST", "/api/marketplace/checkout")] and (
        reached[("GET", "/api/marketplace/orders/{orderId}")] or reached[("POST", "/api/marketplace/orders/{orderId}/cancel")]
    ), "the stateful phase never reached an order through the links from a checkout"

    # The ADMIN's requests reached the handlers: never refused as unauthenticated...
    refused = {f"{m} {p}": dict(s) for (m, p, who), s in answers.items()
               if who == "admin" and (m, p) in bearer_ops and s[401]}
    assert not refused, f"ADMIN requests answered 401 (token no longer valid?): {refused}"
    # ...nor forbidden where an ADMIN is allowed; the ADMIN-only operations answered it 200, and
    # requests without its token (the checks' probes) never got past authentication.
    for key in ADMIN_ONLY | SELLER_OR_ADMIN:
        statuses = answers[(*key, "admin")]
        assert statuses and not statuses[403], (key, dict(statuses))
    for key in ADMIN_ONLY:
        assert answers[(*key, "admin")][200] > 0, (key, dict(answers[(*key, "admin")]))
        others = answers[(*key, "other")]
        assert others and set(others) == {401}, (key, dict(others))

    # Logout, with a token of its own for each request, under the same checks.
    load_all_checks()
    checks = [c for c in CHECKS.get_all() if getattr(c, "__name__", "") != "max_response_time"]
    schema = schemathesis.openapi.from_dict(doc)
    operation = next(r.ok() for r in schema.get_all_operations() if (r.ok().method.upper(), r.ok().path) == LOGOUT)
    logouts: Counter = Counter()
    failures: list[str] = []

    def fuzz_logout(mode: GenerationMode):
        @settings(max_examples=LOGOUT_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case):
            headers = {"Authorization": f"Bearer {_mint(http_db[0], admin_id)}"}
            r = case.call(base_url=http_app.url, headers=headers, timeout=15)
            logouts[(mode.value, r.status_code)] += 1
            try:
                case.validate_response(r, checks=checks, headers=headers)
            except (AssertionError, BaseExceptionGroup) as exc:  # a failure, or schemathesis' FailureGroup
                failures.append(f"{case.as_curl_command()[:300]}: {exc}"[:1000])
        return fuzz

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            fuzz_logout(mode)()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # logout has no parameters or body to make invalid
    print(f"  logout: {dict(logouts)}")
    assert not failures, "\n".join(failures[:10])
    assert logouts[(GenerationMode.POSITIVE.value, 200)] > 0, "the ADMIN's logout never revoked a token"

    # The ADMIN's token still works, and the server is still healthy afterwards.
    r = requests.get(http_app.url + "/admin/dashboard/data", headers={"Authorization": f"Bearer {admin_token}"},
                     timeout=10)
    assert r.status_code == 200, r.text
    assert requests.get(http_app.url + "/health", timeout=10).status_code == 200
