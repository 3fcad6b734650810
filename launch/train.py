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

import sys

import _distributed
import _path  # noqa: F401  (repository root on sys.path)
from absl import app, flags, logging
from ml_collections import config_flags

from jaxlm import checkpoint, distributed, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/quickstart.py[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, config.json and metrics go.")
_ALLOW_CHANGE = flags.DEFINE_list("allow_change", [], "Config keys (or sections) a resume may change, e.g. "
                                   "train.steps,train.max_minutes; also vocabulary, data.fingerprint. Each "
                                   "change is logged in metrics.jsonl (kind config_change).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
  try:
    _distributed.initialize()  # before anything touches a device
  except ValueError as error:
    sys.exit(f"launch/train.py: {error}")
  try:
    # A progress bar on a terminal; a plain line a log interval into a file or pipe (a log
    # stays readable: no carriage-return redraws).
    summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, progress=sys.stderr.isatty(),
                                       allow_change=tuple(_ALLOW_CHANGE.value))
  except (checkpoint.IncompatibleWorkdirError, checkpoint.CheckpointWriteError, train.NonFiniteLossError) as error:
    sys.exit(f"launch/train.py: {error}")  # messages that say what to do: one line, no traceback
  except train.TrainingInterrupted as interrupted:
    # 128 + the signal number, as a shell reports a process that signal stopped: a scheduler
    # (SLURM requeue, a Kubernetes Job) or `train && evaluate` does not take the run as
    # finished, while the checkpoint of the last step makes the restart lose nothing.
    if distributed.is_primary():
      print(f"jaxlm: {interrupted}", file=sys.stderr)
    sys.exit(128 + interrupted.signal_number)
  if distributed.is_primary():
    numbers = " ".join(f"{key} {value:.4f}" for key, value in summary.items() if isinstance(value, float))
    print(f"final validation: {numbers}")


def unknown_key_message(argv, config) -> str | None:
  """For a --config.a.b=value naming no key of `config`: the flag and the closest keys there."""
  import difflib
  for argument in argv[1:]:
    if not argument.startswith("--config."):
      continue
    dotted = argument[len("--config."):].split("=", 1)[0]
    node, parts = config, dotted.split(".")
    for depth, part in enumerate(parts):
      if not hasattr(node, "keys") or part not in node:
        section = ".".join(parts[:depth]) or "the top level"
        known = sorted(node.keys()) if hasattr(node, "keys") else []
        initials = "".join(word[0] for word in part.split("_") if word)  # learning_rate -> lr
        close = [key for key in known if key in (initials, part.replace("_", ""))]
        close += [key for key in difflib.get_close_matches(part, known, n=2, cutoff=0.6) if key not in close]
        hint = f"; did you mean {' or '.join(repr(key) for key in close)}?" if close else ""
        return (f"--config.{dotted}: the config has no key {part!r} in {section}{hint} "
                f"(keys there: {', '.join(known)})")
      node = node[part]
  return None


def _load_config_without_overrides(argv):
  """The --config file's get_config(variant), or None (only to name the keys a failed override missed)."""
  from configs import common
  for argument in argv[1:]:
    if argument.startswith("--config="):
      try:
        return common.load(argument[len("--config="):])
      except Exception:  # noqa: BLE001 (the override's own error is reported instead)
        return None
  return None


def parse_flags(argv):
  """absl's parsing, with a misspelled --config.x override in one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as error:
    config = _load_config_without_overrides(argv)
    message = unknown_key_message(argv, config) if config is not None else None
    sys.exit(f"launch/train.py: {message or error}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
