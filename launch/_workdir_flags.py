"""The flags that pick a trained workdir's checkpoint: one definition for evaluate.py, predict.py and sample.py."""

import _path  # noqa: F401  (repository root on sys.path)
from absl import flags

from jaxlm import errors

WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by launch/train.py.")
STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
BEST = flags.DEFINE_bool("best", False, "Use the checkpoint with the best validation metric of its task.")
flags.mark_flag_as_required("workdir")


def checkpoint_choice() -> dict:
  """{"step", "best"} as the library's restore_workdir takes them; both given is a usage error."""
  if BEST.value and STEP.value is not None:
    raise errors.ConfigError("give --step or --best, not both")
  return {"step": STEP.value, "best": BEST.value}
