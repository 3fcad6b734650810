"""Language-model batches as pure functions of (seed, step): resuming needs no iterator state.

A batch is a dict of numpy arrays:
  inputs  [batch, length] int32   tokens t .. t+length-1
  targets [batch, length] int32   tokens t+1 .. t+length
  weights [batch, length] float32 1 for a real target, 0 for padding
  reset   [batch] bool            True where the row starts a new stream (carried state is zeroed)

Training modes (config.data.batching):
  windows  every row is an independent window at a random offset drawn from (seed, step);
           models carry nothing between batches.
  stream   the corpus is cut into `batch` contiguous streams read left to right in
           segments of `length` (truncated BPTT, as AWD-LSTM); carried state flows from
           one step to the next and is reset at the start of each epoch, whose streams
           start at an offset drawn from (seed, epoch).
Each host materialises only its own rows of the global batch.
"""

import numpy as np

from jaxlm import errors


def host_rows(global_batch: int, process_index: int, process_count: int) -> slice:
  """This host's slice of a global batch's rows (every batcher of every task uses it)."""
  if global_batch % process_count:
    raise errors.ConfigError(f"train.batch_size={global_batch} must be divisible by the {process_count} hosts")
  per_host = global_batch // process_count
  return slice(process_index * per_host, (process_index + 1) * per_host)


def window_batch(tokens: np.ndarray, step: int, *, seed: int, batch_size: int, length: int,
                 process_index: int = 0, process_count: int = 1) -> dict:
  if tokens.size < length + 2:
    raise errors.DataError(f"corpus split has {tokens.size} tokens, fewer than train.seq_len+2={length + 2}")
  rng = np.random.default_rng([seed, step])
  offsets = rng.integers(0, tokens.size - length, size=batch_size)[host_rows(batch_size, process_index, process_count)]
  positions = offsets[:, None] + np.arange(length + 1)[None, :]  # [batch, length + 1]
  window = tokens[positions]
  return {
      "inputs": window[:, :-1].astype(np.int32),
      "targets": window[:, 1:].astype(np.int32),
      "weights": np.ones((len(offsets), length), np.float32),
      "reset": np.ones((len(offsets),), bool),
  }


def stream_segments_per_epoch(num_tokens: int, batch_size: int, length: int) -> int:
  # One stream holds num_tokens // batch_size tokens; an epoch-start offset of up to
  # `length` is reserved so every epoch has the same number of full segments.
  stream_length = num_tokens // batch_size
  segments = (stream_length - 1 - length) // length
  if segments < 1:
    raise errors.DataError(f"corpus split of {num_tokens} tokens is too short for train.batch_size={batch_size} "
                           f"streams of train.seq_len={length}")
  return segments


def stream_batch(tokens: np.ndarray, step: int, *, seed: int, batch_size: int, length: int,
                 process_index: int = 0, process_count: int = 1) -> dict:
  segments = stream_segments_per_epoch(tokens.size, batch_size, length)
  epoch, segment = divmod(step, segments)
  stream_length = tokens.size // batch_size
  epoch_offset = int(np.random.default_rng([seed, epoch, 1]).integers(0, length))
  rows = np.arange(batch_size)[host_rows(batch_size, process_index, process_count)]
  starts = rows * stream_length + epoch_offset + segment * length  # [batch]
  positions = starts[:, None] + np.arange(length + 1)[None, :]
  window = tokens[positions]
  return {
      "inputs": window[:, :-1].astype(np.int32),
      "targets": window[:, 1:].astype(np.int32),
      "weights": np.ones((len(rows), length), np.float32),
      "reset": np.full((len(rows),), segment == 0),
  }


BATCHERS = {"windows": window_batch, "stream": stream_batch}


def get_batcher(name: str):
  if name not in BATCHERS:
    raise errors.ConfigError(f"config data.batching={name!r} is not known; choose one of {sorted(BATCHERS)}")
  return BATCHERS[name]


def evaluation_batches(tokens: np.ndarray, *, batch_size: int, length: int, max_tokens: int = 0):
  """Yields batches that score every target of the split exactly once, in order.

  The split's num_tokens - 1 targets are cut into `batch_size` contiguous rows
  (row b continues in the next batch, so carried state is valid across batches);
  the last segment is padded with weight-0 targets, so no token is dropped.
  With max_tokens > 0 only the first max_tokens targets are scored (a cheap
  validation estimate during training).
  """
  inputs, targets = tokens[:-1], tokens[1:]
  if max_tokens:
    inputs, targets = inputs[:max_tokens], targets[:max_tokens]
  num_targets = targets.size
  row_length = -(-num_targets // batch_size)
  row_length = -(-row_length // length) * length  # a whole number of segments
  padded = batch_size * row_length
  weights = np.zeros(padded, np.float32)
  weights[:num_targets] = 1.0
  pad = lambda values: np.concatenate([values, np.zeros(padded - num_targets, values.dtype)])
  inputs, targets = pad(inputs).reshape(batch_size, row_length), pad(targets).reshape(batch_size, row_length)
  weights = weights.reshape(batch_size, row_length)
  for start in range(0, row_length, length):
    segment = slice(start, start + length)
    yield {
        "inputs": inputs[:, segment].astype(np.int32),
        "targets": targets[:, segment].astype(np.int32),
        "weights": weights[:, segment],
        "reset": np.full((batch_size,), start == 0),
    }
