"""Task texts -> token ids with the model's vocabulary: shared by every fine-tuning task.

`task_tokenizer(config, ...)` sets up a task's jaxlm.data.tokenizer.Tokenizer (its vocabulary,
<unk> and start ids, and SentencePiece model) as below; `Encoder` turns word lists into
examples of at most task.max_length ids with it.

The vocabulary is the pre-trained run's when the encoder starts from a checkpoint
(config.init.checkpoint; saved in its workdir as vocabulary.txt), so task texts are
tokenised exactly as pre-training saw them; otherwise it is built from the task's
training texts (config.task.max_vocab: the most frequent N, the rest <unk>). With the
embedding bag (model.input="bag") every task word the vocabulary lacks is appended:
the bag composes any word from its character n-grams, as FastText does for unseen
words, so a word missing from pre-training or from the training split keeps its
n-grams instead of becoming <unk> (jaxlm.starts.pretrained_checkpoint gives a pre-trained bag's new
words fresh rows between its word rows and its n-gram buckets). No label is read for
this; a word seen only outside training keeps the row it started with.

config.task.tokenizer says how raw text becomes words:
  words       jaxlm's word tokeniser (jaxlm.data.works: stress marks removed, lowercase,
              punctuation split off), as the RusLit corpus and its FastText vectors use;
  whitespace  the text is already tokenised (SST-2, WikiText-2): split on spaces, as is;
  bpe         jaxlm's words, then each word's SentencePiece BPE pieces: the form of a
              data.tokenizer="bpe" language model's text (a word-tokenised line encoded
              with its model; pieces never cross a space, so word by word is the same).
              The .model is init.checkpoint's (sentencepiece.model in its workdir, checked
              against its vocabulary.txt), else trained on the task's training words
              (task.bpe_vocab_size pieces, cached under $JAXLM_CACHE like the LM's); the
              vocabulary is its pieces, with byte fallback, so no text is <unk>.
Every example starts with the sentence boundary token, which in a language model's stream
precedes each line (<eos> for words, SentencePiece's end-of-line "</s>" for pieces; the
tokenizer's start_id): a first-token pooling reads it, and a causal body sees the sentence
from its start.
"""

import hashlib
import os

from absl import logging
import numpy as np

from jaxlm import checkpoint, errors
from jaxlm.data import tokenizer as tokenizer_lib
from jaxlm.data import vocabulary as vocabulary_lib
from jaxlm.data import works

TOKENIZERS = ("words", "whitespace", "bpe")
# task.tokenizer="bpe" without init.checkpoint trains SentencePiece on the task's training texts:
# a task corpus (RuCoLA's 7,900 sentences, Taiga's 3,100) is far smaller than an LM's, so fewer
# pieces than data.bpe_vocab_size; a small text that cannot fill it gets what it supports.
BPE_TASK_VOCAB_SIZE = 8000
# The embedding bag gathers, for every token, as many rows as its vocabulary's longest word
# has n-grams: UD Taiga's one 299-character hashtag chain (about 900 n-grams) made every
# tagging step 2x slower. Longer words are left out of a bag's vocabulary (they read as <unk>).
BAG_MAX_WORD_CHARS = 40


def _check_tokenizer(name: str) -> None:
  if name not in TOKENIZERS:
    raise errors.ConfigError(f"config task.tokenizer={name!r} is not known; choose one of {list(TOKENIZERS)}")


def split_text(text: str, tokenizer: str) -> list[str]:
  """A raw sentence -> its words."""
  _check_tokenizer(tokenizer)
  return text.split() if tokenizer == "whitespace" else works.tokenise_line(text).split()


def normalise_word(word: str, tokenizer: str) -> str:
  """One given word (a treebank's token) -> its vocabulary form, never split in two."""
  _check_tokenizer(tokenizer)
  return word if tokenizer == "whitespace" else works.normalise(word)


def _start_workdir(config) -> str:
  """The pre-trained workdir config.init.checkpoint names (its vocabulary and tokenizer are the
  task's), or "" for a run that starts from no checkpoint."""
  spec = config.init.checkpoint
  return checkpoint.spec_workdir(spec) if spec else ""


def _check_pre_trained_tokenizer(config, workdir: str) -> str:
  """init.checkpoint's SentencePiece model path ("" for a word-level run), refusing a run
  whose tokenizer is not the task's: its ids would mean other tokens."""
  model_path = checkpoint.sentencepiece_path(workdir)
  saved = checkpoint.load_config(workdir)
  # A language model's tokenizer is data.tokenizer; a fine-tuned run's (no data section), task.tokenizer.
  saved_bpe = bool(model_path) or ("data" in saved and saved.data.tokenizer == "bpe") or (
      saved.task.get("tokenizer") == "bpe")
  spec = f"config init.checkpoint={config.init.checkpoint!r}"
  if config.task.tokenizer != "bpe" and saved_bpe:
    raise errors.ConfigError(f"{spec} was pre-trained on SentencePiece pieces, but config task.tokenizer="
                             f"{config.task.tokenizer!r} reads words; set task.tokenizer='bpe'")
  if config.task.tokenizer == "bpe" and not model_path:
    if saved_bpe:
      raise errors.MissingFileError(
          f"{spec}: {workdir} has no {checkpoint.SENTENCEPIECE_FILE}, which a BPE run keeps "
          f"there: copy that run's .model (under $JAXLM_CACHE/sentencepiece, named by its corpus and "
          f"data.bpe_vocab_size) to {os.path.join(workdir, checkpoint.SENTENCEPIECE_FILE)}")
    raise errors.ConfigError(f"{spec} was pre-trained on words, not SentencePiece pieces; set task.tokenizer='words' "
                             f"(or start from a data.tokenizer='bpe' run)")
  return model_path


