"""Losses as sums plus counts, so averages stay exact over padding, devices and steps.

A loss is `loss_fn(outputs, targets, weights) -> dict` of float32 sums:
  loss_sum  sum over positions of weight * loss    (the gradient is of loss_sum / count)
  count     sum of weights (the number of real target tokens)
  correct   sum of weights where the top-1 prediction is the target
Extra keys are summed and reported the same way. Pick one by name from LOSSES.
"""

import jax
import jax.numpy as jnp


def softmax_cross_entropy(logits, targets, weights):
  """logits [batch, length, vocab] float32; targets [batch, length] int; weights [batch, length]."""
  logits = logits.astype(jnp.float32)
  log_normaliser = jax.nn.logsumexp(logits, axis=-1)  # [batch, length]
  target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  weights = weights.astype(jnp.float32)
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  return {
      "loss_sum": jnp.sum(weights * (log_normaliser - target_logits)),
      "count": jnp.sum(weights),
      "correct": jnp.sum(weights * correct),
  }


LOSSES = {
    "softmax": softmax_cross_entropy,
}


def get_loss(name: str):
  if name not in LOSSES:
    raise ValueError(f"config model.head={name!r} has no loss; choose one of {sorted(LOSSES)}")
  return LOSSES[name]
