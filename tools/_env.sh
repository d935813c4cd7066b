# Shared by tools/test.sh and tools/demo.sh: make (or reuse) a virtual environment with a
# CPU build of torch and geogan installed in it. Source it; it sets $VENV_PY.
#   PYTHON          the interpreter to build the venv from (default: python3)
#   GEOGAN_VENV     where the venv lives (default: .venv in the checkout)
#   GEOGAN_EXTRAS   the extras installed with geogan (default: test; tools/test.sh adds ray)
#   GEOGAN_TORCH    pip arguments for torch (default: torch==2.13.0, a CPU build where one is
#                   on local disk; add an --index-url of a CPU wheel index elsewhere, or a
#                   CUDA build on a GPU machine)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GEOGAN_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
VENV_PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, pinned: an unpinned torch pulled in by geogan's requirements would fetch a
# multi-GB CUDA wheel on a machine that has no GPU.
if ! "$VENV_PY" -c "import torch" >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  "$VENV_PY" -m pip install -q ${GEOGAN_TORCH:-torch==2.13.0}
fi
"$VENV_PY" -m pip install -q -e "$ROOT[${GEOGAN_EXTRAS:-test}]"
