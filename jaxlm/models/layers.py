"""Small layers shared by every model family: initialisers and dropout variants.

Kept free of data-pipeline and tokenizer imports so importing a model is cheap.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

# GPT-2 initialisation: every weight N(0, 0.02); residual output projections are
# further scaled by 1/sqrt(2 * num_layers) so the residual stream's variance does
# not grow with depth.
GPT2_STDDEV = 0.02


def gpt2_init():
  return nn.initializers.normal(stddev=GPT2_STDDEV)


def gpt2_residual_init(num_layers: int):
  return nn.initializers.normal(stddev=GPT2_STDDEV / math.sqrt(2 * num_layers))


class LockedDropout(nn.Module):
  """Variational dropout: one mask per sequence, shared across time.

  Inputs are [batch, length, features]; the mask is [batch, 1, features].
  """
  rate: float

  @nn.compact
  def __call__(self, x, *, train: bool):
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0], 1, x.shape[-1]))
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype)
