#!/usr/bin/env bash
# Install geogan and what its tests need (CPU torch) into .venv, then run the test suite.
# Extra arguments go to pytest, e.g. tools/test.sh -k chips -x
set -euo pipefail
source "$(dirname "$0")/_env.sh"
cd "$ROOT"
exec "$VENV_PY" -m pytest "$@"
