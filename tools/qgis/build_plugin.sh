#!/usr/bin/env bash
# Build the installable QGIS plugin zip, dist/geogan_provider-VERSION.zip (prints its path):
# the plugin, its metadata (version from geogan/__init__.py; author, email, homepage, tracker and
# repository from setup.cfg) and the LICENSE. Install it with Plugins → Manage and Install
# Plugins → Install from ZIP. Needs only a Python 3 (standard library).
#   build_plugin.sh [--out-dir DIR]      PYTHON  the interpreter (default: python3)
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "${BASH_SOURCE[0]}")/build_plugin.py" "$@"
