"""Trains a model from a config file, resuming from the workdir if it holds checkpoints.

  python launch/train.py --config=configs/quickstart.py --workdir=runs/quickstart
  python launch/train.py --config=configs/quickstart.py:smoke --workdir=/tmp/smoke --config.optim.lr=1e-3

SIGTERM or SIGINT (Ctrl-C) finishes the current step, validates and checkpoints it, prints
one line on stderr and exits with 128 + the signal number (143, 130); the same command
resumes. A second signal stops at once. With several processes, a signal to any of them
stops all at the same step (as does one process's clock reaching train.max_minutes).

Several processes (hosts), one run: on every process

  python launch/train.py --config=... --workdir=SHARED/run \
      --coordinator_address=HOST0:PORT --num_processes=N --process_id=I

or, under SLURM, `srun python launch/train.py --config=... --workdir=...` (detected). Each
process loads its own rows of every global batch; process 0 writes the logs (README
"Multi-process / multi-host").
"""

import _huge_pages  # noqa: F401  (first: restarts the process with malloc on huge pages)
import os
import sys

import _config_flags
import _distributed
import _path  # noqa: F401  (repository root on sys.path)
import jax
from absl import app, flags, logging
from ml_collections import config_flags

from jaxlm import checkpoint, distributed, errors
from jaxlm.training import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/quickstart.py[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, config.json and metrics go.")
_ALLOW_CHANGE = flags.DEFINE_list("allow_change", [], "Config keys (or sections) a resume may change, e.g. "
                                   "train.steps,train.max_minutes; also vocabulary, data.fingerprint. Each "
                                   "change is logged in metrics.jsonl (kind config_change).")
flags.mark_flags_as_required(["config", "workdir"])


@errors.one_line("launch/train.py")
def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
  if os.path.exists(_WORKDIR.value) and not os.path.isdir(_WORKDIR.value):  # before the data is read
    raise errors.WorkdirError(f"--workdir {_WORKDIR.value} is a file, not a folder: choose a folder")
  _distributed.initialize()  # before anything touches a device

  def stop_for_lost_process(lost, cause):
    # Another process was killed or crashed: one line instead of a collective's traceback or the
    # coordination service's abort, and no jax.distributed shutdown, which would wait out the
    # heartbeat (over a minute) and abort.
    message = distributed.lost_process_message(lost, cause, checkpoint.latest_step(_WORKDIR.value))
    print(f"launch/train.py: {message}", file=sys.stderr)
    distributed.exit_at_once(1)

  try:
    with distributed.PeerWatch(lambda lost: stop_for_lost_process(lost, "no heartbeat for 20 s")):
      # A progress bar on a terminal; a plain line a log interval into a file or pipe (a log
      # stays readable: no carriage-return redraws).
      summary = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value, progress=sys.stderr.isatty(),
                                         allow_change=tuple(_ALLOW_CHANGE.value))
  except jax.errors.JaxRuntimeError as error:
    if not distributed.lost_process(error):
      raise
    stop_for_lost_process(None, distributed.lost_process_cause(error))
  except loop.TrainingInterrupted as interrupted:
    # 128 + the signal number, as a shell reports a process that signal stopped: a scheduler
    # (SLURM requeue, a Kubernetes Job) or `train && evaluate` does not take the run as
    # finished, while the checkpoint of the last step makes the restart lose nothing.
    if distributed.is_primary():
      print(f"jaxlm: {interrupted}", file=sys.stderr)
    sys.exit(128 + interrupted.signal_number)
  if distributed.is_primary():
    numbers = " ".join(f"{key} {value:.4f}" for key, value in summary.items() if isinstance(value, float))
    print(f"final validation: {numbers}")


if __name__ == "__main__":
  app.run(main, flags_parser=_config_flags.parse_flags("launch/train.py"))
