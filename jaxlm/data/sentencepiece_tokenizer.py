"""SentencePiece BPE and unigram tokenizers with exact round-trip, cached beside the data.

`decode(encode(text)) == text` for any line: identity normalisation (no NFKC),
whitespace kept as written, and byte fallback so unseen characters (rare
Cyrillic, emoji) become UTF-8 byte pieces instead of <unk>. Lines are encoded
one at a time; newlines are the data pipeline's business (an end-of-line token).
"""

import hashlib
import json
import os
import re
import tempfile
from typing import Sequence

import numpy as np
import sentencepiece

from jaxlm import errors
from jaxlm.data import subwords

MODEL_TYPES = ("bpe", "unigram")
WORD_START = "\u2581"  # "▁": SentencePiece's mark of a piece that starts a word
# Control, unknown and byte pieces have no FastText counterpart.
_SPECIAL_PIECE = re.compile(r"<unk>|<s>|</s>|<pad>|<0x[0-9A-F]{2}>")


def _corpus_digest(corpus_path: str) -> str:
  digest = hashlib.sha256()
  with open(corpus_path, "rb") as file:
    for block in iter(lambda: file.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _settings_and_path(corpus_path: str, *, model_type: str, vocab_size: int, cache_dir: str,
                       character_coverage: float, input_sentence_size: int) -> tuple[dict, str]:
  """(trainer settings plus the library version, the cached `.model` path they name)."""
  if model_type not in MODEL_TYPES:
    raise ValueError(f"model_type={model_type!r}; choose one of {list(MODEL_TYPES)}")
  if not os.path.isfile(corpus_path):
    raise errors.MissingFileError(f"{corpus_path}: SentencePiece training text not found")
  settings = dict(
      model_type=model_type, vocab_size=vocab_size, character_coverage=character_coverage,
      input_sentence_size=input_sentence_size,  # 0 = every line; else a seeded sample of lines
      normalization_rule_name="identity", remove_extra_whitespaces=False, byte_fallback=True,
      max_sentence_length=1 << 16,  # bytes; longer lines are skipped by training, never truncated
      hard_vocab_limit=False,  # a small corpus may not fill vocab_size; use what it supports
      shuffle_input_sentence=True, version=sentencepiece.__version__)
  key = hashlib.sha256((_corpus_digest(corpus_path) + json.dumps(settings, sort_keys=True))
                       .encode()).hexdigest()[:16]
  folder = cache_dir or os.path.dirname(os.path.abspath(corpus_path))
  stem = os.path.splitext(os.path.basename(corpus_path))[0]
  return settings, os.path.join(folder, f"{stem}.sp-{model_type}{vocab_size}-{key}.model")


def cached_model_path(corpus_path: str, *, model_type: str = "bpe", vocab_size: int = 16000, cache_dir: str = "",
                      character_coverage: float = 1.0, input_sentence_size: int = 0) -> str:
  """The `.model` path train_sentencepiece gives for these arguments, whether or not it is trained yet:
  its name holds the corpus's name and the cache key, so it identifies the tokenisation without the file."""
  return _settings_and_path(corpus_path, model_type=model_type, vocab_size=vocab_size, cache_dir=cache_dir,
                            character_coverage=character_coverage, input_sentence_size=input_sentence_size)[1]


def train_sentencepiece(corpus_path: str, *, model_type: str = "bpe", vocab_size: int = 16000,
                        cache_dir: str = "", character_coverage: float = 1.0,
                        input_sentence_size: int = 0, num_threads: int = 2) -> str:
  """Trains (or finds in the cache) a SentencePiece model; returns its `.model` path.

  The cache key is the corpus bytes' SHA-256 plus every setting, so a changed corpus
  or setting trains a new model. The file sits beside the corpus unless `cache_dir`
  is given (e.g. when the data folder is read-only).
  """
  settings, model_path = _settings_and_path(
      corpus_path, model_type=model_type, vocab_size=vocab_size, cache_dir=cache_dir,
      character_coverage=character_coverage, input_sentence_size=input_sentence_size)
  if os.path.isfile(model_path):
    return model_path
  folder = os.path.dirname(model_path)
  os.makedirs(folder, exist_ok=True)
  trainer_settings = {k: v for k, v in settings.items() if k != "version"}
  # Train under a temporary name, then rename: a crashed run never leaves a half-written cache.
  with tempfile.TemporaryDirectory(dir=folder) as scratch:
    prefix = os.path.join(scratch, "sp")
    try:
      sentencepiece.SentencePieceTrainer.train(
          input=corpus_path, model_prefix=prefix, num_threads=num_threads, minloglevel=2,
          **trainer_settings)
    except RuntimeError as error:
      raise errors.DataError(f"{corpus_path}: SentencePiece training failed: {error}") from error
    os.replace(prefix + ".model", model_path)
  return model_path


def load_sentencepiece(model_path: str) -> sentencepiece.SentencePieceProcessor:
  """A `.model` file is a protobuf (not a pickle), so loading it runs no code."""
  if not os.path.isfile(model_path):
    raise errors.MissingFileError(f"{model_path}: SentencePiece model not found; train it with "
                                  f"train_sentencepiece")
  try:
    return sentencepiece.SentencePieceProcessor(model_file=model_path)
  except (OSError, RuntimeError) as error:
    raise errors.DataError(f"{model_path}: not a readable SentencePiece model ({error})") from error


def pieces_of(processor: sentencepiece.SentencePieceProcessor) -> list[str]:
  """The vocabulary as strings, index = token id."""
  return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def piece_vector(piece: str, vectors) -> np.ndarray | None:
  """A FastText vector for a SentencePiece piece, or None when there is none to give.

  "▁word" starts a word: fastText's vector of "word" when it knows the word; else the
  mean n-gram row of "<word" (the word-initial n-grams; the end of the word is
  unknown, so no ">"). A piece without "▁" sits inside or at the end of a word: the
  mean n-gram row of its bare characters. A `.vec` (words only) answers known
  "▁word" pieces only.
  """
  if _SPECIAL_PIECE.fullmatch(piece) or not piece.strip(WORD_START):
    return None
  starts_word = piece.startswith(WORD_START)
  text = piece[1:] if starts_word else piece
  if starts_word and text in vectors.key_to_index:
    return np.asarray(vectors[text], np.float32)
  if not hasattr(vectors, "vectors_ngrams"):
    return None
  ngrams = subwords.ngrams_of(("<" if starts_word else "") + text, vectors.min_n, vectors.max_n,
                              boundaries=False)
  if not ngrams:
    return None
  buckets = subwords.fnv1a_hashes(ngrams).astype(np.int64) % vectors.bucket
  return vectors.vectors_ngrams[buckets].mean(0)


def piece_rows(table: np.ndarray, pieces: Sequence[str], vectors, path: str = "vectors") -> np.ndarray:
  """`fasttext_pieces`: table [vocab, width] with each piece's row := `piece_vector`, if any."""
  table = np.array(table, dtype=np.float32)
  if vectors.vector_size != table.shape[1]:
    raise errors.ConfigError(f"{path}: vectors have dimension {vectors.vector_size}, the model's table "
                             f"has width {table.shape[1]}; set model.width to {vectors.vector_size}")
  found = 0
  for i, piece in enumerate(pieces):
    vector = piece_vector(piece, vectors)
    if vector is not None:
      table[i] = vector
      found += 1
  if not found:
    raise errors.DataError(f"{path}: no SentencePiece piece (e.g. {list(pieces[:8])}) has a FastText "
                           f"vector; are the vectors for this corpus's language?")
  return table
