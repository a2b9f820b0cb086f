"""Products: list, read (with ETag and If-None-Match), create and the versioned edit (If-Match or
"version"), sql/app/catalogue.sql."""
from __future__ import annotations

import re

from bottle import request, response

from pyapp import openapi
from pyapp.db import calls
from pyapp.web.parsing import body_text, etag_version, field, json_body, query_int, query_str
from pyapp.web.problems import app_problem
from pyapp.web.routes import app, etag, token

_ETAG_RE = re.compile(openapi.ETAG_PATTERN)


@app.get("/api/marketplace/products", api={"replica": True})  # READ_DATABASE_URL when set
def list_products(db):
    return calls.list_products(db, query_int("limit", 50), query_str("after"))


@app.get("/api/marketplace/products/<product_id>", api={"replica": True})
def get_product(db, product_id):
    product = calls.get_product(db, product_id)
    etag(product)
    if request.get_header("If-None-Match", "").strip() == f'"{product["version"]}"':
        response.status = 304
        return ""
    return product


@app.post("/api/marketplace/products")
def create_product(db):
    body = json_body()
    product = calls.create_product(
        db, token(), field(body, "name", "str", max_len=200), field(body, "price", "number"),
        field(body, "stock", "int"), field(body, "description", "str", required=False, max_len=5000) or "",
        field(body, "maxPerBuyer", "int", required=False))
    response.status = 201
    response.set_header("Location", f"/api/marketplace/products/{product['id']}")
    etag(product)
    return product


@app.route("/api/marketplace/products/<product_id>", method="PATCH")
def update_product(db, product_id):
    body = json_body()
    # Shapes SQL would let through: a "version" next to If-Match, and lengths before trimming.
    body_version = field(body, "version", "int") if "version" in body else None
    field(body, "name", "str", required=False, max_len=200)
    field(body, "description", "str", required=False, max_len=5000)
    if_match = request.get_header("If-Match")
    if if_match is not None:
        version = etag_version(if_match, _ETAG_RE)  # past int32: no product has it, stale (409)
    elif body_version is not None:
        version = body_version
    else:
        raise app_problem("PRECONDITION_REQUIRED",
                          'send If-Match: "<version>" or "version" in the body (read the product first)')
    # The body goes to SQL as jsonb unchanged (exact numbers); "version" is not a change.
    product = calls.update_product(db, token(), product_id, version, body_text())
    etag(product)
    return product
