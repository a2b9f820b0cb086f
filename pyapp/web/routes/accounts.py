"""Accounts: sign-up, login and logout (sql/app/auth.sql). The password is hashed here, with no
database connection held while scrypt runs; the database keeps the hashes and the throttle."""
from __future__ import annotations

import contextlib
import re
import time

from bottle import request, response

from pyapp import auth, clients, openapi
from pyapp.db import calls
from pyapp.web.parsing import field, json_body
from pyapp.web.problems import app_problem, bad_request, unauthenticated
from pyapp.web.routes import app, token

_EMAIL_RE = re.compile(openapi.EMAIL_PATTERN)


@contextlib.contextmanager
def _password_work():
    """auth.password_work as HTTP: 503 with Retry-After when this process has no slot free."""
    try:
        with auth.password_work():
            yield
    except auth.Busy as exc:
        raise app_problem("BUSY", str(exc)) from None


@app.post("/api/auth/register")
def register(db):
    body = json_body()
    email, name = field(body, "email", "str", max_len=254), field(body, "name", "str", max_len=200)
    password = field(body, "password", "str", max_len=auth.MAX_PASSWORD)
    role = field(body, "role", "str", required=False, max_len=20) or "BUYER"
    if len(password) < 8:
        raise bad_request("password must be 8 to 1024 characters", "password")
    if not _EMAIL_RE.match(email):  # the document's pattern; api.create_user's check is no stricter
        raise bad_request("email must be an address such as name@example.com", "email")
    client = clients.client_address(request.environ)
    calls.check_registration(db, client)  # 429 before the scrypt, not after
    db.release()  # no connection held while scrypt runs
    with _password_work():
        password_hash = auth.hash_password(password)
    user = calls.register(db, client, email, name, password_hash, role)
    response.status = 201
    return user


@app.post("/api/auth/login")
def login(db):
    body = json_body()
    email = field(body, "email", "str", max_len=254)
    password = field(body, "password", "str", max_len=auth.MAX_PASSWORD)
    # The database holds the stored hash and the throttle (per email and client pair); the app only
    # derives the key from the password with the salt and cost it is given, and the database
    # compares it and makes the token (sql/app/auth.sql).
    client = clients.client_address(request.environ)
    params = calls.login_parameters(db, client, email)
    db.release()  # no connection held while waiting or while scrypt runs
    with _password_work():
        time.sleep(min(3.0, max(0.0, float(params.get("delay") or 0))))
        key = auth.derive_key(password, params)
        upgrade = auth.hash_password(password, params["upgrade"]) if params.get("upgrade") else None
    result = calls.login(db, client, email, key, upgrade)
    if not result.get("authenticated"):
        raise unauthenticated("invalid email or password")
    return {k: result[k] for k in ("token", "tokenType", "expiresAt", "userId", "role")}


@app.post("/api/auth/logout")
def logout(db):
    return calls.logout(db, token())
