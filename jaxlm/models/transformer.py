"""Transformer body: pre-LayerNorm blocks with causal (decoder) or bidirectional (encoder) self-attention.

Contract shared by every body (see jaxlm/models/__init__.py):
  __call__(inputs [batch, length, width], *, train, carry, mask=None) -> (outputs, carry)
  initial_carry(batch_size, width) -> pytree whose leaves have batch as leading axis

causal=True (the default) is the decoder: position i attends to positions <= i.
causal=False is the encoder (masked-LM pre-training, classification, tagging, span
QA): every position attends to every real position. `mask` (bool [batch, length],
False at right-padding) removes padded keys in both modes, so outputs at real tokens
do not depend on the padding; outputs at padded positions are finite and meaningless.

Options beyond the GPT-2 baseline (each off by default):
  input_dropout / output_dropout: locked dropout, one mask per sequence across time;
  attention_dropout: dropout on the attention probabilities;
  attention_window = w > 0: each position sees only the last w positions (itself included);
    for an encoder the band is symmetric, |i - j| < w;
  positions = "relative" with memory_length = M > 0: Transformer-XL (Dai et al., 2019).
    Each layer's input of the previous segment is kept (no gradient) as memory and
    attended to; positions enter attention only through relative distances with the
    learned biases u (content) and v (position). Carry: {"memory": [batch, layers, M,
    width], "filled": [batch] int32}; `filled` counts the valid most recent memory
    slots, so the all-zeros carry is an empty memory. With M = 0 the carry is ().
    Memory is a stream's past, so it needs causal=True. With a mask, padded positions
    still enter the memory: a padded row is the end of its stream and must be reset.
  positions = "relative" with causal=False: the same scores over signed distances
    i - j in -(length - 1) ... length - 1 (keys to the right have negative distances).
  positions = "rotary" (RoPE, Su et al., 2021): each head's query and key at position p
    are rotated by angles p * theta_k (theta_k = 10000^(-2k / head_width), the sinusoids'
    frequencies), so a query-key score depends on the two positions only through their
    distance; nothing is learned and nothing enters the scores but rotated q and k, so
    the fused kernel takes it as it is. Memory works as with "relative" (same carry):
    keys are numbered 0 ... M + length - 1 over [memory; segment], query i is M + i.

Incremental decoding (decode=True, a causal body): the carry is a key/value cache from
decode_cache(batch, width, length); a call with the next tokens returns their states and
the cache with their keys and values. Learned and sinusoidal positions are read at the
cache's position, relative scores at the distances to every cached key; memory is not used
(Transformer.decode says why). Training and evaluation never take this path.

The fast path, jax.nn.dot_product_attention (cuDNN flash attention with
attention_implementation="cudnn" in bf16), serves absolute and rotary positions without
attention dropout in training; relative positions or attention dropout in training take
an explicit float32-softmax path, and so does a banded encoder on cuDNN (which has no
right window). Without memory the fast path gets the padding as per-row key lengths
(cuDNN's native padding mask), so it assumes right-padding, and the causal and window
masks as flags. With memory (rotary) it gets one explicit boolean mask [batch, 1, length,
M + length] instead: jax.nn.dot_product_attention's is_causal and local window are
aligned top-left (query i sees keys 0 ... i, jax 0.10.2's reference
_get_causal_mask(T, S) = tril(ones(T, S)); cuDNN's CAUSAL is top-left too), which is
wrong once query i sits at key M + i, and the empty memory slots are on the left, which
per-row key lengths cannot express. On cuDNN the mask becomes an additive bf16 bias
(still the fused kernel; it reads the [batch, 1, length, keys] bias and, in the
backward, writes its unused gradient). The explicit path applies any key mask.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlm import errors
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

  An encoder passes keys = 2 * length - 1 columns, distances length - 1 ... -(length - 1);
  then every j + length - 1 - i is a real column, and the first `length` output columns
  are out[..., i, j] = the score at distance i - j, for every i and j.
  """
  *leading, length, keys = scores.shape
  padded = jnp.pad(scores, [(0, 0)] * len(leading) + [(0, 0), (1, 0)])  # [..., length, keys + 1]
  padded = padded.reshape(*leading, keys + 1, length)[..., 1:, :]  # drop the first `length` entries
  return padded.reshape(*leading, length, keys)


