"""The OpenAPI 3.1 document of every HTTP route (served at GET /openapi.json).

It says what the server enforces, so that client generators and validators can trust it:
`tests/integration/test_http_fuzz.py` runs schemathesis with every check (`--checks all`, stateful phase
included) against it and fails on any disagreement. A limit added to a route belongs here too.
Which operations need a bearer token is read from here by the app (`bearer_required`): a request
to one of them without `Authorization: Bearer <token>` is answered 401 before anything else.
The error responses' texts are generated from the error registry (error_texts).

Past 300 lines on purpose: it is one document, read top to bottom as the API's reference; its
schemas and paths refer to each other, and split across modules they would be harder to check
against the routes (pyapp/web/routes/) than in one place.
"""
from __future__ import annotations

import copy
import re

_REF = "#/components/"

# Limits the server enforces (sql/api/*.sql, pyapp/app.py), stated once for the document.
NAME = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "[^ ]",
        "description": "1 to 200 characters, not only spaces (surrounding spaces are removed)."}
DESCRIPTION = {"type": "string", "maxLength": 5000, "description": "At most 5000 characters (surrounding spaces are removed)."}
# White space spelled out (ECMA-262's \s, which includes every character PostgreSQL's [[:space:]]
# matches): Python's \s and a JSON Schema validator's would disagree on a few control characters.
_SPACE = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
EMAIL_PATTERN = rf"^ *[^@{_SPACE}]+@[^@{_SPACE}]+\.[^@{_SPACE}]+ *$"
ETAG_PATTERN = r'^[ \t]*(W/)?"?([0-9]{1,10})"?[ \t]*$'


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"{_REF}{kind}/{name}"}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: dict | None = None, headers: dict | None = None,
        links: dict | None = None) -> dict:
    out: dict = {"description": description}
    if schema is not None:
        out["content"] = _json(schema)
    if headers:
        out["headers"] = headers
    if links:
        out["links"] = links
    return out


def _errors(*statuses: int) -> dict:
    return {str(s): _ref("responses", f"E{s}") for s in statuses}


def _body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": _json(schema)}


def _nullable(schema: dict) -> dict:
    """`schema` or JSON null (the server reads null as absent)."""
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    return out


_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_SCRIPT = {"text/javascript": {"schema": {"type": "string"}}}
_PATH_ID = {"type": "string", "minLength": 1}
_PRODUCT_ID = {"name": "productId", "in": "path", "required": True, "schema": _PATH_ID}
_ORDER_ID = {"name": "orderId", "in": "path", "required": True, "schema": _PATH_ID}
_ETAG = {"ETag": {"description": 'The product version, quoted: "3".', "required": True,
                  "schema": {"type": "string", "pattern": '^"[0-9]+"$'}}}
_LOCATION = {"Location": {"description": "Where the new resource is read.", "required": True,
                          "schema": {"type": "string"}}}



def error_texts() -> dict[int, tuple[str, bool, bool]]:
    """Per HTTP error status: its description, generated from the error registry (the SQL file
    sql/api/error_codes.sql and the HTTP layer's own codes, pyapp.web.problems.APP_CODES), and
    whether a Retry-After may come with it and whether it always does."""
    from pyapp.web.problems import all_codes

    by_status: dict[int, list] = {}
    for c in all_codes():
        seen = by_status.setdefault(c.status, [])
        if c.code not in [x.code for x in seen]:
            seen.append(c)
    out = {}
    for status in sorted(by_status):
        codes = by_status[status]
        text = "; ".join(f"{c.code} ({c.description})" for c in codes) + "."
        may = any(c.retry_after for c in codes)
        always = may and all(c.retry_after and c.retryable != "detail" for c in codes)
        out[status] = (text, may, always)
    return out


# Every operation that reads a bearer token, a header or the query string may answer 400 (a query
# string that is not UTF-8, or a header value that is not visible ASCII, which the server hands
# over empty), and every one that reaches the database 503.
_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}


