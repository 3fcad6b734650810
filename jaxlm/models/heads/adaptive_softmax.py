"""An exact softmax over a frequency-sorted vocabulary, factorised into clusters.

Grave et al. (2017), "Efficient softmax approximation for GPUs". Word ids are sorted by
train frequency (jaxlm.data.vocabulary), so `cutoffs` = (c_1, ..., c_k) split the vocabulary
into a head [0, c_1) and tail clusters [c_i, c_{i+1}) (the last ending at the vocabulary):

  p(w) = p_head(w)                          for a head word,
  p(w) = p_head(cluster i) * p_i(w)         for a word in tail cluster i,

where p_head is a softmax over the c_1 head words plus one token per tail cluster, and p_i
a softmax over cluster i's words. This is a normalised distribution over the whole
vocabulary, so its perplexity is a perplexity, comparable with a full softmax's.

Why it is fast: a tail cluster's softmax is only needed for the tokens whose target is in
it (about 11%, 7% and 5% of WikiText-2 tokens beyond ranks 2,000, 6,000 and 14,000), so
training gathers those tokens up to a fixed capacity and computes the cluster's logits for
them alone; on a CPU, where the softmax's elementwise work over 33k logits runs on one
core, that is most of the step. Static shapes need a fixed capacity: if a batch has more
tokens in a cluster than its capacity, that cluster falls back to all tokens (`lax.cond`,
so only one branch runs), which gives the same loss and gradient. Evaluation's ranks
(top-1/top-5) use the full log-probabilities, `log_probs`.

The head module (AdaptiveSoftmaxHead, below) returns a dict of arrays; the functions here read it:
  hidden        [batch, length, width] the states the logits are products with
  head_logits   float32 [batch, length, c_1 + k]: head words, then one logit per tail cluster
  tail_tables   tuple of k [cluster size, width] output rows (tied: slices of the input table)
  tail_biases   tuple of k float32 [cluster size], or of k None without output biases
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxlm import errors
from jaxlm.models import layers
from jaxlm.models.heads import contract, ranking, softmax


def check_cutoffs(cutoffs, vocab_size: int) -> tuple:
  """Cutoffs as a tuple of ints, strictly increasing within (0, vocab_size); else a clear error."""
  cutoffs = tuple(int(cutoff) for cutoff in cutoffs)
  bounds = (0,) + cutoffs + (vocab_size,)
  if not cutoffs or any(low >= high for low, high in zip(bounds[:-1], bounds[1:])):
    raise errors.ConfigError(f"config model.adaptive_cutoffs={cutoffs} must be strictly increasing word ranks "
                             f"between 0 and the vocabulary size {vocab_size} (exclusive); e.g. (2000, 6000, 14000) "
                             f"for WikiText-2's 33,278 words")
  return cutoffs


def _tail_logits(hidden, table, bias):
  """hidden [..., width] x table [size, width] (+ bias [size], or None) -> float32 logits [..., size]."""
  logits = jnp.einsum("...w,vw->...v", hidden, table.astype(hidden.dtype), preferred_element_type=jnp.float32)
  return logits if bias is None else logits + bias


def _nll(logits, targets):
  """-log softmax(logits)[target]: logits float32 [tokens, size], targets int [tokens] -> [tokens]."""
  return jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]


def _every_token_nll(hidden, table, bias, local_targets, in_cluster):
  """-log p_i(target) computed for every token, 0 outside the cluster: float32 [tokens]."""
  logits = _tail_logits(hidden, table, bias)  # [tokens, size]
  return jnp.where(in_cluster, _nll(logits, jnp.clip(local_targets, 0, table.shape[0] - 1)), 0.0)


def _cluster_nll(hidden, table, bias, local_targets, in_cluster, capacity: int):
  """-log p_i(target) for tokens in the cluster, 0 elsewhere: float32 [tokens].

  hidden [tokens, width]; local_targets [tokens] = target - cluster start (garbage outside
  the cluster); in_cluster bool [tokens]; capacity: the number of tokens gathered.
  """
  if capacity >= hidden.shape[0]:
    return _every_token_nll(hidden, table, bias, local_targets, in_cluster)
  return _gathered_nll(hidden, table, bias, local_targets, in_cluster, capacity)


def _gather(in_cluster, capacity: int):
  """(positions int [capacity], valid bool [capacity], count): the first `count` positions
  are the cluster's tokens; the rest repeat position 0 and are masked out by `valid`."""
  count = jnp.sum(in_cluster, dtype=jnp.int32)
  (positions,) = jnp.nonzero(in_cluster, size=capacity, fill_value=0)
  return positions, jnp.arange(capacity) < count, count


