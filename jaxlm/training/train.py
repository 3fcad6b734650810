"""The one training loop: state, a data-parallel train step, evaluation, checkpoints.

Data parallelism has pmap semantics written with `jax.shard_map` under `jax.jit`
over a 1-D mesh of every device (axis "data"): each device runs the step on its
rows of the batch and the gradients are averaged with `lax.pmean("data")`.
Parameters are global, replicated arrays, so Orbax saves and restores them on
any device count.

Randomness and data are functions of the step: batch = task.train_batch(step), and every
dropout mask is drawn from (seed, step, global row) (jaxlm.models.layers.global_rows: a row's
mask from fold_in(site key, its row of the global batch); weight and word-type masks once per
step), so a resumed run repeats the uninterrupted one on any device count and with any
train.microbatches, up to float summation order.
The task (its data, model, loss, evaluation and best metric: jaxlm/tasks/base.py) and
the optimiser are passed in; the loop never branches on the task or the model family.
"""

import dataclasses
import functools
import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlm import checkpoint, distributed, errors, metrics, tasks
from jaxlm.starts import fasttext_rows, pretrained_checkpoint, target_vectors
from jaxlm.training import optim
from jaxlm.data import lm_batches, text_files
from jaxlm.models import layers

DATA_AXIS = "data"


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: the number of updates applied so far
  params: Any
  opt_state: Any
  frozen: Any  # non-"params" variable collections (fixed tables); never optimised
  carry: Any  # the body's state between consecutive batches, [batch, ...] leaves


