"""Scoring a split once, and predicting it: the eval and predict steps over the mesh, and the
passes that feed them every example or target exactly once (padding rows score nothing)."""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlm import distributed
from jaxlm.training import experiments, sparse_rows


def _viewed(model, params, frozen, batch, view_arrays):
  """(model, variables, batch) to apply: as given, or through the packed view of the input layer that
  `view_arrays` (a RowReader's, of the global batch) describe, with the tokens renumbered into it."""
  if view_arrays is None:
    return model, {"params": params, **frozen}, batch
  view = sparse_rows.step_view(model, params, frozen, batch["inputs"], view_arrays)
  return view.model, {"params": view.params, **view.frozen}, {**batch, "inputs": view.token_ids}


def _per_device_eval_step(params, frozen, carry, batch, view_arrays=None, *, model, eval_fn):
  viewed_model, variables, viewed_batch = _viewed(model, params, frozen, batch, view_arrays)
  outputs, carry = experiments.apply_model(viewed_model, variables, viewed_batch, train=False,
                                           carry=experiments.carry_for(carry, batch))
  return jax.lax.psum(eval_fn(outputs, batch), experiments.DATA_AXIS), carry


def make_eval_step(model, eval_fn: Callable, mesh):
  """eval_step(params, frozen, carry, batch[, view_arrays]) -> (summed metrics, carry).

  eval_fn(outputs, batch) -> sums (Task.eval_sums). view_arrays: the input layer's packed view of
  the global batch (sparse_rows.evaluation_reader; the same outputs, without a bag's padding).
  """
  per_device = functools.partial(_per_device_eval_step, model=model, eval_fn=eval_fn)
  return _jit_with_optional_view(per_device, mesh, (P(), P(), P(experiments.DATA_AXIS), P(experiments.DATA_AXIS)),
                                 (P(), P(experiments.DATA_AXIS)))


def _jit_with_optional_view(per_device, mesh, in_specs: tuple, out_specs):
  """per_device mapped over the mesh and jitted twice: with its arguments, and with the view arrays
  after them (replicated: every device gets the global batch's view). Calls pick by arity."""
  plain, viewed = (jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=in_specs + extra, out_specs=out_specs))
                   for extra in ((), (P(),)))
  return lambda *arguments: (viewed if len(arguments) > len(in_specs) else plain)(*arguments)


class InFlight:
  """Keeps at most one dispatched step unfinished while the host prepares the next.

  Host work still overlaps device work, and it bounds the queue: with many
  collective programs queued, XLA's CPU runtime (simulated devices) can
  deadlock in its all-reduce rendezvous.
  """

  def __init__(self):
    self.previous = None

  def add(self, outputs):
    if self.previous is not None:
      jax.block_until_ready(self.previous)
    self.previous = outputs


