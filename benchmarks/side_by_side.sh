#!/usr/bin/env bash
# jaxlm's train step against its PyTorch peer, family by family, at matched shapes on the CPU:
#
#   bash benchmarks/side_by_side.sh                  # transformer, lstm, tcn; 2 rounds each
#   STEPS=30 TRIALS=5 bash benchmarks/side_by_side.sh transformer
#
# Each family runs jaxlm, torch, jaxlm, torch (ROUNDS pairs), so both sides see the same machine
# conditions; each run is its own process. Shapes: batches of 16 x 128 tokens, width 256, a tied
# full softmax over WikiText-2's 33,278 words without output biases, AdamW (lr 1e-3, weight decay
# 0.01, gradient clipping at norm 1), no dropout; the bodies are benchmarks/torch_peers.py's
# docstring's (transformer 4 x 4 heads, LSTM 2 layers, TCN 4 blocks of kernel 3). jaxlm reads
# WikiText-2 (the copy shipped in the repo), the peer uniform random ids: the shapes, not the
# words, set a step's cost.
#
# Threads: XLA:CPU sizes its thread pool by the process's CPU affinity (on one core it runs ops on
# the calling thread: --xla_cpu_multi_thread_eigen=false, as launch/compare.py's cells do), so
# both sides are pinned with taskset to the same THREADS cores, and torch takes --threads THREADS.
# On a machine of exactly THREADS cores the pinning changes nothing.
#
# Prints one JSON line per run, with "side", "family" and "round" added to each program's own
# line (launch/benchmark.py's, torch_peers.py's), then one summary line per family: the mean
# tokens/s of each side over its rounds and jaxlm's as a multiple of torch's.
# The peers' venv: python3.11 -m venv /work/peers-venv && /work/peers-venv/bin/pip install
#   -r benchmarks/peers-requirements.txt
set -euo pipefail
cd "$(dirname "$0")/.."

JAXLM_PYTHON=${JAXLM_PYTHON:-/work/main/.venv/bin/python}
PEERS_PYTHON=${PEERS_PYTHON:-/work/peers-venv/bin/python}
THREADS=${THREADS:-2}
# The defaults keep the whole run short on 2 shared cores (start-up, compile and FLOP counting,
# then 1-7 s a step); on a quiet machine STEPS=30 TRIALS=5 is launch/benchmark.py's own default
# and gives steadier medians.
STEPS=${STEPS:-8}  # timed steps a run, after 3 untimed ones (launch/benchmark.py's fixed warm-up)
TRIALS=${TRIALS:-2}  # the timed steps in this many groups; step_seconds is the median of their means
ROUNDS=${ROUNDS:-2}
FAMILIES=("$@")
[ ${#FAMILIES[@]} -gt 0 ] || FAMILIES=(transformer lstm tcn)

BATCH=16
LENGTH=128
VOCAB=33278  # WikiText-2's words (configs/quickstart.py); jaxlm's own comes from the corpus
WIDTH=256

# jaxlm's side: configs/wt2_families.py (the quickstart's width-256 tied model, 16-row batches,
# no dropout) with the full softmax, no output biases, 128-token rows and lr 1e-3.
JAXLM_COMMON=(--config.model.head=softmax --config.model.output_bias=False
              --config.train.batch_size=$BATCH --config.train.seq_len=$LENGTH --config.optim.lr=1e-3)
jaxlm_family_flags() {
  case "$1" in
    transformer) echo --config.model.transformer.num_layers=4 --config.model.transformer.max_length=$LENGTH ;;
    lstm) echo --config.model.lstm.num_layers=2 ;;
    tcn) echo ;;  # wt2_families' own TCN: 4 blocks of 256, kernel 3
    *) echo "side_by_side.sh: unknown family $1 (transformer, lstm or tcn)" >&2; return 1 ;;
  esac
}

PIN=()
if command -v taskset >/dev/null; then
  PIN=(taskset -c "0-$((THREADS - 1))")
fi
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
JAXLM_XLA_FLAGS=${XLA_FLAGS:-}
if [ "$THREADS" -eq 1 ]; then
  JAXLM_XLA_FLAGS="$JAXLM_XLA_FLAGS --xla_cpu_multi_thread_eigen=false"
fi

LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
RESULTS="$LOGS/results.jsonl"

# Runs a command, its stderr to a log; prints its last stdout line with side, family and round added.
run() {
  local side=$1 family=$2 round=$3
  shift 3
  local log="$LOGS/$side-$family-$round"
  if ! "$@" >"$log.out" 2>"$log.err"; then
    echo "side_by_side.sh: $side $family round $round failed:" >&2
    tail -n 20 "$log.err" >&2
    return 1
  fi
  # jaxlm's line has no "threads": its pool is the pinned cores. load_average_after shows what else
  # ran on the machine: a ratio measured beside other work is only as good as the machine was quiet.
  "$PEERS_PYTHON" -c 'import json, os, sys
line = json.loads(sys.argv[1])
line.setdefault("threads", int(sys.argv[5]))
line["load_average_after"] = os.getloadavg()[0]  # the 1-minute load average as the run ended
print(json.dumps({"side": sys.argv[2], "family": sys.argv[3], "round": int(sys.argv[4]), **line}))' \
    "$(tail -n 1 "$log.out")" "$side" "$family" "$round" "$THREADS" | tee -a "$RESULTS"
}

for family in "${FAMILIES[@]}"; do
  family_flags=$(jaxlm_family_flags "$family")
  for round in $(seq 1 "$ROUNDS"); do
    # shellcheck disable=SC2086  # family_flags: several flags, none with spaces
    XLA_FLAGS=$JAXLM_XLA_FLAGS run jaxlm "$family" "$round" "${PIN[@]}" "$JAXLM_PYTHON" launch/benchmark.py \
      --config=configs/wt2_families.py:family="$family" "${JAXLM_COMMON[@]}" $family_flags \
      --steps="$STEPS" --trials="$TRIALS"
    run torch "$family" "$round" "${PIN[@]}" "$PEERS_PYTHON" benchmarks/torch_peers.py --family "$family" \
      --threads "$THREADS" --steps "$STEPS" --warmup 3 --groups "$TRIALS" --batch $BATCH \
      --length $LENGTH --vocab $VOCAB --width $WIDTH
  done
done

"$PEERS_PYTHON" - "$RESULTS" <<'EOF'
import json, statistics, sys
results = [json.loads(line) for line in open(sys.argv[1])]
for family in dict.fromkeys(result["family"] for result in results):
  rates = {side: [r["tokens_per_second"] for r in results if r["family"] == family and r["side"] == side]
           for side in ("jaxlm", "torch")}
  parameters = {side: next(r["parameters"] for r in results if r["family"] == family and r["side"] == side)
                for side in ("jaxlm", "torch")}
  jaxlm, torch = statistics.mean(rates["jaxlm"]), statistics.mean(rates["torch"])
  print(json.dumps({"summary": family, "parameters": parameters, "jaxlm_tokens_per_second": rates["jaxlm"],
                    "torch_tokens_per_second": rates["torch"], "jaxlm_over_torch": jaxlm / torch}))
EOF
