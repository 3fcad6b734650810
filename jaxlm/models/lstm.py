"""Multi-layer LSTM body with AWD-LSTM regularisation (Merity et al., 2018).

  weight drop:  DropConnect on each layer's hidden-to-hidden matrix, one mask per
                forward pass (the same dropped weights at every time step);
  locked dropout on the input, between layers and on the output (one mask per
                sequence, shared across time: layers.LockedDropout).
Embedding dropout (whole word types) lives in LanguageModel, for every family.

Layer sizes follow AWD-LSTM: every layer has `hidden_size` units except the last,
whose size is the input width, so the body returns [batch, length, width] and the
tied softmax needs no projection.

Carry: a tuple with one (cell, hidden) pair per layer, each float32 [batch, size];
all-zeros is the usual LSTM start state, so the trainer resets a stream by zeroing.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

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

  @nn.compact
  def __call__(self, x, carry, *, train: bool):
    """x [batch, length, in] and carry (cell, hidden) [batch, size] -> (outputs, carry)."""
    init = _uniform(self.size ** -0.5)
    input_kernel = self.param("input_kernel", init, (x.shape[-1], 4 * self.size), jnp.float32)
    recurrent_kernel = self.param("recurrent_kernel", init, (self.size, 4 * self.size), jnp.float32)
    bias = self.param("bias", init, (4 * self.size,), jnp.float32)
    if train and self.weight_drop > 0.0:
      # DropConnect on the recurrent matrix only: the input projection stays dense.
      keep = 1.0 - self.weight_drop
      mask = jax.random.bernoulli(self.make_rng("dropout"), keep, recurrent_kernel.shape)
      recurrent_kernel = jnp.where(mask, recurrent_kernel / keep, 0.0)
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

    # Pure function of arrays already materialised, so a plain lax.scan over time is enough.
    carry, outputs = jax.lax.scan(step, carry, jnp.swapaxes(projected, 0, 1))  # outputs [length, batch, size]
    return jnp.swapaxes(outputs, 0, 1).astype(self.dtype), carry


class LSTM(nn.Module):
  """Fields are exactly the keys of `config.model.lstm`."""
  num_layers: int = 3
  hidden_size: int = 1150  # every layer but the last; the last has the input width
  weight_drop: float = 0.5  # DropConnect rate on hidden-to-hidden weights (AWD: wdrop)
  dropout_input: float = 0.4  # locked dropout on the body input (AWD: dropouti)
  dropout_between: float = 0.25  # locked dropout between layers (AWD: dropouth)
  dropout_output: float = 0.4  # locked dropout on the last layer's output (AWD: dropout)
  dtype: Any = jnp.float32

  def layer_sizes(self, width: int) -> list[int]:
    return [self.hidden_size] * (self.num_layers - 1) + [width]

  def initial_carry(self, batch_size: int, width: int):
    return tuple((jnp.zeros((batch_size, size), jnp.float32), jnp.zeros((batch_size, size), jnp.float32))
                 for size in self.layer_sizes(width))

  @nn.compact
  def __call__(self, x, *, train: bool, carry=None):
    if carry is None:
      carry = self.initial_carry(x.shape[0], x.shape[-1])
    x = layers.LockedDropout(self.dropout_input, name="dropout_input")(x, train=train)
    new_carry = []
    for index, size in enumerate(self.layer_sizes(x.shape[-1])):
      x, layer_carry = LSTMLayer(size, self.weight_drop, self.dtype, name=f"layer_{index}")(
          x, carry[index], train=train)
      new_carry.append(layer_carry)
      last = index == self.num_layers - 1
      rate = self.dropout_output if last else self.dropout_between
      x = layers.LockedDropout(rate, name="dropout_output" if last else f"dropout_{index}")(x, train=train)
    return x, tuple(new_carry)
