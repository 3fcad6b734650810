"""RusLit-format corpora: split by whole works, Russian word tokenisation, capped vocabulary, BPE."""

import os

import pytest

from jaxlm.data import corpora, text_files, works
from jaxlm.data.vocabulary import UNKNOWN
from works_helpers import marker, write_works

NUM_WORKS = 60


@pytest.fixture(scope="module")
def works_folder(tmp_path_factory):
  return write_works(str(tmp_path_factory.mktemp("ruslit")), NUM_WORKS)


def data_config(folder, cache, **overrides):
  from configs.common import base_config
  config = base_config().data
  config.corpus, config.path, config.cache_dir = "ruslit", folder, cache
  config.update(overrides)
  return config


def test_tokenisation_lowercases_and_keeps_hyphenated_words():
  assert (works.tokenise_line("За\u0301мок, кто-то — «Ёжик»!  Naïve O'Henry… 1812\u007f")
          == "замок , кто-то — « ёжик » ! naïve o'henry … 1812")
  assert works.tokenise_line("   ") == ""


def test_every_work_lands_whole_in_exactly_one_split(works_folder, tmp_path):
  files = works.write_split_files(os.path.join(works_folder, "ruslit.jsonl.gz"), str(tmp_path))
  split_words = {split: set(open(path, encoding="utf-8").read().split()) for split, path in files.items()}
  all_works = works.read_works(os.path.join(works_folder, "ruslit.jsonl.gz"))
  counts = {split: 0 for split in works.SPLITS}
  for index, work in enumerate(all_works):
    holding = [split for split in works.SPLITS if marker(index) in split_words[split]]
    assert holding == [works.split_of(work)], (index, holding)
    counts[holding[0]] += 1
  assert min(counts.values()) > 0 and counts["train"] > counts["valid"] + counts["test"], counts
  assert works.split_of({"path": "prose/Tolstoy/x.txt"}) == works.split_of({"path": "prose/Tolstoy/x.txt"})


def test_capped_vocabulary_and_cached_tokens(works_folder, tmp_path):
  config = data_config(works_folder, str(tmp_path), max_vocab=20)
  corpus = corpora.load_corpus(config)
  words = corpus.vocabulary.words
  assert len(words) == 20 and UNKNOWN in words and "<eos>" in words
  assert all(word == word.lower() for word in words)
  assert corpora.load_corpus(config).fingerprint == corpus.fingerprint  # from the cache
  full = corpora.load_corpus(data_config(works_folder, str(tmp_path)))
  assert len(full.vocabulary) > 20 and full.vocabulary.words[-1] == UNKNOWN  # raw text: <unk> always
  assert full.splits["train"].size == corpus.splits["train"].size
  # The FastText text is the train split exactly as the word-level LM reads it.
  text = open(corpora.train_text_file(config), encoding="utf-8").read().split("\n")[:-1]
  assert sum(len(line.split()) + 1 for line in text) == full.splits["train"].size


def test_bpe_vocabulary_is_pieces_and_round_trips(works_folder, tmp_path):
  from jaxlm.data import sentencepiece_tokenizer
  config = data_config(works_folder, str(tmp_path), tokenizer="bpe", bpe_vocab_size=400)
  corpus = corpora.load_corpus(config)
  pieces = corpus.vocabulary.words
  assert len(pieces) == 400 and any(piece.startswith(sentencepiece_tokenizer.WORD_START) for piece in pieces)
  eos = pieces.index("</s>")
  ids = corpus.splits["valid"].tolist()
  first_line = ids[:ids.index(eos)]
  decoded = "".join(pieces[i] for i in first_line).replace(sentencepiece_tokenizer.WORD_START, " ")
  valid_text = open(os.path.join(os.path.dirname(corpora.train_text_file(config)), "valid.txt"),
                    encoding="utf-8").readline().rstrip("\n")
  assert decoded == " " + valid_text  # SentencePiece marks the first word as a word start too


def test_ruslit_needs_a_user_path_and_names_the_fix(tmp_path):
  with pytest.raises(text_files.DataError, match="never shipped.*data.path"):
    corpora.load_corpus(data_config("", str(tmp_path)))
  with pytest.raises(ValueError, match="data.tokenizer='chars'"):
    corpora.load_corpus(data_config(str(tmp_path), str(tmp_path), tokenizer="chars"))
  (tmp_path / "ruslit.jsonl").write_text('{"path": "a", "text": "x"}\nnot json\n', encoding="utf-8")
  with pytest.raises(text_files.DataError, match="line 2 is not JSON"):
    corpora.load_corpus(data_config(str(tmp_path), str(tmp_path / "cache")))
