"""Optimisers and learning-rate schedules from `config.optim` (optax).

The transform is built once, outside the train step, and is a pure function of
the config, the step count and the parameter tree's structure.

optim.embedding_updates picks how the input layer's tables are updated:
  dense  every row, every step, by the optimiser of everything else (AdamW's moments of a row
         no batch reads still decay, and its decoupled weight decay still shrinks it);
  lazy   only the rows the step's global batch reads (jaxlm.training.sparse_rows), by `lazy_adamw`:
         AdamW on those rows alone. A row no batch reads keeps its value and its moments
         exactly; when it is read again its moments go on from where they stood, and the bias
         correction uses the global step count (as TensorFlow Addons' LazyAdam and PyTorch's
         SparseAdam do). Its weight decay, too, applies only at the steps that read it. With
         every row read at every step, it is AdamW. A tied language-model head reads every
         word's row at every step, so with it only a bag's n-gram buckets are updated lazily
         (the word rows as by AdamW); with a word table and a tied head it is refused.
"""

import jax
import jax.numpy as jnp
import optax
from optax._src import numerics

from jaxlm import errors

SCHEDULES = ("constant", "cosine", "linear", "rsqrt")
OPTIMISERS = ("adamw", "adam_l2", "sgd")
EMBEDDING_UPDATES = ("dense", "lazy")


def build_schedule(optim_config, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 to `lr`, then the named decay until `total_steps`.

  cosine/linear decay to `lr * final_lr_fraction`; rsqrt decays as
  lr * sqrt(warmup / step) after warmup; constant holds `lr`.
  """
  lr, warmup = optim_config.lr, optim_config.warmup_steps
  name = optim_config.schedule
  if name not in SCHEDULES:
    raise errors.ConfigError(f"config optim.schedule={name!r} is not known; choose one of {SCHEDULES}")
  decay_steps = max(total_steps - warmup, 1)
  final_lr = lr * optim_config.final_lr_fraction
  if name == "constant":
    decay = optax.constant_schedule(lr)
  elif name == "cosine":
    decay = optax.cosine_decay_schedule(lr, decay_steps, alpha=optim_config.final_lr_fraction)
  elif name == "linear":
    decay = optax.linear_schedule(lr, final_lr, decay_steps)
  else:
    offset = max(warmup, 1)
    decay = lambda step: lr * (offset / (step + offset)) ** 0.5
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def decay_mask(params):
  """Weight decay on matrices only: biases, norms' scales and offsets are exempt."""
  return jax.tree.map(lambda leaf: leaf.ndim >= 2, params)


EMBEDDINGS = "input_layer"  # the Model's input-layer scope: its tables are "the embeddings"


def embedding_labels(params):
  """"embeddings" for every leaf under the input layer, "rest" for the others.

  A tied softmax head reads the input table, so freezing or rescaling it acts on
  the output projection too.
  """
  return {scope: jax.tree.map(lambda _, scope=scope: "embeddings" if scope == EMBEDDINGS else "rest", tree)
          for scope, tree in params.items()}


def encoder_labels(params):
  """"embeddings" under the input layer, "body" under the body, "head" for the rest (a task's head)."""
  names = {"input_layer": "embeddings", "body": "body"}
  return {scope: jax.tree.map(lambda _, name=names.get(scope, "head"): name, tree) for scope, tree in params.items()}


def _encoder_optimizer(optim_config, schedule, clip, model_config) -> optax.GradientTransformation:
  """Fine-tuning: the head at the schedule's rate; the encoder (input layer and body) at
  optim.encoder_lr_multiplier times it, and not at all before step optim.freeze_encoder_steps
  (-1: never). model.freeze_embeddings and model.embedding_lr_multiplier still act on the
  input layer. A frozen phase is a zero learning rate: AdamW's moments still follow the
  encoder's gradients (and its decay, scaled by the rate, is zero too)."""
  multiplier, frozen_until = float(optim_config.encoder_lr_multiplier), int(optim_config.freeze_encoder_steps)

  def encoder_schedule(extra: float):
    if frozen_until < 0:
      return None
    return lambda step: jnp.where(step >= frozen_until, extra * multiplier * schedule(step), 0.0)

  groups = {"head": optax.chain(*_transforms(optim_config, schedule))}
  for name, extra in (("body", 1.0), ("embeddings", float(model_config.embedding_lr_multiplier))):
    rate = None if name == "embeddings" and model_config.freeze_embeddings else encoder_schedule(extra)
    transforms = _embedding_transforms if name == "embeddings" else _transforms
    groups[name] = optax.set_to_zero() if rate is None else optax.chain(*transforms(optim_config, rate))
  return optax.chain(*clip, optax.multi_transform(groups, encoder_labels))


def _transforms(optim_config, schedule) -> list[optax.GradientTransformation]:
  """The named optimiser's parts, without clipping (chained by the caller)."""
  name = optim_config.name
  if name == "adamw":
    return [optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps,
                        weight_decay=optim_config.weight_decay, mask=decay_mask)]
  if name == "adam_l2":
    # Classic Adam with an L2 penalty: the decay is added to the gradient before
    # the adaptive scaling (unlike AdamW's decoupled decay).
    return [optax.add_decayed_weights(optim_config.weight_decay, mask=decay_mask),
            optax.scale_by_adam(b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps),
            optax.scale_by_learning_rate(schedule)]
  return [optax.add_decayed_weights(optim_config.weight_decay, mask=decay_mask),
          optax.sgd(schedule, momentum=optim_config.momentum or None)]


