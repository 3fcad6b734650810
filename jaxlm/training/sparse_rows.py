"""Sparse embedding updates: the gradient, moments and update of only the table rows a step reads.

With optim.embedding_updates="lazy" the host describes the global batch's view of the input layer
(RowReader: the layer's host_view over its fixed ids, which never change during training): the
table rows the tokens read, padded to a power-of-two capacity, and for a bag its words' packed
(word, row) pairs. The train step (jaxlm.training.steps) then differentiates the loss not with
respect to the input layer's whole table but to its SparseView (jaxlm.models.embeddings): those
rows gathered into a small table, with the tokens renumbered into the view. The gradient is then
[capacity, width] instead of [table rows, width]; it is averaged over devices like any gradient
(every device gets the same view), clipped with the rest, and the optimiser's embedding group
(jaxlm.training.optim.lazy_adamw) turns it into updates of those rows, which `apply_updates` adds
to the table. The step compiles once per set of capacities: a task's batches read similar numbers
of rows, so a few serve a whole run (RuCoLA's bag: 2,900-3,700 rows of 130,706, all in 4,096).

A head that reads the input table (a tied language-model head scores every word with its row)
gets a view that keeps every word's row, first and in word order, whatever the batch reads: every
word row is then updated at every step, as dense AdamW would, and only a bag's n-gram buckets
lazily (the masked LM's bag: its 32,001 word rows and ~3,000-6,000 of its 100,000 buckets).
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
  frozen: dict  # the fixed collections with the input layer's replaced by the view's
  token_ids: jax.Array  # int32 [local batch, length]: this device's tokens, renumbered
  rows: jax.Array  # int32 [capacity]: the table rows in the view, ascending, padded with the row count


class RowReader:
  """The host's copy of the input layer's fixed ids, and the view a global batch reads."""

  def __init__(self, model, frozen: dict):
    self.input_layer = model.input_layer
    self.keep_output_rows = head_reads_input_table(model)
    self.frozen = {name: np.asarray(array) for name, array in
                   jax.device_get(frozen).get("frozen", {}).get(INPUT_LAYER, {}).items()}

  def view_arrays(self, global_token_ids: np.ndarray) -> dict:
    """The input layer's host_view of the tokens: {"rows": int32 [capacity], ...} (numpy)."""
    return self.input_layer.host_view(self.frozen, np.asarray(global_token_ids),
                                      keep_output_rows=self.keep_output_rows)


def head_reads_input_table(model) -> bool:
  """Whether the model's head reads the input layer's rows (a tied language-model head), so that a
  view of the layer must keep every word's row; a head that does not say is taken to."""
  return bool(getattr(model.head, "reads_input_table", True))


def evaluation_reader(model, frozen: dict) -> "RowReader | None":
  """A RowReader when evaluation reads the model's input layer through packed views (a bag's view
  lists each word's rows once, where the layer gathers every position's bag padded to the longest
  word's): a bag input and a head that never reads the input table (a task head; a tied
  language-model head scores every word's row). None: evaluate the model as it is."""
  if not getattr(model.input_layer, "packs_bags", False) or head_reads_input_table(model):
    return None
  return RowReader(model, frozen)


def step_view(model, params: dict, frozen: dict, token_ids, arrays: dict) -> StepView:
  """The view described by `arrays` (RowReader's, of the global batch) for this device's token_ids
  [local batch, length]."""
  layer_variables = {"params": params[INPUT_LAYER],
                     **{collection: tree[INPUT_LAYER] for collection, tree in frozen.items() if INPUT_LAYER in tree}}
  view = model.input_layer.sparse_view(layer_variables, token_ids, arrays,
                                      keep_output_rows=head_reads_input_table(model))
  new_frozen = {collection: ({**tree, INPUT_LAYER: view.variables[collection]} if collection in view.variables
                             else tree) for collection, tree in frozen.items()}
  return StepView(model.clone(input_layer=view.module), {**params, INPUT_LAYER: view.variables["params"]},
                  new_frozen, view.token_ids, view.rows)


def _is_table(path) -> bool:
  return tuple(getattr(key, "key", None) for key in path) == (INPUT_LAYER, TABLE)


def apply_updates(params: dict, updates: dict, rows) -> dict:
  """params + updates, where the input layer's table update holds only `rows`' rows (padding dropped)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, param, update: (jnp.asarray(param).at[rows].add(update.astype(param.dtype), mode="drop") if _is_table(path)
                                   else optax.apply_updates(param, update)), params, updates)
