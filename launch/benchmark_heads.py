"""Output-layer cost: train-step time and peak memory of softmax vs cosine vs vMF heads.

  python launch/benchmark_heads.py                     # 3 heads x 33k/100k/250k words, the setting below
  python launch/benchmark_heads.py --heads=softmax,vmf --vocab_sizes=250000 --timed_steps=10
  python launch/benchmark_heads.py --vocab_sizes=1000 --tokens_per_step=256 --seq_len=32 --width=32  # sanity

The setting: a 2-layer width-300 transformer, 8,192 tokens per step (64 x 128), tied softmax
(--notie_embeddings for untied), synthetic token ids and random target tables, so no corpus
or FastText file is needed. Each setting runs in its own process (a fresh device-memory
peak, and an out-of-memory softmax does not stop the rest). Prints a markdown row per
setting, then all results as one JSON line (the numbers BENCHMARKS.md records).
"""

import _huge_pages  # noqa: F401  (first: restarts the process with malloc on huge pages)
import json
import subprocess
import sys

import _config_flags
import _path  # noqa: F401  (repository root on sys.path)
from absl import app, flags, logging

from configs import common
from jaxlm.tools import benchmark
from jaxlm import errors

_HEADS = flags.DEFINE_list("heads", list(benchmark.HEAD_COST_HEADS), "Heads to compare.")
_VOCAB_SIZES = flags.DEFINE_list("vocab_sizes", [str(size) for size in benchmark.HEAD_COST_VOCABULARIES],
                                 "Vocabulary sizes.")
_WIDTH = flags.DEFINE_integer("width", 300, "Model width and target-vector dimension.")
_TOKENS = flags.DEFINE_integer("tokens_per_step", 8192, "Tokens per train step.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 128, "Sequence length (batch = tokens_per_step / seq_len).")
_LAYERS = flags.DEFINE_integer("num_layers", 2, "Transformer layers of the body.")
_TIE = flags.DEFINE_bool("tie_embeddings", True, "Tie the softmax head to the input table.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 2, "Untimed steps after compilation.")
_TIMED = flags.DEFINE_integer("timed_steps", 5, "Timed steps.")
_ISOLATE = flags.DEFINE_bool("isolate", True, "Run each setting in its own process.")

_RESULT_PREFIX = "HEAD_COST_RESULT "


def _run_here(head: str, vocab_size: int) -> dict:
  config = benchmark.head_cost_config(common.base_config(), head, width=_WIDTH.value,
                                      tokens_per_step=_TOKENS.value, seq_len=_SEQ_LEN.value,
                                      num_layers=_LAYERS.value, tie_embeddings=_TIE.value)
  return benchmark.head_cost(config, vocab_size, warmup_steps=_WARMUP.value, timed_steps=_TIMED.value)


def _run_isolated(head: str, vocab_size: int) -> dict:
  forwarded = [f"--{name}={flags.FLAGS[name].value}" for name in
               ("width", "tokens_per_step", "seq_len", "num_layers", "warmup_steps", "timed_steps")]
  command = [sys.executable, __file__, f"--heads={head}", f"--vocab_sizes={vocab_size}", "--noisolate",
             "--tie_embeddings" if _TIE.value else "--notie_embeddings", *forwarded]
  finished = subprocess.run(command, capture_output=True, text=True)
  for line in finished.stdout.splitlines():
    if line.startswith(_RESULT_PREFIX):
      return json.loads(line[len(_RESULT_PREFIX):])
  last_error = (finished.stderr.strip().splitlines() or ["no output"])[-1]
  return {"head": head, "vocab_size": vocab_size, "error": f"exit {finished.returncode}: {last_error[:200]}"}


@errors.one_line("launch/benchmark_heads.py")
def main(argv):
  if len(argv) > 1:
    raise errors.ConfigError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  if not all(size.isdigit() for size in _VOCAB_SIZES.value):
    raise errors.ConfigError(f"--vocab_sizes={','.join(_VOCAB_SIZES.value)}: give whole numbers, e.g. "
                             "--vocab_sizes=33278,100000")
  settings = [(head, int(size)) for size in _VOCAB_SIZES.value for head in _HEADS.value]
  if not _ISOLATE.value:  # a child (or a single in-process run): machine-readable results only
    for head, vocab_size in settings:
      print(_RESULT_PREFIX + json.dumps(_run_here(head, vocab_size)), flush=True)
    return
  print(benchmark.head_cost_markdown_header(), flush=True)
  results = []
  for head, vocab_size in settings:
    results.append(_run_isolated(head, vocab_size))
    print(benchmark.head_cost_markdown_row(results[-1]), flush=True)
  print(json.dumps(results))


if __name__ == "__main__":
  app.run(main, flags_parser=_config_flags.parse_flags("launch/benchmark_heads.py", None))
