"""Input layers: map token ids [batch, length] to vectors [batch, length, width].

Every input layer also has, for sparse embedding updates (jaxlm.training.sparse_rows),
`host_view(frozen, token_ids)`: on the host (numpy), from a global batch's tokens, the arrays that
describe its view, always with "rows", the table rows the tokens read (int32 [capacity], ascending,
padded with the table's row count), and `sparse_view(variables, token_ids, arrays)`: on the device,
the layer cut down to those rows, for this device's tokens. The SparseView's module applied to its
variables and token_ids gives the vectors the full layer gives, and the gradient of the view's
table is the full table's gradient at `rows`: the rows no token reads get none.

Both take keep_output_rows: a tied language-model head scores every word with the layer's word
rows (`output_rows`), so its view keeps all of them, first and in word order, whatever the batch
reads; the view's `output_rows` and `attend` are then the layer's.
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


MIN_CAPACITY = 1024


def capacity(needed: int, limit: int, minimum: int = MIN_CAPACITY) -> int:
  """A view's padded size: a power of two (so few distinct shapes compile) of at least `needed`
  (and `minimum`), at most `limit`."""
  return min(1 << (max(needed, minimum) - 1).bit_length(), limit)


def padded(values: np.ndarray, size: int, fill) -> np.ndarray:
  """int32 [size]: `values` then `fill`."""
  return np.concatenate([values, np.full(size - values.size, fill)]).astype(np.int32)


def tied_logits(hidden, rows, dtype):
  """hidden [batch, length, width] scored against a table's word rows [vocab, width] in `dtype`
  -> float32 logits [batch, length, vocab]: a tied output layer's projection."""
  return jnp.einsum("blw,vw->blv", hidden.astype(dtype), rows.astype(dtype), preferred_element_type=jnp.float32)


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
    return tied_logits(hidden, self.output_rows(), self.dtype)

  def num_rows(self) -> int:
    """The table's rows (a view's rows are padded with this number)."""
    return self.vocab_size

  def rows_read(self, frozen: dict, token_ids: np.ndarray) -> np.ndarray:
    """The batch's words, ascending (a word's row is its id)."""
    del frozen
    return np.unique(token_ids)

  def host_view(self, frozen: dict, token_ids: np.ndarray, *, keep_output_rows: bool = False) -> dict:
    """{"rows": int32 [capacity]}: the global batch's words, padded with the row count; with
    keep_output_rows every word, unpadded (the view is the table: lazy updates are then dense)."""
    if keep_output_rows:
      return {"rows": np.arange(self.num_rows(), dtype=np.int32)}
    read = self.rows_read(frozen, token_ids)
    return {"rows": padded(read, capacity(read.size, self.num_rows() + 1), self.num_rows())}

  def sparse_view(self, variables: dict, token_ids, arrays: dict, *, keep_output_rows: bool = False) -> SparseView:
    """The view of host_view's `arrays` (the module docstring); token_ids int [batch, length]. The
    view of every row (keep_output_rows) scores words as the layer does."""
    del keep_output_rows  # the view's rows are then the table's, so its output_rows are too
    rows = arrays["rows"]
    local_ids = jnp.searchsorted(rows, token_ids).astype(jnp.int32)
    return SparseView(self.clone(vocab_size=rows.size, parent=None),
                      {"params": {"table": gather_rows(variables["params"]["table"], rows)}}, local_ids, rows)