def _gathered_forward(hidden, table, bias, local_targets, in_cluster, capacity: int):
  """(nll [tokens], positions [capacity], probs float32 [capacity, size]): probs are the
  gathered tokens' cluster softmax, kept for the backward pass.

  The gathered tokens' logits are computed whatever the count (a capacity's worth of rows
  is cheap); only the rare overflow computes every token's as well, inside the cond.
  """
  size = table.shape[0]
  positions, valid, count = _gather(in_cluster, capacity)
  logits = _tail_logits(hidden[positions], table, bias)  # [capacity, size]
  log_normaliser = jax.nn.logsumexp(logits, axis=-1)  # [capacity]
  targets = jnp.clip(local_targets[positions], 0, size - 1)
  gathered_nll = jnp.where(valid, log_normaliser - jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0], 0.0)
  nll = lax.cond(count <= capacity,
                 lambda: jnp.zeros(hidden.shape[0], jnp.float32).at[positions].add(gathered_nll),
                 lambda: _every_token_nll(hidden, table, bias, local_targets, in_cluster))
  return nll, positions, jnp.exp(logits - log_normaliser[:, None])


# A custom gradient, not autodiff through the lax.cond: differentiating a cond makes it
# return the residuals of both branches, so every step wrote zeros into the fall-back's
# [tokens, cluster size] logits (79 MB for WikiText-2's last cluster at 1,024 tokens),
# about a fifth of the quickstart's CPU step. Here the only residual is the gathered
# tokens' softmax, and the rare fall-back recomputes its own gradient.
@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _gathered_nll(hidden, table, bias, local_targets, in_cluster, capacity):
  return _gathered_forward(hidden, table, bias, local_targets, in_cluster, capacity)[0]


def _gathered_nll_forward(hidden, table, bias, local_targets, in_cluster, capacity):
  nll, positions, probs = _gathered_forward(hidden, table, bias, local_targets, in_cluster, capacity)
  return nll, (hidden, table, bias, local_targets, in_cluster, positions, probs)


def _softmax_cotangents(hidden_rows, table, probs, targets, scale, with_bias: bool):
  """Cotangents of (hidden_rows, table, bias) for nll = -log softmax(hidden_rows . table + bias)[target].

  hidden_rows [rows, width]; probs float32 [rows, size] the softmax; targets int [rows];
  scale float32 [rows] the nll's cotangent (0 for rows that do not count). The bias's is
  None without a bias.
  """
  # d nll / d logits = softmax - one_hot(target).
  logits_cotangent = (probs - jax.nn.one_hot(targets, table.shape[0], dtype=jnp.float32)) * scale[:, None]
  compute = logits_cotangent.astype(hidden_rows.dtype)
  rows_cotangent = jnp.einsum("cv,vw->cw", compute, table.astype(hidden_rows.dtype),
                              preferred_element_type=jnp.float32)
  table_cotangent = jnp.einsum("cv,cw->vw", compute, hidden_rows, preferred_element_type=jnp.float32)
  # The bias's cotangent is the column sum, written as a product with ones: XLA:CPU
  # (jax 0.10) sums the rows of a wide [capacity, 19,278] array ~30x slower than this.
  bias_cotangent = (jnp.einsum("c,cv->v", jnp.ones(scale.shape[0], jnp.float32), logits_cotangent)
                    if with_bias else None)
  return rows_cotangent, table_cotangent, bias_cotangent


def _gathered_nll_backward(capacity, residuals, nll_cotangent):
  """Cotangents of (hidden, table, bias) from d nll [tokens]; None for the integer inputs."""
  hidden, table, bias, local_targets, in_cluster, positions, probs = residuals
  size = table.shape[0]
  count = jnp.sum(in_cluster, dtype=jnp.int32)

  def gathered():
    valid = jnp.arange(capacity) < count
    scale = jnp.where(valid, nll_cotangent[positions], 0.0)  # [capacity]
    rows, table_cotangent, bias_cotangent = _softmax_cotangents(
        hidden[positions], table, probs, jnp.clip(local_targets[positions], 0, size - 1), scale,
        with_bias=bias is not None)
    return jnp.zeros(hidden.shape, jnp.float32).at[positions].add(rows), table_cotangent, bias_cotangent

  def every_token():
    # The same formulas over every token (one expression for both branches keeps their
    # types, and shard_map's replication types, the same).
    logits = _tail_logits(hidden, table, bias)  # [tokens, size]
    return _softmax_cotangents(hidden, table, jax.nn.softmax(logits, axis=-1),
                               jnp.clip(local_targets, 0, size - 1), jnp.where(in_cluster, nll_cotangent, 0.0),
                               with_bias=bias is not None)

  hidden_cotangent, table_cotangent, bias_cotangent = lax.cond(count <= capacity, gathered, every_token)
  bias_cotangent = None if bias is None else bias_cotangent.astype(bias.dtype)
  return hidden_cotangent.astype(hidden.dtype), table_cotangent.astype(table.dtype), bias_cotangent, None, None


_gathered_nll.defvjp(_gathered_nll_forward, _gathered_nll_backward)


def _bounds(outputs):
  """(head size c_1, [(start, end) of each tail cluster])."""
  head_size = outputs["head_logits"].shape[-1] - len(outputs["tail_tables"])
  starts, bounds = head_size, []
  for table in outputs["tail_tables"]:
    bounds.append((starts, starts + table.shape[0]))
    starts += table.shape[0]
  return head_size, bounds


