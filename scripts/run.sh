#!/usr/bin/env bash
# Sets everything up and serves the marketplace on ${HOST:-127.0.0.1}:${PORT:-8080}.
# Without DATABASE_URL it starts (or reuses) a private PostgreSQL cluster in .pgdata/,
# applies migrations and loads a small demo catalogue; Ctrl-C stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pyapp serve --demo "$@"
