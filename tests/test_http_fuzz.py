"""Schemathesis fuzzes every operation of the served OpenAPI document, with valid and invalid
inputs, as an ADMIN (who passes every role check, so requests reach the deepest code) and
anonymously: no answer may be a 5xx, and every error must be problem+json.

The ADMIN's token must stay valid for the whole run, or every admin case after the first
revocation would only reach the authentication check (a 401) and prove nothing about the
handlers: logout is fuzzed as the ADMIN with a token minted for that one request, and the test
asserts that no admin request to an operation that takes a bearer token was refused as
unauthenticated, and that the ADMIN-only operations answered successfully."""
from __future__ import annotations

from collections import Counter, defaultdict

import psycopg
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from pyapp import auth
from tests.http_server import create_admin, http_app, http_db  # noqa: F401
from tests.test_http_api import PASSWORD

EXAMPLES = 15  # per operation and generation mode: bounded, ~1,000 requests in all
# Switching maintenance on would turn every later write into a (correct) 503.
SKIP = {("POST", "/admin/maintenance/enable")}
# Revokes the token it is sent with: as the ADMIN it gets a fresh token per request.
LOGOUT = ("POST", "/api/auth/logout")
# Operations only an ADMIN may use, and those a SELLER or an ADMIN may use.
ADMIN_ONLY = {("POST", "/admin/maintenance/disable"), ("GET", "/admin/dashboard/data")}
SELLER_OR_ADMIN = {("POST", "/api/marketplace/products")}
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


def test_no_operation_answers_5xx_under_fuzzing(http_app, http_db):  # noqa: F811
    admin_id = create_admin(http_db[0], "fuzz-admin@example.com", PASSWORD)
    admin_token = _token(http_app.url, "fuzz-admin@example.com")
    doc = requests.get(http_app.url + "/openapi.json", timeout=10).json()
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items() if m in METHODS}
    ops_in_doc = set(ops)
    assert ADMIN_ONLY | SELLER_OR_ADMIN | {LOGOUT} <= ops_in_doc, sorted(ops_in_doc)
    # Operations that take a bearer token (the webhook authenticates by signature, login by password).
    bearer_ops = {key for key, op in ops.items() if any("bearer" in s for s in op.get("security", []))}
    assert ADMIN_ONLY | SELLER_OR_ADMIN | {LOGOUT} <= bearer_ops, sorted(bearer_ops)
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    calls = 0
    unsatisfiable: list[str] = []
    answers: dict[tuple[str, str, str], Counter] = defaultdict(Counter)  # (method, path, who) -> statuses

    def auth_headers(role: str, key: tuple[str, str]) -> dict:
        if role == "anonymous":
            return {}
        token = _mint(http_db[0], admin_id) if key == LOGOUT else admin_token
        return {"Authorization": f"Bearer {token}"}

    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if key in SKIP:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for role in ("admin", "anonymous"):
                @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def fuzz(case):
                    nonlocal calls
                    calls += 1
                    headers = auth_headers(role, key)
                    r = case.call(base_url=http_app.url, headers=headers, timeout=15)
                    # Negative cases may drop or replace the Authorization header on purpose: only
                    # requests that carried the ADMIN's token count as the ADMIN's.
                    sent = r.request.headers.get("Authorization")
                    who = role if sent == headers.get("Authorization") else f"{role}, token altered"
                    answers[(*key, who)][r.status_code] += 1
                    ctype = (r.headers.get("content-type") or [""])[0]  # lower-case keys, list values
                    if r.status_code >= 500:
                        failures.append(f"{case.method} {case.formatted_path} -> {r.status_code}: {r.text[:200]}")
                    elif r.status_code >= 400 and not ctype.startswith("application/problem+json"):
                        failures.append(f"{case.method} {case.formatted_path} -> {r.status_code} as {ctype!r}: "
                                        f"{case.as_curl_command()[:300]}")

                try:
                    fuzz()
                except Unsatisfiable:
                    # An operation without parameters or body has no invalid input to make.
                    assert mode is GenerationMode.NEGATIVE, operation.label
                    unsatisfiable.append(operation.label)
    print(f"schemathesis: {calls} requests; no negative cases for {sorted(set(unsatisfiable))}")
    for (method, path, role), statuses in sorted(answers.items()):
        print(f"  {role:<24} {method:<6} {path:<45} {dict(sorted(statuses.items()))}")
    assert calls > 200
    assert not failures, "\n".join(failures[:20])

    # The ADMIN's requests (those sent with its token) reached the handlers: never refused as
    # unauthenticated...
    refused = {f"{m} {p}": dict(s) for (m, p, role), s in answers.items()
               if role == "admin" and (m, p) in bearer_ops and s[401]}
    assert not refused, f"ADMIN requests answered 401 (token no longer valid?): {refused}"
    assert answers[(*LOGOUT, "admin")][200] > 0, "the ADMIN's logout never revoked a token"
    # ...nor forbidden where an ADMIN is allowed, and the ADMIN-only operations answered 200.
    for key in ADMIN_ONLY | SELLER_OR_ADMIN:
        statuses = answers[(*key, "admin")]
        assert statuses and not statuses[403], (key, dict(statuses))
    for key in ADMIN_ONLY:
        assert answers[(*key, "admin")][200] > 0, (key, dict(answers[(*key, "admin")]))
        # and callers without a valid token never got past authentication
        anonymous = answers[(*key, "anonymous")] + answers[(*key, "anonymous, token altered")] \
            + answers[(*key, "admin, token altered")]
        assert anonymous and set(anonymous) == {401}, (key, dict(anonymous))
    # The ADMIN's token still works, and the server is still healthy afterwards.
    r = requests.get(http_app.url + "/admin/dashboard/data", headers={"Authorization": f"Bearer {admin_token}"},
                     timeout=10)
    assert r.status_code == 200, r.text
    assert requests.get(http_app.url + "/health", timeout=10).status_code == 200
