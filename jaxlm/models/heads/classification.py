"""The classification head: pool each row's states to one vector, then class logits.

Called like every head, `head(states [batch, length, width], *, input_layer, train, mask)`,
with `mask` bool [batch, length] True at real tokens (right-padded rows). Pools over the
real tokens (their mean, the first token, or the last real token's state), then an optional
hidden layer, then logits [batch, classes]; its loss is softmax.cross_entropy over classes.
`Classifier`, the hidden layer and output, is shared by the tagging and span heads. Every
task head starts from small weights (GPT-2's init), so a fresh head predicts near-uniformly.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlm import errors
from jaxlm.models import layers
from jaxlm.models.heads import softmax

POOLINGS = ("mean", "first", "last")


def pool(states, mask, pooling: str):
  """[batch, length, width] -> [batch, width] over each row's real tokens."""
  if pooling == "first":
    return states[:, 0]
  if pooling == "last":
    last = jnp.maximum(jnp.sum(mask, axis=-1) - 1, 0)  # [batch]: each row's last real position
    return jnp.take_along_axis(states, last[:, None, None], axis=1)[:, 0]
  if pooling == "mean":
    weights = mask.astype(states.dtype)[..., None]
    return jnp.sum(states * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
  raise errors.ConfigError(f"config task.pooling={pooling!r}: choose one of {list(POOLINGS)}")


class Classifier(nn.Module):
  """An optional ReLU hidden layer with dropout, then the logits."""
  num_outputs: int
  hidden_size: int = 0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = layers.Dropout(self.dropout)(x, deterministic=not train)
    if self.hidden_size:
      x = nn.relu(nn.Dense(self.hidden_size, dtype=self.dtype, kernel_init=layers.gpt2_init(), name="hidden")(x))
      x = layers.Dropout(self.dropout)(x, deterministic=not train)
    return nn.Dense(self.num_outputs, dtype=self.dtype, kernel_init=layers.gpt2_init(),
                    name="output")(x).astype(jnp.float32)


class ClassificationHead(nn.Module):
  reads_input_table = False  # evaluation may read the input layer through a packed view
  num_classes: int
  pooling: str = "mean"
  hidden_size: int = 0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, states, *, input_layer, train: bool, mask=None):
    del input_layer
    if mask is None:
      mask = jnp.ones(states.shape[:2], bool)
    pooled = pool(states.astype(jnp.float32), mask, self.pooling)
    return Classifier(self.num_classes, self.hidden_size, self.dropout, self.dtype, name="classifier")(
        pooled, train=train)  # [batch, classes]


def loss(logits, labels, weights):
  """logits float32 [batch, classes]; labels int [batch]; weights [batch] (0 = padding row) -> sums."""
  return softmax.cross_entropy(logits, labels, weights)
