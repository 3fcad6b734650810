"""Multi-layer LSTM body with AWD-LSTM regularisation (Merity et al., 2018).

  weight drop:  DropConnect on each layer's hidden-to-hidden matrix, one mask per
                forward pass (the same dropped weights at every time step);
  locked dropout on the input, between layers and on the output (one mask per
                sequence, shared across time: layers.LockedDropout).
Embedding dropout (whole word types) lives in jaxlm.models.Model, for every family.

Layer sizes follow AWD-LSTM: every layer has `hidden_size` units except the last,
whose size is the input width, so the body returns [batch, length, width] and the
tied softmax needs no projection.

Carry: a tuple with one (cell, hidden) pair per layer, each float32 [batch, size];
all-zeros is the usual LSTM start state, so the trainer resets a stream by zeroing.

causal=False is a bidirectional encoder: every layer runs a forward and a backward
scan over the sequence. Each direction gets half of the layer's size (the forward
one the larger half when it is odd) and their outputs are concatenated, so the
layer is as wide as the causal one and the body still returns [batch, length, width].
Concatenation rather than a sum keeps the two contexts apart (a tagger can tell
what came before from what comes after, as in Graves & Schmidhuber, 2005 and the
BiLSTM taggers after it) and costs about half of the causal layer's recurrent
parameters, not twice. An encoder sees whole sequences, so it starts from zeros every call:
its carry is () and a passed carry is ignored.

Incremental decoding needs nothing more: the carry after a prefix is the state the next
token starts from (decode_cache is the initial carry).

mask (bool [batch, length], False at right-padding): at padded steps the state is
held unchanged (state = where(mask_t, new, old)). The backward scan thus meets the
last real token in its zero start state, so outputs at real tokens depend on neither
the padding's content nor its amount; a causal layer's final carry is its state
after the last real token.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlm import errors
from jaxlm.models import layers


def _uniform(scale: float):
  """PyTorch's LSTM init, U(-1/sqrt(hidden), 1/sqrt(hidden)), which AWD-LSTM uses."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


class LSTMLayer(nn.Module):
  """One LSTM layer over a whole sequence; gates in order (input, forget, cell, output)."""
  size: int
  weight_drop: float = 0.0
  dtype: Any = jnp.float32
  reverse: bool = False  # scan from the last position to the first (a backward direction)

  @nn.compact
  def __call__(self, x, carry, *, train: bool, mask=None):
    """x [batch, length, in] and carry (cell, hidden) [batch, size] -> (outputs, carry).

    mask: bool [batch, length], False where the state must be held (padding); None = all real.
    """
    init = _uniform(self.size ** -0.5)
    input_kernel = self.param("input_kernel", init, (x.shape[-1], 4 * self.size), jnp.float32)
    recurrent_kernel = self.param("recurrent_kernel", init, (self.size, 4 * self.size), jnp.float32)
    bias = self.param("bias", init, (4 * self.size,), jnp.float32)
    if train and self.weight_drop > 0.0:
      # DropConnect on the recurrent matrix only: the input projection stays dense.
      keep = 1.0 - self.weight_drop
      kept = jax.random.bernoulli(self.make_rng("dropout"), keep, recurrent_kernel.shape)
      recurrent_kernel = jnp.where(kept, recurrent_kernel / keep, 0.0)
    recurrent_kernel = recurrent_kernel.astype(self.dtype)

    # The input projection for all time steps at once is one big matmul, outside the scan.
    projected = jnp.einsum("bli,ig->blg", x.astype(self.dtype), input_kernel.astype(self.dtype),
                           preferred_element_type=jnp.float32) + bias  # [batch, length, 4 * size]

    def step(state, projected_t):  # projected_t [batch, 4 * size]
      cell, hidden = state  # float32 [batch, size]: the cell state accumulates, so keep it exact
      gates = projected_t + jnp.dot(hidden.astype(self.dtype), recurrent_kernel,
                                    preferred_element_type=jnp.float32)
      input_gate, forget_gate, candidate, output_gate = jnp.split(gates, 4, axis=-1)
      cell = jax.nn.sigmoid(forget_gate) * cell + jax.nn.sigmoid(input_gate) * jnp.tanh(candidate)
      hidden = jax.nn.sigmoid(output_gate) * jnp.tanh(cell)
      return (cell, hidden), hidden

    def held_step(state, inputs):  # projected_t [batch, 4 * size], real_t bool [batch]
      projected_t, real_t = inputs
      new_state, _ = step(state, projected_t)
      # Padding leaves the state as it was, so whatever follows it never sees it.
      state = jax.tree.map(lambda new, old: jnp.where(real_t[:, None], new, old), new_state, state)
      return state, state[1]

    # Pure function of arrays already materialised, so a plain lax.scan over time is enough.
    projected = jnp.swapaxes(projected, 0, 1)  # [length, batch, 4 * size]
    # Under shard_map a fresh zero state is replicated while the states the scan computes vary
    # by device (they depend on the inputs, or the mask); a no-op select on a value of the
    # inputs gives the start state the same type.
    varying = projected[0, :, :1] == projected[0, :, :1]  # bool [batch, 1]; its value is unused
    carry = jax.tree.map(lambda leaf: jnp.where(varying, leaf, leaf), carry)
    if mask is None:  # outputs [length, batch, size]
      carry, outputs = jax.lax.scan(step, carry, projected, reverse=self.reverse)
    else:
      real = jnp.swapaxes(mask, 0, 1)  # [length, batch]
      carry, outputs = jax.lax.scan(held_step, carry, (projected, real), reverse=self.reverse)
    return jnp.swapaxes(outputs, 0, 1).astype(self.dtype), carry


