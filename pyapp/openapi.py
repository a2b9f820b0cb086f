"""The OpenAPI 3.1 document of every HTTP route (served at GET /openapi.json)."""
from __future__ import annotations

import copy

_REF = "#/components/"


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"{_REF}{kind}/{name}"}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: dict | None = None, headers: dict | None = None) -> dict:
    out: dict = {"description": description}
    if schema is not None:
        out["content"] = _json(schema)
    if headers:
        out["headers"] = headers
    return out


def _errors(*statuses: int) -> dict:
    return {str(s): _ref("responses", f"E{s}") for s in statuses}


def _body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": _json(schema)}


_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_PRODUCT_ID = {"name": "productId", "in": "path", "required": True, "schema": {"type": "string"}}
_ORDER_ID = {"name": "orderId", "in": "path", "required": True, "schema": {"type": "string"}}
_ETAG = {"ETag": {"description": 'The product version, quoted: "3".', "schema": {"type": "string"}}}

_ERROR_TEXT = {
    400: "Invalid request: malformed JSON, wrong types, missing fields, out-of-range values "
         "(INVALID_JSON, INVALID_ARGUMENT), INSUFFICIENT_STOCK (title \"Stock insuficiente\", with "
         "`products`) or EMPTY_CART.",
    401: "Missing, invalid, expired or revoked bearer token (UNAUTHENTICATED), or a missing, bad, "
         "stale or reused webhook signature (INVALID_SIGNATURE).",
    403: "The user's role may not do this (FORBIDDEN).",
    404: "Unknown route or resource, or another user's order (NOT_FOUND).",
    405: "Method not allowed on this route (METHOD_NOT_ALLOWED).",
    409: "CONCURRENCY_CONFLICT (a stale version, with `currentVersion`; or transient conflicts that "
         "outlasted 4 attempts, with `Retry-After`), ALREADY_EXISTS, INVALID_STATE, "
         "TOO_MANY_UNPAID_ORDERS (checkout: the buyer already holds `maxUnpaidOrders` unpaid orders; "
         "nothing is created and the cart is kept) or MAX_PER_BUYER_EXCEEDED (the product's "
         "`maxPerBuyer` units per buyer, counting what the buyer holds unpaid).",
    413: "The body exceeds 64 KiB (PAYLOAD_TOO_LARGE).",
    422: "The Idempotency-Key was already used with another payload (IDEMPOTENCY_KEY_REUSED).",
    428: "PATCH without If-Match or a \"version\" field (PRECONDITION_REQUIRED).",
    429: "TOO_MANY_ATTEMPTS: 5 failed logins of one email from one client within 15 minutes (that "
         "pair only; the password is not checked), or more sign-ups from one client in an hour than "
         "REGISTRATIONS_PER_CLIENT_PER_HOUR. `Retry-After` and `retryAfter` give the seconds to wait.",
    500: "Unexpected error (INTERNAL_ERROR); no internals are disclosed, the requestId finds the log line.",
    503: ("MAINTENANCE (writes paused), WEBHOOK_NOT_CONFIGURED (no webhook key set), NOT_MIGRATED (the database lacks this version's schema), BUSY (login and "
          "sign-up: every password-hashing slot of the server is taken), DATABASE_UNAVAILABLE (member `database`: `unreachable`, or `busy` when "
          "every pooled connection of the server is in use) or TIMEOUT; always with `Retry-After`."),
}