# ----------------------------------------------------------------------------
# Devices and sharding.


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh named "data" over `devices` (default: every device of every host)."""
  devices = jax.devices() if devices is None else devices
  return jax.sharding.Mesh(np.asarray(devices), (DATA_AXIS,))


def state_specs(state: TrainState) -> TrainState:
  """Everything replicated except the carry, which is split along batch."""
  return TrainState(step=P(), params=P(), opt_state=P(), frozen=P(),
                    carry=jax.tree.map(lambda _: P(DATA_AXIS), state.carry))


def state_shardings(mesh, state: TrainState) -> TrainState:
  """A sharding for every leaf of `state` (a full tree, not a prefix, as Orbax needs)."""
  specs = state_specs(state)
  by_field = {}
  for field in dataclasses.fields(TrainState):
    spec_tree, value_tree = getattr(specs, field.name), getattr(state, field.name)
    if isinstance(spec_tree, P):  # one spec for the whole field
      by_field[field.name] = jax.tree.map(lambda _, spec=spec_tree: NamedSharding(mesh, spec), value_tree)
    else:
      by_field[field.name] = jax.tree.map(lambda spec: NamedSharding(mesh, spec), spec_tree,
                                          is_leaf=lambda node: isinstance(node, P))
  return TrainState(**by_field)


def global_batch(mesh, local_batch: dict) -> dict:
  """Host-local numpy rows -> global arrays split along batch over the mesh."""
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  return {key: jax.make_array_from_process_local_data(sharding, value) for key, value in local_batch.items()}


# ----------------------------------------------------------------------------
# State.


def _zero_carry(carry):
  return jax.tree.map(jnp.zeros_like, carry)


def _state_factory(model, optimizer, config, init_inputs):
  """A function of no arguments that builds the initial state from config.seed.

  init_inputs: int32 [1, length], the shape of a batch's rows (Task.init_inputs); None:
  a language model's [1, train.seq_len].
  """
  rows = config.train.batch_size  # the carry is global: [batch, ...] split over devices
  if init_inputs is None:
    init_inputs = np.zeros((1, config.train.seq_len), np.int32)

  def create():
    variables = model.init(jax.random.key(config.seed), jnp.asarray(init_inputs), train=False)
    params = variables["params"]
    frozen = {name: value for name, value in variables.items() if name != "params"}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                      frozen=frozen, carry=_zero_carry(model.initial_carry(rows)))

  return create


def init_state(model, optimizer, config, mesh, words=None, init_inputs=None) -> TrainState:
  """Initialises the state directly with its shardings (no host copy of the parameters).

  With `words` (the corpus vocabulary), an embedding head's fixed target table is then
  filled from config.model.target_vectors, and the input layer gets its start from
  config.model.init (FastText rows, the bag's n-gram ids; jaxlm.starts.fasttext_rows); without,
  both stay as `model.init` made them. Shapes never change, so `abstract_state` stays
  the restore target.
  """
  create = _state_factory(model, optimizer, config, init_inputs)
  state = jax.jit(create, out_shardings=state_shardings(mesh, jax.eval_shape(create)))()
  if words is not None:
    state = target_vectors.install_from_config(state, config.model, words)
    state = fasttext_rows.install_from_config(state, config.model, words)
  return state


def abstract_state(model, optimizer, config, mesh, init_inputs=None) -> TrainState:
  """Shapes, dtypes and shardings of the state: the target Orbax restores into."""
  shapes = jax.eval_shape(_state_factory(model, optimizer, config, init_inputs))
  return jax.tree.map(lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding),
                      shapes, state_shardings(mesh, shapes))


# ----------------------------------------------------------------------------
# The step.




def _reset_carry(carry, reset):
  """Zeroes the carried state of rows that start a new stream. reset: [batch] bool."""
  def reset_leaf(leaf):
    keep = jnp.logical_not(reset).reshape((-1,) + (1,) * (leaf.ndim - 1))
    return jnp.where(keep, leaf, jnp.zeros_like(leaf))
  return jax.tree.map(reset_leaf, carry)


def _carry_for(carry, batch):
  """The carry a batch starts from: zeroed where batch["reset"] says, or everywhere without it."""
  return _reset_carry(carry, batch["reset"]) if "reset" in batch else _zero_carry(carry)


def apply_model(model, variables, batch, *, train: bool, carry, rngs=None):
  """model(batch["inputs"]) -> (outputs, carry); encoder tasks' batches add their padding mask."""
  mask = {"mask": batch["mask"]} if "mask" in batch else {}
  return model.apply(variables, batch["inputs"], train=train, carry=carry, rngs=rngs, **mask)


def check_microbatches(rows_per_device: int, microbatches: int) -> int:
  """The rows of one micro-batch; an error naming train.microbatches unless it divides the rows."""
  if microbatches < 1 or rows_per_device % microbatches:
    raise ValueError(f"config train.microbatches={microbatches} must be >= 1 and divide the batch per device "
                     f"({rows_per_device} rows: train.batch_size / devices); change train.microbatches "
                     f"or train.batch_size")
  return rows_per_device // microbatches


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
    totals = jax.lax.pcast(totals, DATA_AXIS, to="varying")

  def accumulate(totals, inputs):
    micro_batch, micro_carry, rows = inputs
    grads, (sums, new_carry) = gradient(params, micro_batch, micro_carry, rows)
    return jax.tree.map(jnp.add, totals, (grads, sums)), new_carry

  (grads, sums), new_carries = jax.lax.scan(accumulate, totals, (micro_batches, micro_carries, micro_rows))
  return grads, (sums, _join_rows(new_carries))


def _per_device_train_step(state: TrainState, batch: dict, *, model, loss_fn, optimizer, seed: int,
                           num_devices: int, skip_nonfinite: bool = False, microbatches: int = 1):
  """Runs on one device's rows; returns replicated new params and summed metrics.

  loss_fn(outputs, batch) -> sums with loss_sum and count (Task.loss).
  The metrics hold `nonfinite_steps`: 1.0 when the loss, the gradient or the new
  parameters hold a NaN/Inf (read from their norms, which the step computes anyway),
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
  """
  # Mark the replicated parameters as varying over the data axis, so that the
  # gradient below is this device's own gradient. Without it, shard_map's
  # transpose of the implicit broadcast would already sum gradients across
  # devices, and pmean would then return the sum instead of the mean.
  params = jax.lax.pcast(state.params, DATA_AXIS, to="varying") if num_devices > 1 else state.params
  # One dropout key per step, the same on every device; each row's masks fold in its global
  # row index (layers.global_rows), so they do not depend on how rows are split over devices.
  dropout_rng = jax.random.fold_in(jax.random.key(seed), state.step)
  local_rows = batch["inputs"].shape[0]
  rows = jax.lax.axis_index(DATA_AXIS) * local_rows + jnp.arange(local_rows)  # int32 [local rows]
  carry = jax.lax.stop_gradient(_carry_for(state.carry, batch))
  global_count = jax.lax.psum(jnp.sum(batch["weights"]), DATA_AXIS)

  def gradient(params, batch, carry, rows):
    def objective(params):
      with layers.global_rows(rows):
        outputs, new_carry = apply_model(model, {"params": params, **state.frozen}, batch, train=True,
                                         carry=carry, rngs={"dropout": dropout_rng})
      sums = loss_fn(outputs, batch)
      # pmean of this over devices is sum_d loss_sum_d / global_count: the exact
      # mean over every real target of the global batch, padding or not.
      return sums["loss_sum"] * num_devices / global_count, (sums, new_carry)
    return jax.grad(objective, has_aux=True)(params)

  if microbatches == 1:
    grads, (sums, new_carry) = gradient(params, batch, carry, rows)
  else:
    check_microbatches(batch["inputs"].shape[0], microbatches)
    grads, (sums, new_carry) = _accumulated_gradient(gradient, params, batch, carry, rows, microbatches,
                                                     varying=num_devices > 1)
  if num_devices > 1:
    grads = jax.lax.pmean(grads, DATA_AXIS)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)
  step_metrics = jax.lax.psum(sums, DATA_AXIS)
  step_metrics.update(grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(new_params),
                      update_norm=optax.tree.norm(updates))
  # The norms are sums of squares: finite exactly when every element is (or it overflows,
  # which is as unusable). The gradient is the pmean'd one, so every device agrees.
  finite = (jnp.isfinite(step_metrics["loss_sum"]) & jnp.isfinite(step_metrics["grad_norm"])
            & jnp.isfinite(step_metrics["param_norm"]))
  new_carry = jax.lax.stop_gradient(new_carry)
  if skip_nonfinite:
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_params, opt_state = keep(new_params, state.params), keep(opt_state, state.opt_state)
    new_carry = keep(new_carry, carry)
    step_metrics = jax.tree.map(lambda value: jnp.where(finite, value, jnp.zeros_like(value)), step_metrics)
  step_metrics["nonfinite_steps"] = 1.0 - finite.astype(jnp.float32)
  new_state = state.replace(step=state.step + 1, params=new_params, opt_state=opt_state, carry=new_carry)
  return new_state, step_metrics


