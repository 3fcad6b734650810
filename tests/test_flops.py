"""The model-FLOPs counter behind launch/benchmark.py, on programs with known counts."""

import jax
import jax.numpy as jnp

from jaxlm.tools import flops


def test_matrix_product_and_its_gradient():
  left, right = jnp.ones((8, 16)), jnp.ones((16, 32))
  assert flops.function_flops(lambda a, b: a @ b, left, right) == 2 * 8 * 16 * 32
  # Forward product plus the one backward product for d/d(left).
  assert flops.function_flops(jax.grad(lambda a, b: jnp.sum(a @ b)), left, right) == 2 * 2 * 8 * 16 * 32


def test_scan_bodies_count_once_per_iteration_and_jit_is_transparent():
  weights = jnp.ones((16, 16))

  def run(state):
    step = lambda carry, _: (jax.jit(lambda c: c @ weights)(carry), None)
    return jax.lax.scan(step, state, None, length=5)[0]

  assert flops.function_flops(run, jnp.ones((8, 16))) == 5 * 2 * 8 * 16 * 16


def test_batched_einsum_and_convolution():
  query, key = jnp.ones((2, 4, 8, 16)), jnp.ones((2, 4, 8, 16))
  assert flops.function_flops(lambda q, k: jnp.einsum("bhqd,bhkd->bhqk", q, k), query, key) == 2 * 2 * 4 * 8 * 8 * 16
  signal, kernel = jnp.ones((1, 3, 10)), jnp.ones((5, 3, 2))  # [batch, in, time], [out, in, window]
  convolve = lambda x, w: jax.lax.conv_general_dilated(x, w, (1,), "VALID")
  assert flops.function_flops(convolve, signal, kernel) == 2 * (1 * 5 * 9) * (3 * 2)
