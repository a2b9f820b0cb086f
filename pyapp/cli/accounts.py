"""create-user, and the demo data `serve --demo` loads (three users and a small catalogue)."""
from __future__ import annotations

import getpass
import sys

import psycopg

from pyapp import config
from pyapp.db import calls
from pyapp.db.registry import PROJECT_CLASS
from pyapp.db.runtime import database

DEMO_PASSWORD = "artisan-demo-2026"
DEMO_USERS = [("buyer@example.com", "Demo Buyer", "BUYER"),
              ("seller@example.com", "Demo Seller", "SELLER"),
              ("admin@example.com", "Demo Admin", "ADMIN")]
DEMO_PRODUCTS = [("Hand-thrown stoneware mug", "Glazed in ash blue; each one differs.", 24.00, 12),
                 ("Walnut serving board", "Oiled black walnut, 40 cm.", 58.50, 5),
                 ("Indigo-dyed linen scarf", "Shibori-folded, dyed by hand.", 42.00, 8),
                 ("Beeswax taper candles (pair)", "Hand-dipped, unscented.", 16.00, 20),
                 ("One-of-a-kind raku vase", "The only one there is.", 180.00, 1)]


def create_user(args) -> int:
    from pyapp.auth import hash_password

    password = args.password or config.command_password() or getpass.getpass("password: ")
    with database() as db, db.session(autocommit=False) as s:
        try:
            user = calls.create_user(s, args.email, args.name, hash_password(password), args.role)
        except psycopg.Error as exc:
            if exc.sqlstate and exc.sqlstate.startswith(PROJECT_CLASS):
                print(f"pyapp: {exc.diag.message_primary}", file=sys.stderr)
                return 1
            raise
    print(f"create-user: {user['email']} ({user['role']}) id {user['id']}")
    return 0


def load_demo(owner_url: str) -> bool:
    """Loads the demo users and catalogue into an empty database, in one transaction; returns
    whether it did."""
    from pyapp.auth import hash_password

    with psycopg.connect(owner_url) as conn:
        s = calls.Session(conn)
        if calls.has_users(s):
            return False
        ids = {}
        for email, name, role in DEMO_USERS:
            ids[role] = calls.create_user(s, email, name, hash_password(DEMO_PASSWORD), role)["id"]
        for name, desc, price, stock in DEMO_PRODUCTS:
            calls.create_product_for(s, ids["SELLER"], name, price, stock, desc)
    return True
