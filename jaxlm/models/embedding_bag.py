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
import jax
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
  packs_bags = True  # host_view lists a batch's (word, row) pairs: worth it for evaluation too

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
    return embeddings.tied_logits(hidden, self.output_rows(), self.dtype)

  def num_rows(self) -> int:
    """The table's rows: the words', then the buckets (a view's rows are padded with this number)."""
    return self.vocab_size + self.bucket

  def rows_read(self, frozen: dict, token_ids: np.ndarray) -> np.ndarray:
    """The rows the bags of the batch's words read, ascending; frozen: this layer's numpy ids and mask."""
    words = np.unique(token_ids)
    return np.unique(frozen["ngram_ids"][words][frozen["ngram_mask"][words]])

  def host_view(self, frozen: dict, token_ids: np.ndarray, *, keep_output_rows: bool = False) -> dict:
    """The view of a global batch's bags, packed (frozen: this layer's numpy ids and mask).

    A bag is 22 rows on average for Russian words but its padded width is the longest word's (91
    for RuCoLA's vocabulary), so the view lists each (word, row) pair of the batch's distinct
    words once instead: int32 arrays, each padded to a power of two,
      rows [capacity]: the table rows read, ascending, padded with the row count;
      words [word capacity]: the batch's word ids, ascending, padded with vocab_size;
      pair_rows, pair_words [pair capacity]: each pair's index into rows and into words;
    and float32 pair_weights [pair capacity]: 1 / the word's bag size (0 on padding pairs), so a
    word's vector is the weighted sum of its pairs' rows, the bag's mean.
    keep_output_rows (a tied head scores every word row): rows starts with every word's row, 0 to
    vocab_size - 1, then the n-gram buckets read, ascending; only the buckets' part is padded
    (capacity vocab_size + a power of two), so the view's first vocab_size rows are the word rows.
    """
    words = np.unique(token_ids)  # [distinct words]
    ids, mask = frozen["ngram_ids"][words], frozen["ngram_mask"][words]  # [distinct words, subword_width]
    read = np.unique(ids[mask])
    if keep_output_rows:
      buckets = read[read >= self.vocab_size]
      read = np.concatenate([np.arange(self.vocab_size), buckets])
      rows = embeddings.padded(read, self.vocab_size + embeddings.capacity(buckets.size, self.bucket + 1),
                               self.num_rows())
    else:
      rows = embeddings.padded(read, embeddings.capacity(read.size, self.num_rows() + 1), self.num_rows())
    word_slots, columns = np.nonzero(mask)  # [pairs], word by word (ascending)
    sizes = mask.sum(axis=1)
    word_capacity = embeddings.capacity(words.size + 1, 1 << 30, minimum=64)  # a padding word at the end
    pair_capacity = embeddings.capacity(word_slots.size, 1 << 30)
    pad_pairs = pair_capacity - word_slots.size
    return {
        "rows": rows,
        "words": embeddings.padded(words, word_capacity, self.vocab_size),
        "pair_rows": embeddings.padded(np.searchsorted(read, ids[word_slots, columns]), pair_capacity, 0),
        # Padding pairs belong to the last (padding) word, so the pairs stay sorted by word.
        "pair_words": embeddings.padded(word_slots, pair_capacity, word_capacity - 1),
        "pair_weights": np.concatenate([1.0 / sizes[word_slots], np.zeros(pad_pairs)]).astype(np.float32),
    }

  def sparse_view(self, variables: dict, token_ids, arrays: dict, *, keep_output_rows: bool = False
                  ) -> embeddings.SparseView:
    """The view of host_view's `arrays` for this device's token_ids int [batch, length]: a PackedBag
    over the rows read, with the tokens renumbered as indices into the batch's words. With
    keep_output_rows (host_view's arrays made with it) the PackedBag scores words as this layer does."""
    local_ids = jnp.searchsorted(arrays["words"], token_ids).astype(jnp.int32)
    table = embeddings.gather_rows(variables["params"]["table"], arrays["rows"])
    module = PackedBag(vocab_size=arrays["words"].size, width=self.width, num_rows=arrays["rows"].size,
                       dtype=self.dtype, output_vocab=self.vocab_size if keep_output_rows else 0, parent=None)
    pairs = {name: arrays[name] for name in ("pair_rows", "pair_words", "pair_weights")}
    return embeddings.SparseView(module, {"params": {"table": table}, FROZEN: pairs}, local_ids, arrays["rows"])


class PackedBag(nn.Module):
  """A bag layer's view (EmbeddingBag.host_view): the rows a batch reads and its words' (word, row)
  pairs. A word's vector is the weighted sum of its pairs' rows; a token's is its word's."""
  vocab_size: int  # the view's words (a token id is an index into them)
  width: int
  num_rows: int
  dtype: Any = jnp.float32
  output_vocab: int = 0  # the full vocabulary, when the view's first rows are every word's (keep_output_rows)

  def setup(self):
    self.table = self.param("table", layers.gpt2_init(), (self.num_rows, self.width), jnp.float32)
    self.pairs = {name: self.variable(FROZEN, name, lambda: jnp.zeros((1,), dtype))
                  for name, dtype in (("pair_rows", jnp.int32), ("pair_words", jnp.int32),
                                      ("pair_weights", jnp.float32))}

  def __call__(self, token_ids, *, train: bool):
    del train
    pair_rows, pair_words, pair_weights = (self.pairs[name].value
                                           for name in ("pair_rows", "pair_words", "pair_weights"))
    weighted = jnp.take(self.table, pair_rows, axis=0) * pair_weights[:, None]  # [pairs, width]
    vectors = jax.ops.segment_sum(weighted, pair_words, num_segments=self.vocab_size,
                                  indices_are_sorted=True)  # [words, width]
    return jnp.take(vectors, token_ids, axis=0).astype(self.dtype)  # [batch, length, width]

  def output_rows(self):
    """float32 [output_vocab, width]: the word rows, as EmbeddingBag.output_rows gives them."""
    if not self.output_vocab:
      raise ValueError("this bag view keeps only the rows its batch reads, not every word's row a tied head "
                       "scores: build it with keep_output_rows=True")
    return self.table[:self.output_vocab]

  def attend(self, hidden):
    """[batch, length, width] -> float32 logits [batch, length, output_vocab], as EmbeddingBag.attend."""
    return embeddings.tied_logits(hidden, self.output_rows(), self.dtype)


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
