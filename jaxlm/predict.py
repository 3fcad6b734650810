"""Predictions of a trained workdir's checkpoint for a split or a file, written by the task.

Tasks that predict implement `predict_batches(split, batch_size)` (every example once,
padding rows marked by example_index -1), `predict(outputs, batch)` -> one value per
row, and `write_predictions(split, predictions, path)`; a classification run writes
`id,<label column>` CSV rows (RuCoLA's leaderboard format).
"""

import functools

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxlm import evaluate, train


def _per_device_predict(params, frozen, batch, *, model, task):
  outputs, _ = train.apply_model(model, {"params": params, **frozen}, batch, train=False,
                                 carry=model.initial_carry(batch["inputs"].shape[0]))
  return task.predict(outputs, batch)


def predict_workdir(workdir: str, output: str, *, split: str | None = None, input_path: str | None = None,
                    step: int | None = None, best: bool = False, batch_size: int = 64) -> dict:
  """Writes the predictions for `split` (or the file `input_path`) to `output`; returns what was done."""
  experiment, step, state = evaluate.restore_workdir(workdir, step=step, best=best)
  task, mesh = experiment.task, experiment.mesh
  if not hasattr(task, "predict"):
    raise ValueError(f"the {type(task).__name__} task of {workdir} writes no predictions")
  if input_path:
    split = task.add_file(input_path)
  if split not in task.splits:
    raise ValueError(f"--split={split!r} is not one of {sorted(task.splits)}")
  per_device = functools.partial(_per_device_predict, model=experiment.model, task=task)
  predict_step = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(train.DATA_AXIS)),
                                       out_specs=P(train.DATA_AXIS)))
  rows = train.evaluation_rows(batch_size, mesh)
  predictions = []
  for batch in task.predict_batches(split, batch_size=rows):
    values = np.asarray(jax.device_get(predict_step(state.params, state.frozen, train.global_batch(mesh, batch))))
    predictions.append(values[batch["example_index"] >= 0])
  count = task.write_predictions(split, np.concatenate(predictions), output)
  return {"step": step, "split": split, "examples": count, "output": output}
