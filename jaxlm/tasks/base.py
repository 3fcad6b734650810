"""The contract between a task and the one training loop (jaxlm/training/loop.py).

The loop knows no task: it asks the task for its batches, its model, its loss and its
evaluation, and keeps the checkpoint that is best by the task's metric. A task is built
once from the config (`jaxlm.tasks.build_task`), reading its data from local files.

Batches are dicts of numpy arrays with a leading batch axis of global rows (each host
materialises only its rows), always holding
  inputs   int32 [batch, length]   token ids fed to the model
  weights  float32 [batch, ...]    1 where a target counts, 0 for padding; sum = the loss's count
and, where the task needs them,
  mask     bool [batch, length]    True at real tokens (encoders: key padding, pooling)
  reset    bool [batch]            True where carried state starts again (absent: every row)
  features float32 [batch, length, features]  per-token inputs the task's model reads besides the
                                   ids (the QA reader's exact-match features)
plus whatever the task's own loss reads (targets, labels, spans). A batch is a pure
function of (seed, step) for training, so a resumed run sees what the uninterrupted one
would have; evaluation batches cover every example of a split exactly once, padded with
weight-0 rows, so a split of any size is scored exactly.

Losses and evaluations return dicts of float32 sums (arrays allowed, e.g. a confusion
matrix), summed over devices, steps and batches, and divided only in `summarise`.
"""

import abc
from typing import Iterator

import flax.linen as nn
import numpy as np

from jaxlm import errors, metrics


class Task(abc.ABC):
  """What a task gives the loop. Subclasses set the attributes in __init__."""

  # The model's input vocabulary (words or pieces, in id order): saved in the workdir, so
  # a fine-tuning run tokenises its texts exactly as its pre-training did.
  words: list[str]
  # The SentencePiece .model that turns text into those pieces ("" for words): copied into the
  # workdir (sentencepiece.model) so a run fine-tuned from it splits text the same way.
  sentencepiece_model: str = ""
  # The evaluation metric that picks the best checkpoint, as a key of summarise()'s output,
  # and whether lower ("min") or higher ("max") is better.
  best_metric: str
  best_mode: str
  splits: tuple[str, ...]  # the names eval_batches accepts
  # The optional halves of the contract, declared here; each method below raises unless its flag is set.
  # writes_predictions: predict, predict_batches, write_predictions and add_file (launch/predict.py).
  writes_predictions = False
  # scores_predictions: a task whose evaluation needs every prediction of a split at once (span QA:
  # the best span over a question's windows) also implements score_predictions, and the loop merges
  # its scores into the summary.
  scores_predictions = False
  # re_encodes: use_vocabulary, to score a saved run whose vocabulary differs from the data's.
  re_encodes = False
  # The task's config.task keys beside "name", with their defaults (configs/common.py use_task
  # takes a config's deltas to them; an unknown key is refused).
  config_defaults: dict = {}
  # Batch keys that eval_sums counts without the weights (padding rows added to fill the
  # devices must have them 0: jaxlm.training.evaluation.pad_rows).
  unweighted_counts: tuple[str, ...] = ()

  @property
  def fingerprint(self) -> str:
    """A short hash of the data files' content, saved with a run so a resume or an evaluation
    on changed files is caught; "" where unknown. Default: the files of `self.paths`."""
    paths = getattr(self, "paths", None)
    if not paths:
      return ""
    from jaxlm.data import text_files
    return text_files.fingerprint([paths[split] for split in sorted(paths)])

  @classmethod
  def best_of(cls, config) -> tuple[str, str]:
    """(best_metric, best_mode) of a run's config, without reading its data (restores use it)."""
    return cls.best_metric, cls.best_mode

  @abc.abstractmethod
  def build_model(self, model_config) -> nn.Module:
    """The input layer -> body -> head model, called as (inputs, *, train, carry, [mask])."""

  @abc.abstractmethod
  def init_inputs(self) -> np.ndarray:
    """int32 [1, length]: what model.init traces (the shapes of a batch's rows)."""

  @abc.abstractmethod
  def train_batch(self, step: int, *, seed: int, batch_size: int, process_index: int = 0,
                  process_count: int = 1) -> dict:
    """This host's rows of global training batch `step`: a pure function of (seed, step)."""

  @abc.abstractmethod
  def eval_batches(self, split: str, *, batch_size: int, limit: int = 0) -> Iterator[dict]:
    """Global batches of `batch_size` rows covering `split` once (the first `limit`
    targets or examples when limit > 0), in order, padded with weight-0 rows."""

  @abc.abstractmethod
  def loss(self, outputs, batch: dict) -> dict:
    """Training sums: at least loss_sum (what is minimised, summed) and count (sum of weights)."""

  @abc.abstractmethod
  def eval_sums(self, outputs, batch: dict) -> dict:
    """Evaluation sums (the loss's and the metrics')."""

  @abc.abstractmethod
  def summarise(self, sums: dict) -> dict:
    """Sums -> reported numbers (loss, and the task's metrics); train and eval sums alike."""

  def predict(self, outputs, batch: dict):
    """One prediction per batch row (writes_predictions tasks), as arrays [batch, ...]."""
    raise NotImplementedError(f"{type(self).__name__} writes no predictions")

  def predict_batches(self, split: str, *, batch_size: int) -> Iterator[dict]:
    """Every example of `split` once, in order, padded with rows of index -1 (writes_predictions tasks)."""
    raise NotImplementedError(f"{type(self).__name__} writes no predictions")

  def write_predictions(self, split: str, predictions: np.ndarray, path: str) -> int:
    """Writes `predict`'s values for every example of `split` to `path`; returns how many (writes_predictions)."""
    raise NotImplementedError(f"{type(self).__name__} writes no predictions")

  def add_file(self, path: str, split: str = "input") -> str:
    """Reads a new file in the task's format as split `split` with the current vocabulary; returns the
    split's name (writes_predictions tasks: launch/predict.py --input)."""
    raise NotImplementedError(f"{type(self).__name__} reads no new files")

  def score_predictions(self, split: str, predictions: np.ndarray) -> dict:
    """Scores from `predict`'s values for every example of `split` (scores_predictions tasks)."""
    raise NotImplementedError(f"{type(self).__name__} scores its splits from sums only")

  def use_vocabulary(self, words: list[str]) -> None:
    """Re-encodes the task's data with `words` (a saved run's vocabulary, in id order; re_encodes tasks)."""
    raise NotImplementedError(f"{type(self).__name__} cannot re-encode its data with another vocabulary")

  def training_texts(self) -> list[str]:
    """The training split's raw texts (each once), for FastText vectors trained on the task's own
    data (launch/fasttext.py with a fine-tuning config); never evaluation texts."""
    raise errors.ConfigError(f"task {type(self).__name__} gives no training texts for FastText; "
                             "name a corpus file with --config.fasttext.corpus")

  def describe(self, summary: dict) -> str:
    """One line for the progress bar after a validation."""
    return " ".join(f"{key} {value:.4f}" for key, value in summary.items()
                    if isinstance(value, float) and key not in metrics.CLOCK_KEYS)


def check_split(split: str, splits) -> None:
  if split not in splits:
    raise errors.ConfigError(f"split {split!r} is not one of {sorted(splits)}")
