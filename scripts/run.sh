#!/usr/bin/env bash
# Sets everything up and serves the marketplace on ${HOST:-127.0.0.1}:${PORT:-8080}.
# Without DATABASE_URL it starts (or reuses) a private PostgreSQL cluster in .pgdata/,
# applies migrations and loads a small demo catalogue (only there, and only on a loopback HOST);
# Ctrl-C stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Demo users (with the README's password) only in the project's own cluster: with DATABASE_URL
# set, serve that database as it is. `serve --demo` itself also refuses a non-loopback HOST.
if [ -z "${DATABASE_URL:-}" ]; then
    exec .venv/bin/python -m pyapp serve --demo "$@"
fi
exec .venv/bin/python -m pyapp serve "$@"
