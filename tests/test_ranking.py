"""Chunked nearest-neighbour decoding and top-1 / top-5 accuracy for softmax and embedding heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm.models.heads import embedding, ranking, softmax

VOCAB, DIM = 11, 4


@pytest.mark.parametrize("chunk_size", [1, 4, 11, 64])  # 4 does not divide 11
def test_exact_target_vectors_decode_to_their_words(chunk_size):
  table = jax.random.normal(jax.random.PRNGKey(0), (VOCAB, DIM))
  targets = jnp.array([[3, 10, 0], [7, 7, 4]])
  # Scaling does not change the cosine, so the prediction need not match the norm.
  vectors = 2.5 * table[targets]  # [2, 3, dim]
  scores, ids = ranking.nearest_neighbours(vectors, table, k=3, chunk_size=chunk_size)
  assert ids.shape == (2, 3, 3) and scores.shape == (2, 3, 3)
  np.testing.assert_array_equal(ids[..., 0], targets)
  np.testing.assert_allclose(scores[..., 0], 1.0, rtol=1e-5)
  assert np.all(np.diff(np.asarray(scores), axis=-1) <= 0)  # best first
  # The same words a brute-force search over the whole table finds.
  unit = table / jnp.linalg.norm(table, axis=-1, keepdims=True)
  brute = np.argsort(-np.asarray(vectors @ unit.T), axis=-1)[..., :3]
  np.testing.assert_array_equal(ids, brute)


def _fan_table():
  """Eight unit vectors at 0, 10, ..., 70 degrees: the order of cosine to 0 degrees is the id."""
  angles = np.deg2rad(np.arange(8) * 10.0)
  return jnp.asarray(np.stack([np.cos(angles), np.sin(angles)], axis=-1), jnp.float32)


def test_top5_accuracy_for_an_embedding_head():
  outputs = {"vectors": jnp.array([[[1.0, 0.0]] * 4]), "target_table": _fan_table()}
  # All four queries point at 0 degrees, so the top 5 are words 0..4 in that order.
  targets = jnp.array([[0, 4, 6, 1]])
  weights = jnp.array([[1.0, 1.0, 1.0, 0.0]])  # the last position is padding
  sums = ranking.accuracy_sums(embedding.COSINE.target_ranks(outputs, targets, chunk_size=3), weights)
  assert sums == {"correct": 1.0, "correct_top5": 2.0}


def test_top5_accuracy_for_softmax_logits():
  logits = jnp.array([[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                       [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0],
                       [0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0]]])
  targets = jnp.array([[6, 5, 3]])  # top-1; 6th best; top-1
  weights = jnp.array([[1.0, 1.0, 2.0]])
  sums = ranking.accuracy_sums(softmax.HEAD.target_ranks(logits, targets, chunk_size=8192), weights)
  assert sums == {"correct": 3.0, "correct_top5": 3.0}


def test_small_vocabulary_returns_every_word():
  outputs = {"vectors": jnp.array([[[0.0, 1.0]]]), "target_table": _fan_table()[:3]}
  np.testing.assert_array_equal(embedding.COSINE.top_words(outputs, k=5, chunk_size=8192), [[[2, 1, 0]]])
  ranks = jax.jit(lambda outputs, targets: embedding.COSINE.target_ranks(outputs, targets, chunk_size=8192))(
      outputs, jnp.array([[0]]))
  sums = ranking.accuracy_sums(ranks, jnp.ones((1, 1)))
  assert sums["correct"] == 0.0 and sums["correct_top5"] == 1.0
