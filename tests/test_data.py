"""Corpora, vocabulary and batching: exact counts, purity in the step, clear errors."""

import os
import threading

import numpy as np
import pytest

from conftest import SHARED_DATA
from jaxlm.data import corpora, lm_batches, text_files
from jaxlm.data.vocabulary import Vocabulary


def data_config(path, cache):
  """config.data as configs/common.py shapes it (WikiText-2, word-level), reading `path`."""
  from configs.common import base_config
  config = base_config().data
  config.path, config.cache_dir = path, cache
  return config


def test_vocabulary_follows_the_wikitext_convention():
  vocabulary = Vocabulary.from_lines(["a b a", "", "b c"])
  # Descending frequency (<eos> ends each of the 3 lines), ties by first use.
  assert vocabulary.words == ["<eos>", "a", "b", "c"]
  ids = vocabulary.encode_lines(["a c"], "x")
  assert [vocabulary.words[i] for i in ids] == ["a", "c", "<eos>"]


def test_unknown_word_without_unk_is_an_error_naming_the_line():
  vocabulary = Vocabulary.from_lines(["a b"])
  with pytest.raises(ValueError, match="valid.txt line 2: word 'zzz'"):
    vocabulary.encode_lines(["a", "zzz"], "valid.txt")


def test_load_corpus_counts_tokens_and_caches(tiny_corpus, tmp_path):
  corpus = corpora.load_corpus(data_config(tiny_corpus, str(tmp_path)))
  with open(os.path.join(tiny_corpus, "valid.txt"), encoding="utf-8") as handle:
    expected = sum(len(line.split()) + 1 for line in handle)
  assert corpus.splits["valid"].size == expected
  assert corpus.splits["train"].dtype == np.int32
  again = corpora.load_corpus(data_config(tiny_corpus, str(tmp_path)))
  np.testing.assert_array_equal(again.splits["train"], corpus.splits["train"])
  assert os.path.isdir(os.path.join(str(tmp_path), "tfds"))  # built through TFDS array_record


def test_cells_that_build_the_same_corpus_at_once_take_turns(tiny_corpus, tmp_path, monkeypatch):
  """Two grid cells started together both build the same TFDS cache. TFDS renames its own
  temporary folder onto the version folder, which fails for the second once the first's is
  there (seen on a GPU machine: FileExistsError). Builders take turns instead: the
  second waits, then reads the first's dataset. (flock: a thread's own open() is another
  holder, as another process would be.)"""
  from jaxlm.data import word_corpus
  split_files = {split: os.path.join(tiny_corpus, f"{split}.txt") for split in corpora.SPLITS}
  tfds_dir = str(tmp_path / "tfds")
  generate = word_corpus.WordLevelCorpus._split_generators
  other = {}

  def another_cell_starts_meanwhile(self, download_manager):
    if not other:
      other["thread"] = threading.Thread(
          target=lambda: other.setdefault("lines", corpora._read_split_lines(split_files, tfds_dir)))
      other["thread"].start()
      other["thread"].join(timeout=3)  # without turns it builds and renames first
    return generate(self, download_manager)

  monkeypatch.setattr(word_corpus.WordLevelCorpus, "_split_generators", another_cell_starts_meanwhile)
  lines = corpora._read_split_lines(split_files, tfds_dir)
  other["thread"].join()
  assert lines["valid"] == text_files.read_lines(split_files["valid"])
  assert other["lines"] == lines
  assert [name for name in os.listdir(os.path.join(tfds_dir, "word_level_corpus")) if "incomplete" in name] == []


def test_missing_corpus_file_names_the_path_and_the_fix(tmp_path):
  (tmp_path / "train.txt").write_text("a b\n")
  with pytest.raises(text_files.DataError, match="valid.txt.*not found"):
    corpora.load_corpus(data_config(str(tmp_path), str(tmp_path / "cache")))