def _components() -> dict:
    problem = {
        "type": "object",
        "description": "RFC 9457 problem details; extension members come from the error's DETAIL.",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string", "examples": ["CONCURRENCY_CONFLICT", "INSUFFICIENT_STOCK"]},
            "requestId": {"type": "string"},
            "products": {"type": "array", "description": "INSUFFICIENT_STOCK only.",
                         "items": {"type": "object", "properties": {
                             "productId": {"type": "string"}, "requested": {"type": "integer"},
                             "available": {"type": "integer"}}}},
            "currentVersion": {"type": "integer", "description": "409 on a product: its current version."},
            "retryable": {"type": "boolean"},
            "retryAfter": {"type": "integer", "description": "429: seconds until the client may try again."},
            "unpaidOrders": {"type": "integer", "description": "TOO_MANY_UNPAID_ORDERS: the buyer's unpaid orders."},
            "maxUnpaidOrders": {"type": "integer", "description": "TOO_MANY_UNPAID_ORDERS: the limit."},
            "maxPerBuyer": {"type": "integer", "description": "MAX_PER_BUYER_EXCEEDED: the product's limit."},
        },
        "additionalProperties": True,
    }
    responses = {}
    for status, (text, may_retry, always) in error_texts().items():
        r = {"description": text, "content": {"application/problem+json": {"schema": _ref("schemas", "Problem")}}}
        if always:
            r["headers"] = {"Retry-After": {**_RETRY_AFTER, "required": True}}
        elif may_retry:  # only where a retry can succeed
            r["headers"] = {"Retry-After": _RETRY_AFTER}
        if status == 401:
            r["headers"] = {"WWW-Authenticate": {
                "description": "`Bearer` when the request carried no bearer token.", "schema": {"type": "string"}}}
        responses[f"E{status}"] = r
    money = {"type": "number", "minimum": 0, "maximum": 99999999.99}
    stamp = {"type": "string", "format": "date-time"}
    stamp_or_null = {"type": ["string", "null"], "format": "date-time"}
    order_item = {"type": "object", "required": ["productId", "quantity", "unitPrice"], "properties": {
        "productId": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}, "unitPrice": money}}
    schemas = {
        "Problem": problem,
        "User": {"type": "object", "required": ["id", "email", "name", "role", "createdAt"], "properties": {
            "id": {"type": "string"}, "email": {"type": "string"}, "name": {"type": "string"},
            "role": {"enum": ["BUYER", "SELLER", "ADMIN"]}, "createdAt": stamp}},
        "Product": {"type": "object", "required": [
            "id", "name", "description", "price", "stock", "version", "sellerId", "maxPerBuyer", "createdAt",
            "updatedAt"], "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"},
            "price": money, "stock": {"type": "integer", "minimum": 0}, "version": {"type": "integer", "minimum": 1},
            "sellerId": {"type": "string"}, "createdAt": stamp, "updatedAt": stamp,
            "maxPerBuyer": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000,
                            "description": "Units one buyer may hold unpaid or buy in one order (null: no cap)."}}},
        "ProductPage": {"type": "object", "required": ["items", "next"], "properties": {
            "items": {"type": "array", "items": _ref("schemas", "Product")},
            "next": {"type": ["string", "null"], "description": "Pass as ?after= for the next page."}}},
        "CartLine": {"type": "object", "required": ["productId", "quantity"], "properties": {
            "productId": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1, "maximum": 10000}}},
        "Cart": {"type": "object", "required": ["items", "total"], "properties": {
            "items": {"type": "array", "items": {"type": "object", "required": [
                "productId", "name", "unitPrice", "quantity", "available"], "properties": {
                "productId": {"type": "string"}, "name": {"type": "string"}, "unitPrice": money,
                "quantity": {"type": "integer"}, "available": {"type": "integer"}}}},
            "total": {"type": "number"}}},
        "Order": {"type": "object", "required": [
            "id", "userId", "status", "total", "shippingAddress", "idempotencyKey", "createdAt", "updatedAt",
            "items"], "properties": {
            "id": {"type": "string"}, "userId": {"type": "string"},
            "status": {"enum": ["PENDING_PAYMENT", "PAID", "PAYMENT_FAILED", "CANCELLED", "SHIPPED", "DELIVERED"]},
            "total": {"type": "number"}, "shippingAddress": {"type": "object"},
            "idempotencyKey": {"type": ["string", "null"]}, "replayed": {"type": "boolean"},
            "changed": {"type": "boolean", "description": "Webhook only: whether this delivery changed the order."},
            "paymentReference": {"type": ["string", "null"]}, "createdAt": stamp, "updatedAt": stamp,
            "paidAt": stamp_or_null, "cancelledAt": stamp_or_null, "cancelReason": {"type": ["string", "null"]},
            "smoke": {"type": "boolean", "description": "Only on checkouts of the smoke test's account."},
            "items": {"type": "array", "items": order_item}}},
        "OrderList": {"type": "object", "required": ["items"],
                      "properties": {"items": {"type": "array", "items": _ref("schemas", "Order")}}},
        "Maintenance": {"type": "object", "required": ["maintenance", "since"], "properties": {
            "maintenance": {"type": "boolean"}, "since": stamp_or_null}},
        "Health": {"type": "object", "required": ["status", "database", "migrations", "maintenance"], "properties": {
            "status": {"enum": ["ok", "degraded"]}, "database": {"type": "string"},
            "migrations": {"enum": ["ok", "pending"]}, "migrationsMissing": {"type": "array", "items": {"type": "string"}},
            "maintenance": {"type": "boolean"},
            "replication": {"type": ["object", "null"], "description": "app.replication_state(): the node this "
                            "server is on (node, role, inRecovery, systemIdentifier) and its standbys (name, state, "
                            "syncState, lagBytes, replayLagSeconds); null before migration 0023. See docs/runbook.md, "
                            "Failover."}}},
        "Dashboard": {"type": "object", "properties": {
            "database": {"type": "object", "description": "api.dashboard_stats(): read from the database.", "properties": {
                "ordersByStatus": {"type": "object", "additionalProperties": {"type": "integer"},
                                   "description": "All orders by status; every known status is present."},
                "ordersLastHour": {"type": "object", "additionalProperties": {"type": "integer"}},
                "negativeStock": {"type": "integer", "description": "Products with stock below 0 (0 while the CHECK holds)."},
                "negativeStockProducts": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
                "unpaidPastHold": {"type": "integer",
                                   "description": "PENDING_PAYMENT or PAYMENT_FAILED orders older than the hold window."},
                "holdMinutes": {"type": "number"}, "products": {"type": "integer"}, "at": {"type": "string"}}},
            "checkout": {"type": "object", "description": "Cumulative checkout counters of the answering worker process.",
                         "properties": {
                "scope": {"enum": ["process", "all"]}, "pid": {"type": "integer"},
                "checkouts": {"type": "integer"}, "byOutcome": {"type": "object", "additionalProperties": {"type": "integer"}},
                "conflicts": {"type": "integer", "description": "Checkouts answered 409 CONCURRENCY_CONFLICT."},
                "conflictsSeen": {"type": "integer", "description": "Conflicts on every route, retried attempts included."},
                "retries": {"type": "integer", "description": "Server-side retries on every route."},
                "latency": {"type": "object", "description": "Checkout latency histogram, cumulative counts per upper bound.",
                            "properties": {
                    "le": {"type": "array", "items": {"type": ["number", "null"]},
                           "description": "Upper bounds in seconds; null is +Inf."},
                    "counts": {"type": "array", "items": {"type": "integer"}}}}}},
            "refreshSeconds": {"type": "integer"},
            "replication": {"type": ["object", "null"], "description": "app.replication_state(), as in /health."}}},
    }
    return {"schemas": schemas, "responses": responses,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Token from POST /api/auth/login, valid 24 hours."},
                "metricsToken": {"type": "http", "scheme": "bearer",
                                 "description": "METRICS_TOKEN, when the server sets one (GET /metrics only)."}}}