def make_train_step(model, loss_fn: Callable, optimizer, mesh, state: TrainState, seed: int, *,
                    skip_nonfinite: bool = False, microbatches: int = 1):
  """Returns train_step(state, batch) -> (state, metrics), jitted with the state donated.

  loss_fn(outputs, batch) -> sums (Task.loss). skip_nonfinite: a step whose loss, gradient
  or new parameters are not finite changes nothing (see _per_device_train_step).
  microbatches: gradient accumulation over that many groups of each device's rows
  (train.microbatches; see _per_device_train_step).
  """
  specs = state_specs(state)
  per_device = functools.partial(_per_device_train_step, model=model, loss_fn=loss_fn,
                                 optimizer=optimizer, seed=seed, num_devices=mesh.shape[DATA_AXIS],
                                 skip_nonfinite=skip_nonfinite, microbatches=microbatches)
  mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(specs, P(DATA_AXIS)), out_specs=(specs, P()),
                         check_vma=mesh.shape[DATA_AXIS] > 1)
  return jax.jit(mapped, donate_argnums=(0,))


def _per_device_eval_step(params, frozen, carry, batch, *, model, eval_fn):
  outputs, carry = apply_model(model, {"params": params, **frozen}, batch, train=False,
                               carry=_carry_for(carry, batch))
  return jax.lax.psum(eval_fn(outputs, batch), DATA_AXIS), carry


def make_eval_step(model, eval_fn: Callable, mesh):
  """eval_step(params, frozen, carry, batch) -> (summed metrics, carry).

  eval_fn(outputs, batch) -> sums (Task.eval_sums).
  """
  per_device = functools.partial(_per_device_eval_step, model=model, eval_fn=eval_fn)
  mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(DATA_AXIS), P(DATA_AXIS)),
                         out_specs=(P(), P(DATA_AXIS)))
  return jax.jit(mapped)


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


def host_part(batch: dict, rows: int) -> dict:
  """This process's rows of a global batch of `rows` rows (every process reads the same batch)."""
  own = lm_batches.host_rows(rows, jax.process_index(), jax.process_count())
  return {key: value[own] for key, value in batch.items()}


