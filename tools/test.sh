#!/usr/bin/env bash
# Install geogan and what its tests need (CPU torch, and Ray for the --engine ray tests) into .venv,
# then run the test suite. Extra arguments go to pytest, e.g. tools/test.sh -k chips -x
set -euo pipefail
GEOGAN_EXTRAS="${GEOGAN_EXTRAS:-test,ray}"
source "$(dirname "$0")/_env.sh"
cd "$ROOT"
exec "$VENV_PY" -m pytest "$@"
