"""Small helpers shared by the model-family tests: tiny configs, causality and bidirectionality checks."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs.common import base_config
from jaxlm.models import build_model

VOCAB = 50


def model_config(family: str, width: int = 16, *, input_layer: str = "word",
                 **body) -> ml_collections.ConfigDict:
  """config.model as configs/common.py shapes it, with `body` as config.model.<family>.

  input_layer: "word" or "bag" (a FastText bag with a small hash bucket, so init is quick).
  """
  config = base_config().model
  config.family = family
  config.input = input_layer
  config.bucket = 64
  config.head = "softmax"
  config.width = width
  config[family] = ml_collections.ConfigDict(body)
  return config


def build(family: str, width: int = 16, embedding_dropout: float = 0.0, *, input_layer: str = "word", **body):
  config = model_config(family, width, input_layer=input_layer, **body)
  config.embedding_dropout = embedding_dropout
  return build_model(config, VOCAB)


def tokens(batch: int = 2, length: int = 8, seed: int = 0):
  return jax.random.randint(jax.random.key(seed), (batch, length), 0, VOCAB)


def init(model, token_ids, seed: int = 0):
  return model.init({"params": jax.random.key(seed)}, token_ids, train=False)["params"]


def assert_causal(model, params, token_ids, carry=None):
  """Changing token t never changes outputs before t (and does change output t)."""
  length = token_ids.shape[1]
  outputs, _ = model.apply({"params": params}, token_ids, train=False, carry=carry)
  for t in range(length):
    changed = token_ids.at[:, t].set((token_ids[:, t] + 1) % VOCAB)
    changed_outputs, _ = model.apply({"params": params}, changed, train=False, carry=carry)
    np.testing.assert_array_equal(np.asarray(outputs[:, :t]), np.asarray(changed_outputs[:, :t]))
    assert not np.array_equal(outputs[:, t], changed_outputs[:, t]), f"token {t} does not affect its own output"


def assert_bidirectional(model, params, token_ids):
  """Changing any token t changes the outputs at every position, before t as well as after.

  One call over a batch of the rows and, for each t, the rows with token t changed:
  in evaluation without a carry the rows of a batch are independent.
  """
  batch, length = token_ids.shape
  changed = [token_ids.at[:, t].set((token_ids[:, t] + 1) % VOCAB) for t in range(length)]
  outputs, _ = model.apply({"params": params}, jnp.concatenate([token_ids] + changed), train=False)
  outputs = np.asarray(outputs).reshape(length + 1, batch, length, -1)  # [variant, batch, length, ...]
  for t in range(length):
    for row in range(batch):
      for position in range(length):
        assert not np.array_equal(outputs[0, row, position], outputs[t + 1, row, position]), (
            f"row {row}: token {t} does not affect the output at {position}")