def allowed_keys(length: int, memory: int, window: int, causal: bool):
  """bool [length, memory + length]: which keys each query may see, before padding.

  Query i sits at key position memory + i. Causal: keys at distance 0 ... window - 1
  back (all of the past when window = 0); encoder: keys with |distance| < window
  (every key when window = 0).
  """
  distance = memory + jnp.arange(length)[:, None] - jnp.arange(memory + length)[None, :]  # [length, keys]
  if not causal:
    return jnp.abs(distance) < window if window > 0 else jnp.ones(distance.shape, bool)
  allowed = distance >= 0
  if window > 0:
    allowed &= distance < window
  return allowed


def attention_mask(length: int, memory: int, window: int, causal: bool, context_valid=None):
  """bool [batch or 1, 1, length, memory + length]: allowed_keys, less the invalid keys
  (context_valid bool [batch, memory + length], None = all real)."""
  allowed = allowed_keys(length, memory, window, causal)[None, None]  # [1, 1, length, keys]
  if context_valid is not None:
    allowed = allowed & context_valid[:, None, None, :]
  return allowed


def rotate(x, encodings):
  """Rotary position embedding of x [batch, n, heads, head_width] (Su et al., 2021).

  encodings: sinusoids(positions, head_width) [n, head_width], i.e. [sin | cos] of the
  angles position * theta_k, k < head_width / 2. Feature k is paired with feature
  k + head_width / 2 (GPT-NeoX's split halves, contiguous slices rather than interleaved
  pairs) and each pair is rotated by its angle, in float32.
  """
  half = x.shape[-1] // 2
  sin, cos = encodings[None, :, None, :half], encodings[None, :, None, half:]  # [1, n, 1, half]
  first, second = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  return jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1).astype(x.dtype)


def fused_window(window: int, causal: bool):
  """jax.nn.dot_product_attention's (left, right) local_window_size for attention_window."""
  if window == 0:
    return None
  return (window - 1, 0) if causal else (window - 1, window - 1)


def relative_distances(length: int, memory: int, causal: bool):
  """The distances relative encodings are made for, in the column order relative_shift expects."""
  if causal:
    return jnp.arange(memory + length - 1, -1, -1)  # memory + length - 1 ... 0; no length limit
  return jnp.arange(length - 1, -length, -1)  # length - 1 ... -(length - 1)


