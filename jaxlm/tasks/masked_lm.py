"""Masked language modelling (BERT's objective): recover the corrupted words of a window.

Data: the causal LM's corpora (config.data, jaxlm.data.corpora), and its vocabulary with
one token, MASK_TOKEN, appended last: its id is the number of corpus words, so every
corpus id keeps its meaning and a saved vocabulary ends with it.

Training batches are windows of train.seq_len tokens at random offsets drawn from
(seed, step), as the causal LM's windows, with inputs and targets at the same positions.
Of each row, exactly round(task.mask_rate * length) positions (at least one) are chosen;
of those, task.mask_token_fraction become MASK_TOKEN, task.random_token_fraction a random
corpus word (never MASK_TOKEN) and the rest stay as they are (Devlin et al., 2019: 15%,
80/10/10). Targets are the original tokens, weighted 1 at the chosen positions only.
The masking is drawn from (seed, step) too, so a resumed run sees the same batches.

Evaluation cuts a split into consecutive windows of train.seq_len (the last padded, its
padding out of the encoder's attention by the batch's `mask`), each masked by an rng of
its window index alone: every evaluation of every run scores the same masked tokens.
Reported: loss, perplexity and top-1/top-5 accuracy of the masked tokens. Any output
head (softmax, adaptive, cosine, l2, vmf), through its record in jaxlm.models.heads. The
body must be an encoder (config.model.<family>.causal=False): a causal one cannot see the right
context of the word it must recover.
"""

import numpy as np

from jaxlm import errors
from jaxlm.data import lm_batches
from jaxlm.tasks import base, causal_lm

MASK_TOKEN = "<mask>"
# default_rng([seed, step, TRAIN_MASKING]) draws a training batch's masking, independent of
# its offsets' default_rng([seed, step]); default_rng([EVAL_MASKING, window]) an evaluation
# window's, which depends on neither the seed nor the split, so validation never changes.
TRAIN_MASKING = 0x6D61736B  # "mask"
EVAL_MASKING = 0x6576616C  # "eval"


def mask_tokens(tokens: np.ndarray, real: np.ndarray, rng: np.random.Generator, *, rate: float,
                mask_fraction: float, random_fraction: float, mask_id: int) -> tuple[np.ndarray, np.ndarray]:
  """BERT's corruption of rows of tokens.

  Args:
    tokens: int [rows, length] the original tokens.
    real: bool [rows, length], True at real tokens (a row's real tokens come first).
    rng: the only source of randomness.
    rate: the fraction of each row's real tokens chosen (round(rate * real), at least 1).
    mask_fraction, random_fraction: of the chosen, the fractions replaced by mask_id and by
      a random id in [0, mask_id); the rest are kept.
    mask_id: the <mask> id, also the number of other ids.
  Returns:
    inputs int32 [rows, length] (the corrupted tokens), chosen bool [rows, length].
  """
  rows, length = tokens.shape
  real_counts = real.sum(axis=1)  # [rows]
  chosen_counts = np.minimum(np.maximum(np.rint(rate * real_counts), 1), real_counts)  # [rows]
  # Random keys, padding last: the chosen are each row's chosen_counts smallest keys.
  keys = np.where(real, rng.random((rows, length)), np.inf)
  ranks = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
  chosen = ranks < chosen_counts[:, None]
  # action < mask_fraction: <mask>; then random_fraction of [0, 1): a random id; the rest: kept.
  action = rng.random((rows, length))
  random_ids = rng.integers(0, mask_id, size=(rows, length))
  to_mask = chosen & (action < mask_fraction)
  to_random = chosen & (action >= mask_fraction) & (action < mask_fraction + random_fraction)
  inputs = np.where(to_mask, mask_id, np.where(to_random, random_ids, tokens))
  return inputs.astype(np.int32), chosen


def _check_fractions(task_config) -> None:
  rate, to_mask, to_random = (task_config.mask_rate, task_config.mask_token_fraction,
                              task_config.random_token_fraction)
  if not 0.0 < rate <= 1.0:
    raise errors.ConfigError(f"config task.mask_rate={rate} must be in (0, 1]")
  if to_mask < 0.0 or to_random < 0.0 or to_mask + to_random > 1.0:
    raise errors.ConfigError(f"config task.mask_token_fraction={to_mask} and task.random_token_fraction={to_random} "
                             f"must be >= 0 with a sum <= 1 (the rest of the chosen tokens are kept)")