def _gathered(tree, rows):
  """Each leaf [num_rows, ...] at rows [k] -> [k, ...] (row num_rows: zeros, padding)."""
  return jax.tree.map(lambda leaf: leaf.at[rows].get(mode="fill", fill_value=0), tree)


def _scattered(tree, row_values, rows):
  """Each leaf with its rows `rows` set to row_values' leaf (padding rows dropped)."""
  return jax.tree.map(lambda leaf, values: leaf.at[rows].set(values.astype(leaf.dtype), mode="drop"),
                      tree, row_values)


def scale_by_lazy_adam(b1: float, b2: float, eps: float) -> optax.GradientTransformationExtraArgs:
  """optax.scale_by_adam on the rows `touched_rows` only (an extra argument of update).

  The updates are row gradients [k, ...] of the tables' rows touched_rows (int32 [k], ascending,
  padded with the row count); the moments are whole tables, of which only those rows change.
  The arithmetic is optax's own (its moment and bias-correction helpers), so with every row
  touched the result is scale_by_adam's.
  """
  def init(params):
    return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=optax.tree.zeros_like(params),
                                  nu=optax.tree.zeros_like(params))

  def update(updates, state, params=None, *, touched_rows, **extra_args):
    del params, extra_args
    mu = optax.tree.update_moment(updates, _gathered(state.mu, touched_rows), b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, _gathered(state.nu, touched_rows), b2, 2)
    count = numerics.safe_increment(state.count)
    mu_hat, nu_hat = optax.tree.bias_correction(mu, b1, count), optax.tree.bias_correction(nu, b2, count)
    updates = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu_hat, nu_hat)
    return updates, optax.ScaleByAdamState(count=count, mu=_scattered(state.mu, mu, touched_rows),
                                           nu=_scattered(state.nu, nu, touched_rows))

  return optax.GradientTransformationExtraArgs(init, update)


def add_lazy_decayed_weights(weight_decay: float, mask) -> optax.GradientTransformationExtraArgs:
  """optax.add_decayed_weights on the rows `touched_rows`: the row updates plus weight_decay times
  those rows of the parameters (leaves where mask(params) is False are left as they are)."""
  def update(updates, state, params=None, *, touched_rows, **extra_args):
    del extra_args
    decayed = jax.tree.map(lambda update, rows, decays: update + weight_decay * rows if decays else update,
                           updates, _gathered(params, touched_rows), mask(params))
    return decayed, state

  return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def lazy_adamw(learning_rate, *, b1: float, b2: float, eps: float, weight_decay: float,
               mask) -> optax.GradientTransformationExtraArgs:
  """AdamW (optax.adamw's order: Adam's scaling, the decoupled decay, the learning rate) on the
  touched rows of row tables; update(..., touched_rows=int32 [k]) returns their row updates."""
  return optax.chain(scale_by_lazy_adam(b1, b2, eps), add_lazy_decayed_weights(weight_decay, mask),
                     optax.scale_by_learning_rate(learning_rate))


def _embedding_updates(optim_config) -> str:
  """optim.embedding_updates. A workdir saved before the key existed has none: its tables were
  updated densely, so it restores and evaluates as "dense"."""
  return optim_config.get("embedding_updates", "dense")


def lazy_embeddings(optim_config) -> bool:
  """Whether optim.embedding_updates is "lazy"."""
  return _embedding_updates(optim_config) == "lazy"


def _embedding_transforms(optim_config, schedule) -> list[optax.GradientTransformation]:
  """The input layer's optimiser: the named one (dense), or lazy_adamw (lazy)."""
  if not lazy_embeddings(optim_config):
    return _transforms(optim_config, schedule)
  return [lazy_adamw(schedule, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps,
                     weight_decay=optim_config.weight_decay, mask=decay_mask)]