class SelfAttention(nn.Module):
  num_heads: int
  num_layers: int  # for the residual-projection init scale only
  dtype: Any = jnp.float32
  window: int = 0  # > 0: see only positions fewer than `window` away (causal: only back)
  dropout: float = 0.0  # on attention probabilities
  relative: bool = False  # Transformer-XL relative position scores
  implementation: str = "xla"  # jax.nn.dot_product_attention backend on the fast path
  causal: bool = True  # False: bidirectional (an encoder)
  rotary: bool = False  # rotate queries and keys by their positions (RoPE)

  def uses_fused_path(self, *, train: bool, memory: int) -> bool:
    # With memory the fused call takes an explicit mask (see the module docstring), so
    # memory alone does not leave it; jax.nn.dot_product_attention has no dropout.
    del memory
    if self.relative or (train and self.dropout > 0.0):
      return False
    # cuDNN has no right window, so a banded encoder on cuDNN takes the explicit path.
    return self.causal or self.window == 0 or self.implementation != "cudnn"

  def cached_attention(self, query, key, value, cache, position, relative_terms):
    """Incremental decoding: queries of positions position ... position + length - 1 attend to
    every cached earlier position and to themselves, as the causal path over the whole prefix does.

    query, key, value: [batch, length, heads, head_width] of the new positions.
    cache: {"keys", "values"} [batch, capacity, heads, head_width], position j at slot j (slots
      from `position` on are empty and written here). position: int32 scalar.
    relative_terms: (u, v, relative keys [capacity, heads, head_width] of distances 0 ... capacity - 1),
      relative positions only; the keys do not depend on the position, so XLA hoists them out of a
      decoding loop (seen in the compiled HLO of jaxlm.tools.generate's loop: one [capacity, width]
      product, before the loop).
    Returns (attended [batch, length, heads, head_width], the cache with the new keys and values).
    """
    length, head_width = query.shape[1], query.shape[-1]
    keys = jax.lax.dynamic_update_slice_in_dim(cache["keys"], key.astype(cache["keys"].dtype), position, axis=1)
    values = jax.lax.dynamic_update_slice_in_dim(cache["values"], value.astype(cache["values"].dtype),
                                                 position, axis=1)
    capacity = keys.shape[1]
    distance = position + jnp.arange(length)[:, None] - jnp.arange(capacity)[None, :]  # [length, capacity]
    if self.relative:
      content_bias, position_bias, relative_keys = relative_terms
      scores = jnp.einsum("bqhd,bkhd->bhqk", query + content_bias.astype(self.dtype), keys,
                          preferred_element_type=jnp.float32)
      by_distance = jnp.einsum("bqhd,khd->bhqk", query + position_bias.astype(self.dtype), relative_keys,
                               preferred_element_type=jnp.float32)  # [batch, heads, length, distances]
      # The future (negative distances) is clipped here and masked below.
      scores = scores + jnp.take_along_axis(by_distance, jnp.clip(distance, 0, capacity - 1)[None, None], axis=-1)
    else:
      scores = jnp.einsum("bqhd,bkhd->bhqk", query, keys, preferred_element_type=jnp.float32)
    scores = scores / math.sqrt(head_width)
    allowed = distance >= 0  # empty slots lie in the future of every query
    if self.window > 0:
      allowed &= distance < self.window
    scores = jnp.where(allowed[None, None], scores, jnp.finfo(jnp.float32).min)
    attended = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1).astype(self.dtype), values)
    return attended, {"keys": keys, "values": values}

  @nn.compact
  def __call__(self, x, *, train: bool = False, context=None, context_valid=None, relative_encodings=None,
               cache=None, position=None):
    """Args:
      x: [batch, length, width] normalised queries' inputs.
      context: [batch, memory + length, width], [memory; x] normalised; None = x.
      context_valid: bool [batch, memory + length], False for empty memory slots and
        padded positions; None = every key is real. Without memory it is the right-padding mask.
      relative_encodings: encodings of relative_distances(length, memory, causal): causal
        [memory + length, width] for distances memory + length - 1 ... 0; encoder
        [2 * length - 1, width] for distances length - 1 ... -(length - 1).
      cache, position: incremental decoding (cached_attention; relative_encodings then encode
        distances 0 ... capacity - 1); returns (outputs, cache) instead of outputs.
    """
    batch, length, width = x.shape
    head_width = width // self.num_heads
    context = x if context is None else context
    memory = context.shape[1] - length
    qkv = nn.DenseGeneral((3, self.num_heads, head_width), dtype=self.dtype,
                          kernel_init=layers.gpt2_init(), name="qkv")(context)
    query = qkv[:, memory:, 0]  # [batch, length, heads, head_width]
    key, value = qkv[:, :, 1], qkv[:, :, 2]  # each [batch, keys, heads, head_width]
    if self.rotary:
      if head_width % 2:
        raise errors.ConfigError(f"positions='rotary' needs an even head width; got model.width / num_heads = "
                                 f"{head_width}")
      if cache is None:
        encodings = sinusoids(jnp.arange(memory + length), head_width)  # [keys, head_width]; query i is key memory + i
        query, key = rotate(query, encodings[memory:]), rotate(key, encodings)
      else:  # decoding: the new tokens are positions position ... position + length - 1; cached keys are rotated
        encodings = sinusoids(position + jnp.arange(length), head_width)
        query, key = rotate(query, encodings), rotate(key, encodings)

    relative_terms = None
    if self.relative:  # Transformer-XL's u, v and keys of the encoded distances
      content_bias = self.param("content_bias", layers.gpt2_init(), (self.num_heads, head_width))  # u
      position_bias = self.param("position_bias", layers.gpt2_init(), (self.num_heads, head_width))  # v
      relative_keys = nn.DenseGeneral((self.num_heads, head_width), use_bias=False, dtype=self.dtype,
                                      kernel_init=layers.gpt2_init(), name="relative_key")(
                                          relative_encodings)  # [distances, heads, head_width]
      relative_terms = content_bias, position_bias, relative_keys

    if cache is not None:
      attended, cache = self.cached_attention(query, key, value, cache, position, relative_terms)
    elif self.uses_fused_path(train=train, memory=memory):
      key_lengths = mask = None
      if memory > 0:
        # Top-left is_causal and per-row key lengths do not fit memory: one explicit mask.
        mask = attention_mask(length, memory, self.window, self.causal, context_valid)
      elif context_valid is not None:
        # Right-padding as per-row key counts. At least 1, so a row of padding alone
        # (a filler row of a last partial batch) still has a key and stays finite.
        key_lengths = jnp.maximum(jnp.sum(context_valid, axis=-1), 1).astype(jnp.int32)  # [batch]
      attended = jax.nn.dot_product_attention(
          query, key, value, mask=mask, is_causal=self.causal and mask is None,
          implementation=self.implementation, key_value_seq_lengths=key_lengths,
          local_window_size=None if mask is not None else fused_window(self.window, self.causal))
    else:
      if self.relative:
        content_bias, position_bias, relative_keys = relative_terms
        scores = jnp.einsum("bqhd,bkhd->bhqk", query + content_bias.astype(self.dtype), key,
                            preferred_element_type=jnp.float32)
        position_scores = jnp.einsum("bqhd,khd->bhqk", query + position_bias.astype(self.dtype),
                                     relative_keys, preferred_element_type=jnp.float32)
        # An encoder has 2 * length - 1 distances; the first `keys` shifted columns are its keys.
        position_scores = relative_shift(position_scores)[..., :memory + length]
        scores = scores + position_scores  # [batch, heads, length, keys]
      else:
        scores = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
      scores = scores / math.sqrt(head_width)
      allowed = attention_mask(length, memory, self.window, self.causal, context_valid)
      # A row with no allowed key (a padded query, or a filler row of padding alone) has
      # equal scores everywhere: a uniform, finite softmax whose output nobody reads.
      scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
      probabilities = layers.Dropout(self.dropout)(jax.nn.softmax(scores, axis=-1), deterministic=not train)
      attended = jnp.einsum("bhqk,bkhd->bqhd", probabilities.astype(self.dtype), value)
    output = nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype,
                             kernel_init=layers.gpt2_residual_init(self.num_layers), name="out")(attended)
    return output if cache is None else (output, cache)




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
  causal: bool = True
  rotary: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool, memory=None, memory_valid=None, relative_encodings=None, mask=None,
               cache=None, position=None):
    """x [batch, length, width]; memory [batch, M, width] and memory_valid bool [batch, M] or None;
    mask bool [batch, length] (False at padding) or None. With a decode `cache` (and `position`,
    SelfAttention.cached_attention) returns (x, cache).
    """
    # Pre-norm: normalise the branch input, keep the residual stream untouched.
    norm = nn.LayerNorm(dtype=self.dtype, name="attention_norm")
    normed = norm(x)
    context, context_valid = None, mask
    if memory is not None:
      context = jnp.concatenate([norm(memory.astype(self.dtype)), normed], axis=1)  # [batch, M + length, width]
      segment_valid = jnp.ones(x.shape[:2], bool) if mask is None else mask
      context_valid = jnp.concatenate([memory_valid, segment_valid], axis=1)
    attended = SelfAttention(
        self.num_heads, self.num_layers, self.dtype, window=self.attention_window,
        dropout=self.attention_dropout, relative=self.relative,
        implementation=self.attention_implementation, causal=self.causal, rotary=self.rotary,
        name="attention")(
            normed, train=train, context=context, context_valid=context_valid,
            relative_encodings=relative_encodings, cache=cache, position=position)
    if cache is not None:
      attended, cache = attended
    x = x + layers.Dropout(self.dropout)(attended, deterministic=not train)
    hidden = nn.Dense(self.mlp_width, dtype=self.dtype, kernel_init=layers.gpt2_init(), name="mlp_in")(
        nn.LayerNorm(dtype=self.dtype, name="mlp_norm")(x))
    hidden = nn.Dense(x.shape[-1], dtype=self.dtype, kernel_init=layers.gpt2_residual_init(self.num_layers),
                      name="mlp_out")(nn.gelu(hidden))
    x = x + layers.Dropout(self.dropout)(hidden, deterministic=not train)
    return x if cache is None else (x, cache)


