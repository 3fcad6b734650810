"""Input layers: map token ids [batch, length] to vectors [batch, length, width].

Every input layer also has, for sparse embedding updates (jaxlm.training.sparse_rows),
`rows_read(frozen, token_ids)`: on the host (numpy), the table rows a batch's tokens read, and
`sparse_view(variables, token_ids, rows)`: the same layer cut down to those rows (int32 [k],
ascending, padded with the table's row count). The SparseView's module applied to its variables
and token_ids gives the vectors the full layer gives, and the gradient of the view's table is the
full table's gradient at `rows`: the rows no token reads get none.
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlm.models import layers


class SparseView(NamedTuple):
  module: nn.Module  # the same layer sized to the view (a table of `capacity` rows)
  variables: dict  # the layer's {"params": {"table": [capacity, width]}, ...}: rows of the full table
  token_ids: jax.Array  # int32 [batch, length]: the tokens as the view's ids (their rank among the batch's words)
  rows: jax.Array  # int32 [capacity]: the full table's rows, ascending, then the row count (none) as padding


def batch_words(token_ids, vocab_size: int):
  """(words int32 [tokens]: the batch's word ids ascending, padded with vocab_size; token_ids as indices into it)."""
  words = jnp.unique(token_ids.reshape(-1), size=token_ids.size, fill_value=vocab_size)
  return words, jnp.searchsorted(words, token_ids).astype(jnp.int32)


def gather_rows(table, rows):
  """table [num_rows, ...] at rows [k] (num_rows: a padding row of zeros) -> [k, ...]."""
  return jnp.asarray(table).at[rows].get(mode="fill", fill_value=0)


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

  def num_rows(self) -> int:
    """The table's rows (a view's rows are padded with this number)."""
    return self.vocab_size

  def rows_read(self, frozen: dict, token_ids: np.ndarray) -> np.ndarray:
    """The batch's words, ascending (a word's row is its id)."""
    del frozen
    return np.unique(token_ids)

  def sparse_view(self, variables: dict, token_ids, rows) -> SparseView:
    """The view of `rows` (rows_read's, padded; the module docstring); token_ids int [batch, length]."""
    local_ids = jnp.searchsorted(rows, token_ids).astype(jnp.int32)
    return SparseView(self.clone(vocab_size=rows.size, parent=None),
                      {"params": {"table": gather_rows(variables["params"]["table"], rows)}}, local_ids, rows)