def evaluation_rows(requested: int, mesh) -> int:
  """The rows of an evaluation batch on the mesh: `requested`, padded up to a multiple of the
  device count (pad_rows); only the requested rows are real."""
  devices = mesh.devices.size
  return -(-requested // devices) * devices


def pad_rows(batch: dict, rows: int, zeroed=()) -> dict:
  """Adds padding rows up to `rows`: copies of row 0 (finite inputs for any model) with weight 0,
  example_index -1 (never predicted) and the task's unweighted counts (`zeroed`) 0, so they
  score nothing. A stream evaluation of 1 row on 4 devices thus scores exactly as on 1."""
  real = len(batch["weights"])
  if real == rows:
    return batch
  padded = {}
  for key, value in batch.items():
    extra = np.repeat(value[:1], rows - real, axis=0)
    if key == "weights" or key in zeroed:
      extra = np.zeros_like(extra)
    elif key == "example_index":
      extra = np.full_like(extra, -1)
    padded[key] = np.concatenate([value, extra])
  return padded


def host_values(sums) -> dict:
  """Device sums -> floats (scalars) and numpy arrays (e.g. confusion counts)."""
  return {key: float(value) if np.ndim(value) == 0 else np.asarray(value)
          for key, value in jax.device_get(sums).items()}


def _view_arguments(reader, batch: dict) -> tuple:
  """() or (the reader's view arrays of the global host batch,)."""
  return () if reader is None else (reader.view_arrays(batch["inputs"]),)


def evaluate(eval_step, model, mesh, params, frozen, batches, *, rows: int) -> dict:
  """Sums of eval_step over `batches` (global batches of `rows` rows), state carried; returns sums.

  rows must be a multiple of the device count (evaluation_rows). A bag input is read through packed
  views where the head allows (sparse_rows.evaluation_reader).
  """
  carry = jax.device_put(experiments.zero_carry(model.initial_carry(rows)), NamedSharding(mesh, P(experiments.DATA_AXIS)))
  totals, in_flight = None, InFlight()
  reader = sparse_rows.evaluation_reader(model, frozen)
  for batch in batches:
    sums, carry = eval_step(params, frozen, carry, experiments.global_batch(mesh, experiments.host_part(batch, rows)),
                            *_view_arguments(reader, batch))
    in_flight.add(sums)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return host_values(totals)


def _per_device_predict(params, frozen, batch, view_arrays=None, *, model, task):
  viewed_model, variables, viewed_batch = _viewed(model, params, frozen, batch, view_arrays)
  outputs, _ = experiments.apply_model(viewed_model, variables, viewed_batch, train=False,
                                       carry=model.initial_carry(batch["inputs"].shape[0]))
  return task.predict(outputs, batch)


def make_predict_step(experiment):
  """predict_step(params, frozen, batch[, view_arrays]) -> task.predict's values per row, jitted over
  the mesh (view_arrays as make_eval_step's)."""
  per_device = functools.partial(_per_device_predict, model=experiment.model, task=experiment.task)
  return _jit_with_optional_view(per_device, experiment.mesh, (P(), P(), P(experiments.DATA_AXIS)),
                                 P(experiments.DATA_AXIS))


def predict_split(experiment, predict_step, state, split: str, *, batch_size: int) -> np.ndarray:
  """task.predict's values for every example of `split` once, in order (padding rows dropped)."""
  mesh = experiment.mesh
  rows = evaluation_rows(batch_size, mesh)
  predictions = []
  zeroed = experiment.task.unweighted_counts
  reader = sparse_rows.evaluation_reader(experiment.model, state.frozen)
  for batch in experiment.task.predict_batches(split, batch_size=batch_size):
    batch = pad_rows(batch, rows, zeroed)
    # [rows, ...]: every process's rows, gathered (each process predicted its own)
    values = distributed.to_host(predict_step(state.params, state.frozen,
                                              experiments.global_batch(mesh, experiments.host_part(batch, rows)),
                                              *_view_arguments(reader, batch)))
    predictions.append(values[batch["example_index"] >= 0])
  return np.concatenate(predictions)


def make_evaluator(experiment) -> Callable:
  """evaluate_split(state, split, *, batch_size, limit=0, **options) -> the task's summary of a split.

  Every example or target of the split once (the first `limit` if > 0); options are
  task-specific conventions (a language model's segment `length`). The sums come from
  one pass of the task's eval_sums. A task whose scores need every prediction at once
  (span QA's exact match: the best span over all windows of a question) sets
  `scores_predictions` and gets a second pass, whose predictions it scores itself.
  The steps are compiled once, on the first call.
  """
  task, mesh = experiment.task, experiment.mesh
  eval_step = make_eval_step(experiment.model, task.eval_sums, mesh)
  predict_step = make_predict_step(experiment) if task.scores_predictions else None

  def evaluate_split(state, split: str, *, batch_size: int, limit: int = 0, **options) -> dict:
    rows = evaluation_rows(batch_size, mesh)
    batches = (pad_rows(batch, rows, task.unweighted_counts)
               for batch in task.eval_batches(split, batch_size=batch_size, limit=limit, **options))
    summary = task.summarise(evaluate(eval_step, experiment.model, mesh, state.params, state.frozen, batches,
                                      rows=rows))
    if predict_step is not None:
      if limit:
        raise ValueError(f"the {type(task).__name__} task scores whole splits: set train.eval_tokens=0")
      summary.update(task.score_predictions(split, predict_split(experiment, predict_step, state, split,
                                                                 batch_size=batch_size)))
    return summary

  return evaluate_split
