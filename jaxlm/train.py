"""The one training loop: state, a data-parallel train step, evaluation, checkpoints.

Data parallelism has pmap semantics written with `jax.shard_map` under `jax.jit`
over a 1-D mesh of every device (axis "data"): each device runs the step on its
rows of the batch and the gradients are averaged with `lax.pmean("data")`.
Parameters are global, replicated arrays, so Orbax saves and restores them on
any device count.

Randomness and data are functions of the step (dropout rng = fold_in(seed, step),
batch = batcher(seed, step)), so a resumed run repeats the uninterrupted one.
The model, the loss and the optimiser are passed in; the loop never branches on
the model family.
"""

import dataclasses
import functools
import json
import math
import os
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

from jaxlm import checkpoint, decoding, losses, metrics, optim, pretrained, target_vectors
from jaxlm.data import lm_batches

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


def _state_factory(model, optimizer, config):
  """A function of no arguments that builds the initial state from config.seed."""
  rows = config.train.batch_size  # the carry is global: [batch, ...] split over devices

  def create():
    dummy = jnp.zeros((1, config.train.seq_len), jnp.int32)
    variables = model.init(jax.random.key(config.seed), dummy, train=False)
    params = variables["params"]
    frozen = {name: value for name, value in variables.items() if name != "params"}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                      frozen=frozen, carry=_zero_carry(model.initial_carry(rows)))

  return create


def init_state(model, optimizer, config, mesh, words=None) -> TrainState:
  """Initialises the state directly with its shardings (no host copy of the parameters).

  With `words` (the corpus vocabulary), an embedding head's fixed target table is then
  filled from config.model.target_vectors, and the input layer gets its start from
  config.model.init (FastText rows, the bag's n-gram ids; jaxlm.pretrained); without,
  both stay as `model.init` made them. Shapes never change, so `abstract_state` stays
  the restore target.
  """
  create = _state_factory(model, optimizer, config)
  state = jax.jit(create, out_shardings=state_shardings(mesh, jax.eval_shape(create)))()
  if words is not None:
    state = target_vectors.install_from_config(state, config.model, words)
    state = pretrained.install_from_config(state, config.model, words)
  return state


def abstract_state(model, optimizer, config, mesh) -> TrainState:
  """Shapes, dtypes and shardings of the state: the target Orbax restores into."""
  shapes = jax.eval_shape(_state_factory(model, optimizer, config))
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


def _per_device_train_step(state: TrainState, batch: dict, *, model, loss_fn, optimizer, seed: int,
                           num_devices: int):
  """Runs on one device's rows; returns replicated new params and summed metrics.

  num_devices: the size of the data axis (static). On one device the gradient needs no
  averaging: make_train_step then maps without shard_map's replication types, and the
  step has no all-reduce of the gradients (XLA:CPU runs a one-device all-reduce as a
  copy of every gradient: 17 ms of the quickstart's ~290 ms step on 2 CPU cores).
  """
  # Mark the replicated parameters as varying over the data axis, so that the
  # gradient below is this device's own gradient. Without it, shard_map's
  # transpose of the implicit broadcast would already sum gradients across
  # devices, and pmean would then return the sum instead of the mean.
  params = jax.lax.pcast(state.params, DATA_AXIS, to="varying") if num_devices > 1 else state.params
  device_index = jax.lax.axis_index(DATA_AXIS)
  dropout_rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), state.step), device_index)
  carry = jax.lax.stop_gradient(_reset_carry(state.carry, batch["reset"]))
  global_count = jax.lax.psum(jnp.sum(batch["weights"]), DATA_AXIS)

  def objective(params):
    outputs, new_carry = model.apply({"params": params, **state.frozen}, batch["inputs"], train=True,
                                     carry=carry, rngs={"dropout": dropout_rng})
    sums = loss_fn(outputs, batch["targets"], batch["weights"])
    # pmean of this over devices is sum_d loss_sum_d / global_count: the exact
    # mean over every real target of the global batch, padding or not.
    return sums["loss_sum"] * num_devices / global_count, (sums, new_carry)

  grads, (sums, new_carry) = jax.grad(objective, has_aux=True)(params)
  if num_devices > 1:
    grads = jax.lax.pmean(grads, DATA_AXIS)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)
  step_metrics = jax.lax.psum(sums, DATA_AXIS)
  step_metrics.update(grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(new_params),
                      update_norm=optax.tree.norm(updates))
  new_state = state.replace(step=state.step + 1, params=new_params, opt_state=opt_state,
                            carry=jax.lax.stop_gradient(new_carry))
  return new_state, step_metrics