def cross_entropy(outputs, targets, weights, *, capacities=()):
  """The exact -log p(target) as sums plus counts (see the module docstring).

  Args:
    outputs: the adaptive head's dict.
    targets: int [batch, length] word ids; weights: [batch, length], 0 at padding.
    capacities: per tail cluster, the fraction of this device's tokens gathered for it
      (1.0 or missing: every token, no gathering). Any value gives the same loss.
  """
  head_size, bounds = _bounds(outputs)
  width = outputs["hidden"].shape[-1]
  hidden = outputs["hidden"].reshape(-1, width)  # [tokens, width]
  flat_targets = jnp.asarray(targets).reshape(-1)  # jnp: numpy targets cannot index tracers
  flat_weights = jnp.asarray(weights).reshape(-1).astype(jnp.float32)
  head_logits = outputs["head_logits"].reshape(flat_targets.size, -1).astype(jnp.float32)
  # A tail word's head entry is its cluster's token: head_size + cluster index.
  head_targets = flat_targets
  nll = jnp.zeros(flat_targets.size, jnp.float32)
  for index, (start, end) in enumerate(bounds):
    in_cluster = (flat_targets >= start) & (flat_targets < end)
    head_targets = jnp.where(in_cluster, head_size + index, head_targets)
    fraction = capacities[index] if index < len(capacities) else 1.0
    capacity = max(1, math.ceil(fraction * flat_targets.size))
    nll = nll + _cluster_nll(hidden, outputs["tail_tables"][index], outputs["tail_biases"][index],
                             flat_targets - start, in_cluster & (flat_weights > 0), capacity)
  nll = nll + _nll(head_logits, head_targets)
  return {"loss_sum": jnp.sum(flat_weights * nll), "count": jnp.sum(flat_weights)}


def log_probs(outputs):
  """float32 [batch, length, vocab]: log p(w) for every word (evaluation's ranks)."""
  head_size, _ = _bounds(outputs)
  head = jax.nn.log_softmax(outputs["head_logits"].astype(jnp.float32), axis=-1)
  pieces = [head[..., :head_size]]
  for index, (table, bias) in enumerate(zip(outputs["tail_tables"], outputs["tail_biases"])):
    logits = _tail_logits(outputs["hidden"], table, bias)  # [batch, length, cluster size]
    pieces.append(head[..., head_size + index, None] + jax.nn.log_softmax(logits, axis=-1))
  return jnp.concatenate(pieces, axis=-1)


class AdaptiveSoftmaxHead(nn.Module):
  """An exact softmax factorised over frequency clusters (the functions above).

  Scores the `cutoffs[0]` most frequent words plus one token per tail cluster for every
  position, and leaves each tail cluster's words to the loss, which scores them only for
  the tokens that need them. With `tie_embeddings` every word's output row is its input
  row (a bias-free projection bridges a different body width), as in SoftmaxHead, so the
  parameters are the softmax head's plus one vector and one bias per cluster.
  `output_bias=False` leaves out every bias (the tail biases are None): on 2 CPU cores the
  biases' additions and gradients cost ~3% of the quickstart's step. Returns the dict
  the module docstring describes.
  """
  vocab_size: int
  embedding_width: int
  tie_embeddings: bool = True
  dtype: Any = jnp.float32
  output_bias: bool = True
  cutoffs: tuple = (2000, 6000, 14000)

  @property
  def reads_input_table(self) -> bool:
    """Tied, its head and tail clusters score words with the input layer's rows (a lazy step's view
    keeps them all)."""
    return self.tie_embeddings

  @nn.compact
  def __call__(self, hidden, *, input_layer, train: bool, mask=None):
    del train, mask  # every position is scored; the loss's weights drop padding
    cutoffs = check_cutoffs(self.cutoffs, self.vocab_size)
    if self.tie_embeddings:
      hidden = softmax.to_embedding_width(hidden, self.embedding_width, self.dtype)
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


def _at_position(outputs, index):
  take = lambda array: lax.dynamic_slice_in_dim(array, index, 1, axis=1)
  return {**outputs, "hidden": take(outputs["hidden"]), "head_logits": take(outputs["head_logits"])}


HEAD = contract.LanguageModelHead(
    module=AdaptiveSoftmaxHead,
    fields=lambda model_config: {"cutoffs": tuple(model_config.adaptive_cutoffs),
                                 "output_bias": model_config.output_bias},
    # Training gathers each tail cluster's tokens up to these fractions of a device's tokens.
    loss=lambda model_config: functools.partial(cross_entropy,
                                                capacities=tuple(model_config.adaptive_capacities)),
    # Ranked by the full log-probabilities, as a softmax's by its logits.
    target_ranks=lambda outputs, targets, *, chunk_size: ranking.ranks_by_scores(log_probs(outputs), targets),
    top_words=lambda outputs, *, k, chunk_size: ranking.top_by_scores(log_probs(outputs), k=k),
    next_token_scores=lambda outputs: log_probs(outputs)[:, 0].astype(jnp.float32),
    at_position=_at_position,
)
