#!/usr/bin/env bash
# The GPU check: one script, a few minutes on one CUDA GPU, printing the figures docs/benchmarks.md quotes.
#
#   tools/gpu_check.sh [OUTDIR]        (OUTDIR: JSON results; default: a temp dir)
#
# 1. Training: CycleGAN images/s for the paper configuration (resnet_9blocks ngf64, 256², fp32,
#    batch 1: the reference repo's setting) and the fastest measured configuration (precision x
#    layout x compile x batch), their ratio, and model FLOP utilisation (bf16 dense peak). The
#    eager grid is batches 16 and 8 only: with 1 and 4 too (H200, 2026-11-28) it used the 140 s
#    budget before any compiled configuration (~80 s to compile) could start.
# 2. Prediction: end-to-end vs model-only megapixels/s on a generated 8192x8192 scene, peak GPU memory.
# 3. Agreement: the same prediction on the CPU (fp32) and on CUDA (fp32, bf16, fp16).
# 4. The CUDA tests (tests/test_train_gpu.py, tests/test_predict_gpu.py): training with the CUDA
#    defaults (bf16/fp16 + GradScaler, compile, workers); a resume compared weight by weight with
#    the uninterrupted run; the default configuration (compile + bf16) under DDP with 2 processes
#    through geogan.cli.torchrun — on one GPU over gloo (NCCL refuses two ranks on one GPU), and
#    over NCCL when 2 GPUs are visible; the pair discriminators (semi-supervised CycleGAN) under
#    DDP; and the GPU prediction path against the CPU.
#
# The budget is 8 minutes in all (the timeouts below add up to 470 s).
# --dry prints the steps without running them (and runs on a machine without CUDA).
# Without CUDA it refuses in one line. Needs geogan's dependencies importable; on a machine with
# no package index, GEOGAN_WHEELS=DIR installs wheels from DIR into a temporary site first.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry" ]; then DRY=1; shift; fi
OUTDIR="${1:-$(mktemp -d)}"
mkdir -p "$OUTDIR"
PY="${PYTHON:-python3}"
if [ -n "${GEOGAN_WHEELS:-}" ] && ! "$PY" -c "import rasterio, shapely, pyproj" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/geogan-site \
    "$GEOGAN_WHEELS"/*.whl || { echo "gpu_check: could not install the wheels in $GEOGAN_WHEELS" >&2; exit 2; }
  export PYTHONPATH="/tmp/geogan-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$DRY" = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU visible to torch; this check needs one (CI and CPU machines skip it)" >&2
  exit 2
fi
[ "$DRY" = 1 ] || "$PY" - <<'PYEOF'
import torch, platform
p = torch.cuda.get_device_properties(0)
print(f"device: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}, "
      f"{p.multi_processor_count} SMs; torch {torch.__version__}, CUDA {torch.version.cuda}, python {platform.python_version()}")
PYEOF
status=0
step() {
  echo; echo "== $1"; shift
  if [ "$DRY" = 1 ]; then echo "would run: $*"; return; fi
  "$@" || { echo "gpu_check: step failed (exit $?)"; status=1; }
}
step "training throughput and the MFU table (tools/bench_train.py)" \
  timeout 150 "$PY" tools/bench_train.py --device cuda --batches 16,8 --compile-batches 16 --budget-s 110 \
  --json "$OUTDIR/train.json"
step "prediction throughput (tools/bench_predict.py)" \
  timeout 80 "$PY" tools/bench_predict.py --device cuda --sizes 8192x8192 --no-rss --json "$OUTDIR/predict.json"
step "CPU vs CUDA agreement of one prediction" \
  timeout 40 "$PY" tools/bench_predict.py --agreement --json "$OUTDIR/agreement.json"
step "CUDA tests: defaults, exact resume, compile + bf16 under DDP (gloo; NCCL with 2 GPUs), pair discriminators under DDP, GPU prediction" \
  timeout 200 "$PY" -m pytest -q -p no:cacheprovider tests/test_train_gpu.py tests/test_predict_gpu.py
echo
echo "results: $OUTDIR"
exit $status
