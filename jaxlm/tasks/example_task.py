"""What the fine-tuning tasks share: whole examples of one fixed length and a new head.

An example is a sentence (classification, tagging) or a question's context window
(span QA), right-padded to `self.length` tokens. Training reads examples in a fresh
permutation each epoch (jaxlm.data.example_batches.train_indices), evaluation and
prediction every example once, padding rows marked by index -1. The model is the
configured input layer and body with the task's head in place of the LM head.

A subclass sets words, length, splits and best_metric / best_mode, and defines
num_examples(split), _batch(split, indices) and head(model_config, dtype).

Trimmed batches (task.length_multiple > 0, sentence tasks): a batch is cut to the smallest
multiple of length_multiple that holds its longest example, instead of `self.length`. A RuCoLA
batch of 32 sentences is ~78% padding at 48 positions, and every position costs the input
layer's gather and the body's work. A few lengths mean a few compiled shapes (48 // 16: three).
The cut is decided from the whole global batch, so every process and device agrees on it.
"""

import abc

import numpy as np

from jaxlm import errors
from jaxlm.starts import fasttext_rows
from jaxlm.data import example_batches
from jaxlm.tasks import base

REQUIRED_SPLITS = ("train", "valid")


def file_splits(files) -> tuple[str, ...]:
  """The splits of a task's files (task.files: split -> file name), in order. An empty name
  leaves its split out (--config.task.files.test='' where there is no test file); "train"
  and "valid" are required."""
  for required in REQUIRED_SPLITS:
    if not files.get(required):
      raise errors.ConfigError(f"config task.files needs a {required!r} file; it has {dict(files)}")
  return tuple(split for split, name in files.items() if name)


def optional_split_hint(split: str) -> str:
  """The end of a missing file's message: how to do without an optional split."""
  return "" if split in REQUIRED_SPLITS else f"; --config.task.files.{split}='' leaves the split out"


def trimmed_length(lengths: np.ndarray, multiple: int, length: int) -> int:
  """The positions of a batch whose examples have `lengths`: the smallest multiple of `multiple`
  that holds the longest (at least `multiple`), at most `length`; `length` when multiple is 0."""
  if multiple <= 0:
    return length
  longest = int(lengths.max()) if lengths.size else 1
  return min(length, max(multiple, -(-longest // multiple) * multiple))


def check_length_multiple(task_config) -> int:
  """task.length_multiple, refused when negative."""
  if task_config.length_multiple < 0:
    raise errors.ConfigError(f"config task.length_multiple={task_config.length_multiple}: give 0 (every batch has "
                             "task.max_length positions) or N > 0 (batches cut to a multiple of N)")
  return task_config.length_multiple


def trim(batch: dict, positions: int, length: int) -> dict:
  """The batch's per-position arrays ([rows, length, ...]) cut to their first `positions`."""
  if positions == length:
    return batch
  return {key: value[:, :positions] if value.ndim >= 2 and value.shape[1] == length else value
          for key, value in batch.items()}


class ExampleTask(base.Task):
  # Sentence tasks (token_ids[split]: one int array per example) set it from task.length_multiple (see
  # the module's docstring).
  length_multiple = 0

  @abc.abstractmethod
  def num_examples(self, split: str) -> int:
    """How many examples (rows) `split` has."""

  @abc.abstractmethod
  def _batch(self, split: str, indices: np.ndarray) -> dict:
    """The batch of examples `indices` of `split` (-1: a padding row of weight 0)."""

  @abc.abstractmethod
  def head(self, model_config, dtype):
    """The task's head module (jaxlm.models.heads: classification, tagging or span)."""

  def build_model(self, model_config):
    from jaxlm.models import DTYPES, build_model
    return build_model(model_config, len(self.words), subword_width=fasttext_rows.subword_width(model_config, self.words),
                       head=self.head(model_config, DTYPES[model_config.compute_dtype]))

  def init_inputs(self):
    return np.zeros((1, self.length), np.int32)

  def example_lengths(self, split: str) -> np.ndarray:
    """int [examples]: each example's positions, from the sentence tasks' token_ids[split] (a list of
    int arrays), counted once per encoding of the split rather than at every batch."""
    token_ids = self.token_ids[split]
    cache = self.__dict__.setdefault("_lengths", {})
    if split not in cache or cache[split][0] is not token_ids:  # a re-encoding makes a new list
      cache[split] = (token_ids, np.array([len(ids) for ids in token_ids], np.int64))
    return cache[split][1]

  def _trimmed(self, split: str, batch: dict, indices: np.ndarray) -> dict:
    """`batch` cut to fit the examples `indices` (the global batch's; -1 padding rows)."""
    if not self.length_multiple:
      return batch
    lengths = self.example_lengths(split)[indices[indices >= 0]]
    return trim(batch, trimmed_length(lengths, self.length_multiple, self.length), self.length)

  def train_batch(self, step, *, seed, batch_size, process_index=0, process_count=1):
    indices = lambda process_index, process_count: example_batches.train_indices(
        step, seed=seed, batch_size=batch_size, num_examples=self.num_examples("train"),
        process_index=process_index, process_count=process_count)
    local = indices(process_index, process_count)
    # The cut follows the global batch, so that every process's rows have one shape.
    return self._trimmed("train", self._batch("train", local), local if process_count == 1 else indices(0, 1))

  def example_batches(self, split: str, *, batch_size: int, limit: int = 0):
    """Every example of `split` once, in order (the first `limit` when > 0), padded with rows of weight 0."""
    base.check_split(split, self.splits)
    for indices in example_batches.eval_indices(self.num_examples(split), batch_size=batch_size, limit=limit):
      yield self._trimmed(split, self._batch(split, indices), indices)

  def eval_batches(self, split, *, batch_size, limit=0):
    return self.example_batches(split, batch_size=batch_size, limit=limit)

  def predict_batches(self, split, *, batch_size):
    return self.example_batches(split, batch_size=batch_size)
