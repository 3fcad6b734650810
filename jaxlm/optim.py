"""Optimisers and learning-rate schedules from `config.optim` (optax).

The transform is built once, outside the train step, and is a pure function of
the config, the step count and the parameter tree's structure.
"""

import jax
import optax

SCHEDULES = ("constant", "cosine", "linear", "rsqrt")
OPTIMISERS = ("adamw", "adam_l2", "sgd")


def build_schedule(optim_config, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 to `lr`, then the named decay until `total_steps`.

  cosine/linear decay to `lr * final_lr_fraction`; rsqrt decays as
  lr * sqrt(warmup / step) after warmup; constant holds `lr`.
  """
  lr, warmup = optim_config.lr, optim_config.warmup_steps
  name = optim_config.schedule
  if name not in SCHEDULES:
    raise ValueError(f"config optim.schedule={name!r} is not known; choose one of {SCHEDULES}")
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


def build_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
  name = optim_config.name
  if name not in OPTIMISERS:
    raise ValueError(f"config optim.name={name!r} is not known; choose one of {OPTIMISERS}")
  schedule = build_schedule(optim_config, total_steps)
  parts = []
  if optim_config.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(optim_config.clip_norm))
  if name == "adamw":
    parts.append(optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps,
                             weight_decay=optim_config.weight_decay, mask=decay_mask))
  elif name == "adam_l2":
    # Classic Adam with an L2 penalty: the decay is added to the gradient before
    # the adaptive scaling (unlike AdamW's decoupled decay).
    parts += [optax.add_decayed_weights(optim_config.weight_decay, mask=decay_mask),
              optax.scale_by_adam(b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps),
              optax.scale_by_learning_rate(schedule)]
  else:
    parts += [optax.add_decayed_weights(optim_config.weight_decay, mask=decay_mask),
              optax.sgd(schedule, momentum=optim_config.momentum or None)]
  return optax.chain(*parts)
