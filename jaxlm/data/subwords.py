"""FastText's character n-grams and their hashed bucket ids, computed once per vocabulary.

A word is represented as FastText does (Bojanowski et al., 2017): its own row plus
the rows of the character n-grams of "<word>", each n-gram hashed with 32-bit
FNV-1a over its UTF-8 bytes, modulo the bucket count. This module reproduces
fastText's `Dictionary::computeSubwords` (and gensim's `ft_ngram_hashes`) exactly:
  - n-grams are cut on UTF-8 character boundaries, lengths min_n..max_n characters;
  - a 1-gram that is only the "<" or ">" boundary is skipped;
  - the whole "<word>" is one of the n-grams when its length is within range;
  - each byte is sign-extended as int8 before the XOR (fastText's `hash` reads
    `char`), which changes the hash of every non-ASCII n-gram, Cyrillic included;
  - duplicated n-grams are kept, so they count once per occurrence in the mean.

Numpy only: the ids are built once by the data pipeline and the model only gathers.
"""

from typing import Sequence

import numpy as np

from jaxlm import errors

FNV_OFFSET = np.uint32(2166136261)
FNV_PRIME = np.uint32(16777619)


def ngrams_of(text: str, min_n: int, max_n: int, *, boundaries: bool = True) -> list[bytes]:
  """Character n-grams of `text` as UTF-8 bytes, in fastText's order (start, then length).

  With `boundaries` the text is wrapped as "<text>" and the lone "<" / ">" 1-grams
  are skipped, as fastText does for words. Without, `text` is used as given (for
  pieces of words, whose boundary markers the caller has already decided).
  """
  encoded = (f"<{text}>" if boundaries else text).encode("utf-8")
  # Byte offsets where a character starts (UTF-8 continuation bytes are 10xxxxxx).
  starts = [i for i, byte in enumerate(encoded) if byte & 0xC0 != 0x80] + [len(encoded)]
  num_chars = len(starts) - 1
  ngrams = []
  for first in range(num_chars):
    for length in range(max(min_n, 1), min(max_n, num_chars - first) + 1):
      last = first + length
      if boundaries and length == 1 and (first == 0 or last == num_chars):
        continue
      ngrams.append(encoded[starts[first]:starts[last]])
  return ngrams


def fnv1a_hashes(ngrams: Sequence[bytes]) -> np.ndarray:
  """32-bit FNV-1a of each byte string, bytes sign-extended as int8: -> uint32 [num_ngrams].

  Vectorised over n-grams: one pass per byte position over a padded byte matrix.
  """
  lengths = np.fromiter(map(len, ngrams), dtype=np.int64, count=len(ngrams))  # [num_ngrams]
  hashes = np.full(len(ngrams), FNV_OFFSET, dtype=np.uint32)
  if not len(ngrams):
    return hashes
  flat = np.frombuffer(b"".join(ngrams), dtype=np.int8)
  offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # [num_ngrams]
  for position in range(int(lengths.max())):
    active = lengths > position  # [num_ngrams]
    # int8 -> int32 keeps the sign; the uint32 view then holds 0xFFFFFFxx for bytes >= 0x80.
    byte = flat[offsets[active] + position].astype(np.int32).view(np.uint32)
    hashes[active] = (hashes[active] ^ byte) * FNV_PRIME  # uint32 arithmetic wraps mod 2**32
  return hashes


def ngram_buckets(word: str, min_n: int, max_n: int, bucket: int) -> np.ndarray:
  """Bucket of each n-gram of "<word>" -> int64 [num_ngrams]; equals gensim's `ft_ngram_hashes`."""
  return fnv1a_hashes(ngrams_of(word, min_n, max_n)).astype(np.int64) % bucket


_LAST_IDS: dict = {}  # the last subword_ids call's (key, result): a run asks for the same ids twice


def subword_ids(words: Sequence[str], *, min_n: int, max_n: int, bucket: int,
                has_word_row: Sequence[bool] | np.ndarray | None = None):
  """subword_ids_of (below), remembered for the last vocabulary and settings asked for.

  Building a run asks twice (the model's padded width, then the ids it installs): 0.7 s each for
  RuCoLA's 30,706 words. The arrays returned are read-only, as they may be returned again.
  """
  mask_key = None if has_word_row is None else np.asarray(has_word_row, bool).tobytes()
  key = (tuple(words), min_n, max_n, bucket, mask_key)
  if _LAST_IDS.get("key") != key:
    ids, mask = subword_ids_of(words, min_n=min_n, max_n=max_n, bucket=bucket, has_word_row=has_word_row)
    ids.flags.writeable = mask.flags.writeable = False
    _LAST_IDS.update(key=key, result=(ids, mask))
  return _LAST_IDS["result"]


def subword_ids_of(words: Sequence[str], *, min_n: int, max_n: int, bucket: int,
                   has_word_row: Sequence[bool] | np.ndarray | None = None):
  """Padded row ids of each word's bag in a table of [len(words) + bucket, width].

  Row layout: word i's own row is i (in [0, vocab)); n-gram rows are vocab + bucket id.
  A word whose `has_word_row` is False is represented by its n-grams only, as
  fastText represents a word outside its vocabulary. With bucket == 0 (or
  max_n < min_n) there are no n-grams and the bag is the word row alone.

  Args:
    words: the vocabulary, index = token id.
    has_word_row: bool [vocab]; None means every word uses its own row.
  Returns:
    ids: int32 [vocab, max_ids], padded with 0.
    mask: bool [vocab, max_ids], True where ids are real.
  """
  vocab = len(words)
  has_word_row = np.ones(vocab, bool) if has_word_row is None else np.asarray(has_word_row, bool)
  if has_word_row.shape != (vocab,):
    raise ValueError(f"has_word_row has shape {has_word_row.shape}, expected ({vocab},)")
  use_ngrams = bucket > 0 and max_n >= min_n > 0
  per_word = [ngrams_of(word, min_n, max_n) if use_ngrams else [] for word in words]
  counts = np.fromiter(map(len, per_word), dtype=np.int64, count=vocab)  # [vocab]
  hashes = fnv1a_hashes([ngram for ngrams in per_word for ngram in ngrams])  # [sum(counts)]
  ngram_rows = vocab + (hashes.astype(np.int64) % max(bucket, 1))

  sizes = counts + has_word_row  # ids per word: optional word row, then its n-grams
  max_ids = max(int(sizes.max(initial=0)), 1)
  column = np.arange(max_ids)  # [max_ids]
  mask = column < sizes[:, None]  # [vocab, max_ids]
  ids = np.zeros((vocab, max_ids), np.int64)
  ids[has_word_row, 0] = np.nonzero(has_word_row)[0]
  # n-gram slots start after the word row; row-major order of the mask matches the flat hashes.
  ngram_slot = mask & (column >= has_word_row[:, None].astype(np.int64))
  ids[ngram_slot] = ngram_rows
  if ids.max(initial=0) >= np.iinfo(np.int32).max:
    raise errors.ConfigError(f"vocab + bucket = {vocab + bucket} rows do not fit int32 ids")
  return ids.astype(np.int32), mask
