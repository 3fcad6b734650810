"""Task texts -> token ids with the model's vocabulary: shared by every fine-tuning task.

The vocabulary is the pre-trained run's when the encoder starts from a checkpoint
(config.init.checkpoint; saved in its workdir as vocabulary.txt), so task texts are
tokenised exactly as pre-training saw them; otherwise it is built from the task's
training texts (config.task.max_vocab: the most frequent N, the rest <unk>). With the
embedding bag (model.input="bag") every task word the vocabulary lacks is appended:
the bag composes any word from its character n-grams, as FastText does for unseen
words, so a word missing from pre-training or from the training split keeps its
n-grams instead of becoming <unk> (jaxlm.encoder_start gives a pre-trained bag's new
words fresh rows between its word rows and its n-gram buckets). No label is read for
this; a word seen only outside training keeps the row it started with.

config.task.tokenizer says how raw text becomes words:
  words       jaxlm's word tokeniser (jaxlm.data.works: stress marks removed, lowercase,
              punctuation split off), as the RusLit corpus and its FastText vectors use;
  whitespace  the text is already tokenised (SST-2, WikiText-2): split on spaces, as is.
Every example starts with the sentence boundary token <eos>, which in a language model's
stream precedes each line: a first-token pooling reads it, and a causal body sees the
sentence from its start.
"""

from absl import logging
import numpy as np

from jaxlm import checkpoint, encoder_start
from jaxlm.data import vocabulary as vocabulary_lib
from jaxlm.data import works

TOKENIZERS = ("words", "whitespace")
# The embedding bag gathers, for every token, as many rows as its vocabulary's longest word
# has n-grams: UD Taiga's one 299-character hashtag chain (about 900 n-grams) made every
# tagging step 2x slower. Longer words are left out of a bag's vocabulary (they read as <unk>).
BAG_MAX_WORD_CHARS = 40
START = vocabulary_lib.END_OF_SENTENCE
UNKNOWN = vocabulary_lib.UNKNOWN


def _check_tokenizer(name: str) -> None:
  if name not in TOKENIZERS:
    raise ValueError(f"config task.tokenizer={name!r} is not known; choose one of {list(TOKENIZERS)}")


def split_text(text: str, tokenizer: str) -> list[str]:
  """A raw sentence -> its words."""
  _check_tokenizer(tokenizer)
  return works.tokenise_line(text).split() if tokenizer == "words" else text.split()


def normalise_word(word: str, tokenizer: str) -> str:
  """One given word (a treebank's token) -> its vocabulary form, never split in two."""
  _check_tokenizer(tokenizer)
  return works.normalise(word) if tokenizer == "words" else word


def task_vocabulary(config, training_word_lists, other_word_lists=()) -> list[str]:
  """The model's words: the pre-trained run's, or the task's training words (+ <eos>, <unk>),
  then, for the embedding bag, every task word (training split first) that they lack."""
  workdir = encoder_start.source_workdir(config)
  if workdir:
    words = checkpoint.load_words(workdir)
    if words is None:
      raise FileNotFoundError(
          f"config init.checkpoint={config.init.checkpoint!r}: {workdir} has no {checkpoint.VOCABULARY_FILE}, "
          "so its vocabulary is unknown; is it a jaxlm workdir (made by launch/train.py)?")
    if UNKNOWN not in words:
      raise ValueError(f"the vocabulary of {workdir} has no {UNKNOWN}: task texts would hold words it lacks")
    missing = list(training_word_lists) + list(other_word_lists)
  else:
    lines = [" ".join(words) for words in training_word_lists]
    words = vocabulary_lib.Vocabulary.from_lines(lines, max_size=config.task.max_vocab, with_unknown=True).words
    missing = other_word_lists
  if config.model.input == "bag":
    if not workdir:  # a pre-trained vocabulary stays whole: its rows are the checkpoint's
      words = [word for word in words if len(word) <= BAG_MAX_WORD_CHARS]
    known = set(words)
    for word_list in missing:
      for word in word_list:
        if word not in known and len(word) <= BAG_MAX_WORD_CHARS:
          known.add(word)
          words.append(word)
  return words


class Encoder:
  """Words -> ids of a vocabulary, <unk> for unknown words; counts what it truncates."""

  def __init__(self, words: list[str], max_length: int):
    self.index = {word: position for position, word in enumerate(words)}
    self.unknown_id = self.index[UNKNOWN]
    self.start_id = self.index[START]
    self.max_length = max_length
    self.truncated_examples = 0
    self.truncated_tokens = 0

  def ids(self, words: list[str]) -> np.ndarray:
    """int32 [<= max_length]: <eos> then the words' ids, cut to max_length."""
    ids = [self.start_id] + [self.index.get(word, self.unknown_id) for word in words]
    if len(ids) > self.max_length:
      self.truncated_examples += 1
      self.truncated_tokens += len(ids) - self.max_length
    return np.asarray(ids[:self.max_length], np.int32)

  def report(self, source: str) -> None:
    if self.truncated_examples:
      logging.warning("%s: %d examples longer than task.max_length=%d were truncated (%d tokens cut)",
                      source, self.truncated_examples, self.max_length, self.truncated_tokens)
    self.truncated_examples = self.truncated_tokens = 0
