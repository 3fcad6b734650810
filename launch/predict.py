"""Writes a trained workdir's predictions for a split, or for any file with the task's columns.

  python launch/predict.py --workdir=runs/finetune/rucola --best --split=test --output=rucola_test.csv
  python launch/predict.py --workdir=runs/finetune/rucola --best --input=my_sentences.csv --output=out.csv

Classification runs write `id,<label column>` CSV (RuCoLA's leaderboard takes `id,acceptable`).
The output is written to a temporary name and moved into place, so a failed run leaves
no half-written file. Before the model is built, an --output inside the workdir, in a
missing or unwritable folder, or that exists (without --overwrite) is refused in one line.
The run's data files must be those it was trained on (its data fingerprint), as for
launch/evaluate.py; --allow_data_change predicts anyway (e.g. after the config's test
file was edited), with the saved vocabulary.
"""

import _huge_pages  # noqa: F401  (first: restarts the process with malloc on huge pages)
import json

import _config_flags
import _path  # noqa: F401  (repository root on sys.path)
import _workdir_flags
from absl import app, flags, logging

from jaxlm import errors
from jaxlm.training import predict

_OUTPUT = flags.DEFINE_string("output", None, "Where the predictions go.")
_SPLIT = flags.DEFINE_string("split", "test", "A split of the run's task (see its config's task.files).")
_INPUT = flags.DEFINE_string("input", None, "A file with the task's columns to predict instead of --split.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --output if it exists (never a file inside the workdir).")
_ALLOW_DATA_CHANGE = flags.DEFINE_bool("allow_data_change", False, "Predict although the run's data files differ "
                                       "from those it was trained on (a warning; the saved vocabulary is used).")
flags.mark_flag_as_required("output")


@errors.one_line("launch/predict.py")
def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  choice = _workdir_flags.checkpoint_choice()
  result = predict.predict_workdir(_workdir_flags.WORKDIR.value, _OUTPUT.value, split=_SPLIT.value,
                                   input_path=_INPUT.value, overwrite=_OVERWRITE.value,
                                   allow_data_change=_ALLOW_DATA_CHANGE.value, **choice)
  print(f"wrote {result['examples']} predictions of {result['split']} (step {result['step']}) to {result['output']}")
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main, flags_parser=_config_flags.parse_flags("launch/predict.py", None))
