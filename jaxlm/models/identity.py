"""The "none" body: states are the input vectors themselves.

The FastText baseline (Joulin et al., 2017) is an input layer, a mean over the
sentence's vectors and a linear classifier: no body at all. With this body that
model is `model.input="bag"`, `model.family="none"` and a task head that pools (the
mean over real tokens) before its output layer, so the baseline runs through the
same trainer as every other family.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlm.models import layers


class Identity(nn.Module):
  """Fields are exactly the keys of `config.model.none`. No parameters, carry ()."""
  dropout: float = 0.0  # elementwise, on the input vectors
  causal: bool = False  # accepted so every body has it, and ignored: each output sees only its own token
  dtype: Any = jnp.float32
  remat: str = "none"  # accepted so every body has it (model.remat), and ignored: no layers to recompute

  def initial_carry(self, batch_size: int, width: int):
    del batch_size, width
    return ()

  def decode_cache(self, batch_size: int, width: int, length: int):
    del batch_size, width, length
    return ()

  @nn.compact
  def __call__(self, x, *, train: bool, carry=(), mask=None, decode: bool = False):
    """x [batch, length, width] -> (x, ()); position t depends on token t alone, so mask is not needed."""
    del carry, mask, decode
    return layers.Dropout(self.dropout)(x, deterministic=not train).astype(self.dtype), ()
