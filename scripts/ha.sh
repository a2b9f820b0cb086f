#!/usr/bin/env bash
# A local high-availability cluster: one etcd and two PostgreSQL 15 nodes under Patroni
# (synchronous_mode on), with the marketplace database migrated on it (pyapp/db/ha.py).
#   scripts/ha.sh start [--dir DIR]   # prints DATABASE_URL and READ_DATABASE_URL to export
#   scripts/ha.sh status [--dir DIR]  # patronictl list (DIR defaults to $MK_HA_DIR)
#   scripts/ha.sh stop [--dir DIR]    # stops everything it started and removes DIR
# Needs Debian's patroni and etcd-server (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pyapp.db.ha "$@"
