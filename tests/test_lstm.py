"""AWD-LSTM body: weight drop, determinism, causality and carried state."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlm.models import lstm
from tests.model_helpers import assert_causal, build, init, tokens

BODY = dict(num_layers=2, hidden_size=24, weight_drop=0.5, dropout_input=0.3, dropout_between=0.3,
            dropout_output=0.3)


def test_carry_has_one_state_per_layer_and_last_layer_has_input_width():
  model = build("lstm", **BODY)
  carry = model.initial_carry(3)
  assert [tuple(c.shape) for c, h in carry] == [(3, 24), (3, 16)]
  _, new_carry = model.apply({"params": init(model, tokens())}, tokens(batch=3), train=False)
  assert jax.tree.map(jnp.shape, new_carry) == jax.tree.map(jnp.shape, carry)


def test_weight_drop_touches_only_recurrent_weights():
  # From the zero state the first step's output depends only on the input kernel and
  # bias, so a weight drop that spared them leaves step 0 unchanged and moves later steps.
  layer = lstm.LSTMLayer(size=8, weight_drop=0.9)
  x = jax.random.normal(jax.random.key(1), (2, 5, 6))
  zero = (jnp.zeros((2, 8)), jnp.zeros((2, 8)))
  params = layer.init(jax.random.key(0), x, zero, train=False)
  assert set(params["params"]) == {"input_kernel", "recurrent_kernel", "bias"}
  clean, _ = layer.apply(params, x, zero, train=False)
  dropped, _ = layer.apply(params, x, zero, train=True, rngs={"dropout": jax.random.key(2)})
  np.testing.assert_allclose(dropped[:, 0], clean[:, 0], rtol=1e-6)
  assert not jnp.allclose(dropped[:, 1:], clean[:, 1:])


def test_weight_drop_mask_is_shared_across_time():
  # The gradient of the output with respect to the recurrent kernel is exactly zero
  # where a weight was dropped. One mask for all time steps leaves about `rate` of the
  # entries at zero; a fresh mask per step would leave almost none (about 0.5**4 here).
  layer = lstm.LSTMLayer(size=8, weight_drop=0.5)
  x = jax.random.normal(jax.random.key(1), (2, 5, 6))
  zero = (jnp.zeros((2, 8)), jnp.zeros((2, 8)))
  params = layer.init(jax.random.key(0), x, zero, train=False)["params"]

  def total(recurrent_kernel):
    outputs, _ = layer.apply({"params": dict(params, recurrent_kernel=recurrent_kernel)}, x, zero,
                             train=True, rngs={"dropout": jax.random.key(3)})
    return outputs.sum()

  dropped_fraction = float(jnp.mean(jax.grad(total)(params["recurrent_kernel"]) == 0))
  assert 0.35 < dropped_fraction < 0.65, dropped_fraction


def test_eval_is_deterministic_and_train_is_not():
  model = build("lstm", **BODY)
  token_ids = tokens()
  params = init(model, token_ids)
  first, _ = model.apply({"params": params}, token_ids, train=False)
  second, _ = model.apply({"params": params}, token_ids, train=False, rngs={"dropout": jax.random.key(9)})
  np.testing.assert_array_equal(first, second)
  train_a, _ = model.apply({"params": params}, token_ids, train=True, rngs={"dropout": jax.random.key(1)})
  train_b, _ = model.apply({"params": params}, token_ids, train=True, rngs={"dropout": jax.random.key(2)})
  assert not jnp.allclose(train_a, train_b)


def test_causal():
  model = build("lstm", **BODY)
  token_ids = tokens(length=6)
  assert_causal(model, init(model, token_ids), token_ids)


def test_carried_state_equals_one_unbroken_sequence():
  model = build("lstm", **BODY)
  token_ids = tokens(length=10)
  params = init(model, token_ids)
  whole, whole_carry = model.apply({"params": params}, token_ids, train=False)
  first, carry = model.apply({"params": params}, token_ids[:, :4], train=False)
  second, second_carry = model.apply({"params": params}, token_ids[:, 4:], train=False, carry=carry)
  np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), whole, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), second_carry, whole_carry)


def test_zeroed_carry_row_restarts_that_stream():
  model = build("lstm", **BODY)
  token_ids = tokens(length=6)
  params = init(model, token_ids)
  _, carry = model.apply({"params": params}, token_ids, train=False)
  carry = jax.tree.map(lambda leaf: leaf.at[0].set(0.0), carry)  # what the trainer does at a stream start
  continued, _ = model.apply({"params": params}, token_ids, train=False, carry=carry)
  fresh, _ = model.apply({"params": params}, token_ids, train=False)
  np.testing.assert_allclose(continued[0], fresh[0], rtol=1e-6)
  assert not jnp.allclose(continued[1], fresh[1])
