"""FastText-style input layer: a word is the mean of its own row and its n-gram rows.

The per-word row ids are data, not parameters: they live in the "frozen" variable
collection, so checkpoints keep them and the optimiser never sees them. They are
computed once by `jaxlm.data.subwords.subword_ids` (or with a FastText model by
`jaxlm.data.fasttext_vectors.bag_initialisation`) and installed after `init` with
`install_input_variables`. Until then each word's bag is its own row alone, so a
freshly initialised bag behaves exactly like a word table.

The ids' padded width (`subword_width`) is a module field, decided from the
vocabulary before `init` (jaxlm.starts.fasttext_rows.subword_width), so the state built by
`init` and the Orbax restore target built by `eval_shape` have the same shapes.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxlm import errors
from jaxlm.models import embeddings, layers

FROZEN = "frozen"


class EmbeddingBag(nn.Module):
  """Table of [vocab + bucket, width]: word rows first, then hashed n-gram buckets.

  `attend` reuses the word rows as a tied output projection (the n-gram rows are
  input-only, as in fastText). `bucket` must equal the bucket the ids were hashed
  with; fastText's default is 2,000,000, but small configs should shrink it.
  `subword_width` is the padded number of rows per word (own row + n-grams).
  """
  vocab_size: int
  width: int
  dtype: Any = jnp.float32
  bucket: int = 2_000_000
  subword_width: int = 1

  def setup(self):
    self.table = self.param("table", layers.gpt2_init(),
                            (self.vocab_size + self.bucket, self.width), jnp.float32)
    # Placeholder bag: word i -> row i only, padded to subword_width. Replaced by the
    # real subword ids after init (same shapes).
    shape = (self.vocab_size, self.subword_width)
    first = jnp.arange(self.subword_width) == 0  # [subword_width]
    self.ngram_ids = self.variable(
        FROZEN, "ngram_ids",
        lambda: jnp.where(first, jnp.arange(self.vocab_size, dtype=jnp.int32)[:, None], 0))
    self.ngram_mask = self.variable(FROZEN, "ngram_mask",
                                    lambda: jnp.broadcast_to(first, shape))

  def __call__(self, token_ids, *, train: bool):
    del train
    ids = jnp.take(self.ngram_ids.value, token_ids, axis=0)  # [batch, length, max_ids]
    mask = jnp.take(self.ngram_mask.value, token_ids, axis=0)  # [batch, length, max_ids]
    # Masked mean; a word with no rows at all (fastText's empty OOV) gets the zero vector.
    weights = mask / jnp.maximum(mask.sum(-1, keepdims=True), 1)  # float32 [batch, length, max_ids]
    rows = jnp.take(self.table, ids, axis=0)  # [batch, length, max_ids, width]
    return jnp.einsum("blk,blkw->blw", weights, rows).astype(self.dtype)  # [batch, length, width]

  def output_rows(self):
    """float32 [vocab, width]: the word rows (not the n-gram buckets) a tied output scores."""
    return self.table[:self.vocab_size]

  def attend(self, hidden):
    """[batch, length, width] -> float32 logits [batch, length, vocab] over the word rows."""
    return jnp.einsum("blw,vw->blv", hidden.astype(self.dtype), self.output_rows().astype(self.dtype),
                      preferred_element_type=jnp.float32)

  def num_rows(self) -> int:
    """The table's rows: the words', then the buckets (a view's rows are padded with this number)."""
    return self.vocab_size + self.bucket

  def rows_read(self, frozen: dict, token_ids: np.ndarray) -> np.ndarray:
    """The rows the bags of the batch's words read, ascending; frozen: this layer's numpy ids and mask."""
    words = np.unique(token_ids)
    return np.unique(frozen["ngram_ids"][words][frozen["ngram_mask"][words]])

  def sparse_view(self, variables: dict, token_ids, rows) -> embeddings.SparseView:
    """The view of `rows` (rows_read's, padded; jaxlm.models.embeddings); token_ids int [batch, length].

    The view's words are the batch's words, so its ngram_ids are [tokens, subword_width] and point
    into its table of rows.size rows: a bag of `tokens` words and the rest as buckets (rows.size
    is at least the tokens: jaxlm.training.sparse_rows.capacity).
    """
    words, local_ids = embeddings.batch_words(token_ids, self.vocab_size)
    ngram_ids = embeddings.gather_rows(variables[FROZEN]["ngram_ids"], words)  # [tokens, subword_width]
    ngram_mask = embeddings.gather_rows(variables[FROZEN]["ngram_mask"], words)  # padding words read nothing
    # A masked entry's id is never weighed in; any row inside the view keeps the gather in range.
    view_ids = jnp.minimum(jnp.searchsorted(rows, ngram_ids), rows.size - 1).astype(jnp.int32)
    table = embeddings.gather_rows(variables["params"]["table"], rows)
    module = self.clone(vocab_size=words.size, bucket=rows.size - words.size, parent=None)
    return embeddings.SparseView(module, {"params": {"table": table},
                                          FROZEN: {"ngram_ids": view_ids, "ngram_mask": ngram_mask}}, local_ids, rows)


def install_input_variables(variables: dict, input_variables: dict, *,
                            scope: str = "input_layer") -> dict:
  """Returns `variables` with the input layer's arrays replaced by `input_variables`.

  `input_variables` is {collection: {name: array}} for the module at `scope`, e.g.
  {"params": {"table": ...}, "frozen": {"ngram_ids": ..., "ngram_mask": ...}}.
  A parameter must keep its shape (the optimiser state is built from it); frozen ids
  may change their padded width. Nothing else in `variables` is touched.
  """
  updated = {collection: dict(tree) for collection, tree in variables.items()}
  for collection, arrays in input_variables.items():
    if collection not in updated or scope not in updated[collection]:
      raise ValueError(f"variables have no {collection}/{scope}; is the input layer the right kind?")
    module = dict(updated[collection][scope])
    for name, array in arrays.items():
      if name not in module:
        raise ValueError(f"{collection}/{scope} has no {name!r}; it has {sorted(module)}")
      old = module[name]
      if collection == "params" and tuple(np.shape(array)) != tuple(old.shape):
        raise errors.ConfigError(f"{collection}/{scope}/{name}: initial array has shape {np.shape(array)}, "
                                 f"the model has {old.shape}; check model.width, model.bucket and the vocabulary")
      module[name] = jnp.asarray(array, dtype=old.dtype)
    updated[collection][scope] = module
  return updated
