"""Input layers: map token ids [batch, length] to vectors [batch, length, width]."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlm.models import layers


class WordEmbedding(nn.Module):
  """A plain word table. `attend` reuses it as a tied output projection."""
  vocab_size: int
  width: int
  dtype: Any = jnp.float32

  def setup(self):
    self.table = self.param("table", layers.gpt2_init(), (self.vocab_size, self.width), jnp.float32)

  def __call__(self, token_ids, *, train: bool):
    del train
    return jnp.take(self.table, token_ids, axis=0).astype(self.dtype)  # [batch, length, width]

  def output_rows(self):
    """float32 [vocab, width]: the rows a tied output layer scores words with."""
    return self.table

  def attend(self, hidden):
    """[batch, length, width] -> float32 logits [batch, length, vocab]."""
    return jnp.einsum("blw,vw->blv", hidden.astype(self.dtype), self.output_rows().astype(self.dtype),
                      preferred_element_type=jnp.float32)
