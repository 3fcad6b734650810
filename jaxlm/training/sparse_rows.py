"""Sparse embedding updates: the gradient, moments and update of only the table rows a step reads.

With optim.embedding_updates="lazy" the host finds the table rows the global batch's tokens read
(RowReader: the input layer's rows_read over the layer's fixed ids, which never change during
training), pads them to a power-of-two capacity, and hands them to the train step
(jaxlm.training.steps), which differentiates the loss not with respect to the input layer's
whole table but to its SparseView (jaxlm.models.embeddings): those rows gathered into a small
table, with the tokens renumbered into it. The gradient is then [capacity, width] instead of
[table rows, width]; it is averaged over devices like any gradient (every device builds the same
view), clipped with the rest, and the optimiser's embedding group
(jaxlm.training.optim.lazy_adamw) turns it into updates of those rows, which `apply_updates`
adds to the table. The step compiles once per capacity: a task's batches read similar numbers of
rows, so one or two capacities serve a whole run (RuCoLA's bag: 2,900-3,700 rows of 130,706,
all in 4,096).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

INPUT_LAYER = "input_layer"  # the Model's input-layer scope
TABLE = "table"


class StepView(NamedTuple):
  model: Any  # the model with its input layer sized to the view
  params: dict  # the parameters with the input layer's table cut to the rows read
  frozen: dict  # the fixed collections with the input layer's (a bag's n-gram ids) renumbered to match
  token_ids: jax.Array  # int32 [local batch, length]: this device's tokens, renumbered
  rows: jax.Array  # int32 [capacity]: the table rows in the view, ascending, padded with the row count


MIN_CAPACITY = 1024


def capacity(rows_read: int, tokens: int, num_rows: int) -> int:
  """The view's row count: a power of two (so few distinct shapes compile) holding the rows read and
  at least the batch's tokens (a bag's view is a bag of the batch's words plus buckets), at most
  the table and its padding row."""
  return min(1 << (max(rows_read, tokens, MIN_CAPACITY) - 1).bit_length(), num_rows + 1)


class RowReader:
  """The host's copy of the input layer's fixed ids, and the padded rows a global batch reads."""

  def __init__(self, model, frozen: dict):
    self.input_layer = model.input_layer
    self.frozen = {name: np.asarray(array) for name, array in
                   jax.device_get(frozen).get("frozen", {}).get(INPUT_LAYER, {}).items()}
    self.num_rows = self.input_layer.num_rows()

  def rows(self, global_token_ids: np.ndarray) -> np.ndarray:
    """int32 [capacity]: the rows the tokens read, ascending, padded with the row count."""
    read = self.input_layer.rows_read(self.frozen, np.asarray(global_token_ids))
    size = capacity(read.size, global_token_ids.size, self.num_rows)
    return np.concatenate([read, np.full(size - read.size, self.num_rows)]).astype(np.int32)


def step_view(model, params: dict, frozen: dict, global_token_ids, first_row, local_rows: int, rows) -> StepView:
  """The view of `rows` (RowReader's for global_token_ids [global batch, length]), with this device's
  rows first_row .. first_row + local_rows - 1 of the global batch renumbered into it."""
  layer_variables = {"params": params[INPUT_LAYER],
                     **{collection: tree[INPUT_LAYER] for collection, tree in frozen.items() if INPUT_LAYER in tree}}
  view = model.input_layer.sparse_view(layer_variables, global_token_ids, rows)
  token_ids = jax.lax.dynamic_slice_in_dim(view.token_ids, first_row, local_rows)
  new_frozen = {collection: ({**tree, INPUT_LAYER: view.variables[collection]} if collection in view.variables
                             else tree) for collection, tree in frozen.items()}
  return StepView(model.clone(input_layer=view.module), {**params, INPUT_LAYER: view.variables["params"]},
                  new_frozen, token_ids, view.rows)


def _is_table(path) -> bool:
  return tuple(getattr(key, "key", None) for key in path) == (INPUT_LAYER, TABLE)


def apply_updates(params: dict, updates: dict, rows) -> dict:
  """params + updates, where the input layer's table update holds only `rows`' rows (padding dropped)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, param, update: (jnp.asarray(param).at[rows].add(update.astype(param.dtype), mode="drop") if _is_table(path)
                                   else optax.apply_updates(param, update)), params, updates)
