#!/usr/bin/env bash
# Build the documentation site (mkdocs.yml, docs/) with every warning an error: a broken link or
# anchor, a page missing from the nav, an API name that does not resolve fails the build.
# Installs geogan with its docs extra into .venv (tools/_env.sh), then
#   mkdocs build --strict -d SITE_DIR        (default: site/, which git ignores)
# Extra arguments go to mkdocs build, e.g. tools/docs.sh -d /tmp/site
set -euo pipefail
GEOGAN_EXTRAS="${GEOGAN_EXTRAS:-docs}"
source "$(dirname "$0")/_env.sh"
cd "$ROOT"
export NO_MKDOCS_2_WARNING=1   # Material's banner about its successor: not a build problem
exec "$VENV_PY" -m mkdocs build --strict --clean "$@"
