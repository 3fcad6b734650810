"""Output heads: map body states [batch, length, width] to what the loss reads."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlm.models.heads import adaptive_softmax
from jaxlm.models import layers


def _to_embedding_width(hidden, embedding_width: int, dtype):
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

  @nn.compact
  def __call__(self, hidden, *, input_layer, train: bool, mask=None):
    del train, mask  # every position is scored; the loss's weights drop padding
    if not self.tie_embeddings:
      return nn.Dense(self.vocab_size, use_bias=self.output_bias, dtype=self.dtype,
                      kernel_init=layers.gpt2_init(), name="output")(hidden).astype(jnp.float32)
    hidden = _to_embedding_width(hidden, self.embedding_width, self.dtype)
    logits = input_layer.attend(hidden)  # [batch, length, vocab]
    if not self.output_bias:
      return logits
    return logits + self.param("bias", nn.initializers.zeros, (self.vocab_size,), jnp.float32)


class EmbeddingHead(nn.Module):
  """Predicts a vector in a fixed word-embedding space instead of logits over words.

  For the cosine, L2 and von Mises-Fisher losses (Kumar & Tsvetkov, 2019): the output
  layer costs width x target_dim rather than width x vocab, and no logits exist. Returns
  {"vectors": [batch, length, target_dim], "target_table": [vocab, target_dim]}, float32.

  The table of target vectors (FastText) lives in the "frozen" variable collection: the
  trainer passes it through `apply` and never optimises it; a loader fills it, and until
  then it is zeros. The head knows nothing about the objective, so any loss or decoder
  that reads (vectors, table) can use it, causal or masked.

  `embedding_width` and `tie_embeddings` are accepted so every head is built from the
  same fields, and ignored: there is no vocabulary-sized output weight to tie.
  """
  vocab_size: int
  embedding_width: int
  tie_embeddings: bool = True
  dtype: Any = jnp.float32
  target_dim: int = 300

  @nn.compact
  def __call__(self, hidden, *, input_layer, train: bool, mask=None):
    del input_layer, train, mask  # every position is scored; the loss's weights drop padding
    table = self.variable("frozen", "target_table", jnp.zeros,
                          (self.vocab_size, self.target_dim), jnp.float32)
    vectors = nn.Dense(self.target_dim, dtype=self.dtype, kernel_init=layers.gpt2_init(),
                       name="output")(hidden)
    return {"vectors": vectors.astype(jnp.float32), "target_table": table.value}


class AdaptiveSoftmaxHead(nn.Module):
  """An exact softmax factorised over frequency clusters (jaxlm.models.heads.adaptive_softmax).

  Scores the `cutoffs[0]` most frequent words plus one token per tail cluster for every
  position, and leaves each tail cluster's words to the loss, which scores them only for
  the tokens that need them. With `tie_embeddings` every word's output row is its input
  row (a bias-free projection bridges a different body width), as in SoftmaxHead, so the
  parameters are the softmax head's plus one vector and one bias per cluster.
  `output_bias=False` leaves out every bias (the tail biases are None): on 2 CPU cores the
  biases' additions and gradients cost ~3% of the quickstart's step. Returns the dict
  jaxlm.models.heads.adaptive_softmax reads (its docstring gives the shapes).
  """
  vocab_size: int
  embedding_width: int
  tie_embeddings: bool = True
  dtype: Any = jnp.float32
  output_bias: bool = True
  cutoffs: tuple = (2000, 6000, 14000)

  @nn.compact
  def __call__(self, hidden, *, input_layer, train: bool, mask=None):
    del train, mask  # every position is scored; the loss's weights drop padding
    cutoffs = adaptive_softmax.check_cutoffs(self.cutoffs, self.vocab_size)
    if self.tie_embeddings:
      hidden = _to_embedding_width(hidden, self.embedding_width, self.dtype)
      rows = input_layer.output_rows()  # [vocab, embedding width]
    else:
      rows = self.param("output", layers.gpt2_init(), (self.vocab_size, hidden.shape[-1]), jnp.float32)
    hidden = hidden.astype(self.dtype)
    clusters = self.param("clusters", layers.gpt2_init(), (len(cutoffs), rows.shape[-1]), jnp.float32)
    head_rows = jnp.concatenate([rows[:cutoffs[0]], clusters], axis=0)  # [c_1 + clusters, width]
    bias = lambda name, size: (self.param(name, nn.initializers.zeros, (size,), jnp.float32) if self.output_bias
                               else None)
    head_logits = jnp.einsum("blw,vw->blv", hidden, head_rows.astype(self.dtype),
                             preferred_element_type=jnp.float32)
    if self.output_bias:
      head_logits = head_logits + bias("head_bias", head_rows.shape[0])
    bounds = cutoffs + (self.vocab_size,)
    tail_tables = tuple(rows[start:end] for start, end in zip(bounds[:-1], bounds[1:]))
    tail_biases = tuple(bias(f"tail_bias_{index}", end - start)
                        for index, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])))
    return {"hidden": hidden, "head_logits": head_logits, "tail_tables": tail_tables,
            "tail_biases": tail_biases}
