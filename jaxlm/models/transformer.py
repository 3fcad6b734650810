"""Decoder-only transformer body: pre-LayerNorm blocks with causal self-attention.

Contract shared by every body (see jaxlm/models/__init__.py):
  __call__(inputs [batch, length, width], *, train, carry) -> (outputs, carry)
  initial_carry(batch_size) -> pytree whose leaves have batch as leading axis
The plain transformer carries nothing between batches: its carry is ().
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlm.models import layers


def sinusoidal_positions(length: int, width: int):
  """[length, width] fixed sinusoidal position encodings (Vaswani et al., 2017)."""
  positions = jnp.arange(length, dtype=jnp.float32)[:, None]
  inverse_frequencies = jnp.exp(-math.log(10000.0) * jnp.arange(0, width, 2, dtype=jnp.float32) / width)
  angles = positions * inverse_frequencies  # [length, width / 2]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)[:, :width]


class CausalSelfAttention(nn.Module):
  num_heads: int
  num_layers: int  # for the residual-projection init scale only
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    batch, length, width = x.shape
    head_width = width // self.num_heads
    qkv = nn.DenseGeneral((3, self.num_heads, head_width), dtype=self.dtype,
                          kernel_init=layers.gpt2_init(), name="qkv")(x)
    query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each [batch, length, heads, head_width]
    attended = jax.nn.dot_product_attention(query, key, value, is_causal=True)
    return nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype,
                           kernel_init=layers.gpt2_residual_init(self.num_layers), name="out")(attended)


class Block(nn.Module):
  num_heads: int
  mlp_width: int
  num_layers: int
  dropout: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    # Pre-norm: normalise the branch input, keep the residual stream untouched.
    attended = CausalSelfAttention(self.num_heads, self.num_layers, self.dtype, name="attention")(
        nn.LayerNorm(dtype=self.dtype, name="attention_norm")(x))
    x = x + nn.Dropout(self.dropout)(attended, deterministic=not train)
    hidden = nn.Dense(self.mlp_width, dtype=self.dtype, kernel_init=layers.gpt2_init(), name="mlp_in")(
        nn.LayerNorm(dtype=self.dtype, name="mlp_norm")(x))
    hidden = nn.Dense(x.shape[-1], dtype=self.dtype, kernel_init=layers.gpt2_residual_init(self.num_layers),
                      name="mlp_out")(nn.gelu(hidden))
    return x + nn.Dropout(self.dropout)(hidden, deterministic=not train)


class Transformer(nn.Module):
  """Fields are exactly the keys of `config.model.transformer`."""
  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: int = 4
  dropout: float = 0.1
  positions: str = "learned"  # "learned" | "sinusoidal"
  max_length: int = 512
  dtype: Any = jnp.float32

  def initial_carry(self, batch_size: int):
    del batch_size
    return ()

  @nn.compact
  def __call__(self, x, *, train: bool, carry=()):
    length, width = x.shape[1], x.shape[2]
    if length > self.max_length:
      raise ValueError(f"sequence length {length} exceeds model.transformer.max_length={self.max_length}")
    if self.positions == "learned":
      table = self.param("position_table", layers.gpt2_init(), (self.max_length, width), jnp.float32)
      x = x + table[:length].astype(self.dtype)
    elif self.positions == "sinusoidal":
      x = x + sinusoidal_positions(length, width).astype(self.dtype)
    else:
      raise ValueError(f"model.transformer.positions={self.positions!r}: use 'learned' or 'sinusoidal'")
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    for index in range(self.num_layers):
      x = Block(self.num_heads, self.mlp_ratio * width, self.num_layers, self.dropout, self.dtype,
                name=f"block_{index}")(x, train=train)
    return nn.LayerNorm(dtype=self.dtype, name="final_norm")(x), carry
