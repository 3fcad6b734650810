#!/bin/bash
# The pre-training question on one GPU: does ten times the masked-LM pre-training change RuCoLA's answer?
#
#   bash launch/compare_gpu.sh [PRETRAIN_STEPS]     # default 10000; sized for ~8 minutes on one H200
#
# On the 2-core CPU the grid pre-trains each masked-LM start for 1,000 steps (1M tokens, not
# converged) and those starts cost the transformer and the BiLSTM RuCoLA MCC (BENCHMARKS.md,
# "The comparison grid"). Is that the objective or the budget? This runs configs/compare_ru.py's RuCoLA
# cells {transformer, BiLSTM} x {scratch, mlm} x seeds 0-2 on a GPU, with the masked-LM
# pre-training at PRETRAIN_STEPS (same batch, a cosine over the longer run, 8 validations,
# train.max_minutes=4 as a guard that it leaves time to fine-tune):
#
#   1. a GPU smoke cell (configs/finetune.py:smoke, then launch/evaluate.py): jax on this
#      machine trains, checkpoints and restores, or the script stops before spending more time;
#   2. beside it, RusLit's FastText cell (launch/fasttext.py; config fasttext.workers=10: the
#      grid's 2 workers are a 2-core setting, and gensim's threads race anyway);
#   3. RuCoLA's scratch cells of all four bodies (they need no pre-training) beside the
#      pre-training cells, then the masked-LM cells: all through launch/compare.py on one
#      workdir, so the result.json files and the table are the grid's own (the scratch rows say
#      whether the device changes the numbers).
#
# On one H200 (BENCHMARKS.md, "The comparison grid"): smoke 38 s, FastText done at 72 s,
# the BiLSTM's 10,000 steps 268 s, its 3 fine-tuning cells ~66 s: ~410 s of the 470. The
# transformer's pre-training cell failed then (a TFDS cache race, fixed since) and was not rerun.
#
# Every cell's command is the grid's plus the overrides above (--dry_run on the same command
# lists them). A deadline (DEADLINE_SECONDS, default 470) stops the cells with SIGTERM
# (launch/compare.py passes it on to its running cells, which checkpoint and exit, and records
# their attempts; a rerun resumes). Then RESULTS (default $OUT if set,
# else WORKDIR) receives table.md/.csv/.svg, cells.tar.gz (each cell's result.json, config.json,
# metrics.jsonl and log.txt) and run.log.
#
# Environment: PYTHON (default python3) imports jax with a GPU and this repo's requirements (on
# the device machine: carry the missing ones as wheels, /work/.library/device/README.md).
# ../shared/data must hold ruslit/ and rucola/ (the cells' paths).
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
STEPS=${1:-10000}
WORKDIR=${WORKDIR:-$PWD/runs/compare_ru_gpu_$STEPS}  # absolute: the cells' commands embed it
RESULTS=${RESULTS:-${OUT:-$WORKDIR}}
DEADLINE_SECONDS=${DEADLINE_SECONDS:-470}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false  # cells share the GPU
mkdir -p "$RESULTS" "$WORKDIR"
exec > >(tee -a "$RESULTS/run.log") 2>&1
started=$(date +%s)
cores=$(nproc)

GRID=(--grid=configs/compare_ru.py --workdir="$WORKDIR"
      "--grid.pretrain.ru.fasttext.overrides=('data.path=../shared/data/ruslit','fasttext.workers=10')"
      "--grid.pretrain.ru.mlm.overrides=('data.path=../shared/data/ruslit','model.fasttext_path={fasttext}','train.steps=$STEPS','train.eval_every=$((STEPS / 8))','train.max_minutes=4')")
CELLS='rucola/transformer/scratch/*,rucola/lstm/scratch/*,rucola/transformer/mlm/*,rucola/lstm/mlm/*'

# The split below (FastText on cores 0-9, scratch cells on 10-15) is for a 16-core machine like the
# H200's; with fewer cores nothing is pinned and the cells share them.
pinned() {  # pinned FIRST-LAST command...: the command on those cores (launch/compare.py deals them out)
  local first=$1 last=$2; shift 2
  if [ "$cores" -ge 16 ] && command -v taskset > /dev/null; then
    taskset -c "$first-$last" "$@"
  else
    "$@"
  fi
}

phases() {
  "$PYTHON" -c "import jax, flax, optax, orbax.checkpoint, gensim; print('jax', jax.__version__, 'flax', flax.__version__,
'optax', optax.__version__, 'gensim', gensim.__version__, jax.devices())" || return 1
  pinned 0 9 "$PYTHON" launch/compare.py "${GRID[@]}" --only='pretrain/ru/fasttext' --parallel=1 &
  local fasttext=$!
  local smoke="$WORKDIR/smoke"
  rm -rf "$smoke"
  if ! "$PYTHON" launch/train.py --config=configs/finetune.py:task=rucola,body=transformer,start=scratch,smoke \
        --config.task.path=../shared/data/rucola --workdir="$smoke" > "$WORKDIR/smoke.log" 2>&1 \
      || ! "$PYTHON" launch/evaluate.py --workdir="$smoke" --best --split=valid >> "$WORKDIR/smoke.log" 2>&1; then
    tail -40 "$WORKDIR/smoke.log"
    echo "compare_gpu.sh: the GPU smoke cell failed (above); stopping"
    kill "$fasttext"
    return 1
  fi
  echo "smoke cell passed at $(( $(date +%s) - started )) s"
  pinned 10 $((cores - 1)) "$PYTHON" launch/compare.py "${GRID[@]}" --only='rucola/*/scratch/*' --parallel=$((cores < 6 ? cores : 6)) &
  local scratch=$!
  wait "$fasttext" || return 1
  echo "FastText done at $(( $(date +%s) - started )) s"
  "$PYTHON" launch/compare.py "${GRID[@]}" --only="$CELLS" --parallel=$((cores < 10 ? cores : 10))
  wait "$scratch"
  "$PYTHON" launch/compare.py "${GRID[@]}" --only="$CELLS" --parallel=$((cores < 10 ? cores : 10))  # any scratch cell left busy above
}

export -f phases pinned
export PYTHON WORKDIR STEPS CELLS started cores
setsid bash -c "$(declare -p GRID); phases" &
group=$!
while kill -0 "$group" 2> /dev/null; do
  if [ $(( $(date +%s) - started )) -ge "$DEADLINE_SECONDS" ]; then
    echo "compare_gpu.sh: deadline of $DEADLINE_SECONDS s reached; stopping the cells (a rerun resumes)"
    kill -TERM -- "-$group" 2> /dev/null
    for _ in $(seq 30); do  # launch/train.py checkpoints on SIGTERM: give it up to 30 s
      kill -0 -- "-$group" 2> /dev/null || break
      sleep 1
    done
    kill -KILL -- "-$group" 2> /dev/null
    break
  fi
  sleep 2
done
wait "$group" 2> /dev/null
echo "work ended at $(( $(date +%s) - started )) s"

"$PYTHON" launch/compare.py "${GRID[@]}" --only="$CELLS" --table_only
for name in table.md table.csv table.svg; do
  [ -f "$WORKDIR/$name" ] && cp "$WORKDIR/$name" "$RESULTS/"
done
(cd "$WORKDIR" && find . -path ./smoke -prune -o \( -name result.json -o -name config.json -o -name metrics.jsonl \
    -o -name log.txt \) -print | tar czf "$RESULTS/cells.tar.gz" -T - smoke.log 2> /dev/null)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RESULTS/gpu.txt" 2> /dev/null || true
echo "done at $(( $(date +%s) - started )) s; results in $RESULTS"
