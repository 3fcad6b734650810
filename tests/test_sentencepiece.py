"""SentencePiece: exact round-trip, the cache key, and piece vectors from FastText n-grams."""

import os

import numpy as np
import pytest

from jaxlm.data import sentencepiece_tokenizer as spt
from jaxlm.data import subwords

LINES = ["привет  мир, ёжик и ёжики", "  two leading and trailing spaces  ", "naïve café 🙂 emoji",
         "tabs\tinside\tthe line", "the quick brown fox jumps over the lazy dog"]
UNSEEN = ["𝔘nseen   ✓ 中文 🦔", " x", "", "ЁЖИК   naïveté"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  path = tmp_path_factory.mktemp("sp") / "train.txt"
  path.write_text("\n".join(LINES * 40) + "\n", encoding="utf-8")
  return path


@pytest.mark.parametrize("model_type", spt.MODEL_TYPES)
def test_round_trip_is_exact(corpus, model_type):
  path = spt.train_sentencepiece(str(corpus), model_type=model_type, vocab_size=320)
  assert os.path.dirname(path) == str(corpus.parent)  # cached beside the data
  processor = spt.load_sentencepiece(path)
  for line in LINES + UNSEEN:
    ids = processor.encode(line)
    assert processor.decode(ids) == line
  assert processor.unk_id() not in processor.encode(UNSEEN[0])  # byte fallback, never <unk>


def test_cache_key(corpus, tmp_path):
  first = spt.train_sentencepiece(str(corpus), vocab_size=330)
  stamp = os.path.getmtime(first)
  assert spt.train_sentencepiece(str(corpus), vocab_size=330) == first
  assert os.path.getmtime(first) == stamp  # not retrained
  assert spt.train_sentencepiece(str(corpus), vocab_size=340) != first
  changed = tmp_path / corpus.name
  changed.write_text(corpus.read_text(encoding="utf-8") + "one more line\n", encoding="utf-8")
  other = spt.train_sentencepiece(str(changed), vocab_size=330, cache_dir=str(tmp_path / "cache"))
  assert os.path.basename(other) != os.path.basename(first) and "cache" in other
  with pytest.raises(ValueError, match=f"{tmp_path}.*not a readable"):
    (tmp_path / "bad.model").write_bytes(b"not a protobuf")
    spt.load_sentencepiece(str(tmp_path / "bad.model"))
  with pytest.raises(ValueError, match=f"{corpus}: SentencePiece training failed"):
    spt.train_sentencepiece(str(corpus), vocab_size=100)  # fewer pieces than characters + bytes


class FakeFastText:
  """The parts of gensim's FastTextKeyedVectors that piece vectors read."""
  min_n, max_n, bucket, vector_size = 2, 3, 50, 4

  def __init__(self):
    self.vectors_ngrams = np.random.default_rng(0).normal(size=(self.bucket, 4)).astype(np.float32)
    self.key_to_index = {"ёжик": 0}

  def __getitem__(self, word):
    return np.full(4, 7.0, np.float32)


def _mean_of(text):
  buckets = subwords.fnv1a_hashes(subwords.ngrams_of(text, 2, 3, boundaries=False)) % 50
  return FakeFastText().vectors_ngrams[buckets.astype(np.int64)].mean(0)


def test_piece_vectors():
  vectors = FakeFastText()
  pieces = ["<unk>", "<s>", "<0xE2>", "▁", "▁▁", "▁ёжик", "▁ёж", "ик", "и", "🙂"]
  table = spt.piece_rows(np.zeros((len(pieces), 4)), pieces, vectors)
  assert not table[:5].any()  # specials, bytes and bare word marks keep their rows
  np.testing.assert_allclose(table[5], 7.0)  # a whole known word: fastText's word vector
  np.testing.assert_allclose(table[6], _mean_of("<ёж"), rtol=1e-6)  # word-initial n-grams
  np.testing.assert_allclose(table[7], _mean_of("ик"), rtol=1e-6)  # inside a word: no boundary
  assert not table[8].any() and not table[9].any()  # shorter than min_n: no n-grams
  with pytest.raises(ValueError, match="ft.bin: no SentencePiece piece"):
    spt.piece_rows(np.zeros((2, 4)), ["<unk>", "▁"], vectors, "ft.bin")
