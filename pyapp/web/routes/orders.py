"""Checkout, the buyer's orders and the payment provider's webhook (sql/app/orders.sql,
sql/app/webhook.sql)."""
from __future__ import annotations

from bottle import request, response

from pyapp.db import calls
from pyapp.web.parsing import body_text, field, json_body, query_int, raw_body
from pyapp.web.routes import app, token


@app.post("/api/marketplace/checkout", api={"metric": "checkout"})
def checkout(db):
    body = json_body()
    field(body, "shippingAddress", "object")  # its size (4096 bytes) and emptiness: api.checkout
    text, order_id, replayed, flush_pending, smoke = calls.checkout(
        db, token(), body_text(), request.get_header("Idempotency-Key"))
    if flush_pending:
        db.await_durable()
    response.status = 201
    response.content_type = "application/json"
    response.set_header("Location", f"/api/marketplace/orders/{order_id}")
    if replayed:
        response.set_header("Idempotent-Replayed", "true")
    if smoke:  # `python -m pyapp smoke`: counted apart, not as a sale (pyapp/metrics.py)
        request.environ["mk.outcome"] = "smoke"
    return text


@app.get("/api/marketplace/orders")
def list_orders(db):
    return calls.list_orders(db, token(), query_int("limit", 50))


@app.get("/api/marketplace/orders/<order_id>")
def get_order(db, order_id):
    return calls.get_order(db, token(), order_id)


@app.post("/api/marketplace/orders/<order_id>/cancel")
def cancel_order(db, order_id):
    return calls.cancel_order(db, token(), order_id)


@app.post("/api/marketplace/payments/webhook")
def payment_webhook(db):
    return calls.payment_webhook(db, request.get_header("X-Signature-Timestamp"), request.get_header("X-Signature"),
                                 raw_body())
