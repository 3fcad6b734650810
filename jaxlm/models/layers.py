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


def embedding_dropout_scale(token_ids, vocab_size: int, rate: float, rng):
  """Discrete embedding dropout (Gal & Ghahramani, 2016; AWD-LSTM's `dropoute`).

  Drops whole word types: one keep/drop draw per vocabulary entry, so every
  occurrence of a dropped word anywhere in the batch is zeroed, and kept words are
  rescaled by 1/(1 - rate). Multiplying the input vectors by the returned scale is
  the same as dropping rows of the embedding table, but works for any input layer.

  Args:
    token_ids: int [batch, length].
    vocab_size: number of word types.
    rate: probability of dropping a word type.
    rng: PRNG key; one mask per call (per step).
  Returns:
    float32 [batch, length, 1] with entries 0 or 1/(1 - rate).
  """
  keep = 1.0 - rate
  kept_types = jax.random.bernoulli(rng, keep, (vocab_size,))  # [vocab]
  # A float scale per word type, gathered by token id.
  type_scale = jnp.where(kept_types, 1.0 / keep, 0.0).astype(jnp.float32)  # [vocab]
  return jnp.take(type_scale, token_ids, axis=0)[..., None]