def _host_values(sums) -> dict:
  """Device sums -> floats (scalars) and numpy arrays (e.g. confusion counts)."""
  return {key: float(value) if np.ndim(value) == 0 else np.asarray(value)
          for key, value in jax.device_get(sums).items()}


def evaluate(eval_step, model, mesh, params, frozen, batches, *, rows: int) -> dict:
  """Sums of eval_step over `batches` (global batches of `rows` rows), state carried; returns sums.

  rows must be a multiple of the device count (evaluation_rows).
  """
  carry = jax.device_put(_zero_carry(model.initial_carry(rows)), NamedSharding(mesh, P(DATA_AXIS)))
  totals, in_flight = None, InFlight()
  for batch in batches:
    sums, carry = eval_step(params, frozen, carry, global_batch(mesh, host_part(batch, rows)))
    in_flight.add(sums)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return _host_values(totals)


def _per_device_predict(params, frozen, batch, *, model, task):
  outputs, _ = apply_model(model, {"params": params, **frozen}, batch, train=False,
                           carry=model.initial_carry(batch["inputs"].shape[0]))
  return task.predict(outputs, batch)


def make_predict_step(experiment):
  """predict_step(params, frozen, batch) -> task.predict's values per row, jitted over the mesh."""
  per_device = functools.partial(_per_device_predict, model=experiment.model, task=experiment.task)
  return jax.jit(jax.shard_map(per_device, mesh=experiment.mesh, in_specs=(P(), P(), P(DATA_AXIS)),
                               out_specs=P(DATA_AXIS)))


def predict_split(experiment, predict_step, state, split: str, *, batch_size: int) -> np.ndarray:
  """task.predict's values for every example of `split` once, in order (padding rows dropped)."""
  mesh = experiment.mesh
  rows = evaluation_rows(batch_size, mesh)
  predictions = []
  zeroed = experiment.task.unweighted_counts
  for batch in experiment.task.predict_batches(split, batch_size=batch_size):
    batch = pad_rows(batch, rows, zeroed)
    # [rows, ...]: every process's rows, gathered (each process predicted its own)
    values = distributed.to_host(predict_step(state.params, state.frozen,
                                              global_batch(mesh, host_part(batch, rows))))
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


# ----------------------------------------------------------------------------
# Logging.


class MetricWriter:
  """JSON lines in the workdir plus TensorBoard event files (no TensorFlow needed)."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    if self.enabled:
      from tensorboardX import SummaryWriter
      self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      self.tensorboard = SummaryWriter(workdir)

  def write(self, step: int, kind: str, values: dict) -> None:
    if not self.enabled:
      return
    self.jsonl.write(json.dumps({"step": step, "kind": kind, **values}) + "\n")
    self.jsonl.flush()
    for key, value in values.items():
      if isinstance(value, (int, float)) and math.isfinite(value):
        self.tensorboard.add_scalar(f"{kind}/{key}", value, step)
    self.tensorboard.flush()

  def close(self):
    if self.enabled:
      self.jsonl.close()
      self.tensorboard.close()


# ----------------------------------------------------------------------------
# The loop.


@dataclasses.dataclass
class Experiment:
  """Everything the loop needs, built once from the config."""
  config: ml_collections.ConfigDict
  task: tasks.base.Task
  model: Any
  optimizer: optax.GradientTransformation
  mesh: Any


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
  devices = jax.device_count()
  if config.train.batch_size % devices:
    raise ValueError(f"config train.batch_size={config.train.batch_size} must be divisible by the "
                     f"{devices} devices")
  check_microbatches(config.train.batch_size // devices, config.train.get("microbatches", 1))
  # Process 0 reads the data first, writing any cache (token ids, vocabulary, TFDS,
  # SentencePiece) once; the others then read that cache (on a file system they share).
  task = distributed.primary_first("data caches built", lambda: tasks.build_task(config))
  return Experiment(config=config, task=task, model=task.build_model(config.model),
                    optimizer=optim.build_optimizer(config.optim, config.train.steps, config.model),
                    mesh=make_mesh())


def init_experiment_state(experiment: Experiment) -> TrainState:
  """A fresh state: the model's init, then the input layer's start (FastText) and any fixed
  tables, then (config.init.checkpoint) a pre-trained run's input layer and body."""
  config = experiment.config
  state = init_state(experiment.model, experiment.optimizer, config, experiment.mesh,
                     words=experiment.task.words, init_inputs=experiment.task.init_inputs())
  if "init" in config and config.init.checkpoint:
    state = pretrained_checkpoint.install(state, config.init.checkpoint)
  return state


