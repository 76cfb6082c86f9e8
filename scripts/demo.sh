#!/usr/bin/env bash
# Set up (a virtualenv in .venv) and run the demo on the embedded store. Extra arguments go to `journey demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "setting up .venv: journey-engine with the analytics extra (pandas, pyarrow, plotly: for journey report and replay export)" >&2
python3 -m venv .venv
.venv/bin/python -m pip install --quiet -e '.[analytics]'
exec .venv/bin/journey demo "$@"
