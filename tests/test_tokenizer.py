"""The shared tokenizer's ids for words and pieces, and a BPE run's own SentencePiece model at evaluation."""

import os
import shutil

import numpy as np
import pytest

from conftest import smoke_config, write_tiny_corpus
from jaxlm import checkpoint
from jaxlm.data import corpora, sentencepiece_tokenizer, spans
from jaxlm.data import tokenizer as tokenizer_lib
from jaxlm.tasks import text_inputs
from jaxlm.training import evaluate, loop

TEXT = "Ёжик   пошёл в туман, 🦔 — искать лошадку!"


def _no_training(*args, **kwargs):
  raise AssertionError("SentencePiece was trained although a ready model was given")


@pytest.fixture(scope="module")
def piece_model(tmp_path_factory):
  path = tmp_path_factory.mktemp("pieces") / "train.txt"
  path.write_text("ёжик пошёл в туман искать лошадку\nthe cat sat on the mat\n" * 40, encoding="utf-8")
  return sentencepiece_tokenizer.train_sentencepiece(str(path), vocab_size=300)


def test_words_are_their_vocabulary_ids_and_unknown_words_unk():
  tokenizer = tokenizer_lib.Tokenizer(["<eos>", "<unk>", "ёжик", "в", "туман", ","])
  assert (tokenizer.start_id, tokenizer.unknown_id, tokenizer.processor) == (0, 1, None)
  assert tokenizer.encode(["ёжик", "пошёл", "в", "туман"]) == [2, 1, 3, 4]
  assert tokenizer.word_ids(["ёжик", "лошадку"]) == [[2], [1]]
  # Raw text is read as jaxlm's word tokens, each keeping its span in the text as written.
  assert [span.token for span in tokenizer.token_spans(TEXT)] == ["ёжик", "пошёл", "в", "туман", ",", "🦔", "—",
                                                                 "искать", "лошадку", "!"]
  assert tokenizer.encode(TEXT) == [2, 1, 3, 4, 5, 1, 1, 1, 1, 1]
  assert tokenizer.token_spans(TEXT) == spans.word_spans(TEXT)
  with pytest.raises(KeyError):
    tokenizer_lib.Tokenizer(["<eos>", "ёжик"])  # a vocabulary without <unk>


def test_pieces_are_the_models_ids_word_by_word_and_in_a_line(piece_model):
  tokenizer = tokenizer_lib.Tokenizer.from_sentencepiece(piece_model)
  processor = sentencepiece_tokenizer.load_sentencepiece(piece_model)
  assert tokenizer.words == sentencepiece_tokenizer.pieces_of(processor)
  assert tokenizer.start_id == processor.piece_to_id("</s>") == processor.eos_id()
  assert tokenizer.unknown_id == processor.unk_id()
  words = [span.token for span in spans.word_spans(TEXT)]
  line_ids = processor.encode(" ".join(words))  # a BPE language model's line, without its "</s>"
  # Word by word (classification, tagging), from raw text (span QA) and as a whole line: the same ids.
  assert tokenizer.encode(words) == tokenizer.encode(TEXT) == line_ids
  assert tokenizer.word_ids(words) == [processor.encode(word) for word in words]
  assert tokenizer.word_ids(["ёжик", ""])[1] == [tokenizer.unknown_id]  # an empty word keeps a position
  assert tokenizer.token_spans(TEXT) == spans.piece_spans(TEXT, processor)
  # A longer vocabulary that begins with the pieces (a masked LM's <mask> after them) keeps the ids.
  longer = tokenizer.with_words(tokenizer.words + ["<mask>"])
  assert longer.processor is tokenizer.processor and longer.encode(TEXT) == line_ids


def test_an_encoder_starts_examples_and_counts_what_it_cuts(piece_model):
  tokenizer = tokenizer_lib.Tokenizer.from_sentencepiece(piece_model)
  words = ["лошадку", "🦔", "ёжик"]
  whole = [tokenizer.start_id] + tokenizer.encode(words)
  whole_first = [False] + [position == 0 for word_ids in tokenizer.word_ids(words) for position in range(len(word_ids))]
  assert len(whole) > 4  # the emoji is 4 byte pieces
  encoder = text_inputs.Encoder(tokenizer, max_length=len(whole) - 1)
  ids, first = encoder.ids_and_first(words)
  assert ids.tolist() == whole[:-1] and first.tolist() == whole_first[:-1] and ids.dtype == np.int32
  assert (encoder.truncated_examples, encoder.truncated_tokens) == (1, 1)


def test_a_bpe_language_model_evaluates_with_its_own_pieces(tmp_path, monkeypatch):
  """Its workdir's sentencepiece.model encodes the corpus: an emptied SentencePiece cache, or a
  moved workdir with no cache at all, retrains nothing and scores the same."""
  corpus = write_tiny_corpus(str(tmp_path / "corpus"))
  cache = tmp_path / "cache"
  config = smoke_config(corpus, str(cache), **{"train.steps": 2, "data.tokenizer": "bpe",
                                               "data.bpe_vocab_size": 320})
  workdir = str(tmp_path / "lm")
  loop.train_and_evaluate(config, workdir, progress=False)
  (trained,) = evaluate.evaluate_workdir(workdir, splits=("valid",))
  monkeypatch.setattr(sentencepiece_tokenizer, "train_sentencepiece", _no_training)
  shutil.rmtree(cache / "sentencepiece")
  (emptied,) = evaluate.evaluate_workdir(workdir, splits=("valid",))
  assert emptied == trained
  moved = str(tmp_path / "moved")
  shutil.move(workdir, moved)
  shutil.rmtree(cache)
  experiment, _, _ = evaluate.restore_workdir(moved)
  assert experiment.task.sentencepiece_model == checkpoint.sentencepiece_path(moved)
  (moved_result,) = evaluate.evaluate_workdir(moved, splits=("valid",))
  assert moved_result == trained


def test_token_ids_cached_with_other_pieces_are_not_read(tmp_path, monkeypatch):
  """A ready model whose pieces differ from the cached vocabulary of its name encodes the corpus
  itself and leaves that cache as it is."""
  from configs.common import base_config
  data = base_config().data
  data.path, data.cache_dir = write_tiny_corpus(str(tmp_path / "corpus")), str(tmp_path / "cache")
  data.tokenizer, data.bpe_vocab_size = "bpe", 320
  trained = corpora.load_corpus(data)
  own = str(tmp_path / "own.model")
  shutil.copyfile(trained.sentencepiece_model, own)
  monkeypatch.setattr(sentencepiece_tokenizer, "train_sentencepiece", _no_training)
  ready = corpora.load_corpus(data, own)
  assert (ready.fingerprint, ready.sentencepiece_model) == (trained.fingerprint, own)
  assert all(np.array_equal(ready.splits[split], trained.splits[split]) for split in corpora.SPLITS)
  token_dir = next(os.scandir(os.path.join(data.cache_dir, "tokens"))).path
  vocabulary = os.path.join(token_dir, "vocabulary.txt")
  other = trained.vocabulary.words[:3] + trained.vocabulary.words[3:][::-1]  # another model's piece order
  with open(vocabulary, "w", encoding="utf-8") as handle:
    handle.write("".join(word + "\n" for word in other))
  again = corpora.load_corpus(data, own)
  assert again.vocabulary.words == trained.vocabulary.words
  assert all(np.array_equal(again.splits[split], trained.splits[split]) for split in corpora.SPLITS)
  assert open(vocabulary, encoding="utf-8").read().split("\n")[:-1] == other  # the cache is left as it is
