"""The tagging head: tag logits [batch, length, tags] at every position, and their loss."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlm.models.heads import classification, softmax


class TaggingHead(nn.Module):
  reads_input_table = False  # evaluation may read the input layer through a packed view
  num_tags: int
  hidden_size: int = 0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, states, *, input_layer, train: bool, mask=None):
    del input_layer, mask  # padded positions get logits too; their weight is 0
    return classification.Classifier(self.num_tags, self.hidden_size, self.dropout, self.dtype, name="classifier")(
        states, train=train)  # [batch, length, tags]


def loss(logits, tags, weights):
  """logits float32 [batch, length, tags]; tags int [batch, length]; weights [batch, length] -> sums."""
  return softmax.cross_entropy(logits, tags, weights)