def test_empty_corpus_file_is_an_error(tmp_path):
  for split in ("train", "valid", "test"):
    (tmp_path / f"{split}.txt").write_text("a b\n")
  (tmp_path / "test.txt").write_text("")
  with pytest.raises(text_files.DataError, match="test.txt is empty"):
    corpora.load_corpus(data_config(str(tmp_path), str(tmp_path / "cache")))


def test_non_utf8_bytes_are_reported_with_line_and_offset(tmp_path):
  for split in ("train", "valid", "test"):
    (tmp_path / f"{split}.txt").write_text("a b\n")
  (tmp_path / "train.txt").write_bytes("a b\nc \xe9t\xe9\n".encode("latin-1"))
  with pytest.raises(text_files.DataError, match=r"train.txt is not valid UTF-8.*line 2.*iconv"):
    corpora.load_corpus(data_config(str(tmp_path), str(tmp_path / "cache")))


def test_ptb_needs_a_user_path():
  config = data_config("", "")
  config.corpus = "ptb"
  with pytest.raises(text_files.DataError, match="LDC"):
    corpora.load_corpus(config)


def test_window_batches_are_a_pure_function_of_seed_and_step():
  tokens = np.arange(1000, dtype=np.int32)
  first = lm_batches.window_batch(tokens, 7, seed=1, batch_size=4, length=8)
  again = lm_batches.window_batch(tokens, 7, seed=1, batch_size=4, length=8)
  other = lm_batches.window_batch(tokens, 8, seed=1, batch_size=4, length=8)
  np.testing.assert_array_equal(first["inputs"], again["inputs"])
  assert not np.array_equal(first["inputs"], other["inputs"])
  np.testing.assert_array_equal(first["targets"], first["inputs"] + 1)  # targets are the next token


def test_hosts_take_disjoint_rows_of_the_same_global_batch():
  tokens = np.arange(1000, dtype=np.int32)
  whole = lm_batches.window_batch(tokens, 3, seed=0, batch_size=4, length=8)
  halves = [lm_batches.window_batch(tokens, 3, seed=0, batch_size=4, length=8, process_index=index,
                                    process_count=2)["inputs"] for index in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves), whole["inputs"])


def test_stream_batches_continue_each_row_and_reset_at_epoch_start():
  tokens = np.arange(1000, dtype=np.int32)
  segments = lm_batches.stream_segments_per_epoch(tokens.size, 4, 10)
  first = lm_batches.stream_batch(tokens, 0, seed=0, batch_size=4, length=10)
  second = lm_batches.stream_batch(tokens, 1, seed=0, batch_size=4, length=10)
  assert first["reset"].all() and not second["reset"].any()
  np.testing.assert_array_equal(second["inputs"][:, 0], first["targets"][:, -1])  # row b continues
  assert lm_batches.stream_batch(tokens, segments, seed=0, batch_size=4, length=10)["reset"].all()


def test_evaluation_batches_score_every_target_exactly_once():
  tokens = np.arange(103, dtype=np.int32)
  batches = list(lm_batches.evaluation_batches(tokens, batch_size=4, length=5))
  scored = np.concatenate([batch["targets"][batch["weights"] > 0] for batch in batches])
  assert sorted(scored.tolist()) == list(range(1, 103))
  assert batches[0]["reset"].all() and not batches[1]["reset"].any()


def test_shipped_wikitext2_has_the_published_counts(cache_dir):
  corpus = corpora.load_corpus(data_config("", cache_dir))
  assert len(corpus.vocabulary) == 33_278
  assert {split: tokens.size for split, tokens in corpus.splits.items()} == {
      "train": 2_088_628, "valid": 217_646, "test": 245_569}


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_DATA, "ptb")),
                    reason="needs ../shared/data/ptb (LDC licence: never shipped in the repo)")
def test_ptb_from_a_user_path_has_the_published_counts(cache_dir):
  config = data_config(os.path.join(SHARED_DATA, "ptb"), cache_dir)
  config.corpus = "ptb"
  corpus = corpora.load_corpus(config)
  assert len(corpus.vocabulary) == 10_000
  assert {split: tokens.size for split, tokens in corpus.splits.items()} == {
      "train": 929_589, "valid": 73_760, "test": 82_430}
