"""The data-parallel train step: per device, gradients averaged with `lax.pmean` over "data".

Randomness is a function of the step: every dropout mask is drawn from (seed, step, global
row) (jaxlm.models.layers.global_rows: a row's mask from fold_in(site key, its row of the
global batch); weight and word-type masks once per step), so a resumed run repeats the
uninterrupted one on any device count and with any train.microbatches, up to float summation
order. The loss is passed in (Task.loss): the step never branches on the task or the model.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from jaxlm.models import layers
from jaxlm.training import experiments, sparse_rows


def _split_rows(tree, parts: int):
  """[rows, ...] leaves -> [parts, rows / parts, ...]: part i holds rows i * rows / parts onwards."""
  return jax.tree.map(lambda leaf: leaf.reshape((parts, leaf.shape[0] // parts) + leaf.shape[1:]), tree)


def _join_rows(tree):
  """The inverse of _split_rows: [parts, rows / parts, ...] -> [rows, ...]."""
  return jax.tree.map(lambda leaf: leaf.reshape((-1,) + leaf.shape[2:]), tree)


def _accumulated_gradient(gradient, params, batch, carry, rows, microbatches: int, varying: bool):
  """gradient(params, batch, carry, rows) -> (grads, (sums, new_carry)), summed over micro-batches.

  The rows are split into `microbatches` consecutive groups (a stream's row keeps its own
  carry, so a row's state flows from step to step as without accumulation), run one after
  another in a lax.scan: only one micro-batch's activations are alive at a time. rows: int32
  [rows] global row indices, split with the rows, so each row draws the dropout masks it
  draws without accumulation. varying: under shard_map with several
  devices the sums are device-varying, so the zero totals must be too (a scan's carry keeps its type).
  """
  micro_batches, micro_carries = _split_rows(batch, microbatches), _split_rows(carry, microbatches)
  micro_rows = _split_rows(rows, microbatches)
  first = jax.tree.map(lambda leaf: leaf[0], (micro_batches, micro_carries, micro_rows))
  grads_shape, (sums_shape, _) = jax.eval_shape(gradient, params, *first)
  totals = jax.tree.map(lambda shape: jnp.zeros(shape.shape, shape.dtype), (grads_shape, sums_shape))
  if varying:
    totals = jax.lax.pcast(totals, experiments.DATA_AXIS, to="varying")

  def accumulate(totals, inputs):
    micro_batch, micro_carry, rows = inputs
    grads, (sums, new_carry) = gradient(params, micro_batch, micro_carry, rows)
    return jax.tree.map(jnp.add, totals, (grads, sums)), new_carry

  (grads, sums), new_carries = jax.lax.scan(accumulate, totals, (micro_batches, micro_carries, micro_rows))
  return grads, (sums, _join_rows(new_carries))


def _per_device_train_step(state: experiments.TrainState, batch: dict, embedding_rows=None, *, model, loss_fn,
                           optimizer, seed: int, num_devices: int, skip_nonfinite: bool = False, microbatches: int = 1):
  """Runs on one device's rows; returns replicated new params and summed metrics.

  loss_fn(outputs, batch) -> sums with loss_sum and count (Task.loss).
  The metrics hold `nonfinite_steps`: 1.0 when the loss, the gradient or the update
  hold a NaN/Inf (read from their norms, which the step computes anyway),
  else 0.0. skip_nonfinite (static; train.max_bad_steps > 0): such a step leaves params,
  opt_state and carry unchanged and contributes zero sums, so the loop can go on.
  num_devices: the size of the data axis (static). On one device the gradient needs no
  averaging: make_train_step then maps without shard_map's replication types, and the
  step has no all-reduce of the gradients (XLA:CPU runs a one-device all-reduce as a
  copy of every gradient: 17 ms of the quickstart's ~290 ms step on 2 CPU cores).
  microbatches (static; train.microbatches): k > 1 accumulates the gradient over k groups
  of this device's rows (_accumulated_gradient). Each group's loss is divided by the whole
  global batch's target count, so the summed gradient is the whole batch's: the same update
  up to float summation order, carried state and dropout masks included (each row draws its
  masks from its global row index). k = 1 is exactly the step without accumulation.
  embedding_rows (optim.embedding_updates="lazy"): the host's description of the global batch's view
  of the input layer (jaxlm.training.sparse_rows.RowReader: its "rows", int32 [capacity], are the
  table rows the batch reads); the gradient is taken with respect to that view, and the optimiser,
  given the rows, updates only them. None: the whole table (dense).
  """
  local_rows = batch["inputs"].shape[0]
  first_row = jax.lax.axis_index(experiments.DATA_AXIS) * local_rows
  differentiated, frozen = state.params, state.frozen
  sparse_embeddings = embedding_rows is not None
  if sparse_embeddings:
    view = sparse_rows.step_view(model, state.params, state.frozen, batch["inputs"], embedding_rows)
    model, differentiated, frozen, batch = view.model, view.params, view.frozen, {**batch, "inputs": view.token_ids}
  # Mark the replicated parameters as varying over the data axis, so that the
  # gradient below is this device's own gradient. Without it, shard_map's
  # transpose of the implicit broadcast would already sum gradients across
  # devices, and pmean would then return the sum instead of the mean.
  params = jax.lax.pcast(differentiated, experiments.DATA_AXIS, to="varying") if num_devices > 1 else differentiated
  # One dropout key per step, the same on every device; each row's masks fold in its global
  # row index (layers.global_rows), so they do not depend on how rows are split over devices.
  dropout_rng = jax.random.fold_in(jax.random.key(seed), state.step)
  rows = first_row + jnp.arange(local_rows)  # int32 [local rows]: their rows of the global batch
  carry = jax.lax.stop_gradient(experiments.carry_for(state.carry, batch))
  global_count = jax.lax.psum(jnp.sum(batch["weights"]), experiments.DATA_AXIS)

  def gradient(params, batch, carry, rows):
    def objective(params):
      with layers.global_rows(rows):
        outputs, new_carry = experiments.apply_model(model, {"params": params, **frozen}, batch, train=True,
                                         carry=carry, rngs={"dropout": dropout_rng})
      sums = loss_fn(outputs, batch)
      # pmean of this over devices is sum_d loss_sum_d / global_count: the exact
      # mean over every real target of the global batch, padding or not.
      return sums["loss_sum"] * num_devices / global_count, (sums, new_carry)
    return jax.grad(objective, has_aux=True)(params)

  if microbatches == 1:
    grads, (sums, new_carry) = gradient(params, batch, carry, rows)
  else:
    experiments.check_microbatches(batch["inputs"].shape[0], microbatches)
    grads, (sums, new_carry) = _accumulated_gradient(gradient, params, batch, carry, rows, microbatches,
                                                     varying=num_devices > 1)
  if num_devices > 1:
    grads = jax.lax.pmean(grads, experiments.DATA_AXIS)
  if sparse_embeddings:
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params, touched_rows=view.rows)
    new_params = sparse_rows.apply_updates(state.params, updates, view.rows)
  else:
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
  step_metrics = jax.lax.psum(sums, experiments.DATA_AXIS)
  step_metrics.update(grad_norm=optax.tree.norm(grads), update_norm=optax.tree.norm(updates))
  # The norms are sums of squares: finite exactly when every element is (or it overflows,
  # which is as unusable). The gradient is the pmean'd one, so every device agrees. The new
  # parameters are the old ones (finite: a non-finite step is never kept) plus the update, so a
  # finite update keeps them finite (but for an overflow, which the next step's loss shows).
  # Their norm would be a pass over every parameter, the whole input table even when a lazy step
  # updates a few rows of it (a quarter of the RuCoLA baseline's step): the loop logs it instead.
  finite = (jnp.isfinite(step_metrics["loss_sum"]) & jnp.isfinite(step_metrics["grad_norm"])
            & jnp.isfinite(step_metrics["update_norm"]))
  new_carry = jax.lax.stop_gradient(new_carry)
  if skip_nonfinite:
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_params, opt_state = keep(new_params, state.params), keep(opt_state, state.opt_state)
    new_carry = keep(new_carry, carry)
    step_metrics = jax.tree.map(lambda value: jnp.where(finite, value, jnp.zeros_like(value)), step_metrics)
  step_metrics["nonfinite_steps"] = 1.0 - finite.astype(jnp.float32)
  new_state = state.replace(step=state.step + 1, params=new_params, opt_state=opt_state, carry=new_carry)
  return new_state, step_metrics


def make_train_step(model, loss_fn: Callable, optimizer, mesh, state: experiments.TrainState, seed: int, *,
                    skip_nonfinite: bool = False, microbatches: int = 1, sparse_embeddings: bool = False):
  """Returns a TrainStep: train_step(state, batch) -> (state, metrics), jitted with the state donated.

  loss_fn(outputs, batch) -> sums (Task.loss). skip_nonfinite: a step whose loss, gradient
  or update is not finite changes nothing (see _per_device_train_step).
  microbatches: gradient accumulation over that many groups of each device's rows
  (train.microbatches; see _per_device_train_step). sparse_embeddings: optim.embedding_updates
  is "lazy" (the optimiser must be built for it: jaxlm.training.optim.build_optimizer); the step
  then finds each batch's rows on the host.
  """
  specs = experiments.state_specs(state)

  def per_device(state, batch, seed, *embedding_rows):
    return _per_device_train_step(state, batch, *embedding_rows, model=model, loss_fn=loss_fn, optimizer=optimizer,
                                  seed=seed, num_devices=mesh.shape[experiments.DATA_AXIS],
                                  skip_nonfinite=skip_nonfinite, microbatches=microbatches)

  in_specs = (specs, P(experiments.DATA_AXIS), P()) + ((P(),) if sparse_embeddings else ())
  mapped = jax.shard_map(per_device, mesh=mesh, in_specs=in_specs, out_specs=(specs, P()),
                         check_vma=mesh.shape[experiments.DATA_AXIS] > 1)
  jitted = jax.jit(mapped, donate_argnums=(0,))
  reader = sparse_rows.RowReader(model, state.frozen) if sparse_embeddings else None
  return TrainStep(jitted, experiments.seed_array(seed), reader)


class TrainStep:
  """train_step(state, batch) -> (state, metrics).

  The run's seed is an argument of the jitted step (an int32 scalar), not a constant in it: runs
  that differ only in their seed (a grid row's seeds) compile one program, and a persistent
  compilation cache serves them all. With lazy embedding updates (a RowReader), the rows the
  global batch reads are found on the host (jaxlm.training.sparse_rows) and passed to the step.
  `lower(state, batch).compile()` gives the same call, compiled ahead, as jax.jit's does
  (launch/benchmark.py times it), with the compiled program's memory_analysis and as_text.
  """

  def __init__(self, jitted, seed, reader: "sparse_rows.RowReader | None" = None, compiled=None,
               signature=None):
    # compiled: the step compiled for arguments of one `signature` (signature(): the batch's shapes and
    # the embedding rows' count); others (a trimmed batch's length, another row count) go through jitted.
    self.jitted, self.seed, self.reader, self.compiled, self.signature = jitted, seed, reader, compiled, signature

  def arguments(self, state, batch, host_inputs=None) -> tuple:
    """The jitted step's arguments: (state, batch, seed[, embedding rows]).

    host_inputs: batch["inputs"] as the host array it was read as (one process): the embedding rows
    are then found from it, without copying the batch back from the devices, a synchronisation
    that would stall a GPU's queue of steps every step."""
    if self.reader is None:
      return state, batch, self.seed
    if host_inputs is not None and jax.process_count() == 1:
      inputs = host_inputs
    else:
      inputs = batch["inputs"]
      if not getattr(inputs, "is_fully_addressable", True):  # other processes hold rows of the global batch
        from jax.experimental import multihost_utils
        inputs = multihost_utils.process_allgather(inputs, tiled=True)
      inputs = jax.device_get(inputs)
    return state, batch, self.seed, self.reader.view_arrays(inputs)

  def __call__(self, state, batch, host_inputs=None):
    arguments = self.arguments(state, batch, host_inputs)
    step = self.compiled if self.compiled is not None and signature(arguments) == self.signature else self.jitted
    return step(*arguments)

  def lower(self, state, batch):
    arguments = self.arguments(state, batch)
    return _LoweredStep(self, self.jitted.lower(*arguments), signature(arguments))

  def memory_analysis(self):
    return self.compiled.memory_analysis()

  def as_text(self) -> str:
    return self.compiled.as_text()


def signature(arguments: tuple) -> tuple:
  """What a compiled step is specific to: the batch's array shapes (a trimmed batch's length) and
  those of the embedding view's arrays (their capacities; None: a dense step, without them)."""
  shapes = lambda arrays: tuple(sorted((key, tuple(value.shape)) for key, value in arrays.items()))
  return shapes(arguments[1]), shapes(arguments[3]) if len(arguments) > 3 else None


class _LoweredStep:
  def __init__(self, step: TrainStep, lowered, signature: tuple):
    self.step, self.lowered, self.signature = step, lowered, signature

  def compile(self) -> TrainStep:
    return TrainStep(self.step.jitted, self.step.seed, self.step.reader, self.lowered.compile(), self.signature)