def sentencepiece_model(config, training_word_lists) -> str:
  """task.tokenizer="bpe": the SentencePiece .model path (see the module docstring); else ""."""
  workdir = _start_workdir(config)
  model_path = _check_pre_trained_tokenizer(config, workdir) if workdir else ""
  if config.task.tokenizer != "bpe" or model_path:
    return model_path
  given = config.task.sentencepiece_model
  if given:
    if not os.path.isfile(given):
      raise errors.MissingFileError(f"config task.sentencepiece_model={given!r} is not a file: give a SentencePiece "
                                    f".model, or '' to train one on the task's training texts")
    return given
  from jaxlm.data import corpora, sentencepiece_tokenizer, text_files
  # The training words as a word-tokenised text file, named by its content: the cache key.
  text = "".join(" ".join(words) + "\n" for words in training_word_lists)
  cache_root = corpora.default_cache_dir()
  digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
  path = os.path.join(cache_root, "text", f"task-{digest}.txt")
  if not os.path.exists(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text_files.write_text(path, text)
  return sentencepiece_tokenizer.train_sentencepiece(path, model_type="bpe", vocab_size=config.task.bpe_vocab_size,
                                                     cache_dir=os.path.join(cache_root, "sentencepiece"))


def task_tokenizer(config, training_word_lists, other_word_lists=()) -> tokenizer_lib.Tokenizer:
  """The task's tokenizer: its SentencePiece model (sentencepiece_model) and vocabulary (task_vocabulary)."""
  piece_model = sentencepiece_model(config, training_word_lists)
  if not piece_model:
    return tokenizer_lib.Tokenizer(task_vocabulary(config, training_word_lists, other_word_lists))
  pieces = tokenizer_lib.Tokenizer.from_sentencepiece(piece_model)
  return pieces.with_words(task_vocabulary(config, training_word_lists, other_word_lists, pieces=pieces))


def task_vocabulary(config, training_word_lists, other_word_lists=(),
                    pieces: tokenizer_lib.Tokenizer | None = None) -> list[str]:
  """The model's words: the pre-trained run's, or the task's training words (+ <eos>, <unk>),
  then, for the embedding bag, every task word (training split first) that they lack.
  With `pieces` (a SentencePiece model's tokenizer): its pieces (the pre-trained run's
  vocabulary, which must begin with them: a masked LM's adds <mask> after them)."""
  workdir = _start_workdir(config)
  if pieces is not None:
    if not workdir:
      return pieces.words
    words = checkpoint.load_words(workdir)
    if words[:len(pieces.words)] != pieces.words:
      raise errors.WorkdirError(f"config init.checkpoint={config.init.checkpoint!r}: {pieces.sentencepiece_model} "
                                f"does not match {workdir}/{checkpoint.VOCABULARY_FILE} (its pieces are not the "
                                f"vocabulary's first {len(pieces.words)} entries); the workdir's files come from "
                                f"different runs")
    return words
  if workdir:
    words = checkpoint.load_words(workdir)
    if tokenizer_lib.UNKNOWN not in words:
      raise errors.WorkdirError(f"the vocabulary of {workdir} has no {tokenizer_lib.UNKNOWN}: task texts would hold "
                                f"words it lacks")
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
  """Words -> an example's ids with a task's tokenizer (the start token, then each word's ids),
  cut to max_length; counts what it truncates."""

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, max_length: int):
    self.tokenizer = tokenizer
    self.max_length = max_length
    self.truncated_examples = 0
    self.truncated_tokens = 0

  def ids_and_first(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(int32 ids, bool first) [<= max_length]: the start token then the words' ids, cut to
    max_length; `first` is True at each word's first id (the position that scores the word)."""
    ids, first = [self.tokenizer.start_id], [False]
    for word_ids in self.tokenizer.word_ids(words):
      ids.extend(word_ids)
      first.extend([True] + [False] * (len(word_ids) - 1))
    if len(ids) > self.max_length:
      self.truncated_examples += 1
      self.truncated_tokens += len(ids) - self.max_length
    return np.asarray(ids[:self.max_length], np.int32), np.asarray(first[:self.max_length], bool)

  def ids(self, words: list[str]) -> np.ndarray:
    """int32 [<= max_length]: the start token then the words' ids, cut to max_length."""
    return self.ids_and_first(words)[0]

  def report(self, source: str) -> None:
    if self.truncated_examples:
      logging.warning("%s: %d examples longer than task.max_length=%d were truncated (%d tokens cut)",
                      source, self.truncated_examples, self.max_length, self.truncated_tokens)
    self.truncated_examples = self.truncated_tokens = 0
