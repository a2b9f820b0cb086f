"""Login latency with the password cost the project uses (scrypt N = 2^17, r = 8, p = 1), against the
cost it used before (N = 2^14), over HTTP through our server (python -m pyapp.server, granian) as a
client sees it, in alternating rounds so that both see the same machine. Prints a table of medians;
asserts nothing.

    .venv/bin/python bench/login_bench.py [--logins 20]

What a login costs now: app.login_parameters, one scrypt derivation in the app (no database
connection held), app.login (the database compares the key and makes the token). A first login
with an older, weaker hash derives twice (the old key to verify, the new hash to store), once.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchpg import Postgres  # noqa: E402
from http_bench import Server  # noqa: E402

from pyapp import auth  # noqa: E402
from pyapp.db import migrate  # noqa: E402

PASSWORD = "correct horse battery staple"


def legacy_hash(password: str) -> str:
    """The encoding pyapp.auth wrote before the cost was raised (N = 2^14)."""
    salt = b"0123456789abcdef"
    key = hashlib.scrypt(password.encode(), salt=salt, n=2 ** 14, r=8, p=1, maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt$16384$8$1${auth._b64(salt)}${auth._b64(key)}"


def login_ms(url: str, email: str) -> float:
    req = urllib.request.Request(url + "/api/auth/login", method="POST",
                                 data=json.dumps({"email": email, "password": PASSWORD}).encode(),
                                 headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200 and json.loads(r.read())["token"]
    return (time.perf_counter() - started) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logins", type=int, default=20, help="logins per kind of account (default 20)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mk-login-bench-"))
    os.chmod(tmp, 0o755)  # the cluster runs as the postgres user when we are root
    pg = Postgres(tmp)
    srv = None
    try:
        db = pg.create("login_bench")
        migrate.apply(pg.url(db))
        target, legacy = [], []
        with pg.connect(db) as c:
            c.execute("""SELECT api.set_limits('{"registrationsPerClientPerHour": null}')""")
            new_hash = auth.hash_password(PASSWORD)
            for i in range(args.logins):
                c.execute("SELECT api.create_user(%s, 'T', %s)", (f"target{i}@bench.invalid", new_hash))
                c.execute("SELECT api.create_user(%s, 'L', %s)", (f"legacy{i}@bench.invalid", legacy_hash(PASSWORD)))
        srv = Server("login", pg.url(db, user="marketplace_app"), tmp).start()
        login_ms(srv.url, "target0@bench.invalid")  # warm-up: pools, imports
        for i in range(args.logins):  # alternating: the same machine for both
            target.append(login_ms(srv.url, f"target{i}@bench.invalid"))
            legacy.append(login_ms(srv.url, f"legacy{i}@bench.invalid"))
        again = [login_ms(srv.url, f"legacy{i}@bench.invalid") for i in range(min(5, args.logins))]
        with pg.connect(db) as c:
            upgraded = c.execute("""SELECT count(*) FROM "User" WHERE email LIKE 'legacy%%'
                                    AND "passwordHash" LIKE 'scrypt$131072$%%'""").fetchone()[0]
        started = time.perf_counter()
        auth.derive_key(PASSWORD, {"salt": "c2FsdHNhbHRzYWx0c2FsdA", "n": 2 ** 17, "r": 8, "p": 1})
        derive = (time.perf_counter() - started) * 1000

        print(f"\nlogin latency over HTTP, {args.logins} logins each, alternating (ms)")
        print(f"{'account':<44}{'median':>9}{'min':>9}{'max':>9}")
        for name, xs in (("hash at N=2^17 (new accounts)", target),
                         ("hash at N=2^14, first login (upgraded)", legacy),
                         ("same accounts, next login (N=2^17 now)", again)):
            print(f"{name:<44}{statistics.median(xs):>9.1f}{min(xs):>9.1f}{max(xs):>9.1f}")
        print(f"{'one N=2^17 derivation in this process':<44}{derive:>9.1f}")
        print(f"\nlegacy hashes upgraded to N=2^17 by their first login: {upgraded} of {args.logins}")
        return 0
    finally:
        if srv is not None:
            srv.stop()
        pg.close()


if __name__ == "__main__":
    sys.exit(main())
