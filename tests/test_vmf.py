"""log C_m(kappa) and its gradient against scipy in float64, over the whole promised range."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from jaxlm.models.heads import vmf

KAPPAS = np.logspace(-3, 4, 57)
# Dimensions from 2 to 1,024 (FastText's 300 among them), plus orders either side of the
# Debye switch (v = 4.5, 5) and odd m.
DIMS = [2, 3, 4, 11, 12, 16, 100, 300, 512, 1024]


def _log_bessel_and_ratio(order: float, kappa: np.ndarray):
  """float64 log I_v(kappa) and I_{v+1}/I_v from scipy's exponentially scaled ive.

  Where ive underflows (large v, small kappa: I_511(1e-3) ~ 1e-2850) the power series
  (kappa/2)^v / Gamma(v+1) * sum_j (kappa^2/4)^j / (j! (v+1)_j) is summed in float64
  instead; that only happens for kappa < 300, where 800 terms are exact to float64.
  """
  scaled = special.ive(order, kappa)
  underflow = scaled <= 1e-280
  assert np.all(kappa[underflow] < 300)
  scaled = np.where(underflow, 1.0, scaled)
  small = np.minimum(kappa, 300.0)[None, :]
  j = np.arange(1, 800)[:, None]

  def normalised_series(v):
    return 1.0 + np.cumprod((small / 2) ** 2 / (j * (v + j)), axis=0).sum(axis=0)

  series_log = (order * np.log(small[0] / 2) - special.gammaln(order + 1)
                + np.log(normalised_series(order)))
  series_ratio = (small[0] / 2 * normalised_series(order + 1)
                  / ((order + 1) * normalised_series(order)))
  return (np.where(underflow, series_log, np.log(scaled) + kappa),
          np.where(underflow, series_ratio, special.ive(order + 1, kappa) / scaled))


def _reference(dim: int, kappa: np.ndarray):
  order = dim / 2 - 1
  log_bessel, ratio = _log_bessel_and_ratio(order, kappa)
  log_c = order * np.log(kappa) - (order + 1) * math.log(2 * math.pi) - log_bessel
  return log_c, -ratio


@pytest.mark.parametrize("dim", DIMS)
def test_log_normaliser_and_gradient_match_scipy(dim):
  kappa = jnp.asarray(KAPPAS, jnp.float32)
  value = jax.jit(vmf.log_normaliser, static_argnums=1)(kappa, dim)
  # Elementwise, so the gradient of the sum is the vector of derivatives.
  gradient = jax.jit(jax.grad(lambda k: vmf.log_normaliser(k, dim).sum()))(kappa)
  assert value.dtype == jnp.float32 and np.all(np.isfinite(value))
  # Compare at the float32-rounded kappa. Measured worst errors: value 3e-6, gradient 1.5e-5
  # (at m = 12, the lowest order the Debye expansion serves).
  expected_value, expected_gradient = _reference(dim, np.asarray(kappa, np.float64))
  np.testing.assert_allclose(value, expected_value, rtol=1e-4)
  np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-4)


@pytest.mark.parametrize("dim", [3, 300])
def test_log_normaliser_at_zero_is_the_sphere_area(dim):
  # C_m(0) = 1 / area of the unit sphere in R^m = Gamma(m/2) / (2 pi^(m/2)); slope 0.
  expected = math.lgamma(dim / 2) - math.log(2) - dim / 2 * math.log(math.pi)
  value, gradient = jax.value_and_grad(vmf.log_normaliser)(jnp.float32(0.0), dim)
  np.testing.assert_allclose(value, expected, rtol=1e-6)
  assert gradient == 0.0


def test_closed_form_for_three_dimensions():
  # C_3(k) = k / (4 pi sinh k), so the Bessel ratio is coth k - 1/k.
  kappa = np.array([0.01, 0.5, 3.0, 30.0])
  expected = np.log(kappa / (4 * np.pi * np.sinh(kappa)))
  kappa32 = jnp.asarray(kappa, jnp.float32)
  np.testing.assert_allclose(vmf.log_normaliser(kappa32, 3), expected, rtol=1e-6)
  np.testing.assert_allclose(vmf.bessel_ratio(kappa32, 3),
                             1 / np.tanh(kappa) - 1 / kappa, rtol=1e-5)


def test_rejects_a_bad_dimension():
  with pytest.raises(ValueError, match="integer >= 2"):
    vmf.log_normaliser(jnp.float32(1.0), 1)