_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}


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
    for status, text in _ERROR_TEXT.items():
        r = {"description": text, "content": {"application/problem+json": {"schema": _ref("schemas", "Problem")}}}
        if status in (409, 429, 503):
            r["headers"] = {"Retry-After": _RETRY_AFTER}
        responses[f"E{status}"] = r
    money = {"type": "number", "minimum": 0, "maximum": 99999999.99}
    schemas = {
        "Problem": problem,
        "User": {"type": "object", "properties": {
            "id": {"type": "string"}, "email": {"type": "string"}, "name": {"type": "string"},
            "role": {"enum": ["BUYER", "SELLER", "ADMIN"]}, "createdAt": {"type": "string", "format": "date-time"}}},
        "Product": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"},
            "price": money, "stock": {"type": "integer", "minimum": 0}, "version": {"type": "integer", "minimum": 1},
            "sellerId": {"type": "string"}, "createdAt": {"type": "string"}, "updatedAt": {"type": "string"},
            "maxPerBuyer": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000,
                            "description": "Units one buyer may hold unpaid or buy in one order (null: no cap)."}}},
        "ProductPage": {"type": "object", "properties": {
            "items": {"type": "array", "items": _ref("schemas", "Product")},
            "next": {"type": ["string", "null"], "description": "Pass as ?after= for the next page."}}},
        "CartLine": {"type": "object", "properties": {
            "productId": {"type": "string"}, "quantity": {"type": "integer"}}},
        "Cart": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "productId": {"type": "string"}, "name": {"type": "string"}, "unitPrice": money,
                "quantity": {"type": "integer"}, "available": {"type": "integer"}}}},
            "total": {"type": "number"}}},
        "Order": {"type": "object", "properties": {
            "id": {"type": "string"}, "userId": {"type": "string"},
            "status": {"enum": ["PENDING_PAYMENT", "PAID", "PAYMENT_FAILED", "CANCELLED", "SHIPPED", "DELIVERED"]},
            "total": {"type": "number"}, "shippingAddress": {"type": "object"},
            "idempotencyKey": {"type": ["string", "null"]}, "replayed": {"type": "boolean"},
            "changed": {"type": "boolean", "description": "Webhook only: whether this delivery changed the order."},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "productId": {"type": "string"}, "quantity": {"type": "integer"}, "unitPrice": money}}}}},
        "OrderList": {"type": "object", "properties": {"items": {"type": "array", "items": _ref("schemas", "Order")}}},
        "Maintenance": {"type": "object", "properties": {
            "maintenance": {"type": "boolean"}, "since": {"type": ["string", "null"]}}},
        "Health": {"type": "object", "properties": {
            "status": {"enum": ["ok", "degraded"]}, "database": {"type": "string"},
            "migrations": {"enum": ["ok", "pending"]}, "migrationsMissing": {"type": "array", "items": {"type": "string"}},
            "maintenance": {"type": "boolean"}}},
        "Dashboard": {"type": "object", "properties": {
            "database": {"type": "object", "description": "api.dashboard_stats(): read from the database.", "properties": {
                "ordersByStatus": {"type": "object", "additionalProperties": {"type": "integer"},
                                   "description": "All orders by status; every known status is present."},
                "ordersLastHour": {"type": "object", "additionalProperties": {"type": "integer"}},
                "negativeStock": {"type": "integer", "description": "Products with stock below 0 (0 while the CHECK holds)."},
                "negativeStockProducts": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
                "unpaidPastHold": {"type": "integer", "description": "PENDING_PAYMENT or PAYMENT_FAILED orders older than the hold window."},
                "holdMinutes": {"type": "number"}, "products": {"type": "integer"}, "at": {"type": "string"}}},
            "checkout": {"type": "object", "description": "Cumulative checkout counters of the answering worker process.", "properties": {
                "scope": {"enum": ["process", "all"]}, "pid": {"type": "integer"},
                "checkouts": {"type": "integer"}, "byOutcome": {"type": "object", "additionalProperties": {"type": "integer"}},
                "conflicts": {"type": "integer", "description": "Checkouts answered 409 CONCURRENCY_CONFLICT."},
                "conflictsSeen": {"type": "integer", "description": "Conflicts on every route, retried attempts included."},
                "retries": {"type": "integer", "description": "Server-side retries on every route."},
                "latency": {"type": "object", "description": "Checkout latency histogram, cumulative counts per upper bound.", "properties": {
                    "le": {"type": "array", "items": {"type": ["number", "null"]}, "description": "Upper bounds in seconds; null is +Inf."},
                    "counts": {"type": "array", "items": {"type": "integer"}}}}}},
            "refreshSeconds": {"type": "integer"}}},
    }
    return {"schemas": schemas, "responses": responses,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Token from POST /api/auth/login, valid 24 hours."}}}


def _paths() -> dict:
    qty = {"type": "integer", "minimum": 1, "maximum": 10000}
    S = lambda n: _ref("schemas", n)  # noqa: E731
    return {
        "/api/auth/register": {"post": {
            "summary": "Register as a BUYER (default) or SELLER.", "operationId": "register",
            "requestBody": _body({"type": "object", "required": ["email", "password", "name"], "properties": {
                "email": {"type": "string", "format": "email"}, "password": {"type": "string", "minLength": 8},
                "name": {"type": "string"}, "role": {"enum": ["BUYER", "SELLER"]}}}),
            "responses": {"201": _ok("Registered.", S("User")), **_errors(400, 403, 409, 413, 429, 503)}}},
        "/api/auth/login": {"post": {
            "summary": "Exchange email and password for a bearer token.", "operationId": "login",
            "requestBody": _body({"type": "object", "required": ["email", "password"], "properties": {
                "email": {"type": "string"}, "password": {"type": "string"}}}),
            "responses": {"200": _ok("A token.", {"type": "object", "properties": {
                "token": {"type": "string"}, "tokenType": {"const": "Bearer"}, "expiresAt": {"type": "string"},
                "userId": {"type": "string"}, "role": {"type": "string"}}}), **_errors(400, 401, 413, 429, 503)}}},
        "/api/auth/logout": {"post": {
            "summary": "Revoke the bearer token used.", "operationId": "logout", "security": _BEARER,
            "responses": {"200": _ok("Revoked.", {"type": "object", "properties": {"revoked": {"type": "boolean"}}}),
                          **_errors(401, 503)}}},
        "/api/marketplace/products": {
            "get": {"summary": "A page of products in id order (keyset pagination).", "operationId": "listProducts",
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
                        {"name": "after", "in": "query", "schema": {"type": "string"}, "description": "The previous page's `next`."}],
                    "responses": {"200": _ok("A page.", S("ProductPage")), **_errors(400, 503)}},
            "post": {"summary": "List a new product (SELLER or ADMIN).", "operationId": "createProduct",
                     "security": _BEARER,
                     "requestBody": _body({"type": "object", "required": ["name", "price", "stock"], "properties": {
                         "name": {"type": "string"}, "description": {"type": "string"},
                         "price": {"type": "number", "minimum": 0}, "stock": {"type": "integer", "minimum": 0},
                         "maxPerBuyer": {"type": "integer", "minimum": 1, "maximum": 10000}}}),
                     "responses": {"201": _ok("Created.", S("Product"), _ETAG), **_errors(400, 401, 403, 413, 503)}}},
        "/api/marketplace/products/{productId}": {
            "parameters": [_PRODUCT_ID],
            "get": {"summary": "One product; its version is the ETag.", "operationId": "getProduct",
                    "responses": {"200": _ok("The product.", S("Product"), _ETAG),
                                  "304": {"description": "If-None-Match matched the current version."},
                                  **_errors(404, 503)}},
            "patch": {"summary": "Edit a product (its seller or an ADMIN), guarded by its version.",
                      "operationId": "updateProduct", "security": _BEARER,
                      "parameters": [{"name": "If-Match", "in": "header", "schema": {"type": "string"},
                                      "description": 'The version read, as "<version>"; or send "version" in the body.'}],
                      "requestBody": _body({"type": "object", "properties": {
                          "version": {"type": "integer"}, "name": {"type": "string"}, "description": {"type": "string"},
                          "price": {"type": "number"}, "stock": {"type": "integer", "description": "New absolute stock."},
                          "stockDelta": {"type": "integer", "description": "Added to the stock."},
                          "maxPerBuyer": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000,
                                          "description": "Units one buyer may hold unpaid (null: no cap)."}}}),
                      "responses": {"200": _ok("Updated.", S("Product"), _ETAG),
                                    **_errors(400, 401, 403, 404, 409, 413, 428, 503)}}},
        "/api/marketplace/cart": {"get": {
            "summary": "The caller's cart.", "operationId": "getCart", "security": _BEARER,
            "responses": {"200": _ok("The cart.", S("Cart")), **_errors(401, 503)}}},
        "/api/marketplace/cart/items": {"post": {
            "summary": "Add units of a product to the cart (reserves nothing).", "operationId": "addToCart",
            "security": _BEARER,
            "requestBody": _body({"type": "object", "required": ["productId", "quantity"], "properties": {
                "productId": {"type": "string"}, "quantity": qty}}),
            "responses": {"201": _ok("The cart line.", S("CartLine")), **_errors(400, 401, 404, 409, 413, 503)}}},
        "/api/marketplace/cart/items/{productId}": {
            "parameters": [_PRODUCT_ID],
            "patch": {"summary": "Set a cart line's quantity.", "operationId": "setCartQuantity", "security": _BEARER,
                      "requestBody": _body({"type": "object", "required": ["quantity"], "properties": {"quantity": qty}}),
                      "responses": {"200": _ok("The cart line.", S("CartLine")), **_errors(400, 401, 404, 503)}},
            "delete": {"summary": "Remove a cart line.", "operationId": "removeFromCart", "security": _BEARER,
                       "responses": {"200": _ok("Removed.", {"type": "object"}), **_errors(401, 404, 503)}}},
        "/api/marketplace/checkout": {"post": {
            "summary": "Turn the whole cart into one PENDING_PAYMENT order, atomically.",
            "description": "Transient conflicts are retried by the server (at most 4 attempts within 2 s); "
                           "if they persist the answer is 409 CONCURRENCY_CONFLICT with Retry-After. A replay "
                           "with the same Idempotency-Key and payload answers 201 with the original order and "
                           "`Idempotent-Replayed: true`, creating nothing.",
            "operationId": "checkout", "security": _BEARER,
            "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255}}],
            "requestBody": _body({"type": "object", "required": ["shippingAddress"], "properties": {
                "shippingAddress": {"type": "object"}}}),
            "responses": {"201": _ok("The order (new, or the original on a replay).", S("Order"), {
                "Location": {"schema": {"type": "string"}},
                "Idempotent-Replayed": {"description": "`true` on a replay.", "schema": {"type": "string"}}}),
                **_errors(400, 401, 404, 409, 413, 422, 503)}}},
        "/api/marketplace/orders": {"get": {
            "summary": "The caller's orders, newest first.", "operationId": "listOrders", "security": _BEARER,
            "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}],
            "responses": {"200": _ok("Orders.", S("OrderList")), **_errors(400, 401, 503)}}},
        "/api/marketplace/orders/{orderId}": {
            "parameters": [_ORDER_ID],
            "get": {"summary": "One of the caller's orders (404 for another user's).", "operationId": "getOrder",
                    "security": _BEARER, "responses": {"200": _ok("The order.", S("Order")), **_errors(401, 404, 503)}}},
        "/api/marketplace/orders/{orderId}/cancel": {
            "parameters": [_ORDER_ID],
            "post": {"summary": "Cancel a not-yet-shipped order; its stock returns exactly once.",
                     "operationId": "cancelOrder", "security": _BEARER,
                     "responses": {"200": _ok("The cancelled order.", S("Order")), **_errors(401, 404, 409, 503)}}},
        "/api/marketplace/payments/webhook": {"post": {
            "summary": "Payment provider callback, signed with PAYMENT_WEBHOOK_SECRET.",
            "description": "X-Signature is the hex HMAC-SHA256 of `<X-Signature-Timestamp>.<raw body>`. A timestamp "
                           "more than 5 minutes from now, a wrong signature or one already accepted answers 401. "
                           "A new delivery of an outcome already recorded answers 200 with `changed: false`.",
            "operationId": "paymentWebhook",
            "parameters": [{"name": "X-Signature-Timestamp", "in": "header", "required": True, "schema": {"type": "string"}},
                           {"name": "X-Signature", "in": "header", "required": True, "schema": {"type": "string"}}],
            "requestBody": _body({"type": "object", "required": ["orderId", "status"], "properties": {
                "orderId": {"type": "string"}, "status": {"enum": ["succeeded", "failed"]},
                "reference": {"type": "string"}}}),
            "responses": {"200": _ok("Recorded.", S("Order")), **_errors(400, 401, 404, 409, 503)}}},
        "/admin/maintenance/enable": {"post": {
            "summary": "Pause every write (ADMIN).", "operationId": "maintenanceEnable", "security": _BEARER,
            "responses": {"200": _ok("On.", S("Maintenance")), **_errors(401, 403, 503)}}},
        "/admin/maintenance/disable": {"post": {
            "summary": "Resume writes (ADMIN).", "operationId": "maintenanceDisable", "security": _BEARER,
            "responses": {"200": _ok("Off.", S("Maintenance")), **_errors(401, 403, 503)}}},
        "/admin/dashboard": {"get": {
            "summary": "The operator dashboard page (HTML shell; its figures need an ADMIN token).",
            "description": "Self-contained HTML: open `/admin/dashboard#token=<ADMIN token>` or sign in on the page. "
                           "It polls /admin/dashboard/data and charts the last 60 samples "
                           "(`?samples=N`, `?refresh=SECONDS`).",
            "operationId": "dashboardPage",
            "responses": {"200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/admin/dashboard/dashboard.js": {"get": {
            "summary": "The dashboard's script.", "operationId": "dashboardScript",
            "responses": {"200": {"description": "JavaScript.", "content": {"text/javascript": {"schema": {"type": "string"}}}}}}},
        "/admin/dashboard/dashboard.css": {"get": {
            "summary": "The dashboard's style sheet.", "operationId": "dashboardStyle",
            "responses": {"200": {"description": "CSS.", "content": {"text/css": {"schema": {"type": "string"}}}}}}},
        "/admin/dashboard/data": {"get": {
            "summary": "The dashboard's figures (ADMIN): database state and the checkout counters.",
            "operationId": "dashboardData", "security": _BEARER,
            "responses": {"200": _ok("The figures.", S("Dashboard")), **_errors(401, 403, 503)}}},
        "/health": {"get": {
            "summary": "Liveness and readiness.", "operationId": "health",
            "responses": {"200": _ok("Up.", S("Health")), **_errors(503)}}},
        "/metrics": {"get": {
            "summary": "Prometheus text format: every worker's counters and the database's figures (cached up to "
                       "15 s). With METRICS_TOKEN set, send it as a bearer token.", "operationId": "metrics",
            "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_errors(401)}}},
        "/": {"get": {
            "summary": "What this server is, with links to the reference, health and the operator page "
                       "(HTML for a browser that accepts text/html, JSON otherwise).", "operationId": "index",
            "responses": {"200": {"description": "Links.", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "name": {"type": "string"}, "version": {"type": "string"},
                    "links": {"type": "object", "additionalProperties": {"type": "string"}}}}},
                "text/html": {"schema": {"type": "string"}}}}}}},
        "/docs": {"get": {
            "summary": "A readable API reference, rendered in the browser from /openapi.json.", "operationId": "docs",
            "responses": {"200": {"description": "HTML.", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/docs/docs.js": {"get": {
            "summary": "The reference page's script.", "operationId": "docsScript",
            "responses": {"200": {"description": "JavaScript.", "content": {"text/javascript": {"schema": {"type": "string"}}}}}}},
        "/docs/docs.css": {"get": {
            "summary": "The reference page's style sheet.", "operationId": "docsStyle",
            "responses": {"200": {"description": "CSS.", "content": {"text/css": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {
            "summary": "This document.", "operationId": "openapi",
            "responses": {"200": _ok("OpenAPI 3.1.", {"type": "object"})}}},
    }


_DOC = {
    "openapi": "3.1.0",
    "info": {"title": "Artisan marketplace API", "version": "1.0.0",
             "description": "Every error is application/problem+json (RFC 9457) with type, title, status, "
                            "detail and code. Bodies are limited to 64 KiB."},
    "paths": _paths(),
    "components": _components(),
}


def document() -> dict:
    return copy.deepcopy(_DOC)
