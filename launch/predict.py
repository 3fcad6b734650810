"""Writes a trained workdir's predictions for a split, or for any file with the task's columns.

  python launch/predict.py --workdir=runs/finetune/rucola --best --split=test --output=rucola_test.csv
  python launch/predict.py --workdir=runs/finetune/rucola --best --input=my_sentences.csv --output=out.csv

Classification runs write `id,<label column>` CSV (RuCoLA's leaderboard takes `id,acceptable`).
The output is written to a temporary name and moved into place, so a failed run leaves
no half-written file.
"""

import json

import _path  # noqa: F401  (repository root on sys.path)
import _workdir_flags
from absl import app, flags, logging

from jaxlm import predict

_OUTPUT = flags.DEFINE_string("output", None, "Where the predictions go.")
_SPLIT = flags.DEFINE_string("split", "test", "A split of the run's task (see its config's task.files).")
_INPUT = flags.DEFINE_string("input", None, "A file with the task's columns to predict instead of --split.")
flags.mark_flag_as_required("output")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  choice = _workdir_flags.checkpoint_choice()
  result = predict.predict_workdir(_workdir_flags.WORKDIR.value, _OUTPUT.value, split=_SPLIT.value,
                                   input_path=_INPUT.value, **choice)
  print(f"wrote {result['examples']} predictions of {result['split']} (step {result['step']}) to {result['output']}")
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
