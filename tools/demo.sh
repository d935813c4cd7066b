#!/usr/bin/env bash
# geogan end to end on the synthetic sample data: SAR -> RGB, trained on a few co-registered
# pairs, scored on a held-out scene beside a baseline.
#
#   tools/demo.sh [--quick] [--out DIR]
#
# 1. makes (or reuses) .venv with a CPU torch and geogan (tools/_env.sh);
# 2. exports paired chips (128 pixels on the CPU) from the co-registered pair
#    sample_data/sar_pair.tif (A) / rgb_pair.tif (B), a small area inside the RGB training
#    region, far from the test scene (and, for a cyclegan config, unpaired chips of
#    sar_train.tif / rgb_train.tif as well: the pairs then make it a semi-supervised CycleGAN);
# 3. trains a Pix2PixHD-style model on the pairs, the best route by SSIM in
#    tools/bench_quality.py (the semi-supervised CycleGAN matches its PSNR with 4.7x the
#    training time): tools/demo_train.yaml, ~7 min on 2 CPU cores; tools/demo_train_gpu.yaml,
#    bigger, when torch sees a GPU;
# 4. translates the held-out SAR scene sample_data/sar_test.tif into a georeferenced RGB
#    GeoTIFF on the same grid, with test-time augmentation (--tta: the mean over the 8
#    orientations the model was trained under);
# 5. computes a baseline (tools/demo_baseline.py: histogram matching of the SAR VV dB to the
#    RGB training bands) on the same grid;
# 6. evaluates both against the true RGB sample_data/rgb_test_truth.tif, per class of
#    sample_data/landcover_test.tif too (geogan evaluate --classes), and prints the class table;
# 7. writes a preview PNG: SAR (dB) | model | baseline | truth.
#
# --quick   a ~1 minute smoke run (fewer chips, a tiny network, one short epoch): checks
#           that every stage works, not that the translation is any good.
# --out DIR where everything goes (default: demo_out in the checkout).
# Exits non-zero as soon as any stage fails.
set -euo pipefail