def make_train_step(model, loss_fn: Callable, optimizer, mesh, state: TrainState, seed: int):
  """Returns train_step(state, batch) -> (state, metrics), jitted with the state donated."""
  specs = state_specs(state)
  per_device = functools.partial(_per_device_train_step, model=model, loss_fn=loss_fn,
                                 optimizer=optimizer, seed=seed, num_devices=mesh.shape[DATA_AXIS])
  mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(specs, P(DATA_AXIS)), out_specs=(specs, P()),
                         check_vma=mesh.shape[DATA_AXIS] > 1)
  return jax.jit(mapped, donate_argnums=(0,))


def _per_device_eval_step(params, frozen, carry, batch, *, model, loss_fn, chunk_size: int):
  carry = _reset_carry(carry, batch["reset"])
  outputs, carry = model.apply({"params": params, **frozen}, batch["inputs"], train=False, carry=carry)
  sums = loss_fn(outputs, batch["targets"], batch["weights"])
  # Top-1 / top-5 the same way for every head (largest logits, or nearest target vectors),
  # so heads compare on one measure; replaces a softmax loss's own argmax `correct`.
  sums.update(decoding.accuracy_sums(outputs, batch["targets"], batch["weights"], chunk_size=chunk_size))
  return jax.lax.psum(sums, DATA_AXIS), carry


