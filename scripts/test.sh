#!/usr/bin/env bash
# Set up (a virtualenv in .venv) and run the whole test suite. Extra arguments go to pytest.
# PostgreSQL: PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE if set, else 127.0.0.1:5432 (database test).
# Kafka and Redis: KAFKA_BOOTSTRAP_SERVERS and REDIS_URL if set, else throwaway local servers.
set -euo pipefail
cd "$(dirname "$0")/.."
# The report test renders in a real headless Chromium: Debian's, installed when missing and possible.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
        || echo "could not install chromium; the report test needs it" >&2
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet -e '.[test]'
exec .venv/bin/python -m pytest "$@"