class BidirectionalLSTMLayer(nn.Module):
  """A forward and a backward LSTMLayer from zero states, outputs concatenated: [batch, length, size]."""
  size: int
  weight_drop: float = 0.0
  dtype: Any = jnp.float32

  def direction_sizes(self) -> tuple[int, int]:
    return self.size - self.size // 2, self.size // 2  # (forward, backward)

  @nn.compact
  def __call__(self, x, *, train: bool, mask=None):
    batch = x.shape[0]
    outputs = []
    for name, size in zip(("forward", "backward"), self.direction_sizes()):
      zeros = jnp.zeros((batch, size), jnp.float32)
      direction_outputs, _ = LSTMLayer(size, self.weight_drop, self.dtype, reverse=name == "backward",
                                       name=name)(x, (zeros, zeros), train=train, mask=mask)
      outputs.append(direction_outputs)  # [batch, length, size of the direction]
    return jnp.concatenate(outputs, axis=-1)


class LSTM(nn.Module):
  """Fields are exactly the keys of `config.model.lstm`."""
  num_layers: int = 3
  hidden_size: int = 1150  # every layer but the last; the last has the input width
  weight_drop: float = 0.5  # DropConnect rate on hidden-to-hidden weights (AWD: wdrop)
  dropout_input: float = 0.4  # locked dropout on the body input (AWD: dropouti)
  dropout_between: float = 0.25  # locked dropout between layers (AWD: dropouth)
  dropout_output: float = 0.4  # locked dropout on the last layer's output (AWD: dropout)
  causal: bool = True  # False: bidirectional, each direction half of every layer's size
  dtype: Any = jnp.float32
  remat: str = "none"  # model.remat: a key of layers.REMAT_POLICIES, applied to each layer's scan

  def layer_sizes(self, width: int) -> list[int]:
    return [self.hidden_size] * (self.num_layers - 1) + [width]

  def initial_carry(self, batch_size: int, width: int):
    if not self.causal:
      return ()  # an encoder starts from zeros every call
    return tuple((jnp.zeros((batch_size, size), jnp.float32), jnp.zeros((batch_size, size), jnp.float32))
                 for size in self.layer_sizes(width))

  def decode_cache(self, batch_size: int, width: int, length: int):
    """Incremental decoding carries the state, whatever the length: the initial carry."""
    del length
    if not self.causal:
      raise errors.ConfigError("model.lstm.causal=False is a bidirectional encoder: it has no next token to decode")
    return self.initial_carry(batch_size, width)

  @nn.compact
  def __call__(self, x, *, train: bool, carry=None, mask=None, decode: bool = False):
    """x [batch, length, width]; mask bool [batch, length], False at right-padding (None: all real).

    decode: accepted for the body contract; a causal LSTM already decodes incrementally through its carry.
    """
    del decode
    if carry is None or not self.causal:
      carry = self.initial_carry(x.shape[0], x.shape[-1])
    x = layers.LockedDropout(self.dropout_input, name="dropout_input")(x, train=train)
    new_carry = []
    for index, size in enumerate(self.layer_sizes(x.shape[-1])):
      if self.causal:
        make_layer = functools.partial(LSTMLayer, size, self.weight_drop, self.dtype, name=f"layer_{index}")
        x, layer_carry = layers.call_layer(self, make_layer, self.remat, x, carry[index], train=train, mask=mask)
        new_carry.append(layer_carry)
      else:
        make_layer = functools.partial(BidirectionalLSTMLayer, size, self.weight_drop, self.dtype,
                                       name=f"layer_{index}")
        x = layers.call_layer(self, make_layer, self.remat, x, train=train, mask=mask)
      last = index == self.num_layers - 1
      rate = self.dropout_output if last else self.dropout_between
      x = layers.LockedDropout(rate, name="dropout_output" if last else f"dropout_{index}")(x, train=train)
    return x, tuple(new_carry)