def restart_optimizer_state(experiment: Experiment, state: TrainState):
  """A new optimiser state for the restored `state`'s parameters, its schedules at state.step
  (optim.restarted_state), replicated like the rest of the state."""
  restarted = functools.partial(optim.restarted_state, experiment.optimizer)
  shapes = jax.eval_shape(restarted, state.params, state.step)
  shardings = jax.tree.map(lambda _: NamedSharding(experiment.mesh, P()), shapes)
  return jax.jit(restarted, out_shardings=shardings)(state.params, state.step)


def experiment_target(experiment: Experiment) -> TrainState:
  """The abstract state (shapes, dtypes, shardings) an experiment's checkpoints restore into."""
  return abstract_state(experiment.model, experiment.optimizer, experiment.config, experiment.mesh,
                        init_inputs=experiment.task.init_inputs())


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """A NaN/Inf loss, gradient or parameter stopped the run; the message names the last finite checkpoint."""


class TrainingInterrupted(Exception):
  """SIGTERM or SIGINT stopped the run after a checkpoint of the step it finished."""

  def __init__(self, signal_number: int, step: int, directory: str):
    self.signal_number, self.step = signal_number, step
    super().__init__(f"{signal.Signals(signal_number).name} received: finished step {step}, validated it and "
                     f"saved checkpoint {step} in {directory}; run the same command to resume")


class StopSignals:
  """Turns SIGTERM and SIGINT into a request the loop reads after each step (main thread only).

  A second signal of the same kind stops at once, as the default handler would.
  """

  NAMES = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received = None
    self.previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for number in self.NAMES:
        self.previous[number] = signal.signal(number, self.handle)
    return self

  def handle(self, number, frame):
    if self.received is not None:
      signal.signal(number, self.previous.get(number, signal.SIG_DFL))
      signal.raise_signal(number)
      return
    self.received = number

  def __exit__(self, *exc):
    for number, handler in self.previous.items():
      signal.signal(number, handler)


def _without_norms(sums: dict) -> tuple[dict, dict]:
  """Splits the step's parameter/gradient/update norms and its non-finite count from the task's sums."""
  norms = {key: value for key, value in sums.items() if key.endswith("_norm") or key == "nonfinite_steps"}
  return {key: value for key, value in sums.items() if key not in norms}, norms


class FiniteGuard:
  """Knows, at every step that logs or saves, whether the steps so far were finite.

  max_bad_steps 0: any step whose loss, gradient or new parameters are not finite stops the
  run. N > 0: the step skipped them (make_train_step's skip_nonfinite); more than N in the
  run stops it. Skipped steps are counted from metrics.jsonl on a resume. With several
  processes the stop is agreed (the sums are global, but metrics.jsonl might be read apart).
  """

  def __init__(self, max_bad_steps: int, workdir: str, start_step: int, checkpoint_manager):
    self.max_bad_steps, self.manager = max_bad_steps, checkpoint_manager
    self.skipped = 0  # in logged intervals
    for record in _records(workdir):
      if record.get("kind") == "train" and record["step"] <= start_step:
        self.skipped += int(record.get("skipped_steps", 0))

  def check(self, step_range, sums: dict, *, logged: bool) -> None:
    """sums: host values of the interval's summed step metrics. logged: the interval ends here."""
    bad = int(round(sums.get("nonfinite_steps", 0.0)))
    total = self.skipped + bad
    if logged:
      self.skipped = total
    what = None
    if bad and (self.max_bad_steps == 0 or total > self.max_bad_steps):
      what = (f"loss, gradient or parameters became NaN/Inf between steps {step_range[0]} and {step_range[1]} "
              f"(loss_sum={sums['loss_sum']}, grad_norm={sums['grad_norm']})")
      if self.max_bad_steps:
        what = (f"{total} steps had a NaN/Inf loss or gradient, more than train.max_bad_steps="
                f"{self.max_bad_steps}; the last between steps {step_range[0]} and {step_range[1]}")
    self.stop_if(what)

  def check_validation(self, step: int, metric: str, value: float) -> None:
    self.stop_if(None if math.isfinite(value) else f"validation {metric} at step {step} is {value}")

  def stop_if(self, what: str | None) -> None:
    """Stops every process when any found a reason (`what`, None: none here)."""
    if distributed.agree_any([what is not None])[0]:
      self.stop(what or f"another process (of {jax.process_count()}) found a NaN/Inf at this step")

  def stop(self, what: str):
    kept = self.manager.latest_step()
    last = (f"the last finite checkpoint is step {kept} in {self.manager.directory} (this state was not saved)"
            if kept is not None else "no checkpoint was saved")
    raise NonFiniteLossError(f"{what}. Training stopped; {last}. Lower optim.lr, raise optim.warmup_steps, "
                             "or set train.max_bad_steps to skip a few bad steps.")


