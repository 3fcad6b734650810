"""Decoder-only transformer body: pre-LayerNorm blocks with causal self-attention.

Contract shared by every body (see jaxlm/models/__init__.py):
  __call__(inputs [batch, length, width], *, train, carry) -> (outputs, carry)
  initial_carry(batch_size, width) -> pytree whose leaves have batch as leading axis

Options beyond the GPT-2 baseline (each off by default):
  input_dropout / output_dropout: locked dropout, one mask per sequence across time;
  attention_dropout: dropout on the attention probabilities;
  attention_window = w > 0: each position sees only the last w positions (itself included);
  positions = "relative" with memory_length = M > 0: Transformer-XL (Dai et al., 2019).
    Each layer's input of the previous segment is kept (no gradient) as memory and
    attended to; positions enter attention only through relative distances with the
    learned biases u (content) and v (position). Carry: {"memory": [batch, layers, M,
    width], "filled": [batch] int32}; `filled` counts the valid most recent memory
    slots, so the all-zeros carry is an empty memory. With M = 0 the carry is ().

The fast path, jax.nn.dot_product_attention (cuDNN flash attention with
attention_implementation="cudnn" in bf16), serves absolute positions without attention
dropout in training; relative positions, memory or attention dropout take an explicit
float32-softmax path.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlm.models import layers


def sinusoids(positions, width: int):
  """[n, width] sinusoidal encodings of float positions [n] (Vaswani et al., 2017)."""
  inverse_frequencies = jnp.exp(-math.log(10000.0) * jnp.arange(0, width, 2, dtype=jnp.float32) / width)
  angles = positions.astype(jnp.float32)[:, None] * inverse_frequencies  # [n, width / 2]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)[:, :width]


def sinusoidal_positions(length: int, width: int):
  """[length, width] fixed sinusoidal position encodings."""
  return sinusoids(jnp.arange(length), width)


def relative_shift(scores):
  """Re-indexes position scores from distance to key position (Transformer-XL's shift).

  Queries are the last `length` of `keys` positions, so query i and key j are
  memory + i - j apart (memory = keys - length). Input column c holds distance
  keys - 1 - c; the output is out[..., i, j] = scores[..., i, j + length - 1 - i].
  Padding one zero column and reading the buffer with rows one longer shifts row i
  left by length - 1 - i without a gather. Entries with j > memory + i (the future)
  are garbage and must be masked.
  """
  *leading, length, keys = scores.shape
  padded = jnp.pad(scores, [(0, 0)] * len(leading) + [(0, 0), (1, 0)])  # [..., length, keys + 1]
  padded = padded.reshape(*leading, keys + 1, length)[..., 1:, :]  # drop the first `length` entries
  return padded.reshape(*leading, length, keys)


class CausalSelfAttention(nn.Module):
  num_heads: int
  num_layers: int  # for the residual-projection init scale only
  dtype: Any = jnp.float32
  window: int = 0  # > 0: see only the last `window` positions
  dropout: float = 0.0  # on attention probabilities
  relative: bool = False  # Transformer-XL relative position scores
  implementation: str = "xla"  # jax.nn.dot_product_attention backend on the fast path

  @nn.compact
  def __call__(self, x, *, train: bool = False, context=None, context_valid=None, relative_encodings=None):
    """Args:
      x: [batch, length, width] normalised queries' inputs.
      context: [batch, memory + length, width], [memory; x] normalised; None = x.
      context_valid: bool [batch, memory + length], False for empty memory slots.
      relative_encodings: [memory + length, width] encodings of distances memory + length - 1 ... 0.
    """
    batch, length, width = x.shape
    head_width = width // self.num_heads
    context = x if context is None else context
    memory = context.shape[1] - length
    qkv = nn.DenseGeneral((3, self.num_heads, head_width), dtype=self.dtype,
                          kernel_init=layers.gpt2_init(), name="qkv")(context)
    query = qkv[:, memory:, 0]  # [batch, length, heads, head_width]
    key, value = qkv[:, :, 1], qkv[:, :, 2]  # each [batch, keys, heads, head_width]

    if not (self.relative or memory > 0 or (train and self.dropout > 0.0)):
      attended = jax.nn.dot_product_attention(
          query, key, value, is_causal=True, implementation=self.implementation,
          local_window_size=(self.window - 1, 0) if self.window > 0 else None)
    else:
      if self.relative:
        content_bias = self.param("content_bias", layers.gpt2_init(), (self.num_heads, head_width))  # u
        position_bias = self.param("position_bias", layers.gpt2_init(), (self.num_heads, head_width))  # v
        relative_keys = nn.DenseGeneral((self.num_heads, head_width), use_bias=False, dtype=self.dtype,
                                        kernel_init=layers.gpt2_init(), name="relative_key")(
                                            relative_encodings)  # [keys, heads, head_width]
        scores = jnp.einsum("bqhd,bkhd->bhqk", query + content_bias.astype(self.dtype), key,
                            preferred_element_type=jnp.float32)
        position_scores = jnp.einsum("bqhd,khd->bhqk", query + position_bias.astype(self.dtype),
                                     relative_keys, preferred_element_type=jnp.float32)
        scores = scores + relative_shift(position_scores)  # [batch, heads, length, keys]
      else:
        scores = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
      scores = scores / math.sqrt(head_width)
      distance = memory + jnp.arange(length)[:, None] - jnp.arange(memory + length)[None, :]  # [length, keys]
      allowed = distance >= 0
      if self.window > 0:
        allowed &= distance < self.window
      allowed = allowed[None, None]  # [1, 1, length, keys]
      if context_valid is not None:
        allowed = allowed & context_valid[:, None, None, :]
      # A query always sees itself, so no row is fully masked.
      scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
      probabilities = nn.Dropout(self.dropout)(jax.nn.softmax(scores, axis=-1), deterministic=not train)
      attended = jnp.einsum("bhqk,bkhd->bqhd", probabilities.astype(self.dtype), value)
    return nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype,
                           kernel_init=layers.gpt2_residual_init(self.num_layers), name="out")(attended)


class Block(nn.Module):
  num_heads: int
  mlp_width: int
  num_layers: int
  dropout: float
  dtype: Any = jnp.float32
  attention_window: int = 0
  attention_dropout: float = 0.0
  relative: bool = False
  attention_implementation: str = "xla"

  @nn.compact
  def __call__(self, x, *, train: bool, memory=None, memory_valid=None, relative_encodings=None):
    """x [batch, length, width]; memory [batch, M, width] and memory_valid bool [batch, M] or None."""
    # Pre-norm: normalise the branch input, keep the residual stream untouched.
    norm = nn.LayerNorm(dtype=self.dtype, name="attention_norm")
    normed = norm(x)
    context, context_valid = None, None
    if memory is not None:
      context = jnp.concatenate([norm(memory.astype(self.dtype)), normed], axis=1)  # [batch, M + length, width]
      context_valid = jnp.concatenate([memory_valid, jnp.ones(x.shape[:2], bool)], axis=1)
    attended = CausalSelfAttention(
        self.num_heads, self.num_layers, self.dtype, window=self.attention_window,
        dropout=self.attention_dropout, relative=self.relative,
        implementation=self.attention_implementation, name="attention")(
            normed, train=train, context=context, context_valid=context_valid,
            relative_encodings=relative_encodings)
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
  dropout: float = 0.1  # on the input (elementwise) and on every residual branch
  positions: str = "learned"  # "learned" | "sinusoidal" | "relative" (Transformer-XL)
  max_length: int = 512  # longest segment for learned/sinusoidal positions
  input_dropout: float = 0.0  # locked dropout on the body input
  output_dropout: float = 0.0  # locked dropout after the final LayerNorm
  attention_dropout: float = 0.0
  attention_window: int = 0  # > 0: banded attention over the last w positions; 0 = full causal
  memory_length: int = 0  # > 0: Transformer-XL memory of the previous segment (needs "relative")
  attention_implementation: str = "xla"  # "xla" | "cudnn" (GPU flash attention, bf16/fp16)
  dtype: Any = jnp.float32

  def initial_carry(self, batch_size: int, width: int):
    if self.memory_length == 0:
      return ()
    return {"memory": jnp.zeros((batch_size, self.num_layers, self.memory_length, width), self.dtype),
            "filled": jnp.zeros((batch_size,), jnp.int32)}

  @nn.compact
  def __call__(self, x, *, train: bool, carry=()):
    batch, length, width = x.shape
    relative = self.positions == "relative"
    if self.memory_length > 0 and not relative:
      raise ValueError("model.transformer.memory_length > 0 needs positions='relative'")
    x = layers.LockedDropout(self.input_dropout, name="input_dropout")(x, train=train)
    relative_encodings = None
    if relative:
      # Relative positions add nothing to the input, so a word removed by embedding
      # dropout (a zero vector) at a position with no context would start an all-zero
      # residual stream that stays zero through every block while the biases are zero
      # (at init). LayerNorm's gradient there is 1/sqrt(epsilon) = 1000 per norm: 32
      # norms overflow float32 and the first step's gradient is NaN (seen with the
      # 16-layer wt2_transformer; 2 layers already give 1e6). A learned offset on every
      # position keeps such rows off zero; for kept words it is a shift of the table.
      offset = self.param("input_offset", layers.gpt2_init(), (width,), jnp.float32)
      x = x + offset.astype(x.dtype)
      # Distances keys - 1 ... 0, the order relative_shift expects; no length limit.
      keys = self.memory_length + length
      relative_encodings = sinusoids(jnp.arange(keys - 1, -1, -1), width).astype(self.dtype)
    elif length > self.max_length:
      raise ValueError(f"sequence length {length} exceeds model.transformer.max_length={self.max_length}")
    elif self.positions == "learned":
      table = self.param("position_table", layers.gpt2_init(), (self.max_length, width), jnp.float32)
      x = x + table[:length].astype(self.dtype)
    elif self.positions == "sinusoidal":
      x = x + sinusoidal_positions(length, width).astype(self.dtype)
    else:
      raise ValueError(f"model.transformer.positions={self.positions!r}: use 'learned', 'sinusoidal' "
                       "or 'relative'")
    x = nn.Dropout(self.dropout)(x, deterministic=not train)

    memory_valid, new_memory = None, []
    if self.memory_length > 0:
      if carry is None or carry == ():
        carry = self.initial_carry(batch, width)
      # Slots are right-aligned: the last `filled` of them hold the most recent states.
      memory_valid = jnp.arange(self.memory_length)[None, :] >= (
          self.memory_length - carry["filled"][:, None])  # [batch, M]
    for index in range(self.num_layers):
      layer_memory = None
      if self.memory_length > 0:
        # No gradient into the previous segment (Transformer-XL's stop-gradient).
        layer_memory = jax.lax.stop_gradient(carry["memory"][:, index])  # [batch, M, width]
        new_memory.append(jnp.concatenate([layer_memory, x.astype(layer_memory.dtype)], axis=1)
                          [:, -self.memory_length:])
      x = Block(self.num_heads, self.mlp_ratio * width, self.num_layers, self.dropout, self.dtype,
                attention_window=self.attention_window, attention_dropout=self.attention_dropout,
                relative=relative, attention_implementation=self.attention_implementation,
                name=f"block_{index}")(x, train=train, memory=layer_memory, memory_valid=memory_valid,
                                       relative_encodings=relative_encodings)
    x = nn.LayerNorm(dtype=self.dtype, name="final_norm")(x)
    x = layers.LockedDropout(self.output_dropout, name="output_dropout")(x, train=train)
    if self.memory_length > 0:
      carry = {"memory": jax.lax.stop_gradient(jnp.stack(new_memory, axis=1)),  # [batch, layers, M, width]
               "filled": jnp.minimum(carry["filled"] + length, self.memory_length)}
    return x, carry
