"""TCN body: causality, the receptive field it reports, weight norm, determinism."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlm.models import tcn
from tests.model_helpers import assert_causal, build, init, tokens

BODY = dict(num_layers=2, hidden_size=24, kernel_size=3, dropout=0.2, dropout_input=0.1)


def test_receptive_field_formula():
  assert tcn.receptive_field(num_layers=2, kernel_size=3) == 13
  assert tcn.TCN(num_layers=4, kernel_size=3).receptive_field == 61  # Bai et al.'s word-level PTB model


def test_causal():
  model = build("tcn", **BODY)
  token_ids = tokens(length=8)
  assert_causal(model, init(model, token_ids), token_ids)


def test_outputs_depend_on_exactly_the_receptive_field():
  model = build("tcn", **BODY)
  field = model.body.receptive_field  # 13
  token_ids = tokens(length=field + 4)
  params = init(model, token_ids)
  outputs, _ = model.apply({"params": params}, token_ids, train=False)
  changed, _ = model.apply({"params": params}, token_ids.at[:, 0].add(1), train=False)
  assert not np.array_equal(outputs[:, field - 1], changed[:, field - 1])  # the farthest position it sees
  np.testing.assert_array_equal(outputs[:, field:], changed[:, field:])


def test_weight_norm_starts_at_the_direction():
  conv = tcn.DilatedConv(features=4, kernel_size=3, dilation=2)
  x = jax.random.normal(jax.random.key(1), (1, 7, 5))
  params = conv.init(jax.random.key(0), x)["params"]
  np.testing.assert_allclose(params["scale"], jnp.linalg.norm(params["direction"], axis=(0, 1)), rtol=1e-6)
  # Scaling the direction leaves the kernel, hence the output, unchanged.
  scaled = dict(params, direction=3.0 * params["direction"])
  np.testing.assert_allclose(conv.apply({"params": scaled}, x), conv.apply({"params": params}, x),
                             rtol=1e-5, atol=1e-7)


def test_eval_is_deterministic_and_train_is_not():
  model = build("tcn", **BODY)
  token_ids = tokens()
  params = init(model, token_ids)
  assert model.initial_carry(2) == ()
  first, carry = model.apply({"params": params}, token_ids, train=False)
  second, _ = model.apply({"params": params}, token_ids, train=False)
  assert carry == ()
  np.testing.assert_array_equal(first, second)
  train_a, _ = model.apply({"params": params}, token_ids, train=True, rngs={"dropout": jax.random.key(1)})
  train_b, _ = model.apply({"params": params}, token_ids, train=True, rngs={"dropout": jax.random.key(2)})
  assert not jnp.allclose(train_a, train_b)
