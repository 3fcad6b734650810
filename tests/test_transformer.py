"""Transformer body options and the family-agnostic regularisers.

Embedding dropout, locked dropout, attention dropout, banded attention and
Transformer-XL memory with relative positions.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm.models import layers, transformer
from tests.model_helpers import VOCAB, assert_causal, build, init, tokens

BASE = dict(num_layers=2, num_heads=2, mlp_ratio=2, dropout=0.0, max_length=32)
XL = dict(BASE, positions="relative")


def test_embedding_dropout_mask_is_per_word_type_and_shared_across_the_batch():
  token_ids = jnp.array([[1, 2, 3, 1, 2], [3, 3, 1, 4, 2]])
  rate = 0.5
  for seed in range(4):
    scale = layers.embedding_dropout_scale(token_ids, VOCAB, rate, jax.random.key(seed))
    assert scale.shape == (2, 5, 1)
    assert set(np.unique(scale).tolist()) <= {0.0, 1.0 / (1.0 - rate)}
    for word in range(1, 5):  # every occurrence of a word type, in any row, gets one value
      assert len(np.unique(scale[token_ids == word])) == 1
  scale = layers.embedding_dropout_scale(jnp.arange(VOCAB * 100)[None] % VOCAB, VOCAB, rate, jax.random.key(0))
  assert 0.2 < float(jnp.mean(scale == 0)) < 0.8


def test_embedding_dropout_is_wired_for_training_only():
  model = build("transformer", embedding_dropout=0.5, **BASE)
  assert model.embedding_dropout == 0.5
  token_ids = tokens()
  params = init(model, token_ids)
  evaluated, _ = model.apply({"params": params}, token_ids, train=False)
  trained, _ = model.apply({"params": params}, token_ids, train=True, rngs={"dropout": jax.random.key(1)})
  assert not jnp.allclose(evaluated, trained)  # the only dropout in this model
  assert build("transformer", **BASE).embedding_dropout == 0.0


def test_locked_dropout_mask_is_constant_across_time():
  x = jnp.ones((3, 6, 8))
  dropped = layers.LockedDropout(0.5).apply({}, x, train=True, rngs={"dropout": jax.random.key(0)})
  np.testing.assert_array_equal(dropped, jnp.broadcast_to(dropped[:, :1], x.shape))
  assert float(jnp.mean(dropped == 0)) > 0.1
  np.testing.assert_array_equal(layers.LockedDropout(0.5).apply({}, x, train=False), x)


def test_input_and_output_dropout_are_locked():
  # With only output dropout, zeroed features are zeroed at every position.
  model = transformer.Transformer(**dict(BASE, output_dropout=0.5))
  x = jax.random.normal(jax.random.key(0), (2, 6, 16))
  params = model.init(jax.random.key(1), x, train=False)
  outputs, _ = model.apply(params, x, train=True, rngs={"dropout": jax.random.key(2)})
  zeros = outputs == 0
  assert zeros.any()
  np.testing.assert_array_equal(zeros, jnp.broadcast_to(zeros[:, :1], zeros.shape))


@pytest.mark.parametrize("body", [
    BASE,
    dict(BASE, positions="sinusoidal", attention_window=3),
    dict(XL, attention_window=3),
    dict(XL, memory_length=4),
], ids=["full", "banded", "relative_banded", "memory"])
def test_eval_is_deterministic_and_causal(body):
  model = build("transformer", **dict(body, attention_dropout=0.3, input_dropout=0.2, output_dropout=0.2))
  token_ids = tokens(length=6)
  params = init(model, token_ids)
  carry = None
  if body.get("memory_length"):  # a non-empty memory, so attention over it is exercised too
    _, carry = model.apply({"params": params}, tokens(length=6, seed=1), train=False)
  first, _ = model.apply({"params": params}, token_ids, train=False, carry=carry)
  second, _ = model.apply({"params": params}, token_ids, train=False, carry=carry)
  np.testing.assert_array_equal(first, second)
  assert_causal(model, params, token_ids, carry=carry)


def test_attention_dropout_acts_in_training():
  model = build("transformer", **dict(BASE, attention_dropout=0.5))
  token_ids = tokens()
  params = init(model, token_ids)
  evaluated, _ = model.apply({"params": params}, token_ids, train=False)
  trained, _ = model.apply({"params": params}, token_ids, train=True, rngs={"dropout": jax.random.key(1)})
  assert not jnp.allclose(evaluated, trained)


def test_explicit_attention_path_matches_the_fused_one():
  # A negligible attention-dropout rate switches to the explicit softmax path in training.
  x = jax.random.normal(jax.random.key(0), (2, 7, 16))
  for window in (0, 3):
    fused = transformer.SelfAttention(2, 2, window=window, dropout=1e-9)
    params = fused.init(jax.random.key(1), x)
    np.testing.assert_allclose(
        fused.apply(params, x, train=True, rngs={"dropout": jax.random.key(2)}),
        fused.apply(params, x, train=False), rtol=1e-5, atol=1e-6)


def test_banded_attention_equals_full_attention_only_when_the_window_covers_the_sequence():
  token_ids = tokens(length=8)
  full = build("transformer", **BASE)
  params = init(full, token_ids)
  expected, _ = full.apply({"params": params}, token_ids, train=False)
  wide, _ = build("transformer", **dict(BASE, attention_window=8)).apply({"params": params}, token_ids, train=False)
  np.testing.assert_allclose(wide, expected, rtol=1e-5, atol=1e-6)
  narrow, _ = build("transformer", **dict(BASE, attention_window=3)).apply(
      {"params": params}, token_ids, train=False)
  np.testing.assert_allclose(narrow[:, :3], expected[:, :3], rtol=1e-5, atol=1e-6)  # window not yet binding
  assert not jnp.allclose(narrow[:, 3:], expected[:, 3:])


def test_relative_shift_indexes_scores_by_distance():
  length, keys = 3, 5  # memory 2
  by_distance = jnp.broadcast_to(jnp.arange(keys - 1, -1, -1.0), (length, keys))  # column c: distance keys-1-c
  shifted = transformer.relative_shift(by_distance)
  for i in range(length):
    for j in range(keys - length + i + 1):  # keys this query may see
      assert shifted[i, j] == keys - length + i - j


@pytest.mark.parametrize("positions,memory_length", [("relative", 5), ("rotary", 5), ("rotary", 8)])
def test_memory_gives_the_outputs_of_one_unbroken_sequence(positions, memory_length):
  # With memory >= segment length, the second segment attends to exactly what it
  # would see in one call over both segments (whose memory is empty). Rotary positions
  # differ between the two (the second segment's queries are numbered after the memory
  # slots, filled or not), but rotary scores depend only on distances.
  segment = 5
  model = build("transformer", **dict(XL, positions=positions, memory_length=memory_length))
  token_ids = tokens(length=2 * segment)
  params = init(model, token_ids)
  whole, whole_carry = model.apply({"params": params}, token_ids, train=False)
  first, carry = model.apply({"params": params}, token_ids[:, :segment], train=False)
  second, second_carry = model.apply({"params": params}, token_ids[:, segment:], train=False, carry=carry)
  np.testing.assert_allclose(first, whole[:, :segment], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(second, whole[:, segment:], rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(carry["filled"], [segment, segment])
  np.testing.assert_allclose(second_carry["memory"], whole_carry["memory"], rtol=1e-4, atol=1e-5)


def test_all_zeros_carry_is_no_memory_and_zeroing_a_row_restarts_it():
  token_ids = tokens(length=6)
  no_memory = build("transformer", **XL)  # relative positions, no memory: same parameters
  params = init(no_memory, token_ids)
  expected, carry = no_memory.apply({"params": params}, token_ids, train=False)
  assert carry == ()
  model = build("transformer", **dict(XL, memory_length=4))
  zero_carry = model.initial_carry(2)
  assert zero_carry["memory"].shape == (2, 2, 4, 16)
  fresh, _ = model.apply({"params": params}, token_ids, train=False, carry=zero_carry)
  np.testing.assert_allclose(fresh, expected, rtol=1e-5, atol=1e-6)

  _, carry = model.apply({"params": params}, tokens(length=6, seed=1), train=False)
  carry = jax.tree.map(lambda leaf: leaf.at[0].set(0), carry)  # what the trainer does at a stream start
  continued, _ = model.apply({"params": params}, token_ids, train=False, carry=carry)
  np.testing.assert_allclose(continued[0], expected[0], rtol=1e-5, atol=1e-6)
  assert not jnp.allclose(continued[1], expected[1])  # row 1 still remembers


def test_no_gradient_flows_into_memory():
  model = build("transformer", **dict(XL, memory_length=4))
  token_ids = tokens(length=4)
  params = init(model, token_ids)
  _, carry = model.apply({"params": params}, token_ids, train=False)

  def total(memory):
    outputs, _ = model.apply({"params": params}, token_ids, train=False, carry=dict(carry, memory=memory))
    return outputs.sum()

  np.testing.assert_array_equal(jax.grad(total)(carry["memory"]), 0.0)


def test_memory_needs_relative_positions():
  model = build("transformer", **dict(BASE, memory_length=4))
  with pytest.raises(ValueError, match="relative"):
    init(model, tokens())


def test_a_dropped_word_with_no_context_keeps_the_gradient_finite():
  # Embedding dropout turns a word into a zero vector. With relative positions nothing
  # else is added to the input, so at a position with no context (a stream's first
  # token) the residual stream used to stay exactly zero through every block at init,
  # and each LayerNorm multiplied its gradient by 1/sqrt(epsilon): 8 layers gave
  # gradients ~1e11, the 16-layer wt2_transformer NaN in its first step.
  body = transformer.Transformer(num_layers=8, num_heads=2, mlp_ratio=2, dropout=0.0, positions="relative",
                                 memory_length=4)
  inputs = 0.02 * jax.random.normal(jax.random.key(0), (2, 6, 16))
  params = body.init(jax.random.key(1), inputs, train=False)
  probe = jax.random.normal(jax.random.key(2), inputs.shape)

  def largest_gradient(inputs):
    def objective(params):
      outputs, _ = body.apply(params, inputs, train=False)
      return jnp.sum(outputs * probe)
    return max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(jax.grad(objective)(params)))

  intact = largest_gradient(inputs)
  dropped = largest_gradient(inputs.at[:, 0].set(0.0))  # every row's first word dropped
  assert np.isfinite(dropped) and dropped < 10 * intact, (dropped, intact)
