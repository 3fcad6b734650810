"""Scores a trained workdir's checkpoint on a whole split, on whatever devices are present.

  python launch/evaluate.py --workdir=runs/quickstart              # latest checkpoint, test split
  python launch/evaluate.py --workdir=runs/quickstart --best --split=valid,test
  python launch/evaluate.py --workdir=runs/quickstart --step=1500
  python launch/evaluate.py --workdir=runs/wt2_lstm --batch_size=1   # AWD-LSTM's test convention

Several processes score one split together with the flags of launch/train.py
(--coordinator_address, --num_processes, --process_id; srun is detected); each reads its
rows of every batch and process 0 prints the scores.
"""

import _huge_pages  # noqa: F401  (first: restarts the process with malloc on huge pages)
import json
import sys

import _distributed
import _config_flags
import _path  # noqa: F401  (repository root on sys.path)
import _workdir_flags
from absl import app, flags, logging

from jaxlm import distributed, errors
from jaxlm.training import evaluate

_SPLIT = flags.DEFINE_list("split", ["test"], "Split(s) of the run's task, e.g. --split=valid,test.")
_DATA_PATH = flags.DEFINE_string("data_path", None, "Override config.data.path (workdir moved machines).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Contiguous rows the split is cut into, state carried "
                                   "along each (default: config train.eval_batch_size).")
_SEQ_LEN = flags.DEFINE_integer("seq_len", None, "Segment length (default: config train.seq_len); longer "
                                "gives stateless bodies (TCN) more context.")
_ALLOW_DATA_CHANGE = flags.DEFINE_bool("allow_data_change", False, "Score data files whose content differs from "
                                       "the run's (a warning; the saved vocabulary is used).")


@errors.one_line("launch/evaluate.py")
def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  choice = _workdir_flags.checkpoint_choice()
  try:
    _distributed.initialize()  # before anything touches a device
  except ValueError as error:
    sys.exit(f"launch/evaluate.py: {error}")
  results = evaluate.evaluate_workdir(_workdir_flags.WORKDIR.value, **choice,
                                      splits=tuple(_SPLIT.value), batch_size=_BATCH_SIZE.value,
                                      length=_SEQ_LEN.value, data_path=_DATA_PATH.value,
                                      allow_data_change=_ALLOW_DATA_CHANGE.value)
  if not distributed.is_primary():
    return
  for result in results:
    numbers = " ".join(f"{key} {value:.4f}" for key, value in result.items()
                       if key not in ("step", "split") and isinstance(value, float))
    print(f"{result['split']} at step {result['step']}: {numbers}")
  for result in results:  # machine-readable, one JSON line per split, last
    print(json.dumps(result))


if __name__ == "__main__":
  app.run(main, flags_parser=_config_flags.parse_flags("launch/evaluate.py", None))
