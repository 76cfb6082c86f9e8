#!/usr/bin/env bash
# Set up (a virtualenv in .venv) and run the whole test suite. Extra arguments go to pytest.
# PostgreSQL: PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE if set, else 127.0.0.1:5432 (database test).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet -e '.[test]'
exec .venv/bin/python -m pytest "$@"
