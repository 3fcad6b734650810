"""The adaptive softmax: an exact, normalised distribution whatever the gathering capacity."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm.models.heads import adaptive_softmax, ranking
from jaxlm.tools import flops
from jaxlm.models import embeddings

VOCAB, WIDTH, CUTOFFS = 50, 8, (10, 25)


class TiedModel(nn.Module):
  """Word table -> a fixed scaling -> the adaptive head tied to that table."""
  cutoffs: tuple = CUTOFFS

  @nn.compact
  def __call__(self, token_ids):
    table = embeddings.WordEmbedding(vocab_size=VOCAB, width=WIDTH, name="input_layer")
    head = adaptive_softmax.AdaptiveSoftmaxHead(vocab_size=VOCAB, embedding_width=WIDTH, cutoffs=self.cutoffs)
    return head(3.0 * table(token_ids, train=False), input_layer=table, train=False)


@pytest.fixture(scope="module")
def case():
  model = TiedModel()
  inputs = jax.random.randint(jax.random.key(0), (2, 12), 0, VOCAB)
  params = model.init(jax.random.key(1), inputs)
  # Non-zero biases and cluster vectors, so every term of the factorisation matters.
  params = jax.tree.map(lambda leaf: leaf + 0.3 * jax.random.normal(jax.random.key(2), leaf.shape), params)
  # Targets in every cluster; the last three positions are padding.
  targets = jnp.array([[0, 3, 9, 10, 11, 24, 25, 26, 49, 30, 5, 12]] * 2)
  weights = jnp.ones((2, 12)).at[1, -3:].set(0.0)
  return model, params, inputs, targets, weights


def test_log_probs_are_a_distribution_over_the_whole_vocabulary(case):
  model, params, inputs, _, _ = case
  log_probs = adaptive_softmax.log_probs(model.apply(params, inputs))
  assert log_probs.shape == (2, 12, VOCAB)
  np.testing.assert_allclose(jax.nn.logsumexp(log_probs, axis=-1), 0.0, atol=1e-5)


# () scores every token; 0.5 gathers with room to spare; 0.01 (one token) overflows and
# falls back to every token for that cluster.
@pytest.mark.parametrize("capacities", [(), (0.5, 0.5), (0.01, 0.01)])
def test_loss_and_gradient_are_exact_for_any_capacity(case, capacities):
  model, params, inputs, targets, weights = case
  log_probs = adaptive_softmax.log_probs(model.apply(params, inputs))
  expected = -jnp.sum(weights * jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0])

  def loss(params, capacities):
    return adaptive_softmax.cross_entropy(model.apply(params, inputs), targets, weights,
                                          capacities=capacities)["loss_sum"]

  sums = adaptive_softmax.cross_entropy(model.apply(params, inputs), targets, weights, capacities=capacities)
  assert float(sums["count"]) == 21.0
  np.testing.assert_allclose(sums["loss_sum"], expected, rtol=1e-5)

  def reference(params):
    log_probs = adaptive_softmax.log_probs(model.apply(params, inputs))
    return -jnp.sum(weights * jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0])

  gradient = jax.jit(jax.grad(loss), static_argnums=1)(params, capacities)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5), gradient, jax.grad(reference)(params))


def test_padding_does_not_use_a_clusters_capacity(case):
  model, params, inputs, targets, _ = case
  # Only the first row counts; its four tokens in cluster 1 fit a capacity of 4 / 24 tokens.
  weights = jnp.zeros((2, 12)).at[0].set(1.0)
  outputs = model.apply(params, inputs)
  full = adaptive_softmax.cross_entropy(outputs, targets, weights)
  tight = adaptive_softmax.cross_entropy(outputs, targets, weights, capacities=(4 / 24, 4 / 24))
  np.testing.assert_allclose(tight["loss_sum"], full["loss_sum"], rtol=1e-6)


def test_ranks_and_top_words_follow_the_full_distribution(case):
  model, params, inputs, targets, _ = case
  outputs = model.apply(params, inputs)
  log_probs = adaptive_softmax.log_probs(outputs)
  head = adaptive_softmax.HEAD
  np.testing.assert_array_equal(head.target_ranks(outputs, targets, chunk_size=8192),
                                ranking.ranks_by_scores(log_probs, targets))
  np.testing.assert_array_equal(head.top_words(outputs, k=5, chunk_size=8192), jax.lax.top_k(log_probs, 5)[1])


def test_the_head_ties_every_output_row_to_the_input_table(case):
  model, params, inputs, _, _ = case
  table = params["params"]["input_layer"]["table"]
  outputs = model.apply(params, inputs)
  np.testing.assert_array_equal(outputs["tail_tables"][0], table[10:25])
  np.testing.assert_array_equal(outputs["tail_tables"][1], table[25:])
  assert outputs["head_logits"].shape == (2, 12, 10 + 2)


@pytest.mark.parametrize("cutoffs", [(), (25, 10), (10, 50), (0, 10)])
def test_bad_cutoffs_name_the_config_key(cutoffs):
  with pytest.raises(ValueError, match=r"model\.adaptive_cutoffs"):
    TiedModel(cutoffs=cutoffs).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))


def test_flops_count_the_gathered_branch_not_the_fallback(case):
  model, params, inputs, targets, weights = case
  outputs = model.apply(params, inputs)
  count = lambda capacities: flops.function_flops(
      lambda o: adaptive_softmax.cross_entropy(o, targets, weights, capacities=capacities)["loss_sum"], outputs)
  tokens = 24
  # Capacity 0.25 -> 6 gathered tokens per cluster: 6 x (15 + 25) x WIDTH products.
  assert count((0.25, 0.25)) == 2 * 6 * (15 + 25) * WIDTH
  assert count(()) == 2 * tokens * (15 + 25) * WIDTH


def _shapes_outside_conds(jaxpr):
  """Shapes of every array a program makes, except inside conditionals' branches."""
  for equation in jaxpr.eqns:
    yield from (tuple(variable.aval.shape) for variable in equation.outvars)
    if equation.primitive.name == "cond":
      continue
    for value in equation.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if hasattr(sub, "eqns") or hasattr(sub, "jaxpr"):
          yield from _shapes_outside_conds(getattr(sub, "jaxpr", sub))


def test_the_gradient_keeps_no_every_token_logits_when_it_gathers(case):
  # Differentiating through lax.cond makes the cond return both branches' residuals, so the
  # gathering path would still write (zeros into) the fall-back's [tokens, cluster size]
  # logits every step: most of the adaptive head's cost it exists to save.
  model, params, inputs, targets, weights = case
  outputs = model.apply(params, inputs)
  every_token_logits = {(24, 15), (24, 25)}  # 24 tokens; clusters of 15 and 25 words

  def shapes(capacities):
    gradient = jax.grad(lambda o: adaptive_softmax.cross_entropy(o, targets, weights,
                                                                 capacities=capacities)["loss_sum"])
    return set(_shapes_outside_conds(jax.make_jaxpr(gradient)(outputs).jaxpr))

  assert every_token_logits <= shapes(())  # without gathering they are there to be seen
  assert not every_token_logits & shapes((0.25, 0.25))