def _paths() -> dict:
    qty = {"type": "integer", "minimum": 1, "maximum": 10000}
    price = {"type": "number", "minimum": 0, "maximum": 99999999.99, "multipleOf": 0.01,
             "description": "At most 2 decimals."}
    stock = {"type": "integer", "minimum": 0, "maximum": 1000000000}
    max_per_buyer = {"type": ["integer", "null"], "minimum": 1, "maximum": 10000,
                     "description": "Units one buyer may hold unpaid or buy in one order (null: no cap)."}
    limit = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
             "description": "Given once; an empty value is refused."}
    address = {
        "type": "object", "minProperties": 1,
        "description": "Any non-empty JSON object (street, city, zip, country...), of at most 4096 bytes as "
                       "PostgreSQL writes it (jsonb text); a larger one is refused with 400 INVALID_ARGUMENT "
                       "(field shippingAddress), a size JSON Schema cannot state.",
        "examples": [{"street": "Calle Mayor 1", "city": "Madrid", "zip": "28013"}]}
    S = lambda n: _ref("schemas", n)  # noqa: E731
    product_links = {
        "GetProduct": {"operationId": "getProduct", "parameters": {"productId": "$response.body#/id"},
                       "description": "The product just listed."},
        "UpdateProduct": {"operationId": "updateProduct",
                          "parameters": {"productId": "$response.body#/id", "header.If-Match": "$response.header.ETag"},
                          "description": "Edit the product at the version just read."},
        "AddToCart": {"operationId": "addToCart",
                      "requestBody": {"productId": "$response.body#/id", "quantity": 1},
                      "description": "Put one unit of it in the cart."},
    }
    cart_links = {
        "Checkout": {"operationId": "checkout",
                     "requestBody": {"shippingAddress": {"street": "Calle Mayor 1", "city": "Madrid", "zip": "28013"}},
                     "description": "Check the cart out (which empties it: hence no link to the line itself)."},
    }
    order_links = {
        "GetOrder": {"operationId": "getOrder", "parameters": {"orderId": "$response.body#/id"},
                     "description": "The order just placed."},
        "CancelOrder": {"operationId": "cancelOrder", "parameters": {"orderId": "$response.body#/id"},
                        "description": "Cancel it; its stock returns."},
    }
    return {
        "/api/auth/register": {"post": {
            "summary": "Register as a BUYER (default) or SELLER.", "operationId": "register",
            "requestBody": _body({"type": "object", "required": ["email", "password", "name"], "properties": {
                "email": {"type": "string", "maxLength": 254, "pattern": EMAIL_PATTERN,
                          "description": "An address such as name@example.com (surrounding spaces are removed)."},
                "password": {"type": "string", "minLength": 8, "maxLength": 1024},
                "name": NAME, "role": {"enum": ["BUYER", "SELLER", None], "default": "BUYER"}}}),
            "responses": {"201": _ok("Registered.", S("User")), **_errors(400, 403, 409, 413, 429, 503)}}},
        "/api/auth/login": {"post": {
            "summary": "Exchange email and password for a bearer token.", "operationId": "login",
            "requestBody": _body({"type": "object", "required": ["email", "password"], "properties": {
                "email": {"type": "string", "maxLength": 254, "pattern": "[^ ]"},
                "password": {"type": "string", "maxLength": 1024}}}),
            "responses": {"200": _ok("A token.", {"type": "object", "required": [
                "token", "tokenType", "expiresAt", "userId", "role"], "properties": {
                "token": {"type": "string"}, "tokenType": {"const": "Bearer"}, "expiresAt": {"type": "string"},
                "userId": {"type": "string"}, "role": {"type": "string"}}}), **_errors(400, 401, 413, 429, 503)}}},
        "/api/auth/logout": {"post": {
            "summary": "Revoke the bearer token used.", "operationId": "logout", "security": _BEARER,
            "responses": {"200": _ok("Revoked.", {"type": "object", "required": ["revoked"],
                                                  "properties": {"revoked": {"type": "boolean"}}}),
                          **_errors(400, 401, 413, 503)}}},
        "/api/marketplace/products": {
            "get": {"summary": "A page of products in id order (keyset pagination).", "operationId": "listProducts",
                    "parameters": [
                        limit,
                        {"name": "after", "in": "query", "schema": {"type": "string", "maxLength": 200},
                         "description": "The previous page's `next`."}],
                    "responses": {"200": _ok("A page.", S("ProductPage")), **_errors(400, 503)}},
            "post": {"summary": "List a new product (SELLER or ADMIN).", "operationId": "createProduct",
                     "security": _BEARER,
                     "requestBody": _body({"type": "object", "required": ["name", "price", "stock"], "properties": {
                         "name": NAME, "description": _nullable(DESCRIPTION), "price": price, "stock": stock,
                         "maxPerBuyer": max_per_buyer}}),
                     "responses": {"201": _ok("Created.", S("Product"), {**_ETAG, **_LOCATION}, product_links),
                                   **_errors(400, 401, 403, 413, 503)}}},
        "/api/marketplace/products/{productId}": {
            "parameters": [_PRODUCT_ID],
            "get": {"summary": "One product; its version is the ETag.", "operationId": "getProduct",
                    "responses": {"200": _ok("The product.", S("Product"), _ETAG,
                                             {"UpdateProduct": product_links["UpdateProduct"]}),
                                  "304": {"description": "If-None-Match matched the current version."},
                                  **_errors(400, 404, 503)}},
            "patch": {"summary": "Edit a product (its seller or an ADMIN), guarded by its version.",
                      "description": "Give the version read as `If-Match`, or as `\"version\"` in the body: "
                                     "without either the answer is 428 (a rule across a header and the body, "
                                     "which OpenAPI cannot state). Give `stock` (the new stock) or `stockDelta` "
                                     "(added to it), not both. Unknown fields are refused.",
                      "operationId": "updateProduct", "security": _BEARER,
                      "parameters": [{"name": "If-Match", "in": "header",
                                      "schema": {"type": "string", "pattern": ETAG_PATTERN},
                                      "description": 'The version read, as "<version>" (the ETag); or send '
                                                     '"version" in the body. A version the product does not '
                                                     'have is stale (409).'}],
                      "requestBody": _body({
                          "type": "object", "additionalProperties": False,
                          "properties": {
                              "version": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647,
                                          "description": "The version read, when If-Match is not sent (a "
                                                         "version the product does not have is stale: 409)."},
                              "name": NAME, "description": DESCRIPTION, "price": price,
                              "stock": {**stock, "description": "New absolute stock."},
                              "stockDelta": {"type": "integer", "minimum": -1000000000, "maximum": 1000000000,
                                             "description": "Added to the stock."},
                              "maxPerBuyer": max_per_buyer},
                          "anyOf": [{"required": [k]} for k in
                                    ("name", "description", "price", "stock", "stockDelta", "maxPerBuyer")],
                          "not": {"required": ["stock", "stockDelta"]}}),
                      "responses": {"200": _ok("Updated.", S("Product"), _ETAG),
                                    **_errors(400, 401, 403, 404, 409, 413, 428, 503)}}},
        "/api/marketplace/cart": {"get": {
            "summary": "The caller's cart.", "operationId": "getCart", "security": _BEARER,
            "responses": {"200": _ok("The cart.", S("Cart")), **_errors(400, 401, 503)}}},
        "/api/marketplace/cart/items": {"post": {
            "summary": "Add units of a product to the cart (reserves nothing).", "operationId": "addToCart",
            "description": "The line's new quantity may not exceed 10000 units (400).",
            "security": _BEARER,
            "requestBody": _body({"type": "object", "required": ["productId", "quantity"], "properties": {
                "productId": {"type": "string", "maxLength": 200}, "quantity": qty}}),
            "responses": {"201": _ok("The cart line.", S("CartLine"), links=cart_links),
                          **_errors(400, 401, 404, 409, 413, 503)}}},
        "/api/marketplace/cart/items/{productId}": {
            "parameters": [_PRODUCT_ID],
            "patch": {"summary": "Set a cart line's quantity.", "operationId": "setCartQuantity", "security": _BEARER,
                      "requestBody": _body({"type": "object", "required": ["quantity"], "properties": {"quantity": qty}}),
                      "responses": {"200": _ok("The cart line.", S("CartLine")),
                                    **_errors(400, 401, 404, 409, 413, 503)}},
            "delete": {"summary": "Remove a cart line.", "operationId": "removeFromCart", "security": _BEARER,
                       "responses": {"200": _ok("Removed.", {"type": "object", "required": ["productId", "removed"],
                                                             "properties": {"productId": {"type": "string"},
                                                                            "removed": {"const": True}}}),
                                     **_errors(400, 401, 404, 413, 503)}}},
        "/api/marketplace/checkout": {"post": {
            "summary": "Turn the whole cart into one PENDING_PAYMENT order, atomically.",
            "description": "Transient conflicts are retried by the server (at most 4 attempts within 2 s); "
                           "if they persist the answer is 409 CONCURRENCY_CONFLICT with Retry-After. A replay "
                           "with the same Idempotency-Key and payload answers 201 with the original order and "
                           "`Idempotent-Replayed: true`, creating nothing.",
            "operationId": "checkout", "security": _BEARER,
            "parameters": [{"name": "Idempotency-Key", "in": "header",
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255}}],
            "requestBody": _body({"type": "object", "required": ["shippingAddress"], "properties": {
                "shippingAddress": address}}),
            "responses": {"201": _ok("The order (new, or the original on a replay).", S("Order"), {
                **_LOCATION,
                "Idempotent-Replayed": {"description": "`true` on a replay.", "schema": {"const": "true"}}},
                order_links),
                **_errors(400, 401, 404, 409, 413, 422, 503)}}},
        "/api/marketplace/orders": {"get": {
            "summary": "The caller's orders, newest first.", "operationId": "listOrders", "security": _BEARER,
            "parameters": [limit],
            "responses": {"200": _ok("Orders.", S("OrderList")), **_errors(400, 401, 503)}}},
        "/api/marketplace/orders/{orderId}": {
            "parameters": [_ORDER_ID],
            "get": {"summary": "One of the caller's orders (404 for another user's).", "operationId": "getOrder",
                    "security": _BEARER, "responses": {"200": _ok("The order.", S("Order")),
                                                       **_errors(400, 401, 404, 503)}}},
        "/api/marketplace/orders/{orderId}/cancel": {
            "parameters": [_ORDER_ID],
            "post": {"summary": "Cancel a not-yet-shipped order; its stock returns exactly once.",
                     "operationId": "cancelOrder", "security": _BEARER,
                     "responses": {"200": _ok("The cancelled order.", S("Order")),
                                   **_errors(400, 401, 404, 409, 413, 503)}}},
        "/api/marketplace/payments/webhook": {"post": {
            "summary": "Payment provider callback, signed with PAYMENT_WEBHOOK_SECRET.",
            "description": "X-Signature is the hex HMAC-SHA256 of `<X-Signature-Timestamp>.<raw body>`. A missing "
                           "or malformed signature header, a timestamp more than 5 minutes from now, a wrong "
                           "signature or one already accepted answers 401 (also on a server with no webhook key; "
                           "a well-formed signature there answers 503 WEBHOOK_NOT_CONFIGURED). The body is read "
                           "only after the signature matched. A new delivery of an outcome already recorded "
                           "answers 200 with `changed: false`.",
            "operationId": "paymentWebhook",
            "parameters": [{"name": "X-Signature-Timestamp", "in": "header", "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
                            "description": "Unix time in seconds."},
                           {"name": "X-Signature", "in": "header", "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                            "description": "Hex HMAC-SHA256."}],
            "requestBody": _body({"type": "object", "required": ["orderId", "status"], "properties": {
                "orderId": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "[^ ]"},
                "status": {"enum": ["succeeded", "failed"]},
                "reference": {"type": ["string", "null"], "maxLength": 200}}}),
            "responses": {"200": _ok("Recorded.", S("Order")), **_errors(400, 401, 404, 409, 413, 503)}}},
        "/admin/maintenance/enable": {"post": {
            "summary": "Pause every write (ADMIN).", "operationId": "maintenanceEnable", "security": _BEARER,
            "responses": {"200": _ok("On.", S("Maintenance")), **_errors(400, 401, 403, 413, 503)}}},
        "/admin/maintenance/disable": {"post": {
            "summary": "Resume writes (ADMIN).", "operationId": "maintenanceDisable", "security": _BEARER,
            "responses": {"200": _ok("Off.", S("Maintenance")), **_errors(400, 401, 403, 413, 503)}}},
        "/admin/dashboard": {"get": {
            "summary": "The operator dashboard page (HTML shell; its figures need an ADMIN token).",
            "description": "Self-contained HTML: open `/admin/dashboard#token=<ADMIN token>` or sign in on the page. "
                           "It polls /admin/dashboard/data and charts the last 60 samples "
                           "(`?samples=N`, `?refresh=SECONDS`).",
            "operationId": "dashboardPage",
            "responses": {"200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/admin/dashboard/dashboard.js": {"get": {
            "summary": "The dashboard's script.", "operationId": "dashboardScript",
            "responses": {"200": {"description": "JavaScript.", "content": _SCRIPT}}}},
        "/admin/dashboard/dashboard.css": {"get": {
            "summary": "The dashboard's style sheet.", "operationId": "dashboardStyle",
            "responses": {"200": {"description": "CSS.", "content": {"text/css": {"schema": {"type": "string"}}}}}}},
        "/admin/dashboard/data": {"get": {
            "summary": "The dashboard's figures (ADMIN): database state and the checkout counters.",
            "operationId": "dashboardData", "security": _BEARER,
            "responses": {"200": _ok("The figures.", S("Dashboard")), **_errors(400, 401, 403, 503)}}},
        "/health": {"get": {
            "summary": "Liveness and readiness.", "operationId": "health",
            "responses": {"200": _ok("Up.", S("Health")), **_errors(503)}}},
        "/metrics": {"get": {
            "summary": "Prometheus text format: every worker's counters and the database's figures (cached up to "
                       "15 s). With METRICS_TOKEN set, send it as a bearer token.", "operationId": "metrics",
            "security": [{}, {"metricsToken": []}],
            "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_errors(400, 401)}}},
        "/": {"get": {
            "summary": "What this server is, with links to the reference, health and the operator page "
                       "(HTML for a browser that accepts text/html, JSON otherwise).", "operationId": "index",
            "responses": {"200": {"description": "Links.", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "name": {"type": "string"}, "version": {"type": "string"},
                    "links": {"type": "object", "additionalProperties": {"type": "string"}}}}},
                "text/html": {"schema": {"type": "string"}}}}, **_errors(400)}}},
        "/docs": {"get": {
            "summary": "A readable API reference, rendered in the browser from /openapi.json.", "operationId": "docs",
            "responses": {"200": {"description": "HTML.", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/docs/docs.js": {"get": {
            "summary": "The reference page's script.", "operationId": "docsScript",
            "responses": {"200": {"description": "JavaScript.", "content": _SCRIPT}}}},
        "/docs/docs.css": {"get": {
            "summary": "The reference page's style sheet.", "operationId": "docsStyle",
            "responses": {"200": {"description": "CSS.", "content": {"text/css": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {
            "summary": "This document.", "operationId": "openapi",
            "responses": {"200": _ok("OpenAPI 3.1.", {"type": "object"})}}},
    }


_DOC: dict = {
    "openapi": "3.1.0",
    "info": {"title": "Artisan marketplace API", "version": "1.0.0",
             "description": "Every error is application/problem+json (RFC 9457) with type, title, status, "
                            "detail and code. Bodies are limited to 64 KiB. No string may hold the character "
                            "U+0000 (PostgreSQL text cannot), and a query string that is not UTF-8 is refused "
                            "(400). A header value that is not visible ASCII reaches the app empty and is judged "
                            "as an empty value: 400 where one is invalid, 401 for an unreadable token. An "
                            "operation that needs a bearer token answers 401 to a request without one before it "
                            "looks at anything else."},
    "paths": _paths(),
    "components": _components(),
}


def document() -> dict:
    return copy.deepcopy(_DOC)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def bearer_required(method: str, rule: str) -> bool:
    """Whether the operation of a Bottle route (`/api/marketplace/products/<product_id>`) needs a
    bearer token, as its `security` says (optional security, such as /metrics', does not count)."""
    path = re.sub(r"<(\w+)(?::[^>]*)?>", lambda m: "{" + _camel(m.group(1)) + "}", rule)
    op = _DOC["paths"].get(path, {}).get(method.lower()) or {}
    security = op.get("security") or []
    return bool(security) and all("bearer" in requirement for requirement in security)
