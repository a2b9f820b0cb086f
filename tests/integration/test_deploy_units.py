"""deploy/systemd/: the units load cleanly (`systemd-analyze verify`), carry the hardening the
deployment checklist asks for and score "OK" in `systemd-analyze security --offline`,
stop within the HTTP server's graceful timeout, and marketplace.env.example lists every variable of the
README's configuration table with values pyapp.config accepts and no secret.

systemd need not be running (it is not PID 1 in CI containers): `verify` and `security
--offline` read unit files. They run against a throwaway root holding the units, the system's
own units (for the default dependencies such as sysinit.target) and a stand-in for
/opt/marketplace/.venv/bin/python, since `verify` requires ExecStart= to exist."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
UNITS_DIR = ROOT / "deploy" / "systemd"
UNITS = ("marketplace-api.service", "marketplace-expiry.service")
ENV_EXAMPLE = UNITS_DIR / "marketplace.env.example"
PYTHON = "/opt/marketplace/.venv/bin/python"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")

HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": "",
    "UMask": "0077", "User": "marketplace", "EnvironmentFile": "/etc/marketplace/marketplace.env",
    "WorkingDirectory": "/opt/marketplace",
}


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is missing: scripts/setup.sh installs it (Debian package systemd); "
                    "run scripts/setup.sh or apt-get install systemd")
    return path


def directives(unit: str) -> dict[str, list[str]]:
    """{key: [values in order]} of a unit file (a key may repeat, e.g. SystemCallFilter=)."""
    out: dict[str, list[str]] = {}
    for line in (UNITS_DIR / unit).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min|ms)?", value)
    assert m, value
    return float(m.group(1)) * {"s": 1, None: 1, "min": 60, "ms": 0.001}[m.group(2)]


@pytest.fixture
def fake_root(tmp_path):
    """A root with the units in /etc/systemd/system, the system's units, the env file and a stand-in
    at each path an Exec*= line names (the venv's python, /bin/kill)."""
    root = tmp_path / "root"
    if SYSTEM_UNITS.is_dir():
        shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    etc = root / "etc" / "systemd" / "system"
    etc.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(UNITS_DIR / unit, etc / unit)
    (root / "etc" / "marketplace").mkdir()
    shutil.copy(ENV_EXAMPLE, root / "etc" / "marketplace" / "marketplace.env")
    programs = {values.split()[0].lstrip("-@:+!") for unit in UNITS for key, lines in directives(unit).items()
                if key.startswith("Exec") for values in lines}
    assert PYTHON in programs, programs
    for program in programs:
        stand_in = root / program.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\nexit 0\n")
        stand_in.chmod(0o755)
    return root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess:
    return subprocess.run([systemd_analyze(), "verify", "--man=no", "--generators=no", "--recursive-errors=no",
                           f"--root={root}", *units], capture_output=True, text=True, timeout=120)


def test_units_verify_without_warnings(fake_root):
    r = verify(fake_root, *UNITS)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    about_ours = [line for line in out.splitlines() if "marketplace" in line]
    assert not about_ours, out


def test_verify_would_report_a_mistake(fake_root):
    """The check above is not vacuous: a misspelt directive and a missing ExecStart= binary in the
    same root are reported."""
    etc = fake_root / "etc" / "systemd" / "system"
    text = (etc / UNITS[0]).read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
    (etc / UNITS[0]).write_text(text)
    (fake_root / PYTHON.lstrip("/")).unlink()
    r = verify(fake_root, UNITS[0])
    out = r.stdout + r.stderr
    assert "NoNewPrivilege" in out and PYTHON in out and r.returncode != 0, out


@pytest.mark.parametrize("unit", UNITS)
def test_security_exposure_is_ok(fake_root, unit):
    r = subprocess.run([systemd_analyze(), "security", "--offline=yes", f"--root={fake_root}",
                        "--threshold=20", "--no-pager", unit], capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    m = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+) (\w+)", out)
    assert m, out
    assert r.returncode == 0 and float(m.group(1)) <= 2.0 and m.group(2) == "OK", out


@pytest.mark.parametrize("unit", UNITS)
def test_hardening_directives(unit):
    d = directives(unit)
    for key, want in HARDENING.items():
        assert d.get(key) == [want], (unit, key, d.get(key))
    assert d["SystemCallFilter"][0] == "@system-service", d["SystemCallFilter"]
    assert d["ExecStart"][0].startswith(PYTHON + " -m pyapp ")
    assert seconds(d["RestartSec"][0]) >= 1
    assert d["KillSignal"] == ["SIGTERM"] and d["KillMode"] == ["mixed"]


def test_api_unit_serves_and_stops_within_the_servers_grace():
    from pyapp.server import GRACE_SECONDS
    d = directives("marketplace-api.service")
    assert d["ExecStart"] == [f"{PYTHON} -m pyapp serve"]
    assert d["Restart"] == ["on-failure"]
    # systemctl reload: serve passes SIGHUP to the server, which replaces its workers
    # (tests/integration/test_cli.py::test_serve_makes_its_own_cluster_with_passwords).
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # The server's workers get GRACE_SECONDS to finish; systemd must wait longer before SIGKILL.
    assert seconds(d["TimeoutStopSec"][0]) >= GRACE_SECONDS + 5
    assert {"LogsDirectory", "StateDirectory"} <= d.keys()


def test_expiry_unit_runs_every_minute_and_always_restarts():
    d = directives("marketplace-expiry.service")
    assert d["ExecStart"] == [f"{PYTHON} -m pyapp expire-orders --every 60"]
    assert d["Restart"] == ["always"]
    assert "pg_cron" in (UNITS_DIR / "marketplace-expiry.service").read_text()


# ---------------------------------------------------------------- marketplace.env.example


def env_example() -> dict[str, str]:
    """The KEY=value lines, as systemd's EnvironmentFile= reads them (no quotes used here)."""
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), line
            assert '"' not in value and "'" not in value and "$" not in value, line
            out[key] = value
    return out


def readme_variables() -> set[str]:
    section = ROOT.joinpath("README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in re.findall(r"^\| ([^|]+) \|", section, re.M):
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", row))
    return names


def test_env_example_lists_every_configuration_variable():
    listed = set(env_example()) | set(re.findall(r"^#([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    wanted = readme_variables() | {"NOTIFY_WEBHOOK_URL"}
    assert len(wanted) > 15
    assert wanted <= listed, sorted(wanted - listed)
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):  # each variable has its one-line comment
        if re.match(r"^#?[A-Z][A-Z0-9_]+=", line):
            assert i > 0 and lines[i - 1].startswith("# "), line


def test_env_example_holds_no_secret_and_parses():
    env = env_example()
    for key in ("PAYMENT_WEBHOOK_SECRET", "METRICS_TOKEN", "NOTIFY_WEBHOOK_URL"):
        assert env[key] == "", key
    for key in ("DATABASE_URL", "APP_DATABASE_URL"):
        assert re.fullmatch(r"postgresql://\w+:CHANGE-ME@[^/]+/\w+", env[key]), env[key]
    # pyapp.config accepts every value (and DATABASE_URL is set, so no development cluster).
    r = subprocess.run([sys.executable, "-c", "from pyapp.config import Config; print(Config.from_env())"],
                       cwd=ROOT, env={"PATH": os.environ.get("PATH", ""), **env},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "database_url='postgresql://" in r.stdout