usage() { sed -n '2,/^set -euo pipefail/p' "$0" | sed -n 's/^# \{0,1\}//p'; }  # the header comment, whole

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/demo_out"
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --out) [ $# -ge 2 ] || { echo "demo.sh: --out needs a directory" >&2; exit 2; }; OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#--out=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
DATA="$ROOT/sample_data"
TOOLS="$ROOT/tools"

stage() { printf '\n==> %s\n' "$*"; }
START=$SECONDS
timed() {  # timed NAME command...: run it, remember its wall time in T_NAME (bash 3 safe)
  local name="$1" t0=$SECONDS
  shift
  "$@"
  eval "T_$name=$((SECONDS - t0))"
}

stage "environment (tools/_env.sh: .venv with CPU torch + geogan)"
t0=$SECONDS
# shellcheck source=tools/_env.sh
source "$TOOLS/_env.sh"
T_setup=$((SECONDS - t0))
GEOGAN=("$VENV_PY" -m geogan)
"${GEOGAN[@]}" --version

for f in sar_train.tif rgb_train.tif sar_pair.tif rgb_pair.tif sar_test.tif rgb_test_truth.tif landcover_test.tif; do
  if [ ! -f "$DATA/$f" ]; then
    stage "sample data missing ($f): adding it with tools/make_sample_data.py --missing"
    "$VENV_PY" "$TOOLS/make_sample_data.py" --out "$DATA" --missing
    break
  fi
done

GPU="$("$VENV_PY" -c 'import torch; print(torch.cuda.is_available())')"
if [ "$QUICK" = 1 ]; then
  CONFIG="$TOOLS/demo_train_quick.yaml"; CHIP=64; STRIDE=64; PAIR_STRIDE=32; TILE=128; OVERLAP=32
elif [ "$GPU" = "True" ]; then
  CONFIG="$TOOLS/demo_train_gpu.yaml"; CHIP=64; STRIDE=16; PAIR_STRIDE=8; TILE=256; OVERLAP=64
else
  CONFIG="$TOOLS/demo_train.yaml"; CHIP=128; STRIDE=32; PAIR_STRIDE=16; TILE=256; OVERLAP=64
fi
MODEL="$(sed -n 's/^model: *\([a-z0-9]*\).*/\1/p' "$CONFIG")"
if [ "$MODEL" = pix2pix ]; then NAME="Pix2PixHD"; else NAME="semi-supervised CycleGAN"; fi

stage "chips: the co-registered pair sar_pair.tif (A) / rgb_pair.tif (B) -> $OUT/chips_paired"
t0=$SECONDS
"${GEOGAN[@]}" chips \
  --a "$DATA/sar_pair.tif" --kind-a sar \
  --b "$DATA/rgb_pair.tif" --kind-b optical --paired \
  --out "$OUT/chips_paired" --tile-size "$CHIP" --stride "$PAIR_STRIDE" --min-valid 0.95 --val-fraction 0 --seed 0
cp "$CONFIG" "$OUT/train.yaml"
TRAIN_DATA="$OUT/chips_paired"
if [ "$MODEL" = cyclegan ]; then
  stage "chips: sar_train.tif (A) and rgb_train.tif (B), unpaired -> $OUT/chips"
  "${GEOGAN[@]}" chips \
    --a "$DATA/sar_train.tif" --kind-a sar \
    --b "$DATA/rgb_train.tif" --kind-b optical \
    --out "$OUT/chips" --tile-size "$CHIP" --stride "$STRIDE" --min-valid 0.95 --val-fraction 0.1 --seed 0
  TRAIN_DATA="$OUT/chips"
  printf 'data_paired: %s\n' "$OUT/chips_paired" >> "$OUT/train.yaml"
fi
T_chips=$((SECONDS - t0))

stage "train: $NAME with $(basename "$CONFIG") (GPU: $GPU) -> $OUT/run"
rm -rf "$OUT/run"
timed train "${GEOGAN[@]}" train "$OUT/train.yaml" --data "$TRAIN_DATA" --out "$OUT/run"

stage "predict: sar_test.tif -> $OUT/sar_test_to_rgb.tif"
timed predict "${GEOGAN[@]}" predict "$OUT/run/model.geogan" "$DATA/sar_test.tif" "$OUT/sar_test_to_rgb.tif" \
  --direction a2b --tile-size "$TILE" --overlap "$OVERLAP" --tta --overwrite

stage "baseline: histogram matching -> $OUT/baseline_rgb.tif"
timed baseline "$VENV_PY" "$TOOLS/demo_baseline.py" "$DATA/sar_test.tif" "$DATA/rgb_train.tif" "$OUT/baseline_rgb.tif"

stage "evaluate against rgb_test_truth.tif, per class of landcover_test.tif"
t0=$SECONDS
CLASSES=(--classes "$DATA/landcover_test.tif")
"${GEOGAN[@]}" evaluate "$OUT/sar_test_to_rgb.tif" "$DATA/rgb_test_truth.tif" "${CLASSES[@]}" --json > "$OUT/eval_model.json"
"${GEOGAN[@]}" evaluate "$OUT/baseline_rgb.tif" "$DATA/rgb_test_truth.tif" "${CLASSES[@]}" --json > "$OUT/eval_baseline.json"
T_evaluate=$((SECONDS - t0))

stage "preview PNG"
"$VENV_PY" "$TOOLS/demo_preview.py" --sar "$DATA/sar_test.tif" \
  "$OUT/sar_test_to_rgb.tif" "$OUT/baseline_rgb.tif" "$DATA/rgb_test_truth.tif" \
  --labels "SAR VV dB (input),$NAME (geogan),baseline (histogram match),truth" \
  --out "$OUT/preview.png"

stage "results"
"$VENV_PY" "$TOOLS/demo_report.py" "$OUT/eval_model.json" "$OUT/eval_baseline.json" \
  --names "$NAME,baseline" --classes | tee "$OUT/scores.txt"
cat <<EOF

model        $OUT/run/model.geogan   (training log: $OUT/run/losses.csv, previews: $OUT/run/previews/)
prediction   $OUT/sar_test_to_rgb.tif   (same grid as sample_data/sar_test.tif; open both in QGIS)
baseline     $OUT/baseline_rgb.tif
scores       $OUT/eval_model.json  $OUT/eval_baseline.json  $OUT/scores.txt
preview      $OUT/preview.png   (SAR dB | $NAME | baseline | truth)
time         setup ${T_setup}s, chips ${T_chips}s, train ${T_train}s, predict ${T_predict}s, baseline ${T_baseline}s, evaluate ${T_evaluate}s; total $((SECONDS - START))s
EOF
