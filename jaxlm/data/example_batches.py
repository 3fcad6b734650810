"""Batches of whole examples (sentences, questions) as pure functions of (seed, step).

Training reads examples in a fresh permutation each epoch: global example position
i = step * batch + row is example order(seed, epoch)[i mod N] of epoch i // N, so
every example appears exactly once per epoch, none is dropped, and a batch that
crosses an epoch boundary takes its last rows from the next epoch's permutation.
Evaluation reads every example once, in order, and pads the last batch with
weight-0 rows (never dropped, never rounded away).

Examples are variable-length token-id sequences padded on the right to one fixed
`length` (static shapes compile once); `mask` marks the real tokens.
"""

import numpy as np

from jaxlm.data import lm_batches


def train_indices(step: int, *, seed: int, batch_size: int, num_examples: int, process_index: int = 0,
                  process_count: int = 1) -> np.ndarray:
  """int [rows of this host]: the example ids of global training batch `step`."""
  positions = step * batch_size + np.arange(batch_size)[lm_batches.host_rows(batch_size, process_index, process_count)]
  epochs, offsets = np.divmod(positions, num_examples)
  orders = {int(epoch): np.random.default_rng([seed, int(epoch)]).permutation(num_examples)
            for epoch in np.unique(epochs)}
  return np.array([orders[int(epoch)][offset] for epoch, offset in zip(epochs, offsets)], np.int64)


def eval_indices(num_examples: int, *, batch_size: int, limit: int = 0):
  """Yields int [batch_size] example ids covering 0..N-1 once in order; -1 marks padding rows."""
  count = min(num_examples, limit) if limit else num_examples
  for start in range(0, count, batch_size):
    ids = np.arange(start, start + batch_size)
    yield np.where(ids < count, ids, -1)


def pad(sequences: list[np.ndarray], length: int, fill: int = 0, dtype=np.int32) -> np.ndarray:
  """[len(sequences), length]: each sequence (already at most `length`) right-padded with `fill`."""
  out = np.full((len(sequences), length), fill, dtype)
  for row, sequence in enumerate(sequences):
    out[row, :len(sequence)] = sequence
  return out


def pick(sequences: list[np.ndarray], indices: np.ndarray) -> list[np.ndarray]:
  """The sequences at `indices`, an empty one where the index is -1 (a padding row)."""
  empty = np.zeros(0, np.int32)
  return [sequences[index] if index >= 0 else empty for index in indices]


def padded_inputs(sequences: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
  """(inputs int32 [rows, length], mask bool [rows, length] True at real tokens) of right-padded sequences."""
  lengths = np.array([len(sequence) for sequence in sequences])
  return pad(sequences, length), np.arange(length)[None, :] < lengths[:, None]
