#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian 12 machine: PostgreSQL 15 with pgTAP and
# pg_prove, then a Python virtual environment in .venv with requirements.txt. Safe to re-run:
# it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# postgresql-15-cron: pg_cron, which the project's own clusters load so that the order expiry can
# run inside PostgreSQL (python -m pyapp expiry-schedule on; pyapp/db/localpg.py).
# For the checks of monitoring/ and deploy/systemd/: promtool (prometheus), amtool
# (prometheus-alertmanager), systemd-analyze (systemd), and python3-seccomp for the system Python
# that runs tests/support/sandbox.py. On a machine booted with systemd, Debian starts the prometheus and
# alertmanager daemons on install: `systemctl disable --now` them where they are not wanted.
# patroni, etcd-server, etcd-client, python3-etcd: the local HA cluster of scripts/ha.sh and
# tests/slow/test_ha.py (pyapp/db/ha.py starts its own etcd and Patroni; Debian's units stay unused:
# `systemctl disable --now etcd patroni` where systemd started them).
# strace: tests/integration/test_http_api.py counts a worker's sends per answer with it.
APT_PACKAGES=(postgresql-15 postgresql-client-15 postgresql-15-cron postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl chromium pgbouncer prometheus prometheus-alertmanager systemd python3-seccomp wrk postgresql-15-plpgsql-check patroni etcd-server etcd-client python3-etcd strace)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
    echo "$want" > "$stamp"
fi