class Transformer(nn.Module):
  """Fields are exactly the keys of `config.model.transformer`."""
  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: int = 4
  dropout: float = 0.1  # on the input (elementwise) and on every residual branch
  positions: str = "learned"  # "learned" | "sinusoidal" | "relative" (Transformer-XL) | "rotary" (RoPE)
  max_length: int = 512  # longest segment for learned/sinusoidal positions
  input_dropout: float = 0.0  # locked dropout on the body input
  output_dropout: float = 0.0  # locked dropout after the final LayerNorm
  attention_dropout: float = 0.0
  attention_window: int = 0  # > 0: banded attention, |i - j| < w (causal: the last w); 0 = full
  memory_length: int = 0  # > 0: memory of the previous segment (needs "relative" or "rotary", causal)
  attention_implementation: str = "xla"  # "xla" | "cudnn" (GPU flash attention, bf16/fp16)
  causal: bool = True  # False: a bidirectional encoder
  dtype: Any = jnp.float32
  remat: str = "none"  # model.remat: a key of layers.REMAT_POLICIES, applied to each Block

  def initial_carry(self, batch_size: int, width: int):
    if self.memory_length == 0:
      return ()
    return {"memory": jnp.zeros((batch_size, self.num_layers, self.memory_length, width), self.dtype),
            "filled": jnp.zeros((batch_size,), jnp.int32)}

  def decode_cache(self, batch_size: int, width: int, length: int):
    """The empty cache for decoding up to `length` tokens incrementally (__call__ with decode=True).

    {"keys", "values": [batch, layers, length, heads, head_width], "position": int32 scalar, the
    number of tokens decoded so far}: each layer's keys and values of every earlier position.
    """
    if not self.causal:
      raise errors.ConfigError("model.transformer.causal=False is an encoder: it has no next token to decode")
    if self.decode_limit() is not None and length > self.decode_limit():
      raise errors.ConfigError(f"decoding {length} tokens (prompt and generated) exceeds model.transformer.max_length="
                               f"{self.max_length}, the positions this model has learned; generate fewer tokens")
    shape = (batch_size, self.num_layers, length, self.num_heads, width // self.num_heads)
    return {"keys": jnp.zeros(shape, self.dtype), "values": jnp.zeros(shape, self.dtype),
            "position": jnp.zeros((), jnp.int32)}

  def decode_limit(self) -> int | None:
    """Learned and sinusoidal positions exist up to max_length; relative and rotary ones have no bound."""
    return None if self.positions in ("relative", "rotary") else self.max_length

  @nn.nowrap  # builds in the caller's scope, which under nn.remat is the lifted one (layers.call_layer)
  def block(self, index: int, width: int) -> "Block":
    """Layer `index`'s block over inputs of `width`, built alike for training, evaluation and
    decoding (same name, so the same parameters)."""
    return Block(self.num_heads, self.mlp_ratio * width, self.num_layers, self.dropout,
                 self.dtype, attention_window=self.attention_window, attention_dropout=self.attention_dropout,
                 relative=self.positions == "relative", attention_implementation=self.attention_implementation,
                 causal=self.causal, rotary=self.positions == "rotary", name=f"block_{index}")

  def decode(self, x, cache):
    """decode=True: x [batch, length, width] holds positions cache["position"] + 0 ... length - 1.

    Each position attends to every cached earlier position and to the new ones up to itself, as
    the causal path does over the whole prefix in one segment with an empty memory, so the
    outputs are the uncached ones. Transformer-XL memory (memory_length > 0) is not used: the
    cache keeps the keys and values of every earlier token, which is what decoding one token at
    a time with memory_length >= the decoded length would attend to. Dropout is off.
    """
    batch, length, width = x.shape
    position = cache["position"]
    distance_encodings = None
    if self.positions in ("relative", "rotary"):
      offset = self.param("input_offset", layers.gpt2_init(), (width,), jnp.float32)  # as in __call__
      x = x + offset.astype(x.dtype)
    if self.positions == "relative":
      # Distances 0 ... capacity - 1: independent of the position (SelfAttention.cached_attention).
      distance_encodings = sinusoids(jnp.arange(cache["keys"].shape[2]), width).astype(self.dtype)
    elif self.positions == "rotary":
      pass  # each attention layer rotates the new queries and keys by their positions
    elif self.positions == "learned":
      table = self.param("position_table", layers.gpt2_init(), (self.max_length, width), jnp.float32)
      x = x + jax.lax.dynamic_slice_in_dim(table, position, length).astype(self.dtype)
    elif self.positions == "sinusoidal":
      x = x + sinusoids(position + jnp.arange(length), width).astype(self.dtype)
    else:  # a position kind this decode path does not know yet must not decode silently wrong
      raise ValueError(f"model.transformer.positions={self.positions!r} has no incremental decoding yet; "
                       "add it to Transformer.decode (and its test in tests/test_generate.py)")
    keys, values = [], []
    for index in range(self.num_layers):
      # The same block as __call__'s (same name, so the same parameters).
      x, layer_cache = self.block(index, width)(
          x, train=False, relative_encodings=distance_encodings, position=position,
          cache={"keys": cache["keys"][:, index], "values": cache["values"][:, index]})
      keys.append(layer_cache["keys"])
      values.append(layer_cache["values"])
    x = nn.LayerNorm(dtype=self.dtype, name="final_norm")(x)
    return x, {"keys": jnp.stack(keys, axis=1), "values": jnp.stack(values, axis=1), "position": position + length}

  @nn.compact
  def __call__(self, x, *, train: bool, carry=(), mask=None, decode: bool = False):
    """x [batch, length, width]; mask bool [batch, length], False at right-padding (None: all real).

    decode=True: incremental decoding (self.decode); carry is a decode_cache, train and mask unused.
    """
    if decode:
      return self.decode(x, carry)
    batch, length, width = x.shape
    relative, rotary = self.positions == "relative", self.positions == "rotary"
    if self.memory_length > 0 and not (relative or rotary):
      raise errors.ConfigError("model.transformer.memory_length > 0 needs positions='relative' or 'rotary': memory "
                               f"needs positions by distance; got positions={self.positions!r}")
    if self.memory_length > 0 and not self.causal:
      raise errors.ConfigError("model.transformer.memory_length > 0 needs model.transformer.causal=True: memory "
                               "is the past of a stream, and an encoder sees whole sequences; set memory_length=0")
    x = layers.LockedDropout(self.input_dropout, name="input_dropout")(x, train=train)
    relative_encodings = None
    if relative or rotary:
      # Relative and rotary positions add nothing to the input, so a word removed by embedding
      # dropout (a zero vector) at a position with no context would start an all-zero
      # residual stream that stays zero through every block while the biases are zero
      # (at init). LayerNorm's gradient there is 1/sqrt(epsilon) = 1000 per norm: 32
      # norms overflow float32 and the first step's gradient is NaN (seen with the
      # 16-layer wt2_transformer; 2 layers already give 1e6). A learned offset on every
      # position keeps such rows off zero; for kept words it is a shift of the table.
      offset = self.param("input_offset", layers.gpt2_init(), (width,), jnp.float32)
      x = x + offset.astype(x.dtype)
    if relative:
      # In the order relative_shift expects; no length limit.
      distances = relative_distances(length, self.memory_length, self.causal)
      relative_encodings = sinusoids(distances, width).astype(self.dtype)
    elif rotary:
      pass  # each attention layer rotates its own queries and keys; no length limit
    elif length > self.max_length:
      raise errors.ConfigError(f"sequence length {length} exceeds model.transformer.max_length={self.max_length}")
    elif self.positions == "learned":
      table = self.param("position_table", layers.gpt2_init(), (self.max_length, width), jnp.float32)
      x = x + table[:length].astype(self.dtype)
    elif self.positions == "sinusoidal":
      x = x + sinusoidal_positions(length, width).astype(self.dtype)
    else:
      raise errors.ConfigError(f"model.transformer.positions={self.positions!r}: use 'learned', 'sinusoidal', "
                               "'relative' or 'rotary'")
    x = layers.Dropout(self.dropout)(x, deterministic=not train)

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
      x = layers.call_layer(self, functools.partial(self.block, index, width), self.remat, x, train=train,
                            memory=layer_memory, memory_valid=memory_valid,
                            relative_encodings=relative_encodings, mask=mask)
    x = nn.LayerNorm(dtype=self.dtype, name="final_norm")(x)
    x = layers.LockedDropout(self.output_dropout, name="output_dropout")(x, train=train)
    if self.memory_length > 0:
      carry = {"memory": jax.lax.stop_gradient(jnp.stack(new_memory, axis=1)),  # [batch, layers, M, width]
               "filled": jnp.minimum(carry["filled"] + length, self.memory_length)}
    return x, carry
