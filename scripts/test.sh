#!/usr/bin/env bash
# Sets everything up and runs every test: pytest (HTTP, concurrency, migrations, end-to-end) and
# the pgTAP suite (run by pg_prove from tests/test_pgtap.py). Tests start their own throwaway
# PostgreSQL cluster unless DATABASE_URL is set. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
