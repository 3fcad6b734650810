"""What a run trains, and its state: the experiment (task, model, optimiser, mesh), the train
state and its shardings, and the first state (the model's init, then the run's starts).

Data parallelism has pmap semantics written with `jax.shard_map` under `jax.jit` over a 1-D
mesh of every device (axis "data"): every leaf of the state is replicated except the body's
carry, split along batch; each device runs the step on its rows (jaxlm.training.steps).
Parameters are global, replicated arrays, so Orbax saves and restores them on any device count.
"""

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlm import distributed, errors, starts, tasks
from jaxlm.data import lm_batches
from jaxlm.training import optim


DATA_AXIS = "data"


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: the number of updates applied so far
  params: Any
  opt_state: Any
  frozen: Any  # non-"params" variable collections (fixed tables); never optimised
  carry: Any  # the body's state between consecutive batches, [batch, ...] leaves


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


def zero_carry(carry):
  return jax.tree.map(jnp.zeros_like, carry)


def seed_array(seed: int) -> jax.Array:
  """config.seed as the int32 scalar the jitted init and train step take as an argument (so that a
  row's seeds share their compiled programs); the same keys as jax.random.key(seed)."""
  if not 0 <= seed < 2**31:
    raise errors.ConfigError(f"seed={seed}: give a seed from 0 to {2**31 - 1}")
  return jnp.asarray(seed, jnp.int32)


def _state_factory(model, optimizer, config, init_inputs):
  """create(seed) -> the initial state, seed an int32 scalar (seed_array(config.seed)).

  init_inputs: int32 [1, length], the shape of a batch's rows (Task.init_inputs); None:
  a language model's [1, train.seq_len].
  """
  rows = config.train.batch_size  # the carry is global: [batch, ...] split over devices
  if init_inputs is None:
    init_inputs = np.zeros((1, config.train.seq_len), np.int32)

  def create(seed):
    variables = model.init(jax.random.key(seed), jnp.asarray(init_inputs), train=False)
    params = variables["params"]
    frozen = {name: value for name, value in variables.items() if name != "params"}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                      frozen=frozen, carry=zero_carry(model.initial_carry(rows)))

  return create


def init_state(model, optimizer, config, mesh, words=None, init_inputs=None) -> TrainState:
  """Initialises the state directly with its shardings (no host copy of the parameters).

  With `words` (the task's vocabulary), the run's starts then apply (jaxlm.starts.apply: the
  FastText rows, an embedding head's target table, a pre-trained checkpoint's input layer and
  body); without, the state is as `model.init` made it. Shapes never change, so
  `abstract_state` stays the restore target.
  """
  create = _state_factory(model, optimizer, config, init_inputs)
  seed = seed_array(config.seed)
  state = jax.jit(create, out_shardings=state_shardings(mesh, jax.eval_shape(create, seed)))(seed)
  return state if words is None else starts.apply(state, config, words)


def abstract_state(model, optimizer, config, mesh, init_inputs=None) -> TrainState:
  """Shapes, dtypes and shardings of the state: the target Orbax restores into."""
  shapes = jax.eval_shape(_state_factory(model, optimizer, config, init_inputs), jax.ShapeDtypeStruct((), jnp.int32))
  return jax.tree.map(lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding),
                      shapes, state_shardings(mesh, shapes))


def _reset_carry(carry, reset):
  """Zeroes the carried state of rows that start a new stream. reset: [batch] bool."""
  def reset_leaf(leaf):
    keep = jnp.logical_not(reset).reshape((-1,) + (1,) * (leaf.ndim - 1))
    return jnp.where(keep, leaf, jnp.zeros_like(leaf))
  return jax.tree.map(reset_leaf, carry)


def carry_for(carry, batch):
  """The carry a batch starts from: zeroed where batch["reset"] says, or everywhere without it."""
  return _reset_carry(carry, batch["reset"]) if "reset" in batch else zero_carry(carry)


# Batch keys a model reads beside its inputs, passed by name when the batch has them: encoder
# tasks' padding mask, and the per-token features of a task whose model reads them (the QA
# reader's exact-match features, float32 [batch, length, features]).
MODEL_INPUTS = ("mask", "features")


def apply_model(model, variables, batch, *, train: bool, carry, rngs=None):
  """model(batch["inputs"], **the batch's MODEL_INPUTS) -> (outputs, carry)."""
  extra = {key: batch[key] for key in MODEL_INPUTS if key in batch}
  return model.apply(variables, batch["inputs"], train=train, carry=carry, rngs=rngs, **extra)


def check_microbatches(rows_per_device: int, microbatches: int) -> int:
  """The rows of one micro-batch; an error naming train.microbatches unless it divides the rows."""
  if microbatches < 1 or rows_per_device % microbatches:
    raise ValueError(f"config train.microbatches={microbatches} must be >= 1 and divide the batch per device "
                     f"({rows_per_device} rows: train.batch_size / devices); change train.microbatches "
                     f"or train.batch_size")
  return rows_per_device // microbatches


def host_part(batch: dict, rows: int) -> dict:
  """This process's rows of a global batch of `rows` rows (every process reads the same batch)."""
  own = lm_batches.host_rows(rows, jax.process_index(), jax.process_count())
  return {key: value[own] for key, value in batch.items()}


@dataclasses.dataclass
class Experiment:
  """Everything the loop needs, built once from the config."""
  config: ml_collections.ConfigDict
  task: tasks.base.Task
  model: Any
  optimizer: optax.GradientTransformation
  mesh: Any


def build_experiment(config: ml_collections.ConfigDict, *, sentencepiece_model: str = "") -> Experiment:
  """sentencepiece_model: a language model's ready .model, read instead of its corpus cache's (tasks.build_task)."""
  devices = jax.device_count()
  if config.train.batch_size % devices:
    raise ValueError(f"config train.batch_size={config.train.batch_size} must be divisible by the "
                     f"{devices} devices")
  check_microbatches(config.train.batch_size // devices, config.train.microbatches)
  seed_array(config.seed)  # a seed out of range is refused before any data is read
  # Process 0 reads the data first, writing any cache (token ids, vocabulary, TFDS,
  # SentencePiece) once; the others then read that cache (on a file system they share).
  task = distributed.primary_first("data caches built",
                                   lambda: tasks.build_task(config, sentencepiece_model=sentencepiece_model))
  return Experiment(config=config, task=task, model=task.build_model(config.model),
                    optimizer=optim.build_optimizer(config.optim, config.train.steps, config.model),
                    mesh=make_mesh())


def init_experiment_state(experiment: Experiment) -> TrainState:
  """A fresh state: the model's init, then the run's starts (init_state)."""
  return init_state(experiment.model, experiment.optimizer, experiment.config, experiment.mesh,
                    words=experiment.task.words, init_inputs=experiment.task.init_inputs())


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
