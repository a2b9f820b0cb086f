"""Runs the HTTP app under its server (pyapp/server.py, granian) for the HTTP tests.

`http_db` (tests/conftest.py) is a fresh migrated database per test module (module scope: starting the server per test
would cost a second each); `http_app` the server serving it as role marketplace_app on a free
127.0.0.1 port. Both fixtures are in tests/conftest.py; this module has the server itself.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests

from pyapp import auth
from pyapp.db.localpg import free_port
from tests.support.pg import APP_ROLE

ROOT = Path(__file__).resolve().parent.parent.parent
WEBHOOK_SECRET = "test-webhook-secret"


class HttpServer:
    def __init__(self, database_url: str, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmpdir = Path(tempfile.mkdtemp(prefix="mk-http-"))
        self.log_file = self.tmpdir / "app.log"
        self.env = {**os.environ, "DATABASE_URL": database_url, "HOST": "127.0.0.1",
                    "PORT": str(self.port), "PAYMENT_WEBHOOK_SECRET": WEBHOOK_SECRET,
                    "WORKERS": "2", "THREADS": "8", "LOG_FILE": str(self.log_file),
                    "DB_POOL_TIMEOUT_S": "2", **env}
        self.proc: subprocess.Popen | None = None

    def start(self, wait_healthy: bool = True) -> "HttpServer":
        self.tmpdir.mkdir(exist_ok=True)  # stop() removes it; a server may be started again
        self.out = open(self.log_file.with_suffix(".out"), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyapp.server"],
            cwd=ROOT, env=self.env, stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_file.with_suffix('.out').read_text()[-2000:]}")
            try:
                r = requests.get(self.url + "/health", timeout=3)
                if r.status_code == 200 or (not wait_healthy and r.status_code == 503):
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the server did not become healthy within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if getattr(self, "out", None):
            self.out.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def log_lines(self) -> list[str]:
        return self.log_file.read_text().splitlines() if self.log_file.exists() else []


def seed_webhook_secret(owner_url: str, secret: str = WEBHOOK_SECRET) -> None:
    """The webhook key lives in the database, where the app's role cannot read it: the owner sets
    it (as `python -m pyapp serve` does from PAYMENT_WEBHOOK_SECRET)."""
    with psycopg.connect(owner_url, autocommit=True) as c:
        c.execute("SELECT api.set_webhook_secret(%s)", (secret,))


def create_admin(db_url: str, email: str, password: str) -> str:
    """An ADMIN, made the only way there is: api.create_user as a DBA (superuser)."""
    with psycopg.connect(db_url, autocommit=True) as c:
        return c.execute("SELECT api.create_user(%s, %s, %s, 'ADMIN')",
                         (email, "Admin", auth.hash_password(password))).fetchone()[0]["id"]
