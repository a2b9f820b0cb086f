"""The buyer's cart (sql/app/cart.sql): read, add a line, set a line's quantity, remove a line."""
from __future__ import annotations

from bottle import response

from pyapp.db import calls
from pyapp.web.parsing import field, json_body
from pyapp.web.routes import app, token


@app.get("/api/marketplace/cart")
def get_cart(db):
    return calls.get_cart(db, token())


@app.post("/api/marketplace/cart/items")
def add_to_cart(db):
    body = json_body()
    line = calls.add_to_cart(db, token(), field(body, "productId", "str", max_len=200), field(body, "quantity", "int"))
    response.status = 201
    return line


@app.route("/api/marketplace/cart/items/<product_id>", method="PATCH")
def set_cart_quantity(db, product_id):
    body = json_body()
    return calls.set_cart_quantity(db, token(), product_id, field(body, "quantity", "int"))


@app.delete("/api/marketplace/cart/items/<product_id>")
def remove_from_cart(db, product_id):
    return calls.remove_from_cart(db, token(), product_id)
