"""serve: migrations, the settings kept in the database, optionally the demo data, then the HTTP
server (pyapp/server.py) as a child process (signals forwarded; the project's own cluster stopped
after it)."""
from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys

from pyapp import config
from pyapp.cli.accounts import DEMO_PASSWORD, DEMO_USERS, load_demo
from pyapp.db import migrate as mig
from pyapp.db.runtime import APP_ROLE, ROOT, open_database


def is_loopback(host: str) -> bool:
    """Whether `host` (an address, or a name such as localhost) means only this machine."""
    host = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return False
    return bool(found) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in found)


def demo_refusal(host: str) -> str | None:
    """Why `serve --demo` must not run here, or None. Its users' password is in the README."""
    if config.database_urls()[0]:
        return ("serve --demo loads users whose password is published, so only into the project's own "
                "cluster: unset DATABASE_URL, or serve without --demo")
    if not is_loopback(host):
        return (f"serve --demo listens only on a loopback address, not HOST={host!r}: its users' password "
                "is published. Set HOST=127.0.0.1, or serve without --demo")
    return None


def serve(args) -> int:
    from pyapp.cli import settings

    try:
        cfg = config.Config.from_env()
    except SystemExit as exc:  # a malformed variable: bad usage, before anything starts
        print(f"pyapp: {exc}", file=sys.stderr)
        return 2
    if args.demo and (why := demo_refusal(cfg.host)):
        print(f"pyapp: refused: {why}", file=sys.stderr)
        return 2
    db = open_database()
    try:
        for m in mig.apply(db.owner_url):
            print(f"applied {m}")
        db.after_migrations()
        try:
            for line in settings.apply_env(db.owner_url, cfg):
                print(f"serve: {line}")
        except settings.Refused as exc:
            print(f"pyapp: refused: {exc}", file=sys.stderr)
            return 2
        if args.demo and load_demo(db.owner_url):
            print("serve: loaded the demo catalogue")
        if args.demo:
            print(f"serve: demo users ({DEMO_PASSWORD!r} for each): "
                  + ", ".join(f"{e} ({r})" for e, _, r in DEMO_USERS))
        if db.cluster is None and db.app_url == db.owner_url:
            # The app's role is the security boundary (docs/security.md); the owner can do anything.
            print("serve: WARNING: APP_DATABASE_URL is unset, so the HTTP app connects with DATABASE_URL, "
                  "as the database owner. Point APP_DATABASE_URL at the marketplace_app role "
                  "(ALTER ROLE marketplace_app PASSWORD ...) to keep a stolen app credential harmless.",
                  file=sys.stderr, flush=True)
        env = dict(os.environ)
        env["DATABASE_URL"] = db.app_url
        # The app needs neither the webhook key (checked in the database) nor, on the own
        # cluster, the owner's password: its PGPASSFILE holds marketplace_app's alone.
        env.pop("PAYMENT_WEBHOOK_SECRET", None)
        if db.cluster is not None:
            env["PGPASSFILE"] = str(db.cluster.passfile_for(APP_ROLE))
        if args.workers:
            env["WORKERS"] = str(args.workers)
        print(f"serve: http://{cfg.host}:{cfg.port}/ (Ctrl-C stops)", flush=True)
        proc = subprocess.Popen([sys.executable, "-m", "pyapp.server"], env=env, cwd=ROOT)

        def forward(signum, _frame):
            proc.send_signal(signum)

        # Ctrl-C or SIGTERM: the server stops gracefully, then the cluster this command started.
        # SIGHUP (systemctl reload): the server replaces its workers one at a time and goes on.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, forward)
        return proc.wait()
    finally:
        db.stop_if_started()
