"""Output heads: map body states [batch, length, width] to what the loss reads."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlm.models import layers


class SoftmaxHead(nn.Module):
  """Logits over the word vocabulary, float32 whatever the compute dtype.

  With `tie_embeddings` the input layer's table is reused (Press & Wolf, 2017);
  a bias-free projection bridges a body width that differs from the table width.
  """
  vocab_size: int
  embedding_width: int
  tie_embeddings: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, hidden, *, input_layer, train: bool):
    del train
    if not self.tie_embeddings:
      return nn.Dense(self.vocab_size, dtype=self.dtype, kernel_init=layers.gpt2_init(),
                      name="output")(hidden).astype(jnp.float32)
    if hidden.shape[-1] != self.embedding_width:
      hidden = nn.Dense(self.embedding_width, use_bias=False, dtype=self.dtype,
                        kernel_init=layers.gpt2_init(), name="to_embedding")(hidden)
    bias = self.param("bias", nn.initializers.zeros, (self.vocab_size,), jnp.float32)
    return input_layer.attend(hidden) + bias  # [batch, length, vocab]
