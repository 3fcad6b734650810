"""The span head of extractive QA: start and end logits [batch, 2, length], and their loss.

Padding positions get MASKED_LOGIT, so no loss or argmax ever picks them.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlm.models.heads import classification, softmax

# Padding positions' span logit: far below any real one, yet finite, so a weight-0 padding
# row (every position masked) gives a finite cross-entropy, not -inf - -inf = NaN.
MASKED_LOGIT = -1e9


class SpanHead(nn.Module):
  """Two logits per position (answer start, answer end) for extractive QA."""
  reads_input_table = False  # evaluation may read the input layer through a packed view
  hidden_size: int = 0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, states, *, input_layer, train: bool, mask=None):
    del input_layer
    logits = classification.Classifier(2, self.hidden_size, self.dropout, self.dtype, name="classifier")(
        states, train=train)  # [batch, length, 2]
    logits = jnp.swapaxes(logits, 1, 2)  # [batch, 2, length]
    if mask is not None:
      logits = jnp.where(mask[:, None, :], logits, MASKED_LOGIT)
    return logits


def loss(logits, start_positions, end_positions, weights):
  """Per window, the mean of its start and end cross-entropies, as sums; count = real windows.

  logits float32 [batch, 2, length]; start/end_positions int [batch]; weights [batch].
  """
  targets = jnp.stack([start_positions, end_positions], axis=-1)  # [batch, 2]
  negative_log_likelihoods = softmax.negative_log_likelihoods(logits, targets)  # [batch, 2]
  weights = weights.astype(jnp.float32)
  return {"loss_sum": jnp.sum(weights * jnp.mean(negative_log_likelihoods, axis=-1)), "count": jnp.sum(weights)}
