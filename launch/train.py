"""Trains a model from a config file, resuming from the workdir if it holds checkpoints.

  python launch/train.py --config=configs/quickstart.py --workdir=runs/quickstart
  python launch/train.py --config=configs/quickstart.py:smoke --workdir=/tmp/smoke --config.optim.lr=1e-3

SIGTERM or SIGINT (Ctrl-C) finishes the current step, validates and checkpoints it, prints
one line on stderr and exits with 128 + the signal number (143, 130); the same command
resumes. A second signal stops at once.

Multi-host: pass --multihost on every host (jax.distributed.initialize reads the
cluster from the environment); each host loads its own rows of every batch.
"""

import sys

import _path  # noqa: F401  (repository root on sys.path)
from absl import app, flags, logging
from ml_collections import config_flags

from jaxlm import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/quickstart.py[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, config.json and metrics go.")
_ALLOW_CHANGE = flags.DEFINE_list("allow_change", [], "Config keys (or sections) a resume may change, e.g. "
                                   "train.steps,train.max_minutes; also vocabulary, data.fingerprint. Each "
                                   "change is logged in metrics.jsonl (kind config_change).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
  if _MULTIHOST.value:
    import jax
    jax.distributed.initialize()
  try:
    summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, allow_change=tuple(_ALLOW_CHANGE.value))
  except train.TrainingInterrupted as interrupted:
    # 128 + the signal number, as a shell reports a process that signal stopped: a scheduler
    # (SLURM requeue, a Kubernetes Job) or `train && evaluate` does not take the run as
    # finished, while the checkpoint of the last step makes the restart lose nothing.
    print(f"jaxlm: {interrupted}", file=sys.stderr)
    sys.exit(128 + interrupted.signal_number)
  numbers = " ".join(f"{key} {value:.4f}" for key, value in summary.items() if isinstance(value, float))
  print(f"final validation: {numbers}")


if __name__ == "__main__":
  app.run(main)
