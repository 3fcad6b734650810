"""The embedding heads: predict a vector in a fixed word-embedding space instead of logits.

For the cosine, L2 and von Mises-Fisher losses (Kumar & Tsvetkov, 2019): one module,
`EmbeddingHead`, returns {"vectors": predicted [batch, length, dim], "target_table": fixed
[vocab, dim]}, both float32; each loss gathers the target word's vector from the table and
never sends a gradient into it. Words are ranked by the cosine of their target vectors
(jaxlm.models.heads.ranking); generation scores a vMF head by the unnormalised product,
whose norm is the distribution's concentration, and the others by the cosine.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlm.models import layers
from jaxlm.models.heads import contract, ranking, vmf


class EmbeddingHead(nn.Module):
  """Predicts a vector in a fixed word-embedding space instead of logits over words.

  The output layer costs width x target_dim rather than width x vocab, and no logits exist. Returns
  {"vectors": [batch, length, target_dim], "target_table": [vocab, target_dim]}, float32.

  The table of target vectors (FastText) lives in the "frozen" variable collection: the
  trainer passes it through `apply` and never optimises it; a loader fills it, and until
  then it is zeros. The head knows nothing about the objective, so any loss or decoder
  that reads (vectors, table) can use it, causal or masked.

  `embedding_width` and `tie_embeddings` are accepted so every head is built from the
  same fields, and ignored: there is no vocabulary-sized output weight to tie.
  """
  vocab_size: int
  embedding_width: int
  tie_embeddings: bool = True
  dtype: Any = jnp.float32
  target_dim: int = 300
  reads_input_table = False  # its targets are the frozen target table, not the input layer's rows

  @nn.compact
  def __call__(self, hidden, *, input_layer, train: bool, mask=None):
    del input_layer, train, mask  # every position is scored; the loss's weights drop padding
    table = self.variable("frozen", "target_table", jnp.zeros,
                          (self.vocab_size, self.target_dim), jnp.float32)
    vectors = nn.Dense(self.target_dim, dtype=self.dtype, kernel_init=layers.gpt2_init(),
                       name="output")(hidden)
    return {"vectors": vectors.astype(jnp.float32), "target_table": table.value}


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


def _next_token_scores(outputs, *, normalise_prediction: bool):
  """Outputs at one position -> float32 [batch, vocab]: each word's target direction against the prediction."""
  vectors = outputs["vectors"].astype(jnp.float32)  # [batch, 1, dim]
  targets = ranking.unit(outputs["target_table"].astype(jnp.float32))  # [vocab, dim]
  if normalise_prediction:
    vectors = ranking.unit(vectors)
  scores = jnp.einsum("bld,vd->blv", vectors, targets, precision=jax.lax.Precision.HIGHEST)
  return scores[:, 0].astype(jnp.float32)


def _at_position(outputs, index):
  return {**outputs, "vectors": jax.lax.dynamic_slice_in_dim(outputs["vectors"], index, 1, axis=1)}


def _head(loss, *, normalise_prediction: bool = True) -> contract.LanguageModelHead:
  return contract.LanguageModelHead(
      module=EmbeddingHead,
      fields=lambda model_config: {"target_dim": model_config.target_dim},
      loss=loss,
      target_ranks=lambda outputs, targets, *, chunk_size: ranking.ranks_by_cosine(
          outputs["vectors"], outputs["target_table"], targets, chunk_size=chunk_size),
      top_words=lambda outputs, *, k, chunk_size: ranking.nearest_neighbours(
          outputs["vectors"], outputs["target_table"], k=k, chunk_size=chunk_size)[1],
      next_token_scores=functools.partial(_next_token_scores, normalise_prediction=normalise_prediction),
      at_position=_at_position,
  )


COSINE = _head(lambda model_config: cosine_distance)
L2 = _head(lambda model_config: squared_l2)
# The vMF regulariser weights (model.vmf_lambda1, vmf_lambda2) are bound from the config.
VMF = _head(lambda model_config: functools.partial(vmf_negative_log_likelihood, lambda1=model_config.vmf_lambda1,
                                                   lambda2=model_config.vmf_lambda2),
            normalise_prediction=False)
