"""The hardening of deploy/systemd/ does not break the app: `serve` (migrations, settings,
the HTTP server), registration, login, a checkout, /metrics with its token and a graceful SIGTERM stop;
`expire-orders --every` and `verify`; each inside tests/support/sandbox.py's approximation of its unit's
sandbox (read-only system, private /tmp, procfs subset=pid, no capabilities, the unit's system call
allow list, W^X memory, its address families), against the tests' PostgreSQL. Marked slow (about
20 s). Needs root with CAP_SYS_ADMIN for the mount namespace (fails otherwise: CI runs as root), systemd-analyze
and python3-seccomp (scripts/setup.sh installs both)."""
from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from pyapp.db.localpg import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
UNITS = ROOT / "deploy" / "systemd"
SYSTEM_PYTHON = "/usr/bin/python3"
PASSWORD = "sandbox-password-1"

pytestmark = pytest.mark.slow


def sandbox_prefix(unit: str) -> list[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: scripts/setup.sh installs it (Debian package systemd)")
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("python3-seccomp is missing: scripts/setup.sh installs it (apt-get install python3-seccomp)")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True)
    if os.geteuid() != 0 or r.returncode != 0:
        pytest.fail(f"needs root with CAP_SYS_ADMIN for a mount namespace (as CI has): {r.stderr.strip()}")
    return ["unshare", "--mount", "--propagation", "private", SYSTEM_PYTHON, str(ROOT / "tests" / "support" / "sandbox.py"),
            str(UNITS / unit), "--"]


def unit_environment(unit: str) -> dict[str, str]:
    """The unit's Environment= assignments (no quoting is used there)."""
    env = {}
    for line in (UNITS / unit).read_text().splitlines():
        if line.startswith("Environment="):
            env.update(kv.split("=", 1) for kv in line.split("=", 1)[1].split())
    return env


def base_env(http_db, unit: str) -> dict[str, str]:  # noqa: F811
    owner, app = http_db
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": owner, "APP_DATABASE_URL": app,
            **unit_environment(unit)}


PROBE = """
import mmap, os, socket
def refused(fn):
    try:
        fn()
    except OSError:
        return True
    return False
print({
    "install dir writable": not refused(lambda: open("sandbox-probe", "w")),
    "/proc/stat visible": not refused(lambda: open("/proc/stat")),
    "setpriority": not refused(lambda: os.setpriority(os.PRIO_PROCESS, 0, 5)),
    "netlink socket": not refused(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)),
    "W+X memory": not refused(lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)),
    "log dir writable": not refused(lambda: open("/var/log/marketplace/probe", "w")),
    "capabilities": open("/proc/self/status").read().split("CapEff:")[1].split()[0],
})
"""


def test_the_sandbox_is_real(http_db):  # noqa: F811
    r = subprocess.run(sandbox_prefix("marketplace-api.service") + [sys.executable, "-c", PROBE], cwd=ROOT,
                       env=base_env(http_db, "marketplace-api.service"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert eval(r.stdout) == {"install dir writable": False, "/proc/stat visible": False, "setpriority": False,  # noqa: S307
                              "netlink socket": False, "W+X memory": False, "log dir writable": True,
                              "capabilities": "0000000000000000"}, r.stdout
    assert not (ROOT / "sandbox-probe").exists()


def test_api_serves_and_stops_inside_its_sandbox(http_db, tmp_path):  # noqa: F811
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**base_env(http_db, "marketplace-api.service"), "HOST": "127.0.0.1", "PORT": str(port),
           "WORKERS": "2", "THREADS": "4", "METRICS_TOKEN": "sandbox-metrics-token",
           "PAYMENT_WEBHOOK_SECRET": "sandbox-webhook-secret-0123456789",
           "LOG_FILE": "/var/log/marketplace/app.log", "REGISTRATIONS_PER_CLIENT_PER_HOUR": "50"}
    out = tmp_path / "serve.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen(sandbox_prefix("marketplace-api.service") + [sys.executable, "-m", "pyapp", "serve"],
                                cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, out.read_text()
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        s = requests.Session()
        for email, role in (("seller@sandbox.test", "SELLER"), ("buyer@sandbox.test", "BUYER")):
            r = s.post(url + "/api/auth/register", json={"email": email, "password": PASSWORD, "name": role, "role": role})
            assert r.status_code == 201, r.text
        tokens = {}
        for email in ("seller@sandbox.test", "buyer@sandbox.test"):
            r = s.post(url + "/api/auth/login", json={"email": email, "password": PASSWORD})
            assert r.status_code == 200, r.text
            tokens[email] = {"Authorization": "Bearer " + r.json()["token"]}
        r = s.post(url + "/api/marketplace/products", headers=tokens["seller@sandbox.test"],
                   json={"name": "Raku vase", "price": 180, "stock": 3})
        assert r.status_code == 201, r.text
        buyer = tokens["buyer@sandbox.test"]
        r = s.post(url + "/api/marketplace/cart/items", headers=buyer, json={"productId": r.json()["id"], "quantity": 2})
        assert r.status_code == 201, r.text
        r = s.post(url + "/api/marketplace/checkout", headers={**buyer, "Idempotency-Key": "sandbox-1"},
                   json={"shippingAddress": {"city": "Oaxaca"}})
        assert r.status_code == 201, r.text
        assert s.get(url + "/metrics").status_code == 401
        metrics = s.get(url + "/metrics", headers={"Authorization": "Bearer sandbox-metrics-token"}).text
        assert 'mk_checkout_total{outcome="success"} 1.0' in metrics and "mk_database_up 1.0" in metrics
        assert 'mk_http_server_errors_total{status="500"} 0.0' in metrics
    finally:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # KillMode=mixed: only the main process gets it
        rc = proc.wait(30)
    text = out.read_text()
    assert rc == 0 and time.monotonic() - started < 25, text  # within TimeoutStopSec
    for bad in ("Traceback", "[ERROR]", "Read-only file system", "Operation not permitted", "UnhandledError"):
        assert bad not in text, text


def test_expiry_worker_and_verify_inside_their_sandbox(http_db):  # noqa: F811
    env = base_env(http_db, "marketplace-expiry.service")
    proc = subprocess.Popen(sandbox_prefix("marketplace-expiry.service")
                            + [sys.executable, "-m", "pyapp", "expire-orders", "--every", "1"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        first = proc.stdout.readline() if ready else "(nothing within 60 s)"
        assert "expire-orders:" in first and "expired" in first, first
        time.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, first + rest
    assert "pass failed" not in rest and "Traceback" not in rest, rest
    r = subprocess.run(sandbox_prefix("marketplace-expiry.service") + [sys.executable, "-m", "pyapp", "verify"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
