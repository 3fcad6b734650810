"""Temporal convolutional network body (Bai, Kolter & Koltun, 2018).

A stack of residual blocks; block i holds two weight-normalised causal 1-D
convolutions with dilation 2**i, each followed by ReLU and dropout, and a residual
connection (through a 1x1 convolution when the channel count changes). Every block
has `hidden_size` channels except the last, which has the input width, so the body
returns [batch, length, width] (as in the paper's word-level model with tied weights).

Causal: each convolution pads (kernel_size - 1) * dilation steps on the left only,
so output t depends on inputs <= t. The receptive field is
  1 + 2 * (kernel_size - 1) * (2**num_layers - 1)
tokens (two convolutions per block); evaluation uses windows, so the carry is ().
Incremental decoding (decode=True) carries instead each convolution's last
(kernel_size - 1) * dilation inputs, which stand in for its left padding: one step per
token gives the outputs of the whole prefix.

causal=False is an encoder: each convolution pads (kernel_size - 1) * dilation / 2
steps on each side, so the same receptive field is centred on the output position;
kernel_size must be odd. With a mask (bool [batch, length], False at right-padding)
every convolution's input is zeroed at padded positions, the same zeros the
convolution pads beyond the sequence: outputs at real tokens are those of the
unpadded sequence, whatever the padding's content or amount.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlm import errors
from jaxlm.models import layers


def receptive_field(num_layers: int, kernel_size: int) -> int:
  """Tokens an output position sees, itself included."""
  return 1 + 2 * (kernel_size - 1) * (2 ** num_layers - 1)


def check_kernel_size(kernel_size: int, causal: bool) -> None:
  if not causal and kernel_size % 2 == 0:
    raise errors.ConfigError(f"model.tcn.kernel_size={kernel_size} with model.tcn.causal=False: a two-sided "
                             "convolution needs an odd kernel_size, so it is centred on its output position")


class DilatedConv(nn.Module):
  """Weight-normalised dilated convolution: kernel = scale * direction / |direction|.

  Causal: padded on the left only. Otherwise: padded equally on both sides (odd kernel).
  """
  features: int
  kernel_size: int
  dilation: int = 1
  dtype: Any = jnp.float32
  causal: bool = True

  @nn.compact
  def __call__(self, x, history=None):
    """x [batch, length, in] -> [batch, length, features].

    history: incremental decoding (causal only): [batch, reach, in], the `reach` inputs before x
    (zeros before the start), which replace the left padding; then returns (y, the new history).
    """
    shape = (self.kernel_size, x.shape[-1], self.features)
    direction = self.param("direction", nn.initializers.normal(0.01), shape, jnp.float32)
    # The scale starts at the direction's norm, so the initial kernel equals `direction`.
    scale = self.param("scale", lambda _, norm: norm, jnp.linalg.norm(direction, axis=(0, 1)))
    kernel = direction * (scale / jnp.linalg.norm(direction, axis=(0, 1)))  # [kernel, in, out]
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    reach = (self.kernel_size - 1) * self.dilation  # inputs an output sees besides its own position
    if history is None:
      x = jnp.pad(x, ((0, 0), (reach, 0) if self.causal else (reach // 2, reach // 2), (0, 0)))
    else:
      x = jnp.concatenate([history.astype(x.dtype), x], axis=1)  # [batch, reach + length, in]
      history = x[:, x.shape[1] - reach:].astype(history.dtype)
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype), window_strides=(1,), padding="VALID",
        rhs_dilation=(self.dilation,), dimension_numbers=("NWC", "WIO", "NWC"))
    y = y + bias.astype(self.dtype)  # [batch, length, features]
    return y if history is None else (y, history)




class TemporalBlock(nn.Module):
  features: int
  kernel_size: int
  dilation: int
  dropout: float
  dtype: Any = jnp.float32
  causal: bool = True

  @nn.compact
  def __call__(self, x, *, train: bool, mask=None, cache=None):
    """x [batch, length, in]; mask bool [batch, length] or None -> [batch, length, features].

    cache: incremental decoding, each convolution's input history (TCN.decode_cache); then
    returns (outputs, the new cache).
    """
    hidden = x
    histories = []
    for index in range(2):
      if mask is not None:
        # Padded positions become the zeros the convolution pads with, so they never leak.
        hidden = hidden * mask[..., None].astype(hidden.dtype)
      convolution = DilatedConv(self.features, self.kernel_size, self.dilation, self.dtype, causal=self.causal,
                                name=f"conv_{index}")
      if cache is None:
        hidden = convolution(hidden)
      else:
        hidden, history = convolution(hidden, cache[index])
        histories.append(history)
      hidden = layers.Dropout(self.dropout)(nn.relu(hidden), deterministic=not train)
    # A 1x1 convolution: each position alone, so padding cannot reach a real position.
    residual = x if x.shape[-1] == self.features else DilatedConv(
        self.features, 1, dtype=self.dtype, name="residual")(x)
    outputs = nn.relu(hidden + residual)
    return outputs if cache is None else (outputs, tuple(histories))


class TCN(nn.Module):
  """Fields are exactly the keys of `config.model.tcn`."""
  num_layers: int = 4  # residual blocks; block i has dilation 2**i
  hidden_size: int = 600  # channels of every block but the last (which has the input width)
  kernel_size: int = 3
  dropout: float = 0.45
  dropout_input: float = 0.25  # on the body input (the paper's emb_dropout)
  causal: bool = True  # False: two-sided convolutions (an encoder; needs an odd kernel_size)
  dtype: Any = jnp.float32
  remat: str = "none"  # model.remat: a key of layers.REMAT_POLICIES, applied to each TemporalBlock

  @property
  def receptive_field(self) -> int:
    return receptive_field(self.num_layers, self.kernel_size)

  def initial_carry(self, batch_size: int, width: int):
    del batch_size, width
    return ()

  def decode_cache(self, batch_size: int, width: int, length: int):
    """Zeros, as the left padding: per block, per convolution, its last (kernel_size - 1) * dilation
    inputs, [batch, reach, in]; a tuple over blocks of pairs. Enough for any length."""
    del length
    if not self.causal:
      raise errors.ConfigError("model.tcn.causal=False is an encoder: it has no next token to decode")
    cache = []
    for index in range(self.num_layers):
      features = width if index == self.num_layers - 1 else self.hidden_size
      reach = (self.kernel_size - 1) * 2 ** index
      block_input = width if index == 0 else self.hidden_size
      cache.append((jnp.zeros((batch_size, reach, block_input), self.dtype),
                    jnp.zeros((batch_size, reach, features), self.dtype)))
    return tuple(cache)

  @nn.compact
  def __call__(self, x, *, train: bool, carry=(), mask=None, decode: bool = False):
    """x [batch, length, width]; mask bool [batch, length], False at right-padding (None: all real).

    decode=True: incremental decoding; carry is a decode_cache (each convolution's input history)
    and the new one is returned, so the outputs are those over the whole prefix.
    """
    check_kernel_size(self.kernel_size, self.causal)
    width = x.shape[-1]
    x = layers.Dropout(self.dropout_input)(x, deterministic=not train)
    histories = []
    for index in range(self.num_layers):
      features = width if index == self.num_layers - 1 else self.hidden_size
      make_block = functools.partial(TemporalBlock, features, self.kernel_size, 2 ** index, self.dropout,
                                     self.dtype, causal=self.causal, name=f"block_{index}")
      if decode:  # no gradient is taken while decoding: nothing to rematerialise
        x, block_histories = make_block()(x, train=train, cache=carry[index])
        histories.append(block_histories)
      else:
        x = layers.call_layer(self, make_block, self.remat, x, train=train, mask=mask)
    return x.astype(self.dtype), tuple(histories) if decode else carry
