"""Heads of the fine-tuning tasks: body states -> class, tag or span logits (float32).

Called like every head, `head(states [batch, length, width], *, input_layer, train, mask)`,
with `mask` bool [batch, length] True at real tokens (right-padded rows).
  ClassificationHead  pools each row to one vector (mean over real tokens, the first
                      token, or the last real token's state), then an optional hidden
                      layer, then logits [batch, classes];
  TaggingHead         logits [batch, length, tags] at every position;
  SpanHead            extractive QA: start and end logits [batch, 2, length], padding
                      positions at MASKED_LOGIT so no loss or argmax ever picks them.
All start from small weights (GPT-2's init), so a fresh head predicts near-uniformly.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlm import errors
from jaxlm.models import layers

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


class _Classifier(nn.Module):
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
    return _Classifier(self.num_classes, self.hidden_size, self.dropout, self.dtype, name="classifier")(
        pooled, train=train)  # [batch, classes]


class TaggingHead(nn.Module):
  num_tags: int
  hidden_size: int = 0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, states, *, input_layer, train: bool, mask=None):
    del input_layer, mask  # padded positions get logits too; their weight is 0
    return _Classifier(self.num_tags, self.hidden_size, self.dropout, self.dtype, name="classifier")(
        states, train=train)  # [batch, length, tags]


# Padding positions' span logit: far below any real one, yet finite, so a weight-0 padding
# row (every position masked) gives a finite cross-entropy, not -inf - -inf = NaN.
MASKED_LOGIT = -1e9


class SpanHead(nn.Module):
  """Two logits per position (answer start, answer end) for extractive QA."""
  hidden_size: int = 0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, states, *, input_layer, train: bool, mask=None):
    del input_layer
    logits = _Classifier(2, self.hidden_size, self.dropout, self.dtype, name="classifier")(
        states, train=train)  # [batch, length, 2]
    logits = jnp.swapaxes(logits, 1, 2)  # [batch, 2, length]
    if mask is not None:
      logits = jnp.where(mask[:, None, :], logits, MASKED_LOGIT)
    return logits
