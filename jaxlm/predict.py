"""Predictions of a trained workdir's checkpoint for a split or a file, written by the task.

Tasks that predict implement `predict_batches(split, batch_size)` (every example once,
padding rows marked by example_index -1), `predict(outputs, batch)` -> one value (or array) per
row, and `write_predictions(split, predictions, path)`; a classification run writes
`id,<label column>` CSV rows (RuCoLA's leaderboard format), a span QA run SQuAD's
{question id: answer} JSON from every window's start and end logits.
"""

from jaxlm import evaluate, train


def predict_workdir(workdir: str, output: str, *, split: str | None = None, input_path: str | None = None,
                    step: int | None = None, best: bool = False, batch_size: int = 64) -> dict:
  """Writes the predictions for `split` (or the file `input_path`) to `output`; returns what was done."""
  experiment, step, state = evaluate.restore_workdir(workdir, step=step, best=best)
  task = experiment.task
  if not hasattr(task, "predict"):
    raise ValueError(f"the {type(task).__name__} task of {workdir} writes no predictions")
  if input_path:
    split = task.add_file(input_path)
  if split not in task.splits:
    raise ValueError(f"--split={split!r} is not one of {sorted(task.splits)}")
  predictions = train.predict_split(experiment, train.make_predict_step(experiment), state, split,
                                    batch_size=batch_size)
  count = task.write_predictions(split, predictions, output)
  return {"step": step, "split": split, "examples": count, "output": output}
