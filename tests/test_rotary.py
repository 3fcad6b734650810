"""Rotary positions (RoPE) on the fused attention path, with and without Transformer-XL-style memory.

The fused path (jax.nn.dot_product_attention) and the explicit float32-softmax path must
agree where they are meant to (a negligible attention-dropout rate in training switches to
the explicit one), causality must hold, and two segments with memory must give the outputs
of one unbroken sequence. The last test runs on a GPU only: cuDNN against the explicit path.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm.models import transformer
from tests.model_helpers import assert_causal, build, init, tokens

ROTARY = dict(num_layers=2, num_heads=2, mlp_ratio=2, dropout=0.0, positions="rotary")


def scores(query, key):
  return jnp.einsum("bqhd,bkhd->bhqk", query, key)


def test_rotary_scores_depend_only_on_the_distance():
  query, key = jax.random.normal(jax.random.key(0), (2, 1, 5, 3, 8))  # [batch, positions, heads, head_width]
  positions = jnp.arange(5)
  at = lambda start: transformer.sinusoids(start + positions, 8)
  shifted = scores(transformer.rotate(query, at(7)), transformer.rotate(key, at(7)))
  np.testing.assert_allclose(shifted, scores(transformer.rotate(query, at(0)), transformer.rotate(key, at(0))),
                             rtol=1e-5, atol=1e-5)
  # Not a no-op: moving the queries alone (other distances) changes the scores.
  moved = scores(transformer.rotate(query, at(3)), transformer.rotate(key, at(0)))
  assert not np.allclose(moved, shifted, atol=1e-3)
  # A rotation: norms are kept.
  np.testing.assert_allclose(jnp.linalg.norm(transformer.rotate(query, at(5)), axis=-1),
                             jnp.linalg.norm(query, axis=-1), rtol=1e-5)


def test_jax_is_causal_is_aligned_top_left_so_memory_needs_an_explicit_mask():
  # Query i of T < S keys sees keys 0 ... i, not S - T + i: with memory M, query i sits at
  # key M + i, so SelfAttention passes its own mask. If this fails, jax changed the alignment;
  # the explicit mask stays right either way.
  query = jnp.zeros((1, 2, 1, 4))  # equal scores: the output is the mean of the visible values
  values = jnp.arange(4.0)[None, :, None, None] * jnp.ones((1, 4, 1, 4))
  attended = jax.nn.dot_product_attention(query, values, values, is_causal=True)
  np.testing.assert_allclose(attended[0, :, 0, 0], [0.0, 0.5])  # keys {0}, {0, 1}


def context_and_validity(memory: int, padded: bool):
  """Inputs [2, 6, 16], context [2, memory + 6, 16] and its validity: row 1 has only its
  last 2 memory slots filled and, if padded, its last 2 positions padded."""
  x, memory_states = jax.random.normal(jax.random.key(0), (2, 2, 6, 16))
  segment_valid = jnp.array([[True] * 6, [True] * 4 + [False] * 2]) if padded else jnp.ones((2, 6), bool)
  if memory == 0:
    return x, None, segment_valid if padded else None
  memory_valid = jnp.array([[True] * memory, [False] * (memory - 2) + [True] * 2])
  context = jnp.concatenate([memory_states[:, :memory], x], axis=1)
  return x, context, jnp.concatenate([memory_valid, segment_valid], axis=1)


@pytest.mark.parametrize("memory", [0, 4])
@pytest.mark.parametrize("window", [0, 3])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_fused_rotary_attention_matches_the_explicit_path(memory, window, padded):
  x, context, context_valid = context_and_validity(memory, padded)
  attention = transformer.SelfAttention(2, 2, window=window, dropout=1e-9, rotary=True)
  assert attention.uses_fused_path(train=False, memory=memory)
  assert not attention.uses_fused_path(train=True, memory=memory)
  params = attention.init(jax.random.key(1), x, context=context, context_valid=context_valid)
  call = lambda train: attention.apply(params, x, train=train, context=context, context_valid=context_valid,
                                       rngs={"dropout": jax.random.key(2)})
  fused, explicit = call(False), call(True)
  np.testing.assert_allclose(fused, explicit, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("body", [ROTARY, dict(ROTARY, attention_window=3), dict(ROTARY, memory_length=4)],
                         ids=["full", "banded", "memory"])
def test_rotary_model_is_causal(body):
  model = build("transformer", **body)
  token_ids = tokens(length=6)
  params = init(model, token_ids)
  carry = None
  if body.get("memory_length"):  # a non-empty memory, so attention over it is exercised too
    _, carry = model.apply({"params": params}, tokens(length=6, seed=1), train=False)
  assert_causal(model, params, token_ids, carry=carry)


def test_an_empty_rotary_memory_is_no_memory():
  token_ids = tokens(length=6)
  no_memory = build("transformer", **ROTARY)
  params = init(no_memory, token_ids)
  expected, _ = no_memory.apply({"params": params}, token_ids, train=False)
  model = build("transformer", **dict(ROTARY, memory_length=4))
  fresh, _ = model.apply({"params": params}, token_ids, train=False, carry=model.initial_carry(2))
  np.testing.assert_allclose(fresh, expected, rtol=1e-5, atol=1e-6)


def test_rotary_needs_an_even_head_width():
  model = build("transformer", width=18, **dict(ROTARY, num_heads=2))  # heads of 9
  with pytest.raises(ValueError, match="even head width"):
    init(model, tokens())


def test_the_rotary_recipe_variant_trains_on_the_fused_path(tiny_corpus, cache_dir, tmp_path):
  from configs import wt2_transformer
  from jaxlm.training import loop
  config = wt2_transformer.get_config("positions=rotary,smoke")
  body = config.model.transformer
  assert body.positions == "rotary" and body.memory_length > 0
  # Its training step takes the fused path (no attention dropout), memory and all.
  attention = transformer.SelfAttention(body.num_heads, body.num_layers, dropout=body.attention_dropout,
                                        rotary=True, implementation=body.attention_implementation)
  assert attention.uses_fused_path(train=True, memory=body.memory_length)
  config.data.path, config.data.cache_dir, config.train.eval_tokens = tiny_corpus, cache_dir, 0
  config.train.steps, config.train.log_every, config.train.eval_every = 1, 1, 1
  loop.train_and_evaluate(config, str(tmp_path), progress=False)
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  losses = [record["loss"] for record in records if record["kind"] in ("train", "valid")]
  assert len(losses) == 2 and np.all(np.isfinite(losses)), records


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN flash attention needs a GPU")
@pytest.mark.parametrize("memory", [0, 128])
def test_cudnn_rotary_attention_matches_the_explicit_path_on_gpu(memory):
  # The recipe's shape: 6 heads of 64, 128-token segments, bf16; row 1's memory is half empty
  # and its last 16 positions padded. bf16 tolerances: outputs and gradients within 2% of
  # their scale.
  width, length = 384, 128
  x, memory_states = jax.random.normal(jax.random.key(0), (2, 4, length, width), jnp.bfloat16)
  segment_valid = jnp.ones((4, length), bool).at[1, -16:].set(False)
  context, context_valid = None, segment_valid
  if memory:
    context = jnp.concatenate([memory_states[:, :memory], x], axis=1)
    memory_valid = jnp.ones((4, memory), bool).at[1, :memory // 2].set(False)
    context_valid = jnp.concatenate([memory_valid, segment_valid], axis=1)
  attention = transformer.SelfAttention(6, 16, jnp.bfloat16, dropout=1e-9, rotary=True, implementation="cudnn")
  params = attention.init(jax.random.key(1), x, context=context, context_valid=context_valid)

  def loss(params, train):
    outputs = attention.apply(params, x, train=train, context=context, context_valid=context_valid,
                              rngs={"dropout": jax.random.key(2)})
    return jnp.sum(outputs.astype(jnp.float32) ** 2), outputs

  (_, fused), fused_grads = jax.value_and_grad(loss, has_aux=True)(params, False)
  (_, explicit), explicit_grads = jax.value_and_grad(loss, has_aux=True)(params, True)
  real = np.asarray(segment_valid)[:, :, None]
  error = np.abs(np.asarray(fused, np.float32) - np.asarray(explicit, np.float32)) * real
  assert error.max() <= 0.02 * np.abs(np.asarray(explicit, np.float32)).max(), error.max()
  for fused_leaf, explicit_leaf in zip(jax.tree.leaves(fused_grads), jax.tree.leaves(explicit_grads)):
    difference = float(jnp.linalg.norm((fused_leaf - explicit_leaf).astype(jnp.float32)))
    assert difference <= 0.02 * float(jnp.linalg.norm(explicit_leaf.astype(jnp.float32))), difference
