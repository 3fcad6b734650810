#!/bin/bash
# The rotary recipe's GPU work in two prepared commands, sized to one 15-minute GPU slot:
#
#   bash launch/gpu_recipe.sh check                         # ~3 min on an H200 (BENCHMARKS.md, "Rotary positions on the fused attention path"): cuDNN correctness, old vs new step
#   TOKENS_PER_SECOND=<new step's> bash launch/gpu_recipe.sh train   # <= 9 min: train, checkpointing, then test
#
# check: the cuDNN rotary path against the explicit one (tests/test_rotary.py's GPU test,
# bf16, with and without memory), then launch/benchmark.py on the recipe as committed
# (Transformer-XL relative positions, XLA's explicit attention) and on
# configs/wt2_transformer.py:positions=rotary (cuDNN flash attention). Each benchmark's JSON
# line (tokens/s, MFU against the measured bf16 matmul rate and the quoted peak) goes to
# $RESULTS/benchmark_{relative,rotary}.json.
#
# train: the rotary recipe with stronger regularisation (embedding dropout 0.2,
# locked input 0.6 and output 0.5, residual 0.2, weight decay 0.2; no attention dropout on
# the fused path). The schedule's steps come from TOKENS_PER_SECOND (the check's rotary
# figure) so the cosine ends after SCHEDULE_MINUTES of steps (default 6.5; compilation and
# the 8 validations come on top); train.max_minutes=7.5 (counted from the first step) and a
# SIGTERM from `timeout` at 8.25 minutes (start-up included) both end it early with a
# validated checkpoint. Then launch/evaluate.py --best scores valid and test (under a
# minute). Rerunning the same command resumes.
#
# Environment: PYTHON (default: .venv/bin/python if present, else python3) must import jax
# with a GPU and this repo's requirements. The device machine's python3 (Python 3.12, jax
# 0.11 with CUDA 13, flax, optax, orbax) lacks ml-collections, tensorflow-datasets,
# array_record, importlib_resources and tensorboardX: carry them as wheels
# (/work/.library/device/README.md, "a Python package missing there"); `check` names what
# is missing before it starts. RESULTS (default $OUT if set, else runs/gpu_recipe) receives
# the small result files; the workdir (checkpoints) is WORKDIR (default runs/wt2_rotary_gpu).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
RESULTS=${RESULTS:-${OUT:-runs/gpu_recipe}}
WORKDIR=${WORKDIR:-runs/wt2_rotary_gpu}
export PYTHONUNBUFFERED=1
mkdir -p "$RESULTS"

check_environment() {
  "$PYTHON" - <<'EOF'
import importlib.util, sys
missing = [name for name in ("jax", "flax", "optax", "orbax.checkpoint", "ml_collections", "tensorflow_datasets",
                             "array_record", "importlib_resources", "tensorboardX", "absl", "tqdm", "pytest")
           if importlib.util.find_spec(name.split(".")[0]) is None]
if missing:
  sys.exit(f"gpu_recipe.sh: {sys.executable} lacks {missing}: carry them as wheels "
           "(/work/.library/device/README.md) or set PYTHON to an interpreter that has them")
import jax
print(f"python {sys.version.split()[0]}, jax {jax.__version__}, devices {jax.devices()}")
if jax.default_backend() != "gpu":
  sys.exit("gpu_recipe.sh: jax sees no GPU; install the CUDA build of jax for this interpreter")
EOF
}

case "${1:-}" in
  check)
    check_environment
    # tests/conftest.py defaults JAX_PLATFORMS to cpu; the GPU test needs the GPU.
    JAX_PLATFORMS=cuda "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_rotary.py -k gpu -rs \
        2>&1 | tee "$RESULTS/correctness.txt"
    for positions in relative rotary; do
      "$PYTHON" launch/benchmark.py --config=configs/wt2_transformer.py:positions=$positions --steps=30 \
          | tail -1 | tee "$RESULTS/benchmark_$positions.json"
    done
    ;;
  train)
    check_environment
    if [ -z "${TOKENS_PER_SECOND:-}" ]; then
      echo "gpu_recipe.sh train: set TOKENS_PER_SECOND to the rotary step's tokens/s from 'check'" >&2
      exit 2
    fi
    SCHEDULE_MINUTES=${SCHEDULE_MINUTES:-6.5}
    STEPS=$("$PYTHON" -c "print(int($TOKENS_PER_SECOND * 60 * $SCHEDULE_MINUTES / 8192))")  # 8,192 tokens a step
    echo "training $STEPS steps (${SCHEDULE_MINUTES} min at $TOKENS_PER_SECOND tokens/s) in $WORKDIR"
    status=0
    timeout --signal=TERM 495 "$PYTHON" launch/train.py --config=configs/wt2_transformer.py:positions=rotary \
        --workdir="$WORKDIR" --config.train.steps="$STEPS" --config.train.max_minutes=7.5 \
        --config.train.eval_every=$((STEPS / 8)) \
        --config.model.embedding_dropout=0.2 --config.model.transformer.input_dropout=0.6 \
        --config.model.transformer.output_dropout=0.5 --config.model.transformer.dropout=0.2 \
        --config.optim.weight_decay=0.2 || status=$?
    # 143: stopped by the timeout's SIGTERM after a validated checkpoint; still evaluate.
    [ "$status" = 0 ] || [ "$status" = 143 ] || exit "$status"
    cp "$WORKDIR/metrics.jsonl" "$WORKDIR/config.json" "$RESULTS/"
    "$PYTHON" launch/evaluate.py --workdir="$WORKDIR" --best --split=valid,test | tee "$RESULTS/evaluate_best.txt"
    ;;
  *)
    echo "usage: bash launch/gpu_recipe.sh check | TOKENS_PER_SECOND=N bash launch/gpu_recipe.sh train" >&2
    exit 2
    ;;
esac