class MaskedLM(causal_lm.CausalLM):
  # BERT's masking (Devlin et al., 2019): of each window, mask_rate of the tokens are chosen;
  # of those, mask_token_fraction become <mask>, random_token_fraction a random word.
  config_defaults = dict(mask_rate=0.15, mask_token_fraction=0.8, random_token_fraction=0.1)
  """The causal LM's corpus, heads, loss and scores, with masked windows for batches."""

  def __init__(self, config, sentencepiece_model: str = ""):
    _check_fractions(config.task)
    self.rate = config.task.mask_rate
    self.mask_fraction = config.task.mask_token_fraction
    self.random_fraction = config.task.random_token_fraction
    super().__init__(config, sentencepiece_model)
    corpus_words = self.corpus.vocabulary.words
    if MASK_TOKEN in corpus_words:
      raise errors.DataError(f"the corpus's vocabulary already holds {MASK_TOKEN!r}; the masked LM needs it free")
    self.mask_id = len(corpus_words)
    self.words = list(corpus_words) + [MASK_TOKEN]

  def use_vocabulary(self, words):
    super().use_vocabulary(words)
    self.mask_id = self.words.index(MASK_TOKEN)

  def _mask(self, tokens, real, rng):
    return mask_tokens(tokens, real, rng, rate=self.rate, mask_fraction=self.mask_fraction,
                       random_fraction=self.random_fraction, mask_id=self.mask_id)

  def build_model(self, model_config):
    model = super().build_model(model_config)
    if getattr(model.body, "causal", True):
      raise errors.ConfigError(f"config model.{model_config.family}.causal must be False for the masked LM: a causal "
                               f"body cannot see the right context of the word it must recover")
    return model

  def train_batch(self, step, *, seed, batch_size, process_index=0, process_count=1):
    tokens, length = self.corpus.splits["train"], self.length
    if tokens.size < length:
      raise errors.DataError(f"the train split has {tokens.size} tokens, fewer than train.seq_len={length}")
    rows = lm_batches.host_rows(batch_size, process_index, process_count)
    # The whole global batch is drawn and this host's rows kept, so every host count sees
    # the same batch.
    offsets = np.random.default_rng([seed, step]).integers(0, tokens.size - length + 1, size=batch_size)
    window = tokens[offsets[:, None] + np.arange(length)[None, :]]  # [batch, length]
    inputs, chosen = self._mask(window, np.ones_like(window, bool),
                                np.random.default_rng([seed, step, TRAIN_MASKING]))
    return {"inputs": inputs[rows], "targets": window[rows].astype(np.int32),
            "weights": chosen[rows].astype(np.float32)}

  def eval_batches(self, split, *, batch_size, limit=0):
    """Consecutive windows of train.seq_len covering the split (its first `limit` tokens if > 0)."""
    base.check_split(split, self.corpus.splits)
    tokens, length = self.corpus.splits[split], self.length
    if limit:
      tokens = tokens[:limit]
    num_windows = -(-tokens.size // length)
    for first in range(0, num_windows, batch_size):
      windows = np.zeros((batch_size, length), np.int32)
      inputs = np.zeros((batch_size, length), np.int32)
      real = np.zeros((batch_size, length), bool)  # padding rows: no real token, weight 0
      chosen = np.zeros((batch_size, length), bool)
      for row, window_index in enumerate(range(first, min(first + batch_size, num_windows))):
        piece = tokens[window_index * length:(window_index + 1) * length]
        windows[row, :piece.size] = piece
        real[row, :piece.size] = True
        row_inputs, row_chosen = self._mask(windows[row:row + 1], real[row:row + 1],
                                            np.random.default_rng([EVAL_MASKING, window_index]))
        inputs[row], chosen[row] = row_inputs[0], row_chosen[0]
      yield {"inputs": inputs, "targets": windows, "weights": chosen.astype(np.float32), "mask": real}
