"""Schemathesis fuzzes every operation of the served OpenAPI document, with valid and invalid
inputs, as an ADMIN (who passes every role check, so requests reach the deepest code) and
anonymously: no answer may be a 5xx, and every error must be problem+json."""
from __future__ import annotations

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.http_server import create_admin, http_app, http_db  # noqa: F401
from tests.test_http_api import PASSWORD

EXAMPLES = 15  # per operation and generation mode: bounded, ~1,000 requests in all
# Switching maintenance on would turn every later write into a (correct) 503.
SKIP = {("POST", "/admin/maintenance/enable")}


def _token(url: str, email: str) -> str:
    r = requests.post(url + "/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def test_no_operation_answers_5xx_under_fuzzing(http_app, http_db):  # noqa: F811
    create_admin(http_db[0], "fuzz-admin@example.com", PASSWORD)
    admin = {"Authorization": f"Bearer {_token(http_app.url, 'fuzz-admin@example.com')}"}
    doc = requests.get(http_app.url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    calls = 0
    unsatisfiable: list[str] = []

    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for headers in (admin, {}):
                @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def fuzz(case):
                    nonlocal calls
                    calls += 1
                    r = case.call(base_url=http_app.url, headers=headers, timeout=15)
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
    assert calls > 200
    assert not failures, "\n".join(failures[:20])
    # The server is still healthy afterwards.
    assert requests.get(http_app.url + "/health", timeout=10).status_code == 200