def make_eval_step(model, loss_fn: Callable, mesh, *, chunk_size: int = 8192):
  """eval_step(params, frozen, carry, batch) -> (summed metrics, carry).

  chunk_size: vocabulary rows scored at once by nearest-neighbour decoding (embedding heads).
  """
  per_device = functools.partial(_per_device_eval_step, model=model, loss_fn=loss_fn, chunk_size=chunk_size)
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
  """The evaluation batch rounded up to a multiple of the mesh's device count."""
  devices = mesh.devices.size
  return -(-requested // devices) * devices


def evaluate(eval_step, model, mesh, params, frozen, tokens: np.ndarray, *, batch_size: int, length: int,
             max_tokens: int = 0) -> dict:
  """Scores every target of `tokens` (or the first max_tokens) with state carried; returns sums."""
  rows = evaluation_rows(batch_size, mesh)
  carry = jax.device_put(_zero_carry(model.initial_carry(rows)), NamedSharding(mesh, P(DATA_AXIS)))
  per_host = slice(jax.process_index() * rows // jax.process_count(),
                   (jax.process_index() + 1) * rows // jax.process_count())
  totals, in_flight = None, InFlight()
  for batch in lm_batches.evaluation_batches(tokens, batch_size=rows, length=length, max_tokens=max_tokens):
    local = {key: value[per_host] for key, value in batch.items()}
    sums, carry = eval_step(params, frozen, carry, global_batch(mesh, local))
    in_flight.add(sums)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return {key: float(value) for key, value in jax.device_get(totals).items()}


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
  model: Any
  loss_fn: Callable
  optimizer: optax.GradientTransformation
  corpus: Any
  mesh: Any


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
  from jaxlm.data import corpora
  from jaxlm.models import build_model
  pretrained.check_config(config.model)  # before a long corpus preparation
  corpus = corpora.load_corpus(config.data)
  devices = jax.device_count()
  if config.train.batch_size % devices:
    raise ValueError(f"config train.batch_size={config.train.batch_size} must be divisible by the "
                     f"{devices} devices")
  words = corpus.vocabulary.words
  model = build_model(config.model, len(words), subword_width=pretrained.subword_width(config.model, words))
  return Experiment(config=config, model=model,
                    loss_fn=build_loss(config.model),
                    optimizer=optim.build_optimizer(config.optim, config.train.steps, config.model),
                    corpus=corpus, mesh=make_mesh())


def build_loss(model_config) -> Callable:
  """The loss named by model.head, with the vMF regulariser weights or adaptive capacities bound."""
  loss_fn = losses.get_loss(model_config.head)
  if model_config.head == "vmf":
    loss_fn = functools.partial(loss_fn, lambda1=model_config.vmf_lambda1, lambda2=model_config.vmf_lambda2)
  if model_config.head == "adaptive":
    loss_fn = functools.partial(loss_fn, capacities=tuple(model_config.adaptive_capacities))
  return loss_fn


class NonFiniteLossError(FloatingPointError):
  pass


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True) -> dict:
  """Trains (resuming from the workdir's latest checkpoint if any); returns the last validation summary."""
  from tqdm import tqdm
  checkpoint.prepare_workdir(workdir, config)
  experiment = build_experiment(config)
  model, mesh, train_config = experiment.model, experiment.mesh, config.train
  manager = checkpoint.manager(workdir, train_config.keep_checkpoints)

  latest = manager.latest_step()
  if latest is None:
    state = init_state(model, experiment.optimizer, config, mesh, words=experiment.corpus.vocabulary.words)
  else:  # a resume reads nothing but the checkpoint (no FastText or target-vector files)
    state = checkpoint.restore(manager, latest, abstract_state(model, experiment.optimizer, config, mesh))
  start_step = int(state.step)

  train_step = make_train_step(model, experiment.loss_fn, experiment.optimizer, mesh, state, config.seed)
  eval_step = make_eval_step(model, experiment.loss_fn, mesh, chunk_size=train_config.neighbour_chunk_size)
  batcher = lm_batches.get_batcher(config.data.batching)
  train_tokens = experiment.corpus.splits["train"]
  writer = MetricWriter(workdir)
  tokens_per_step = train_config.batch_size * train_config.seq_len
  schedule = optim.build_schedule(config.optim, train_config.steps)

  def validate(step, training_seconds=None):
    sums = evaluate(eval_step, model, mesh, state.params, state.frozen, experiment.corpus.splits["valid"],
                    batch_size=train_config.eval_batch_size, length=train_config.seq_len,
                    max_tokens=train_config.eval_tokens)
    summary = metrics.summarise(sums)
    if training_seconds is not None:
      summary["training_seconds"] = training_seconds
    writer.write(step, "valid", summary)
    return summary

  def check_finite(step_range, sums):
    if not math.isfinite(sums["loss_sum"]) or not math.isfinite(sums["grad_norm"]):
      kept = manager.latest_step()
      raise NonFiniteLossError(
          f"loss or gradient became NaN/Inf between steps {step_range[0]} and {step_range[1]} "
          f"(loss_sum={sums['loss_sum']}, grad_norm={sums['grad_norm']}). Training stopped; the last good "
          f"checkpoint is step {kept} in {manager.directory}. Lower optim.lr or raise optim.warmup_steps.")

  bar = tqdm(total=train_config.steps, initial=start_step, disable=not progress or jax.process_index() != 0,
             dynamic_ncols=True, desc="train")
  started = time.time()
  interval_sums, interval_start, interval_time = None, start_step, time.time()
  paused_seconds = 0.0  # evaluation and saving inside the current log interval: not training time
  # Wall time spent in training steps by this process (evaluation and saving excluded): the
  # x axis for quality-against-time comparisons. A resumed run starts it again from 0.
  training_seconds = 0.0
  last_valid = None
  step = start_step
  in_flight = InFlight()
  try:
    while step < train_config.steps:
      local = batcher(train_tokens, step, seed=config.seed, batch_size=train_config.batch_size,
                      length=train_config.seq_len, process_index=jax.process_index(),
                      process_count=jax.process_count())
      state, step_metrics = train_step(state, global_batch(mesh, local))
      in_flight.add(step_metrics)
      step += 1
      interval_sums = step_metrics if interval_sums is None else jax.tree.map(jnp.add, interval_sums, step_metrics)
      out_of_time = train_config.max_minutes > 0 and time.time() - started > 60 * train_config.max_minutes
      at_end = step == train_config.steps or out_of_time
      if step % train_config.log_every == 0 or at_end:
        sums = {key: float(value) for key, value in jax.device_get(interval_sums).items()}
        check_finite((interval_start + 1, step), sums)
        steps_done = step - interval_start
        for key in ("grad_norm", "param_norm", "update_norm"):
          sums[key] /= steps_done  # averages over the interval
        summary = metrics.summarise(sums)
        elapsed = time.time() - interval_time - paused_seconds
        training_seconds += elapsed
        summary.update(tokens_per_second=steps_done * tokens_per_step / elapsed, learning_rate=float(schedule(step)),
                       training_seconds=training_seconds)
        writer.write(step, "train", summary)
        bar.set_postfix(loss=f"{summary['loss']:.3f}", ppl=f"{summary['perplexity']:.1f}",
                        tok_s=f"{summary['tokens_per_second']:.0f}")
        interval_sums, interval_start, interval_time, paused_seconds = None, step, time.time(), 0.0
      if step % train_config.eval_every == 0 or at_end:
        # The steps since the last log are training time too (eval_every need not be a
        # multiple of log_every); the next log counts them, without this pause.
        paused_from = time.time()
        last_valid = validate(step, training_seconds + paused_from - interval_time - paused_seconds)
        bar.write(f"step {step}: valid loss {last_valid['loss']:.4f} perplexity {last_valid['perplexity']:.2f} "
                  f"accuracy {last_valid['accuracy']:.4f} top-5 {last_valid['accuracy_top5']:.4f}")
        checkpoint.save(manager, step, state, last_valid["perplexity"])
        paused_seconds += time.time() - paused_from
      bar.update(1)
      if out_of_time:
        bar.write(f"stopping at step {step}: train.max_minutes={train_config.max_minutes} reached")
        break
  finally:
    bar.close()
    writer.close()
    manager.close()
  if last_valid is None:  # nothing left to train: report the restored state
    last_valid = validate(step)
  return last_valid
