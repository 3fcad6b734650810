"""The softmax head: logits over the word vocabulary, its cross-entropy and its ranks.

`cross_entropy` is also the one cross-entropy of the fine-tuning heads (classes, tags,
span positions): every caller hands it logits [..., classes] with targets and weights [...].
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlm.models import layers
from jaxlm.models.heads import contract, ranking


def to_embedding_width(hidden, embedding_width: int, dtype):
  """A tied head's bridge: a bias-free projection when the body width differs from the table's.

  Called inside a head's compact __call__, so the Dense is that head's "to_embedding".
  """
  if hidden.shape[-1] == embedding_width:
    return hidden
  return nn.Dense(embedding_width, use_bias=False, dtype=dtype, kernel_init=layers.gpt2_init(),
                  name="to_embedding")(hidden)


class SoftmaxHead(nn.Module):
  """Logits over the word vocabulary, float32 whatever the compute dtype.

  With `tie_embeddings` the input layer's table is reused (Press & Wolf, 2017);
  a bias-free projection bridges a body width that differs from the table width.
  `output_bias=False` leaves out the per-word bias (GPT-2 has none).
  """
  vocab_size: int
  embedding_width: int
  tie_embeddings: bool = True
  dtype: Any = jnp.float32
  output_bias: bool = True

  @property
  def reads_input_table(self) -> bool:
    """Tied, it scores every word with the input layer's rows (a lazy step's view keeps them all)."""
    return self.tie_embeddings

  @nn.compact
  def __call__(self, hidden, *, input_layer, train: bool, mask=None):
    del train, mask  # every position is scored; the loss's weights drop padding
    if not self.tie_embeddings:
      return nn.Dense(self.vocab_size, use_bias=self.output_bias, dtype=self.dtype,
                      kernel_init=layers.gpt2_init(), name="output")(hidden).astype(jnp.float32)
    hidden = to_embedding_width(hidden, self.embedding_width, self.dtype)
    logits = input_layer.attend(hidden)  # [batch, length, vocab]
    if not self.output_bias:
      return logits
    return logits + self.param("bias", nn.initializers.zeros, (self.vocab_size,), jnp.float32)


def negative_log_likelihoods(logits, targets):
  """logits float [..., classes], targets int [...] -> float32 [...]: -log softmax(logits)[target]."""
  logits = logits.astype(jnp.float32)
  target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return jax.nn.logsumexp(logits, axis=-1) - target_logits


def cross_entropy(logits, targets, weights):
  """logits [..., classes] float32; targets [...] int; weights [...] -> {"loss_sum", "count"}."""
  weights = weights.astype(jnp.float32)
  return {
      "loss_sum": jnp.sum(weights * negative_log_likelihoods(logits, targets)),
      "count": jnp.sum(weights),
  }


HEAD = contract.LanguageModelHead(
    module=SoftmaxHead,
    fields=lambda model_config: {"output_bias": model_config.output_bias},
    loss=lambda model_config: cross_entropy,
    target_ranks=lambda logits, targets, *, chunk_size: ranking.ranks_by_scores(logits, targets),
    top_words=lambda logits, *, k, chunk_size: ranking.top_by_scores(logits, k=k),
    next_token_scores=lambda logits: logits[:, 0].astype(jnp.float32),
    at_position=lambda logits, index: jax.lax.dynamic_slice_in_dim(logits, index, 1, axis=1),
)
