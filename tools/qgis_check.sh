#!/usr/bin/env bash
# Prove the geogan QGIS Processing provider in a real, headless QGIS (issue 5).
#
#  1. installs QGIS from Debian packages when it is missing (needs root and apt);
#  2. makes (or reuses) a venv from QGIS's own Python with --system-site-packages
#     ($GEOGAN_QGIS_VENV, default .venv-qgis) and installs CPU torch and geogan into it,
#     pinned so that QGIS's own numpy stays the one in use;
#  3. builds the installable plugin zip (tools/qgis/build_plugin.sh) and installs it into a
#     fresh, throw-away QGIS profile (HOME is a temporary folder), as a user's "Install from ZIP"
#     would; every check below runs that installed copy, not the source folder;
#  4. runs tools/qgis/check_qgis.py: QgsApplication + Processing, the provider, processing.run
#     for chips / a tiny train / translate / translate_batch on sample_data/ (also scene paths:
#     BigEarthNet VV,VH and B04,B03,B02 band files, dB units, an AOI per domain), output layer
#     CRS/extent, progress 0→100, one log line per epoch, cancel leaves nothing, a failed batch
#     scene logged and the rerun resumed, errors and an incompatible geogan as one-line
#     QgsProcessingException;
#  5. runs the plugin through qgis_process.bin (the QGIS binary, where QGIS's GDAL is loaded
#     before rasterio's): list + translate;
#  6. starts the QGIS desktop app under Xvfb with that profile (tools/qgis/check_qgis_desktop.py):
#     the plugin loads via classFactory/initGui, each algorithm's dialog keeps the values set,
#     and runAndLoadResults adds the translated layer
#     (with the xcb platform: the desktop app crashes in QgsClipboard on "offscreen").
# Prints PASS/FAIL lines; exits non-zero on any failure. A second run skips apt and reuses the venv.
#   GEOGAN_TORCH   pip arguments for torch (default: torch==2.13.0, the CPU build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
QGIS_PY=/usr/bin/python3
VENV="${GEOGAN_QGIS_VENV:-$ROOT/.venv-qgis}"
export QT_QPA_PLATFORM=offscreen PIP_DISABLE_PIP_VERSION_CHECK=1
WORK="$(mktemp -d -t geogan-qgis-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$WORK/xdg}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
log() { printf '== %s\n' "$*"; }

# -- 1. QGIS --------------------------------------------------------------------------------
PKGS=(python3-qgis qgis-providers qgis python3-venv xvfb xauth)  # xvfb: the desktop app check
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1 || ! "$QGIS_PY" -c "import qgis.core" >/dev/null 2>&1; then
  log "installing QGIS from Debian packages: ${PKGS[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
fi
log "$("$QGIS_PY" -c 'from qgis.core import Qgis; import sys; print("QGIS", Qgis.QGIS_VERSION, "on Python", sys.version.split()[0])')"

# -- 2. the environment beside QGIS -----------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV from $QGIS_PY (--system-site-packages)"
  "$QGIS_PY" -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"
# Pins that keep geogan's requirements from breaking QGIS's Python (see docs/qgis.md):
#  numpy   stay on QGIS's own numpy: Debian's GDAL bindings, scipy and matplotlib are built
#          against it, and shapely/numpy wheels would otherwise pull numpy 2 into the venv;
#  affine  3.x needs attrs >= 23 (cached_property on slotted classes); Debian has attrs 22;
#  pyproj  Debian's pyproj cannot find its PROJ data from inside a venv; the wheel bundles it.
CONSTRAINTS="$VENV/geogan-qgis-constraints.txt"
{
  echo "numpy==$("$QGIS_PY" -c 'import numpy; print(numpy.__version__)')"
  echo "affine<3"
  echo "pyproj>=3.6"
} > "$CONSTRAINTS"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  log "installing torch into $VENV"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q -c "$CONSTRAINTS" ${GEOGAN_TORCH:-torch==2.13.0}
fi
"$PY" -m pip install -q -c "$CONSTRAINTS" -e "$ROOT"
log "$("$PY" -c 'import torch, rasterio, numpy, pyproj, shapely; from osgeo import gdal; print(f"torch {torch.__version__}, numpy {numpy.__version__}, rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__}), QGIS GDAL {gdal.__version__}, pyproj {pyproj.__version__}, shapely {shapely.__version__}")')"

