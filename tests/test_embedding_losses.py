"""Cosine, L2 and vMF losses on hand-computed cases, and the embedding head they read."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxlm.models import heads
from jaxlm.models.heads import embedding

# Three words in 3 dimensions; word 2 has no vector (padding / unknown).
TABLE = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
PREDICTED = np.array([[[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [5.0, 5.0, 5.0]]], np.float32)
TARGETS = np.array([[0, 1, 2]])
WEIGHTS = np.array([[1.0, 2.0, 0.0]], np.float32)  # the padding position has weight 0


def _value_and_grads(loss_fn):
  """-> (loss dict, d loss_sum / d predicted, d loss_sum / d table)."""
  def loss_sum(predicted, table):
    return loss_fn({"vectors": predicted, "target_table": table}, TARGETS, WEIGHTS)["loss_sum"]
  result = loss_fn({"vectors": PREDICTED, "target_table": TABLE}, TARGETS, WEIGHTS)
  grad_predicted, grad_table = jax.grad(loss_sum, argnums=(0, 1))(PREDICTED, TABLE)
  return result, np.asarray(grad_predicted), np.asarray(grad_table)


def test_registered_by_head_name():
  config = ml_collections.ConfigDict(dict(vmf_lambda1=0.02, vmf_lambda2=0.5))
  assert heads.LANGUAGE_MODEL_HEADS["cosine"].loss(config) is embedding.cosine_distance
  assert heads.LANGUAGE_MODEL_HEADS["l2"].loss(config) is embedding.squared_l2
  vmf_loss = heads.LANGUAGE_MODEL_HEADS["vmf"].loss(config)
  assert vmf_loss.func is embedding.vmf_negative_log_likelihood
  assert vmf_loss.keywords == {"lambda1": 0.02, "lambda2": 0.5}


def test_cosine_value_and_gradient():
  result, grad, grad_table = _value_and_grads(embedding.cosine_distance)
  # Position 0 is aligned (loss 0); position 1 is at 45 degrees, loss 1 - 1/sqrt(2), weight 2.
  np.testing.assert_allclose(result["loss_sum"], 2 * (1 - 1 / math.sqrt(2)), rtol=1e-6)
  assert result["count"] == 3.0
  # d(1 - cos)/dp = -(e/|p| - cos p/|p|^2) with p = (1, 1), e = (0, 1): (1, -1) / (2 sqrt 2).
  expected = np.zeros_like(PREDICTED)
  expected[0, 1, :2] = 2 * np.array([1.0, -1.0]) / (2 * math.sqrt(2))
  np.testing.assert_allclose(grad, expected, atol=1e-6)
  assert np.all(grad_table == 0.0)  # the target table is fixed


def test_l2_value_and_gradient():
  result, grad, grad_table = _value_and_grads(embedding.squared_l2)
  # Targets become (1, 0, 0) and (0, 1, 0): position 0 is exact, position 1 is off by (1, 0, 0).
  np.testing.assert_allclose(result["loss_sum"], 2 * 1.0, rtol=1e-6)
  expected = np.zeros_like(PREDICTED)
  expected[0, 1] = 2 * 2 * np.array([1.0, 0.0, 0.0])  # weight * 2 (p - e)
  np.testing.assert_allclose(grad, expected, atol=1e-6)
  assert np.all(grad_table == 0.0)


@pytest.mark.parametrize("lambda1,lambda2", [(0.0, 1.0), (0.02, 1.0), (0.0, 0.1)])
def test_vmf_value_and_gradient_in_three_dimensions(lambda1, lambda2):
  # In R^3, C_3(k) = k / (4 pi sinh k), so with kappa = |p| and unit target e:
  #   loss = -log k + log(4 pi) + log sinh k - lambda2 p.e + lambda1 k
  #   dloss/dp = (coth k - 1/k + lambda1) p / k - lambda2 e.
  def loss_fn(outputs, targets, weights):
    return embedding.vmf_negative_log_likelihood(outputs, targets, weights,
                                              lambda1=lambda1, lambda2=lambda2)
  result, grad, grad_table = _value_and_grads(loss_fn)
  expected_sum, expected = 0.0, np.zeros_like(PREDICTED)
  for position, word in [(0, 0), (1, 1)]:
    p = PREDICTED[0, position].astype(np.float64)
    e = TABLE[word] / np.linalg.norm(TABLE[word])
    k = np.linalg.norm(p)
    loss = -np.log(k) + np.log(4 * np.pi) + np.log(np.sinh(k)) - lambda2 * p @ e + lambda1 * k
    expected_sum += WEIGHTS[0, position] * loss
    expected[0, position] = WEIGHTS[0, position] * (
        (1 / np.tanh(k) - 1 / k + lambda1) * p / k - lambda2 * e)
  np.testing.assert_allclose(result["loss_sum"], expected_sum, rtol=1e-5)
  np.testing.assert_allclose(grad, expected, atol=1e-5)
  assert np.all(grad_table == 0.0)


@pytest.mark.parametrize("name", ["cosine", "l2", "vmf"])
def test_zero_vectors_give_finite_gradients(name):
  # An all-zero prediction and an all-zero target row must not produce NaN.
  outputs = {"vectors": jnp.zeros((1, 3, 3)), "target_table": jnp.asarray(TABLE)}
  loss_fn = heads.LANGUAGE_MODEL_HEADS[name].loss(ml_collections.ConfigDict(dict(vmf_lambda1=0.0, vmf_lambda2=1.0)))
  grad = jax.grad(lambda o: loss_fn(o, TARGETS, jnp.ones((1, 3)))["loss_sum"])(outputs)
  assert np.all(np.isfinite(grad["vectors"]))


def test_embedding_head_keeps_the_table_frozen():
  head = embedding.EmbeddingHead(vocab_size=3, embedding_width=8, target_dim=3)
  hidden = jnp.ones((2, 4, 8))
  variables = head.init(jax.random.PRNGKey(0), hidden, input_layer=None, train=False)
  assert set(variables) == {"params", "frozen"}
  np.testing.assert_array_equal(variables["frozen"]["target_table"], np.zeros((3, 3)))
  # A loaded table passes through apply unchanged, and no gradient reaches it.
  variables = {"params": variables["params"], "frozen": {"target_table": jnp.asarray(TABLE)}}
  outputs = head.apply(variables, hidden, input_layer=None, train=False)
  assert outputs["vectors"].shape == (2, 4, 3) and outputs["vectors"].dtype == jnp.float32
  np.testing.assert_array_equal(outputs["target_table"], TABLE)

  def loss_sum(variables):
    outputs = head.apply(variables, hidden, input_layer=None, train=False)
    return embedding.vmf_negative_log_likelihood(outputs, jnp.zeros((2, 4), jnp.int32),
                                              jnp.ones((2, 4)))["loss_sum"]
  grads = jax.grad(loss_sum)(variables)
  assert np.all(grads["frozen"]["target_table"] == 0.0)
  assert np.any(grads["params"]["output"]["kernel"] != 0.0)
