#!/usr/bin/env bash
# Sets everything up and runs every test: tests/unit (pure Python), tests/sql (the pgTAP suite,
# run by pg_prove from tests/sql/test_pgtap.py, and the migration tests), tests/integration and
# tests/slow. Tests start their own throwaway PostgreSQL cluster unless DATABASE_URL is set. Extra
# arguments go to pytest, e.g. `scripts/test.sh tests/unit` for one group (README, "Tests").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
