"""Predictions of a trained workdir's checkpoint for a split or a file, written by the task.

Tasks that predict (Task.writes_predictions) implement `predict_batches(split, batch_size)` (every example once,
padding rows marked by example_index -1), `predict(outputs, batch)` -> one value (or array) per
row, and `write_predictions(split, predictions, path)`; a classification run writes
`id,<label column>` CSV rows (RuCoLA's leaderboard format), a span QA run SQuAD's
{question id: answer} JSON from every window's start and end logits. The task writes to a
temporary name and moves it into place, so a failed run leaves no half-written file.

The output is checked before the model is built or restored (building and restoring take
minutes on a real run, and a refusal afterwards would throw them away): never inside the
workdir, whose every file (config.json, vocabulary.txt, the data fingerprint, checkpoints/,
the logs) is the run itself and a later resume, evaluation or prediction reads it; never an
existing file unless `overwrite`; always in a folder that exists and can be written.
"""

import os
import tempfile

from jaxlm import checkpoint, errors
from jaxlm.training import evaluate, evaluation


def check_output(workdir: str, output: str, *, overwrite: bool = False) -> None:
  """Raises a UserError (nothing written) if predictions cannot, or must not, be written to `output`."""
  if not output:
    raise errors.ConfigError("--output is empty: name the file the predictions go to")
  path = os.path.abspath(output)
  folder = os.path.dirname(path)
  # The entry os.replace will replace: the real folder (symbolic links followed) and the name in it.
  target = os.path.join(os.path.realpath(folder), os.path.basename(path))
  run = os.path.realpath(workdir)
  if os.path.commonpath([target, run]) == run:
    beside = os.path.join(os.path.dirname(run), f"{os.path.basename(run)}_{os.path.basename(path)}")
    raise errors.WorkdirError(
        f"--output={output} is inside the workdir {workdir}, whose files (config.json, vocabulary.txt, "
        f"checkpoints/, logs) are the run itself; nothing was written: choose a path outside it, "
        f"e.g. --output={beside}")
  if os.path.isdir(path):
    raise errors.WorkdirError(f"--output={output} is a folder; nothing was written: name a file, "
                              f"e.g. --output={os.path.join(output, 'predictions.csv')}")
  if not os.path.exists(folder):
    raise errors.MissingFileError(f"--output={output}: its folder {folder} does not exist; nothing was "
                                  f"written: create it (mkdir -p {folder}) or choose another --output")
  if not os.path.isdir(folder):
    raise errors.WorkdirError(f"--output={output}: {folder} is not a folder; nothing was written: "
                              "choose another --output")
  if os.path.lexists(path) and not overwrite:
    raise errors.WorkdirError(f"--output={output} exists; nothing was written: pass --overwrite to "
                              "replace it, or choose another --output")
  try:  # the one sure test of a folder's permissions (ACLs, read-only mounts, root) is to write in it
    with tempfile.TemporaryFile(dir=folder):
      pass
  except OSError as error:
    raise errors.WorkdirError(f"--output={output}: cannot write in its folder {folder} "
                              f"({error.strerror or error}); nothing was written: choose a folder you can "
                              "write to") from error


def predict_workdir(workdir: str, output: str, *, split: str = "test", input_path: str | None = None,
                    step: int | None = None, best: bool = False, batch_size: int = 64, overwrite: bool = False,
                    allow_data_change: bool = False) -> dict:
  """Writes the predictions for `split` (or the file `input_path`) to `output`; returns what was done.

  The output is refused (check_output) before anything is built. A `split` of the run's own
  data is predicted only from the files it was trained on (their fingerprint, as for
  evaluation); allow_data_change predicts it from changed files (a warning; the saved
  vocabulary is used). `input_path` is read as a new split with the saved vocabulary, whatever
  the config's files hold now.
  """
  check_output(workdir, output, overwrite=overwrite)
  if not os.path.isfile(os.path.join(workdir, checkpoint.CONFIG_FILE)):
    raise errors.MissingFileError(f"--workdir={workdir} has no {checkpoint.CONFIG_FILE}: name a workdir written "
                                  "by launch/train.py")
  if input_path and not os.path.isfile(input_path):
    raise errors.MissingFileError(f"--input={input_path} is not a file: name a file with the task's columns")
  # A new file is predicted from the checkpoint and the saved vocabulary alone: the config's data
  # files may have changed since training (a new test set is the normal use of a trained model).
  # The fingerprint guards predictions of the config's own splits, as it guards evaluation.
  experiment, step, state = evaluate.restore_workdir(workdir, step=step, best=best,
                                                     allow_data_change=allow_data_change,
                                                     check_fingerprint=not input_path)
  task = experiment.task
  if not task.writes_predictions:
    raise errors.ConfigError(f"the {type(task).__name__} task of {workdir} writes no predictions: predict.py "
                             "predicts classification and span-QA runs; score a language model with "
                             "launch/evaluate.py, or continue text with launch/sample.py")
  if input_path:
    split = task.add_file(input_path)
  if split not in task.splits:
    raise errors.ConfigError(f"--split={split!r} is not one of {sorted(task.splits)}")
  predictions = evaluation.predict_split(experiment, evaluation.make_predict_step(experiment), state, split,
                                    batch_size=batch_size)
  check_output(workdir, output, overwrite=overwrite)  # again: a file may have appeared while it ran
  count = task.write_predictions(split, predictions, output)
  return {"step": step, "split": split, "examples": count, "output": output}
