"""Schemathesis hooks for this API (loaded by schemathesis.toml, so by any `schemathesis run` from the
repository root, and by tests/integration/test_http_fuzz.py).

schemathesis.toml lets a few operations answer, to a request the document calls valid, a status
schemathesis' defaults do not expect there. Each is a rule OpenAPI cannot state: one that depends
on the data (an empty cart, stock that ran out, a cart line that would pass 10000 units) or that
spans a header and the body (If-Match or "version"). The check below keeps each allowance exact:
such an answer must carry the problem code that explains it, and otherwise it fails as the
default check would have.
"""
from __future__ import annotations

import json

import schemathesis


def _problem(response) -> dict:
    try:
        body = json.loads(response.content or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _line_too_long(problem: dict, case) -> bool:
    # api.add_to_cart: the line's new total (value) passes 10000 although the quantity sent did not.
    value = problem.get("value")
    return (problem.get("code") == "INVALID_ARGUMENT" and problem.get("field") == "quantity"
            and isinstance(value, int) and value > 10000)


def _checkout_refused(problem: dict, case) -> bool:
    code = problem.get("code")
    # An empty cart, stock that ran out, an order total past 99,999,999.99, or an address past 4096
    # bytes as jsonb text (api.checkout; JSON Schema has no keyword for a size in bytes).
    body = case.body if isinstance(case.body, dict) else {}
    address = json.dumps(body.get("shippingAddress"), ensure_ascii=False, separators=(",", ":"))
    too_big = problem.get("field") == "shippingAddress" and len(address.encode()) > 2048
    return code in ("EMPTY_CART", "INSUFFICIENT_STOCK") or (code == "INVALID_ARGUMENT" and ("total" in problem or too_big))


def _key_reused(problem: dict, case) -> bool:
    # The Idempotency-Key sent was used before by this user with another address.
    return problem.get("code") == "IDEMPOTENCY_KEY_REUSED"


def _stock_refused(problem: dict, case) -> bool:
    code = problem.get("code")
    # stockDelta below the stock, or a raise past 1,000,000,000 with the units open orders hold.
    return code == "INSUFFICIENT_STOCK" or (code == "INVALID_ARGUMENT" and problem.get("field") == "stock"
                                            and "held" in problem)


def _no_version(problem: dict, case) -> bool:
    headers = {k.lower() for k in (case.headers or {})}
    body = case.body if isinstance(case.body, dict) else {}
    return problem.get("code") == "PRECONDITION_REQUIRED" and "if-match" not in headers and "version" not in body


def _webhook_unconfigured(problem: dict, case) -> bool:
    return problem.get("code") == "WEBHOOK_NOT_CONFIGURED"


# (method, path) -> {status: why}: `why` gets the problem body and the case, and says whether this
# answer is one the operation gives by design to a request its document calls valid.
BY_DESIGN = {
    ("POST", "/api/marketplace/cart/items"): {400: _line_too_long},
    ("POST", "/api/marketplace/checkout"): {400: _checkout_refused, 422: _key_reused},
    ("PATCH", "/api/marketplace/products/{productId}"): {400: _stock_refused, 428: _no_version},
    # A well-formed signature on a server without a webhook key: 503 (the provider retries later).
    ("POST", "/api/marketplace/payments/webhook"): {503: _webhook_unconfigured},
}


@schemathesis.check
def allowed_only_by_design(ctx, response, case):
    """An answer schemathesis.toml allows beyond the defaults carries the code that explains it."""
    rules = BY_DESIGN.get((case.operation.method.upper(), case.operation.path), {})
    why = rules.get(response.status_code)
    if why is None:
        return None
    meta = case.meta
    if response.status_code < 500 and meta is not None and not meta.generation.mode.is_positive:
        return None  # a 4xx to invalid data is what negative_data_rejection wants anyway
    problem = _problem(response)
    assert why(problem, case), (
        f"{case.operation.label} answered {response.status_code} {problem.get('code')!r} to a request its "
        f"document calls valid, and that is not one of the answers schemathesis.toml allows: "
        f"{json.dumps(problem)[:300]}")
    return None
