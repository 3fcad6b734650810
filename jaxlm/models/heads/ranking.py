"""Ranking words by score, shared by every language-model head's target_ranks and top_words.

Scores over the vocabulary (a softmax head's logits, the adaptive softmax's log-probabilities)
rank by value. An embedding head's words rank by the cosine of their target vectors, found
chunk by chunk over the vocabulary with a running top-k, so memory is [queries, chunk_size]
whatever the vocabulary (250k words x 8k tokens of scores would be 8 GB at once). Top-1 /
top-5 accuracy, from the ranks, compares every head.
"""

import jax.numpy as jnp
from jax import lax


def unit(vectors):
  """Rows scaled to unit length; zero rows (words without a vector) stay zero."""
  norm = jnp.sqrt(jnp.maximum(jnp.sum(vectors * vectors, axis=-1, keepdims=True), 1e-16))
  return vectors / norm


def nearest_neighbours(vectors, table, *, k: int = 5, chunk_size: int = 8192):
  """The k rows of `table` with the largest cosine to each vector, best first.

  Args:
    vectors: float [..., dim], the predicted vectors.
    table: float [vocab, dim], the target vectors.
    k: how many neighbours (at most vocab).
    chunk_size: vocabulary rows scored at once; need not divide vocab.
  Returns:
    (cosines float32 [..., k], word ids int32 [..., k]).
  """
  vocab, dim = table.shape
  k = min(k, vocab)
  chunk_size = min(chunk_size, vocab)
  num_chunks = -(-vocab // chunk_size)
  chunk_k = min(k, chunk_size)  # a chunk smaller than k contributes all its rows
  queries = unit(vectors.reshape(-1, dim).astype(jnp.float32))  # [queries, dim]
  # Zero rows pad the last chunk; their scores are masked to -inf below.
  chunks = jnp.pad(table.astype(jnp.float32), ((0, num_chunks * chunk_size - vocab), (0, 0)))
  chunks = chunks.reshape(num_chunks, chunk_size, dim)
  starts = jnp.arange(num_chunks, dtype=jnp.int32) * chunk_size

  def merge_chunk(best, chunk_and_start):
    best_scores, best_ids = best  # [queries, k] each
    chunk, start = chunk_and_start
    # HIGHEST: TF32 matmuls on GPU would reorder near-ties; this runs only at evaluation.
    scores = jnp.matmul(queries, unit(chunk).T, precision=lax.Precision.HIGHEST)
    ids = start + jnp.arange(chunk_size, dtype=jnp.int32)  # [chunk]
    scores = jnp.where(ids < vocab, scores, -jnp.inf)  # [queries, chunk]
    chunk_scores, positions = lax.top_k(scores, chunk_k)
    # The running best comes first, so ties go to the lower word id.
    scores = jnp.concatenate([best_scores, chunk_scores], axis=-1)  # [queries, k + chunk_k]
    ids = jnp.concatenate([best_ids, ids[positions]], axis=-1)
    top_scores, top_positions = lax.top_k(scores, k)
    return (top_scores, jnp.take_along_axis(ids, top_positions, axis=-1)), None

  empty = (jnp.full((queries.shape[0], k), -jnp.inf, jnp.float32),
           jnp.zeros((queries.shape[0], k), jnp.int32))
  # The first chunk is merged outside the scan, so the scan's carry already has the
  # queries' type: under shard_map a constant initial carry is device-invariant while the
  # merged result varies over devices, and scan requires the two to match.
  first, _ = merge_chunk(empty, (chunks[0], starts[0]))
  (scores, ids), _ = lax.scan(merge_chunk, first, (chunks[1:], starts[1:]))
  lead_shape = vectors.shape[:-1]
  return scores.reshape(*lead_shape, k), ids.reshape(*lead_shape, k)


def _rank_in(scores, target_scores, targets, start: int = 0):
  """How many of these vocabulary columns rank above each target, top_k's way.

  scores [queries, columns] for word ids start .. start + columns - 1; a word ranks above
  the target if it scores higher, or the same with a lower id (lax.top_k keeps the lower
  index first), so a tie never counts as a hit for free.
  """
  ids = start + jnp.arange(scores.shape[-1], dtype=jnp.int32)
  above = (scores > target_scores[:, None]) | ((scores == target_scores[:, None]) & (ids < targets[:, None]))
  return jnp.sum(above, axis=-1, dtype=jnp.int32)


def ranks_by_scores(scores, targets):
  """scores float [..., vocab], targets int [...] -> int32 [...]: each target's 0-based rank.

  One compare-and-count pass over the scores instead of a top-k sort (several times cheaper
  on a CPU).
  """
  flat_targets = targets.reshape(-1)
  scores = scores.astype(jnp.float32).reshape(flat_targets.size, -1)  # [queries, vocab]
  target_scores = jnp.take_along_axis(scores, flat_targets[:, None], axis=-1)[:, 0]
  return _rank_in(scores, target_scores, flat_targets).reshape(targets.shape)


def top_by_scores(scores, *, k: int = 5):
  """scores float [..., vocab] -> int32 [..., k] word ids, best first."""
  return lax.top_k(scores.astype(jnp.float32), min(k, scores.shape[-1]))[1]


def ranks_by_cosine(vectors, table, targets, *, chunk_size: int = 8192):
  """vectors float [..., dim], table float [vocab, dim], targets int [...] -> int32 [...] ranks.

  The vocabulary is scored chunk by chunk by cosine, counting the words above each target.
  """
  flat_targets = targets.reshape(-1)
  table = table.astype(jnp.float32)
  vocab, dim = table.shape
  queries = unit(vectors.reshape(-1, dim).astype(jnp.float32))  # [queries, dim]
  # The same float32 product as the chunks below, so a target's own score is bit-identical.
  target_scores = jnp.sum(queries * unit(table[flat_targets]), axis=-1)
  chunk_size = min(chunk_size, vocab)
  num_chunks = -(-vocab // chunk_size)
  chunks = jnp.pad(table, ((0, num_chunks * chunk_size - vocab), (0, 0))).reshape(num_chunks, chunk_size, dim)

  def count_chunk(ranks, chunk_and_start):
    chunk, start = chunk_and_start
    scores = jnp.einsum("qd,cd->qc", queries, unit(chunk), precision=lax.Precision.HIGHEST)
    ids = start + jnp.arange(chunk_size, dtype=jnp.int32)
    scores = jnp.where(ids < vocab, scores, -jnp.inf)  # padding rows never rank above
    return ranks + _rank_in(scores, target_scores, flat_targets, start=start), None

  starts = jnp.arange(num_chunks, dtype=jnp.int32) * chunk_size
  first, _ = count_chunk(jnp.zeros_like(flat_targets), (chunks[0], starts[0]))
  ranks, _ = lax.scan(count_chunk, first, (chunks[1:], starts[1:]))
  return ranks.reshape(targets.shape)


def accuracy_sums(ranks, weights):
  """Weighted top-1 and top-5 hits from a head's target_ranks, as sums to add to the loss's sums.

  Args:
    ranks: int [batch, length], each target's 0-based rank (LanguageModelHead.target_ranks).
    weights: [batch, length], 0 at padding.
  Returns:
    {"correct": float32 sum, "correct_top5": float32 sum}.
  """
  weights = weights.astype(jnp.float32)
  return {
      "correct": jnp.sum(weights * (ranks == 0)),
      "correct_top5": jnp.sum(weights * (ranks < 5)),
  }
