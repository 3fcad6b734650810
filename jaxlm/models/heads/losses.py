"""Losses as sums plus counts, so averages stay exact over padding, devices and steps.

A loss is `loss_fn(outputs, targets, weights) -> dict` of float32 sums:
  loss_sum  sum over positions of weight * loss    (the gradient is of loss_sum / count)
  count     sum of weights (the number of real target tokens)
Extra keys are summed and reported the same way. Pick one by name from LOSSES.
Top-1/top-5 accuracy is not part of the loss: `jaxlm.models.heads.decoding.accuracy_sums` computes it
at evaluation for every head, so the training step does not pay for an argmax over the
vocabulary (on a CPU that pass costs about as much as the softmax itself).

Softmax heads hand the loss float32 logits [batch, length, vocab]; the adaptive softmax
head hands it the dict described in jaxlm.models.heads.adaptive_softmax. Embedding heads hand it
{"vectors": predicted [batch, length, dim], "target_table": fixed [vocab, dim]}, both
float32; the loss gathers each target word's vector from the table and never sends a
gradient into it.
"""

import jax
import jax.numpy as jnp

from jaxlm.models.heads import adaptive_softmax, vmf
from jaxlm import errors


def softmax_cross_entropy(logits, targets, weights):
  """logits [batch, length, vocab] float32; targets [batch, length] int; weights [batch, length]."""
  logits = logits.astype(jnp.float32)
  log_normaliser = jax.nn.logsumexp(logits, axis=-1)  # [batch, length]
  target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  weights = weights.astype(jnp.float32)
  return {
      "loss_sum": jnp.sum(weights * (log_normaliser - target_logits)),
      "count": jnp.sum(weights),
  }


def _norm(vectors):
  """Euclidean norm over the last axis, [..., dim] -> [..., 1].

  Clamped below at 1e-8 inside the square root, so a zero vector (an untrained output, or a
  padding word's empty target) gives finite values and a zero gradient instead of NaN.
  """
  return jnp.sqrt(jnp.maximum(jnp.sum(vectors * vectors, axis=-1, keepdims=True), 1e-16))


def _predicted_and_target(outputs, targets):
  """-> predicted [batch, length, dim] and unit-length target vectors [batch, length, dim]."""
  table = jax.lax.stop_gradient(outputs["target_table"].astype(jnp.float32))  # [vocab, dim]
  target = table[targets]
  return outputs["vectors"].astype(jnp.float32), target / _norm(target)


def _sums(losses, weights):
  weights = weights.astype(jnp.float32)
  return {"loss_sum": jnp.sum(weights * losses), "count": jnp.sum(weights)}


def cosine_distance(outputs, targets, weights):
  """1 - cos(predicted, target): only the direction of the prediction is trained."""
  predicted, target = _predicted_and_target(outputs, targets)
  cosine = jnp.sum(predicted / _norm(predicted) * target, axis=-1)  # [batch, length]
  return _sums(1.0 - cosine, weights)


def squared_l2(outputs, targets, weights):
  """||predicted - target / ||target|| ||^2.

  The target is unit-normalised, as for the cosine and vMF losses: FastText norms grow with
  word frequency, and the nearest-neighbour decoder ranks by cosine, so the norm of a target
  carries nothing the decoder uses. The prediction is not normalised; if it were, this
  would be 2 * the cosine loss.
  """
  predicted, target = _predicted_and_target(outputs, targets)
  return _sums(jnp.sum((predicted - target) ** 2, axis=-1), weights)


def vmf_negative_log_likelihood(outputs, targets, weights, *, lambda1: float = 0.0,
                                lambda2: float = 1.0):
  """-log C_m(||e_hat||) - lambda2 * e_hat . e + lambda1 * ||e_hat||, e the unit target.

  The von Mises-Fisher NLL of Kumar & Tsvetkov (ICLR 2019), whose mean direction and
  concentration are the direction and norm of the predicted e_hat. The defaults are their
  plain NLLvMF; their two regularised variants are lambda1 > 0 (they use 0.02), which
  penalises the norm, and lambda2 < 1 (they use 0.1), which scales down the cosine term.
  """
  predicted, target = _predicted_and_target(outputs, targets)
  kappa = _norm(predicted)[..., 0]  # [batch, length]
  log_normaliser = vmf.log_normaliser(kappa, predicted.shape[-1])
  losses = -log_normaliser - lambda2 * jnp.sum(predicted * target, axis=-1) + lambda1 * kappa
  return _sums(losses, weights)


# Keyed by config.model.head. "vmf" takes its regulariser weights as keyword arguments.
LOSSES = {
    "softmax": softmax_cross_entropy,
    # Takes the tail clusters' gathering capacities as a keyword argument.
    "adaptive": adaptive_softmax.cross_entropy,
    "cosine": cosine_distance,
    "l2": squared_l2,
    "vmf": vmf_negative_log_likelihood,
}


def get_loss(name: str):
  if name not in LOSSES:
    raise errors.ConfigError(f"config model.head={name!r} has no loss; choose one of {sorted(LOSSES)}")
  return LOSSES[name]
