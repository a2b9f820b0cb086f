"""docs/runbook.md is executable: its blocks marked `<!-- rehearsal: NAME -->` run here, line by line
and in order, against a throwaway database and a real server, so that the runbook and the code
cannot drift apart. An ORM-era database is deployed to the current schema, buyers leave unpaid
and failed orders, the rollback drains them and removes the schema, and the backup taken on the way
is restored into a new database. A runbook line may list the exit codes it accepts (`# exit: 0 1`);
any other line must exit 0. Between the blocks the test checks the database."""
from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from pyapp.db.localpg import bindir
from tests.integration.test_http_api import add, checkout, make_product, make_user, signed
from tests.integration.test_ops_rehearsal import old_state
from tests.sql.test_migrations import has_column
from tests.support.http_server import HttpServer, seed_webhook_secret
from tests.support.pg import APP_ROLE

ROOT = Path(__file__).resolve().parent.parent.parent
RUNBOOK = ROOT / "docs" / "runbook.md"
BLOCK_RE = re.compile(r"<!-- rehearsal: (\w+) -->\n```sh\n(.*?)```", re.S)
EXIT_RE = re.compile(r"#\s*exit:\s*([0-9 ]+)$")

pytestmark = pytest.mark.slow


def blocks() -> dict[str, list[str]]:
    found = {name: body.splitlines() for name, body in BLOCK_RE.findall(RUNBOOK.read_text())}
    assert set(found) == {"deploy", "rollback", "restore"}, f"rehearsal blocks in the runbook: {sorted(found)}"
    return found


def script_for(lines: list[str]) -> str:
    """A bash script that runs each line and stops at the first exit code the line does not accept."""
    out = ["set -u", f"cd {ROOT}"]
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        allowed = EXIT_RE.search(line)
        codes = allowed.group(1).split() if allowed else ["0"]
        out.append(f"echo '+ {line.replace(chr(39), '')}'")
        out.append(line)
        out.append(f'rc=$?; case " {" ".join(codes)} " in *" $rc "*) ;; '
                   f'*) echo "runbook line {n} exited $rc" >&2; exit 99;; esac')
    return "\n".join(out) + "\n"


def run_block(name: str, env: dict) -> str:
    r = subprocess.run(["bash", "-c", script_for(blocks()[name])], env=env, capture_output=True, text=True,
                       timeout=600)
    print(r.stdout[-6000:], r.stderr[-3000:])
    assert r.returncode == 0, f"the runbook's {name} block failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_runbook_deploy_rollback_and_restore_as_written(server, tmp_path):
    name = server.prefix + "runbook_" + uuid.uuid4().hex[:8]
    url = server.create_database(name, template="template0")
    restore_name = server.prefix + "restored_" + uuid.uuid4().hex[:8]
    restore_url = server.create_database(restore_name, template="template0")
    old_state(url)
    backups = tmp_path / "backups"
    srv = HttpServer(server.url(name, user=APP_ROLE)).start(wait_healthy=False)
    env = {**os.environ, "DATABASE_URL": url, "URL": srv.url, "BACKUP_DIR": str(backups),
           "RESTORE_URL": restore_url, "PATH": f"{ROOT / '.venv' / 'bin'}:{bindir()}:{os.environ['PATH']}"}
    env.pop("NOTIFY_WEBHOOK_URL", None)
    try:
        # ---- deploy: from the ORM's schema to the current one, smoke-tested on the live server
        out = run_block("deploy", env)
        assert "verify passed; health and smoke passed at" in out, out[-2000:]
        with psycopg.connect(url, autocommit=True) as c:
            assert has_column(c, "Product", "version")
            assert c.execute("SELECT maintenance FROM internal.settings").fetchone()[0] is False
            assert all(ok for _, ok, _ in c.execute("SELECT check_name, ok, detail FROM api.integrity_report()"))
        assert requests.get(srv.url + "/health").json()["migrations"] == "ok"

        # ---- trade: unpaid orders, and one whose payment failed
        seed_webhook_secret(url)
        db = (url, server.url(name, user=APP_ROLE))
        _, seller = make_user(db, "SELLER")
        product = make_product(srv, seller, stock=5)
        orders = []
        for _ in range(3):
            _, buyer = make_user(db)
            assert add(srv, buyer, product["id"], 1).status_code == 201
            r = checkout(srv, buyer)
            assert r.status_code == 201, r.text
            orders.append(r.json()["id"])
        raw, h = signed({"orderId": orders[0], "status": "failed", "reference": "psp-declined"})
        assert requests.post(srv.url + "/api/marketplace/payments/webhook", data=raw, headers=h).json()["status"] \
            == "PAYMENT_FAILED"
        with psycopg.connect(url, autocommit=True) as c:
            held = dict(c.execute('SELECT status, count(*) FROM "Order" WHERE id = ANY(%s) GROUP BY 1',
                                  (orders,)).fetchall())
        assert held == {"PAYMENT_FAILED": 1, "PENDING_PAYMENT": 2}

        # ---- roll back, with those orders present: drained by the expiry job under maintenance
        run_block("rollback", env)
        with psycopg.connect(url, autocommit=True) as c:
            assert not has_column(c, "Product", "version")
            assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname IN ('api', 'app', 'internal')"
                             ).fetchone()[0] == 0
            statuses = dict(c.execute('SELECT id, status FROM "Order" WHERE id = ANY(%s)', (orders,)).fetchall())
            assert set(statuses.values()) == {"CANCELLED"}, statuses
            assert c.execute('SELECT stock FROM "Product" WHERE id = %s', (product["id"],)).fetchone()[0] == 5
        assert len(list(backups.glob("marketplace-*.dump"))) == 2, "deploy's backup and the rollback's"

        # ---- restore the rollback's backup (taken in maintenance, before the drain) elsewhere
        run_block("restore", env)
        with psycopg.connect(restore_url, autocommit=True) as c:
            assert c.execute("SELECT maintenance FROM internal.settings").fetchone()[0] is False
            restored = dict(c.execute('SELECT id, status FROM "Order" WHERE id = ANY(%s)', (orders,)).fetchall())
            assert restored == {orders[0]: "PAYMENT_FAILED", orders[1]: "PENDING_PAYMENT",
                                orders[2]: "PENDING_PAYMENT"}
            assert c.execute('SELECT stock FROM "Product" WHERE id = %s', (product["id"],)).fetchone()[0] == 2
    finally:
        srv.stop()
        server.drop_database(name)
        server.drop_database(restore_name)