def keep_records_up_to(workdir: str, step: int) -> None:
  """Drops metrics.jsonl records of steps after `step` (atomically: a copy, then a rename).

  Process 0 rewrites the file; every process returns once it has (a barrier), so all then
  read the same records.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if jax.process_index() == 0 and os.path.exists(path):
    with open(path) as handle:
      lines = handle.readlines()
    kept = [line for line in lines if line.strip() and line.endswith("\n") and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
      text_files.write_text(path, "".join(kept))
  distributed.barrier("metrics.jsonl up to the restored step")


def _records(workdir: str) -> list[dict]:
  """metrics.jsonl's records in step order (jaxlm.metrics.read_records); none before the first log."""
  path = os.path.join(workdir, "metrics.jsonl")
  return metrics.read_records(path) if os.path.exists(path) else []


def every(step: int, interval: int) -> bool:
  """True every `interval` steps; interval 0 is "off" (only the run's last step logs or validates)."""
  return interval > 0 and step % interval == 0


class EarlyStopping:
  """Counts validations since the best one, by the task's metric (train.patience).

  Rebuilt on a resume from the validations metrics.jsonl recorded up to the restored
  step, so a resumed run stops where the uninterrupted one would have.
  """

  def __init__(self, task, patience: int, workdir: str, start_step: int):
    self.metric, self.sign, self.patience = task.best_metric, 1.0 if task.best_mode == "min" else -1.0, patience
    self.best, self.since_best = math.inf, 0
    for record in _records(workdir):
      if (record.get("kind") == "valid" and record["step"] <= start_step and self.metric in record
          and not record.get("interrupted")):
        self.update(record[self.metric])

  def update(self, value: float) -> bool:
    """Records a validation; True when patience has run out."""
    if self.sign * value < self.best:
      self.best, self.since_best = self.sign * value, 0
    else:
      self.since_best += 1
    return self.patience > 0 and self.since_best >= self.patience


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True,
                       allow_change=()) -> dict:
  """Trains (resuming from the workdir's latest checkpoint if any); returns the last validation summary.

  progress: a tqdm bar with the latest loss (for a terminal); without it, one line a log
  interval ("step 50: train loss 0.6215, 3638 tokens/s"), which a log file keeps readable.
  A resume must be the same run (checkpoint.check_workdir: seed, data and its fingerprint,
  vocabulary, model, optimiser, schedule, batch); allow_change names intended differences
  (e.g. ("train.steps",)), which are then recorded in metrics.jsonl as kind "config_change".
  With several processes (jaxlm.distributed) every process calls it: each reads its rows of
  every batch, process 0 writes the logs and progress, all save and restore the checkpoints
  together, and every decision to stop is agreed so all stop after the same step.
  """
  from tqdm import tqdm
  experiment = build_experiment(config)  # reads the data (writing only to its cache), so the checks see it
  task, model, mesh, train_config = experiment.task, experiment.model, experiment.mesh, config.train
  workdir_files = dict(words=task.words, fingerprint=task.fingerprint, sentencepiece_model=task.sentencepiece_model,
                       run={"task": tasks.task_name(config), "best_metric": task.best_metric,
                            "best_mode": task.best_mode})
  changes = checkpoint.check_workdir(workdir, config, words=task.words, fingerprint=task.fingerprint,
                                     allow_change=allow_change)  # writes nothing
  resuming = checkpoint.has_checkpoints(workdir)
  if not resuming:
    checkpoint.write_workdir(workdir, config, **workdir_files)
  manager = checkpoint.manager(workdir, train_config.keep_checkpoints, best_metric=task.best_metric,
                               best_mode=task.best_mode)
  checkpoint.check_writable(manager.directory)  # now, not at the first save after training

  if not resuming:
    state = init_experiment_state(experiment)
  else:  # a resume reads nothing but the checkpoint (no FastText or target-vector files)
    # A damaged checkpoint (a truncated file, a half-written save) is moved aside to
    # damaged_checkpoints/, so the run goes on from the previous kept one and saves over nothing.
    def move_aside(step):
      if jax.process_index() == 0:
        aside = os.path.join(workdir, "damaged_checkpoints")
        os.makedirs(aside, exist_ok=True)
        os.replace(os.path.join(str(manager.directory), str(step)),
                   os.path.join(aside, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"))
      distributed.barrier(f"damaged checkpoint {step} moved aside")
    # An allowed change (optim.clip_norm, optim.name, ...) can change the optimiser state's
    # tree: the parameters restore and the optimiser state starts anew. Without one, a state
    # that does not fit is refused (checkpoint.MismatchedCheckpointError), never moved aside.
    _, state, restarted = checkpoint.restore_readable(manager, experiment_target(experiment), on_damaged=move_aside,
                                                      restartable=("opt_state",) if changes else ())
    if restarted:
      state = state.replace(opt_state=restart_optimizer_state(experiment, state))
      changes = changes + [f"optimiser state restarted at step {int(state.step)} (the saved one does not fit: "
                           f"{restarted['opt_state']}); parameters restored, moments from zero"]
      if distributed.is_primary():
        print(f"jaxlm: {changes[-1]}", file=sys.stderr)
    manager.reload()
  start_step = int(state.step)
  # Records after the restored step belong to steps this run repeats: dropped, not duplicated.
  keep_records_up_to(workdir, start_step)  # then a barrier: every process reads the same records below

  early_stopping = EarlyStopping(task, train_config.patience, workdir, start_step)
  max_bad_steps = train_config.get("max_bad_steps", 0)
  guard = FiniteGuard(max_bad_steps, workdir, start_step, manager)
  train_step = make_train_step(model, task.loss, experiment.optimizer, mesh, state, config.seed,
                               skip_nonfinite=max_bad_steps > 0, microbatches=train_config.microbatches)
  evaluate_split = make_evaluator(experiment)
  writer = MetricWriter(workdir)
  if changes:
    writer.write(start_step, "config_change", {"changes": changes})
  # A resume rewrites config.json (with any allowed change) only with its first checkpoint, so a
  # resume that fails before saving leaves the workdir's description as its checkpoints are.
  workdir_written = not resuming
  schedule = optim.build_schedule(config.optim, train_config.steps)

  def validate(step, training_seconds=None, interrupted=False, record=True):
    summary = evaluate_split(state, "valid", batch_size=train_config.eval_batch_size,
                             limit=train_config.eval_tokens)
    if training_seconds is not None:
      summary["training_seconds"] = training_seconds
    if record:  # A validation the uninterrupted run would not have made: early stopping skips it.
      writer.write(step, "valid", {**summary, "interrupted": True} if interrupted else summary)
    return summary

  bar = tqdm(total=train_config.steps, initial=start_step, disable=not progress or not distributed.is_primary(),
             dynamic_ncols=True, desc="train")
  say = bar.write if distributed.is_primary() else lambda line: None  # tqdm.write prints even when disabled
  started = time.time()
  # Test-only: seconds added to this process's clock where the train.max_minutes budget is read, so a
  # test can make one process run out of time first (tests/test_multiprocess.py). Unset in real runs.
  clock_skew = float(os.environ.get("JAXLM_TEST_CLOCK_SKEW_SECONDS", "0"))
  interval_sums, interval_start, interval_time = None, start_step, time.time()
  interval_inputs = 0  # input positions (tokens) of the global batches since the last log
  paused_seconds = 0.0  # evaluation and saving inside the current log interval: not training time
  # Wall time spent in training steps by this process (evaluation and saving excluded): the
  # x axis for quality-against-time comparisons. A resumed run starts it again from 0.
  training_seconds = 0.0
  last_valid = None
  step = start_step
  in_flight = InFlight()
  stop_signals = StopSignals()
  try:
    stop_signals.__enter__()
    while step < train_config.steps:
      local = task.train_batch(step, seed=config.seed, batch_size=train_config.batch_size,
                               process_index=jax.process_index(), process_count=jax.process_count())
      state, step_metrics = train_step(state, global_batch(mesh, local))
      in_flight.add(step_metrics)
      step += 1
      interval_inputs += local["inputs"].size * jax.process_count()
      interval_sums = step_metrics if interval_sums is None else jax.tree.map(jnp.add, interval_sums, step_metrics)
      out_of_time = train_config.max_minutes > 0 and time.time() + clock_skew - started > 60 * train_config.max_minutes
      # SIGTERM/SIGINT: this step is logged, validated and saved like a last one (but not ranked
      # for best: the uninterrupted run never validated it), then the run stops. Every process stops at the
      # step any one of them ran out of time or got a signal (SIGTERM wins over SIGINT), or the
      # others would wait alone in the next step's collectives: one small all-gather a step.
      out_of_time, signal_number = distributed.agree_max([out_of_time, stop_signals.received or 0])
      signalled = signal_number > 0
      at_end = step == train_config.steps or out_of_time or signalled
      if every(step, train_config.log_every) or at_end:
        sums, norms = _without_norms(_host_values(interval_sums))
        guard.check((interval_start + 1, step), {**sums, **norms}, logged=True)
        steps_done = step - interval_start
        skipped = int(round(norms.pop("nonfinite_steps")))
        summary = task.summarise(sums)
        # Averages over the interval (a skipped step's norms are zeros: averaged over the others).
        summary.update({key: value / max(steps_done - skipped, 1) for key, value in norms.items()})
        if max_bad_steps:
          summary["skipped_steps"] = skipped
        elapsed = time.time() - interval_time - paused_seconds
        training_seconds += elapsed
        summary.update(tokens_per_second=interval_inputs / elapsed,
                       examples_per_second=steps_done * train_config.batch_size / elapsed,
                       learning_rate=float(schedule(step)), training_seconds=training_seconds)
        writer.write(step, "train", summary)
        bar.set_postfix(loss=f"{summary['loss']:.3f}", tok_s=f"{summary['tokens_per_second']:.0f}")
        if not progress:
          say(f"step {step}: train loss {summary['loss']:.4f}, {summary['tokens_per_second']:.0f} tokens/s")
        interval_sums, interval_start, interval_time, paused_seconds = None, step, time.time(), 0.0
        interval_inputs = 0
      if every(step, train_config.eval_every) or at_end:
        # The steps since the last log are training time too (eval_every need not be a
        # multiple of log_every); the next log counts them, without this pause.
        paused_from = time.time()
        if interval_sums is not None:  # the steps since the last log: finite, or few enough skipped?
          guard.check((interval_start + 1, step), _host_values(interval_sums), logged=False)
        off_schedule = signalled and not every(step, train_config.eval_every) and step < train_config.steps
        last_valid = validate(step, training_seconds + paused_from - interval_time - paused_seconds,
                              interrupted=off_schedule)
        say(f"step {step}: valid {task.describe(last_valid)}")
        guard.check_validation(step, task.best_metric, last_valid[task.best_metric])
        if not workdir_written:  # a resume's config (and its allowed changes) with its first checkpoint
          checkpoint.write_workdir(workdir, config, **workdir_files)
          workdir_written = True
        checkpoint.save(manager, step, state, {task.best_metric: last_valid[task.best_metric]},
                        off_schedule=off_schedule)
        paused_seconds += time.time() - paused_from
        # The same global value everywhere; agreed still, as each process read metrics.jsonl itself.
        patience_over = not off_schedule and early_stopping.update(last_valid[task.best_metric])
        if distributed.agree_any([patience_over])[0]:
          say(f"stopping at step {step}: no better valid {task.best_metric} in the last "
              f"train.patience={train_config.patience} validations")
          break
      bar.update(1)
      if signalled and step < train_config.steps:
        raise TrainingInterrupted(signal_number, step, manager.directory)
      if out_of_time:
        say(f"stopping at step {step}: train.max_minutes={train_config.max_minutes} reached")
        break
    if last_valid is None:  # nothing left to train (a finished run started again): report its state
      last_valid = validate(step, record=False)  # metrics.jsonl already holds this step's validation
  finally:
    stop_signals.__exit__()
    bar.close()
    writer.close()
    manager.close()
  return last_valid
