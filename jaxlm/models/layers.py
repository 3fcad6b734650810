"""Small layers shared by every model family: initialisers and dropout variants.

Kept free of data-pipeline and tokenizer imports so importing a model is cheap.
"""

import contextlib
import contextvars
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlm import errors

# GPT-2 initialisation: every weight N(0, 0.02); residual output projections are
# further scaled by 1/sqrt(2 * num_layers) so the residual stream's variance does
# not grow with depth.
GPT2_STDDEV = 0.02


def gpt2_init():
  return nn.initializers.normal(stddev=GPT2_STDDEV)


def gpt2_residual_init(num_layers: int):
  return nn.initializers.normal(stddev=GPT2_STDDEV / math.sqrt(2 * num_layers))


# Dropout masks are a function of (seed, step, global row), never of the device count or the
# micro-batching: a mask over a row of activations is drawn from fold_in(site key, global row
# index), where the site key (Flax's make_rng("dropout")) is the same on every device. The
# training step says which global rows this call holds (`global_rows`); without it, as in a
# plain model.apply, the rows are 0..batch-1. This is the one piece of implicit state the
# model reads, beside Flax's own rng scope: threading an argument through every layer of
# every family would put it in every signature for the sake of dropout alone. Masks over
# weights or word types (the LSTM's DropConnect, embedding dropout) are one per step for the
# whole global batch, drawn from the site key alone.
_GLOBAL_ROWS = contextvars.ContextVar("jaxlm_global_rows", default=None)


@contextlib.contextmanager
def global_rows(rows):
  """Within the block, the batch's row i is row rows[i] (int32 [batch]) of the global batch."""
  token = _GLOBAL_ROWS.set(rows)
  try:
    yield
  finally:
    _GLOBAL_ROWS.reset(token)


def row_bernoulli(key, keep: float, shape) -> jax.Array:
  """bool [batch, ...] = shape, True with probability `keep`; row i from fold_in(key, global row i)."""
  rows = _GLOBAL_ROWS.get()
  if rows is None:
    rows = jnp.arange(shape[0])
  if rows.shape[0] != shape[0]:
    raise ValueError(f"dropout on {shape[0]} rows, but the step named {rows.shape[0]} global rows")
  row_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, rows)
  return jax.vmap(lambda row_key: jax.random.bernoulli(row_key, keep, tuple(shape[1:])))(row_keys)


class Dropout(nn.Module):
  """Elementwise dropout over [batch, ...] inputs with per-row masks (row_bernoulli).

  flax.linen.Dropout's interface (rate; deterministic at call time), so a call site reads the same.
  """
  rate: float

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = row_bernoulli(self.make_rng("dropout"), keep, x.shape)
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


class LockedDropout(nn.Module):
  """Variational dropout: one mask per sequence, shared across time.

  Inputs are [batch, length, features]; the mask is [batch, 1, features], per row (row_bernoulli).
  """
  rate: float

  @nn.compact
  def __call__(self, x, *, train: bool):
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = row_bernoulli(self.make_rng("dropout"), keep, (x.shape[0], 1, x.shape[-1]))
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


def embed(module: nn.Module, input_layer: nn.Module, token_ids, *, train: bool, embedding_dropout: float):
  """input_layer(token_ids) [batch, length, width], with whole word types dropped when training
  (embedding_dropout_scale; `module` draws the rng). After the input layer, so it works for every
  input layer and body."""
  vectors = input_layer(token_ids, train=train)
  if train and embedding_dropout > 0.0:
    scale = embedding_dropout_scale(token_ids, input_layer.vocab_size, embedding_dropout, module.make_rng("dropout"))
    vectors = (vectors * scale).astype(vectors.dtype)
  return vectors


def embedding_dropout_scale(token_ids, vocab_size: int, rate: float, rng):
  """Discrete embedding dropout (Gal & Ghahramani, 2016; AWD-LSTM's `dropoute`).

  Drops whole word types: one keep/drop draw per vocabulary entry, so every
  occurrence of a dropped word anywhere in the global batch is zeroed (the key is the same
  on every device, so the mask does not depend on the device count), and kept words are
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


# model.remat: which activations inside each layer the backward pass keeps; the rest are
# recomputed from the layer's input (jax.checkpoint). "none" keeps everything (no recompute).
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,  # keep only each layer's inputs: least memory
    "dots_saveable": jax.checkpoint_policies.dots_saveable,  # keep matmul outputs, recompute the rest
    # Keep only matmuls without batch dimensions (projections, not attention scores).
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def check_remat(policy: str) -> None:
  if policy not in REMAT_POLICIES:
    raise errors.ConfigError(f"config model.remat={policy!r} is not known; choose one of {sorted(REMAT_POLICIES)}")


def call_layer(parent: nn.Module, make_layer, policy: str, *args, train: bool, **kwargs):
  """make_layer()(*args, train=train, **kwargs), rematerialised per `policy` (REMAT_POLICIES).

  make_layer builds the layer (a module with its name) and is called inside the lifted
  function, so the layer's parameters keep the same path in the tree with or without
  remat: checkpoints are interchangeable. `train` is a Python bool that picks dropout,
  so it is a static argument of the checkpointed function; args and kwargs are pytrees
  of arrays (None allowed). parent: the calling module (`self` in a compact method).
  """
  check_remat(policy)
  if policy == "none":
    return make_layer()(*args, train=train, **kwargs)

  def run(module, args, kwargs, train):
    del module  # the layer is built in its scope by make_layer
    return make_layer()(*args, train=train, **kwargs)

  # static_argnums counts `module` as 0, as flax counts `self`.
  rematted = nn.remat(run, policy=REMAT_POLICIES[policy], static_argnums=(3,))
  return rematted(parent, args, kwargs, train)