# -- 3. the plugin zip, installed into a fresh profile -------------------------------------------------
status=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; status=1; }
ZIP="$(PYTHON="$PY" bash tools/qgis/build_plugin.sh --out-dir "$WORK/dist")"
export HOME="$WORK/home"  # a throw-away profile, so the user's QGIS settings are untouched
PLUGINS="$HOME/.local/share/QGIS/QGIS3/profiles/default/python/plugins"
mkdir -p "$PLUGINS"
"$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$ZIP" "$PLUGINS"
if [ -f "$PLUGINS/geogan_provider/LICENSE" ] && grep -q "^version=$("$PY" -c 'import geogan; print(geogan.__version__)')\$" "$PLUGINS/geogan_provider/metadata.txt"; then
  pass "$(basename "$ZIP") built and installed into a fresh profile (metadata version = geogan's, LICENSE included)"
else
  fail "the plugin zip $ZIP lacks LICENSE or geogan's version in metadata.txt"
fi

# -- 4. the headless Processing check, on the installed plugin -------------------------------------
"$PY" tools/qgis/check_qgis.py --workdir "$WORK/check" --plugins "$PLUGINS" || status=1

# -- 5. the installed plugin run by qgis_process.bin -----------------------------------------------
# (the Debian qgis_process wrapper fails on --noversioncheck; qgis_process.bin works)
MODEL="$WORK/check/run/model.geogan"
if ! command -v qgis_process.bin >/dev/null 2>&1; then
  fail "qgis_process.bin not found (package qgis)"
elif [ ! -f "$MODEL" ]; then
  fail "qgis_process.bin check skipped: the Python check trained no model"
else
  qgis_process.bin plugins enable geogan_provider >/dev/null 2>&1 || true
  listed="$(qgis_process.bin list 2>/dev/null | grep -E '^\s*geogan:' || true)"
  echo "$listed"
  if [ "$(echo "$listed" | grep -c 'geogan:')" -eq 4 ]; then
    pass "qgis_process.bin lists the plugin's 4 algorithms from a QGIS profile"
  else
    fail "qgis_process.bin does not list geogan:chips/train/translate/translate_batch"
  fi
  OUT="$WORK/qgis_process_out.tif"
  TEST="$ROOT/sample_data/sar_test.tif"
  [ -f "$TEST" ] || TEST="$WORK/check/synthetic_test.tif"
  if GEOGAN_VENV="$VENV" qgis_process.bin run geogan:translate -- MODEL="$MODEL" \
       INPUT="$TEST" TILE_SIZE=64 OVERLAP=16 OUTPUT="$OUT" >"$WORK/qp.log" 2>&1 \
     && "$PY" - "$OUT" "$TEST" <<'EOF'
import sys
import rasterio
with rasterio.open(sys.argv[1]) as out, rasterio.open(sys.argv[2]) as src:
    ok = out.crs == src.crs and out.transform == src.transform and out.shape == src.shape
    print(f"   {sys.argv[1]}: {out.count} band(s) {out.dtypes[0]}, {out.crs}, {out.bounds}")
sys.exit(0 if ok else 1)
EOF
  then
    pass "qgis_process.bin run geogan:translate (GEOGAN_VENV; rasterio beside QGIS's GDAL) wrote a raster on the input's grid"
  else
    tail -20 "$WORK/qp.log"
    fail "qgis_process.bin run geogan:translate"
  fi
fi

# -- 6. the QGIS desktop app, as a user runs it ---------------------------------------------------
if [ -f "$MODEL" ] && [ -d "${PLUGINS:-}" ] && command -v xvfb-run >/dev/null 2>&1; then
  RESULT="$WORK/desktop_result.txt"
  GEOGAN_VENV="$VENV" GEOGAN_DESKTOP_RESULT="$RESULT" GEOGAN_DESKTOP_MODEL="$MODEL" GEOGAN_DESKTOP_INPUT="$TEST" \
    QT_QPA_PLATFORM=xcb timeout 300 xvfb-run -a qgis --nologo --noversioncheck --code "$ROOT/tools/qgis/check_qgis_desktop.py" \
    >"$WORK/desktop.log" 2>&1 || true
  if [ -s "$RESULT" ]; then
    cat "$RESULT"
    grep -q '^FAIL' "$RESULT" && status=1
  else
    tail -20 "$WORK/desktop.log"
    fail "QGIS desktop app did not run the check script (see the log above)"
  fi
else
  fail "QGIS desktop check not run (needs xvfb-run, the profile and the model from the steps above)"
fi
if [ "$status" -eq 0 ]; then log "QGIS check: all passed"; else log "QGIS check: FAILED"; fi
exit "$status"
