"""Steady-state training throughput and model FLOPs utilisation of a config.

  python launch/benchmark.py --config=configs/quickstart.py
  python launch/benchmark.py --config=configs/quickstart.py --config.model.compute_dtype=bfloat16
  python launch/benchmark.py --config=configs/quickstart.py --breakdown   # + forward/backward/update times
  python launch/benchmark.py --config=configs/quickstart.py --config.model.remat=full   # per-layer remat
  python launch/benchmark.py --config=configs/quickstart.py --config.train.microbatches=4  # accumulation
  python launch/benchmark.py --config=configs/wt2_transformer.py --memory_only   # compiled memory, no steps
  python launch/benchmark.py --config=configs/ru_mlm.py:input=bag --profile   # + time by instruction

  python launch/benchmark.py --config=configs/finetune.py:task=rucola,body=fasttext \
      --config.task.path=../shared/data/rucola --breakdown   # a fine-tuning cell: + validation, run shares

Prints one JSON line (the numbers BENCHMARKS.md records): step times exclude compilation;
the compiled step's memory (compiled_*_bytes) comes from XLA's memory analysis. Every config
also gets examples (batch rows) a second and the process's CPU-seconds per example in the timed
steps; --breakdown adds the optimiser update's share of the step, one validation's time and a
run's estimated shares of steps, validation and compile (train.steps, train.eval_every);
--profile runs the timed steps again under jax's profiler and adds the compiled step's time by
part (forward, backward, outside the gradient: the optimiser and updates; jaxlm.tools.step_profile)
and its costliest instructions.
"""

import _huge_pages  # noqa: F401  (first: restarts the process with malloc on huge pages)
import json

import _config_flags
import _path  # noqa: F401  (repository root on sys.path)
from absl import app, flags, logging
from ml_collections import config_flags

from jaxlm.tools import benchmark
from jaxlm import errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant].", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps after warm-up.")
_TRIALS = flags.DEFINE_integer("trials", 5, "The timed steps run in this many groups, each followed by a "
                               "measurement of the matmul rate; step time and MFU are medians over the groups.")
_BREAKDOWN = flags.DEFINE_bool("breakdown", False, "Also time the step's pieces (forward, backward, "
                               "optimiser update), each on its own, un-sharded, and one validation.")
_MEMORY_ONLY = flags.DEFINE_bool("memory_only", False, "Compile the train step and report its compiled memory "
                                  "and compile time only; run no step (a large config on a CPU).")
_PROFILE = flags.DEFINE_bool("profile", False, "Also run the timed steps under jax's profiler: the compiled "
                             "step's time by part (forward, backward, outside the gradient) and its costliest "
                             "instructions.")
flags.mark_flag_as_required("config")


@errors.one_line("launch/benchmark.py")
def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  if _STEPS.value < 1 or _TRIALS.value < 1:
    raise errors.ConfigError(f"--steps={_STEPS.value} and --trials={_TRIALS.value} must be at least 1")
  result = benchmark.benchmark(_CONFIG.value, timed_steps=_STEPS.value, trials=_TRIALS.value, breakdown=_BREAKDOWN.value,
                               memory_only=_MEMORY_ONLY.value, profile=_PROFILE.value)
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main, flags_parser=_config_flags.parse_flags("launch/benchmark.py"))