def check_embedding_updates(optim_config, model_config=None) -> str:
  """optim.embedding_updates, checked against the optimiser and the model; returns it."""
  mode = _embedding_updates(optim_config)
  if mode not in EMBEDDING_UPDATES:
    raise errors.ConfigError(f"config optim.embedding_updates={mode!r} is not known; choose one of "
                             f"{EMBEDDING_UPDATES}")
  if mode == "lazy" and optim_config.name != "adamw":
    raise errors.ConfigError(f"config optim.embedding_updates='lazy' is lazy AdamW; optim.name={optim_config.name!r} "
                             "has no lazy form: set optim.name='adamw' or optim.embedding_updates='dense'")
  if mode == "lazy" and model_config is not None and model_config.get("head") in ("softmax", "adaptive") \
      and model_config.tie_embeddings and model_config.get("input", "word") != "bag":
    raise errors.ConfigError("config optim.embedding_updates='lazy' updates only the table rows a batch reads, but "
                             f"the tied {model_config.head} head reads every row of model.input="
                             f"{model_config.get('input', 'word')!r}'s table at every step (lazy would be dense "
                             "AdamW at more cost): set optim.embedding_updates='dense', or model.input='bag' (its "
                             "n-gram buckets are then updated lazily)")
  return mode


def build_optimizer(optim_config, total_steps: int, model_config=None) -> optax.GradientTransformation:
  """The optimiser of `config.optim`; `config.model` adds the embeddings' treatment.

  model.freeze_embeddings: the input layer's tables get a zero update and no
  optimiser state (optax.multi_transform with set_to_zero), and their gradient
  does not count in the clipping norm. model.embedding_lr_multiplier: their
  learning rate is the schedule times it (clipping stays global).
  """
  name = optim_config.name
  if name not in OPTIMISERS:
    raise errors.ConfigError(f"config optim.name={name!r} is not known; choose one of {OPTIMISERS}")
  lazy = check_embedding_updates(optim_config, model_config) == "lazy"
  schedule = build_schedule(optim_config, total_steps)
  clip = [optax.clip_by_global_norm(optim_config.clip_norm)] if optim_config.clip_norm > 0 else []
  freeze = model_config is not None and model_config.freeze_embeddings
  multiplier = 1.0 if model_config is None else float(model_config.embedding_lr_multiplier)
  if model_config is not None and "encoder_lr_multiplier" in optim_config and (
      optim_config.encoder_lr_multiplier != 1.0 or optim_config.freeze_encoder_steps != 0):
    if freeze and multiplier != 1.0:
      raise errors.ConfigError("config model.freeze_embeddings=True contradicts model.embedding_lr_multiplier != 1")
    return _encoder_optimizer(optim_config, schedule, clip, model_config)
  if freeze and multiplier != 1.0:
    raise errors.ConfigError(f"config model.freeze_embeddings=True and model.embedding_lr_multiplier={multiplier} "
                             f"contradict each other: a frozen table has no learning rate; set one of them")
  if freeze:
    return optax.multi_transform({"embeddings": optax.set_to_zero(),
                                  "rest": optax.chain(*clip, *_transforms(optim_config, schedule))},
                                 embedding_labels)
  if multiplier != 1.0 or lazy:
    embedding_schedule = (lambda step: multiplier * schedule(step)) if multiplier != 1.0 else schedule
    return optax.chain(*clip, optax.multi_transform(
        {"embeddings": optax.chain(*_embedding_transforms(optim_config, embedding_schedule)),
         "rest": optax.chain(*_transforms(optim_config, schedule))}, embedding_labels))
  return optax.chain(*clip, *_transforms(optim_config, schedule))


def restarted_state(optimizer: optax.GradientTransformation, params, step):
  """A new optimiser state for `params` restored at `step` (an allowed change to the optimiser
  made the saved state unusable): moments start at zero with bias correction from the first
  update, as in a new run, while every learning-rate schedule goes on from `step`.

  Schedules keep their own step count (optax's ScaleByScheduleState); setting it to `step` keeps
  the learning rate where the uninterrupted run's would be, rather than warming up again.
  """
  state = optimizer.init(params)
  is_schedule = lambda node: isinstance(node, optax.ScaleByScheduleState)
  return jax.tree.map(lambda node: node._replace(count=jnp.full_like(node.count, step)) if is_schedule(node)
                      else node, state, is_leaf=is_schedule)
