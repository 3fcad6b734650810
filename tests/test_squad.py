"""Extractive QA data and scoring: SQuAD reading and splits, character spans, windows, scores."""

import json
import os
import unicodedata

import numpy as np
import pytest

from conftest import SHARED_DATA
from jaxlm.data import qa_windows, spans, squad, text_files, works
from jaxlm.data import sentencepiece_tokenizer as spt
from jaxlm.tasks import squad_scores

XQUAD = os.path.join(SHARED_DATA, "xquad")


# ---------------------------------------------------------------------------------------------
# Scores: the official SQuAD v1.1 rules and the named "unicode" variant.

def _questions(*golds):
  """squad.Question objects q0, q1, ... with the given gold answer texts."""
  return [squad.Question(id=f"q{index}", question="?", context="", answers=tuple((text, 0) for text in gold),
                         article_title="", article_index=0, paragraph_index=0)
          for index, gold in enumerate(golds)]


def test_official_normalisation():
  normalize = squad_scores.normalize_answer
  assert normalize("The  Cat, sat on a mat!") == "cat sat on mat"
  assert normalize("theatre an-other") == "theatre another"  # articles only as whole words
  assert normalize("$5.00") == "500"  # every ASCII punctuation/symbol character goes
  assert normalize("«Пушкин» — поэт…") == "«пушкин» — поэт…"  # non-ASCII punctuation stays
  assert normalize("«Пушкин» — поэт…", "unicode") == "пушкин поэт"
  assert normalize("The $5 «Дом»", "unicode") == "5 дом"  # unicode removes what official does, and more
  with pytest.raises(ValueError, match="normalization='nfkc'"):
    normalize("x", "nfkc")


def test_exact_match_and_f1_on_hand_made_cases():
  assert squad_scores.exact_match_score("the Denver Broncos.", "Denver Broncos")
  assert squad_scores.f1_score("the big red dog", "red dog house") == pytest.approx(2 / 3)
  assert squad_scores.f1_score("x x y", "x y y") == pytest.approx(2 / 3)  # overlap counts multiplicity
  assert squad_scores.f1_score("", "Denver") == 0.0
  # The official quirk: answers that normalise to nothing match exactly but have F1 0.
  assert squad_scores.exact_match_score("the", "a.") and squad_scores.f1_score("the", "a.") == 0.0


def test_evaluate_counts_every_question_and_takes_the_best_gold():
  questions = _questions(["Denver Broncos", "The Broncos"], ["Carolina Panthers"], ["Santa Clara"],
                         ["1812"])
  predictions = {"q0": "broncos", "q1": "the Carolina Panthers!", "q2": "", "unknown id": "x"}
  result = squad_scores.evaluate(questions, predictions)  # q3 has no prediction: scores 0
  # q0: EM 1 against "The Broncos" (F1 1); q1: EM 1; q2 empty: 0; q3 missing: 0.
  assert result == {"exact_match": 50.0, "f1": 50.0, "questions": 4, "predicted": 3}
  partial = squad_scores.evaluate(questions[:1], {"q0": "Denver"})  # F1 max(2/3, 0)
  assert partial["exact_match"] == 0.0 and partial["f1"] == pytest.approx(100 * 2 / 3)
  with pytest.raises(ValueError, match="'q0' has no gold answer"):
    squad_scores.evaluate(_questions([]), {})
  with pytest.raises(ValueError, match="at least one question"):
    squad_scores.evaluate([], {})


def test_cyrillic_quotes_and_dashes_official_versus_unicode():
  questions = _questions(["Евгений Онегин"], ["1812 1815"], ["Война и мир"])
  predictions = {"q0": "«Евгений Онегин»", "q1": "1812 — 1815", "q2": "«Война и мир»…"}
  official = squad_scores.evaluate(questions, predictions, normalization="official")
  unicode_scores = squad_scores.evaluate(questions, predictions, normalization="unicode")
  # Official: q0 shares no token ("«евгений" != "евгений"); q1 F1 = 2 * (2/3 * 1) / (2/3 + 1) = 0.8;
  # q2: "«война", "и", "мир»…" share only "и": P = R = 1/3.
  assert official["exact_match"] == 0.0
  assert official["f1"] == pytest.approx(100 * (0 + 0.8 + 1 / 3) / 3)
  assert unicode_scores == {"exact_match": 100.0, "f1": 100.0, "questions": 3, "predicted": 3}


# ---------------------------------------------------------------------------------------------
# Word and piece spans.

SPAN_TEXTS = [
    "За\u0301мок, кто-то — «Ёжик»!  Naïve O'Henry… 1812",
    unicodedata.normalize("NFC", "Naïve café, Über straße"),
    unicodedata.normalize("NFD", "Naïve café, Über straße"),
    "Эмодзи 🙂👍🏽 и флаги 🇷🇺 тоже\ttab",
    "ΟΔΟΣ Σ σοφός",  # Greek final sigma: lowercasing in context changes a letter, not a length
    "ab\x07cd\x00 домо\u0301 до\u0300м",  # control characters inside a word; trailing stress mark
    "\ufeffЗащита   \n уступила",
    "",
]


@pytest.mark.parametrize("text", SPAN_TEXTS)
def test_word_spans_match_the_word_tokeniser_and_the_original_text(text):
  result = spans.word_spans(text)
  assert [span.token for span in result] == works.tokenise_line(text).split()
  for span in result:
    assert 0 <= span.start < span.end <= len(text)
    assert works.tokenise_line(text[span.start:span.end]) == span.token  # the surface form
  assert [span.start for span in result] == sorted(span.start for span in result)


def test_word_spans_keep_original_offsets():
  text = "За\u0301мок, «Ёжик»! до́мо\u0301"
  assert spans.word_spans(text) == [("замок", 0, 6), (",", 6, 7), ("«", 8, 9), ("ёжик", 9, 13),
                                     ("»", 13, 14), ("!", 14, 15), ("домо", 16, 22)]
  # "İ" lowercases to two characters ("i" + combining dot, which tokenise_line makes a
  # token of its own): both tokens share the one original character, later ones do not shift.
  text = "İstanbul и Рим"
  assert works.tokenise_line(text) == "i \u0307 stanbul и рим"
  assert spans.word_spans(text) == [("i", 0, 1), ("\u0307", 0, 1), ("stanbul", 1, 8), ("и", 9, 10),
                                    ("рим", 11, 14)]


@pytest.fixture(scope="module")
def sentencepiece_processor(tmp_path_factory):
  """A tiny BPE model trained (as jaxlm trains them) on word-tokenised lines."""
  sentences = ["Москва — столица России, а Пушкин — поэт.", "The quick brown fox jumps over the lazy dog.",
               "Ёжик в тумане искал лошадку; кто-то звал его.", "Naïve café owners sell crème brûlée."]
  path = tmp_path_factory.mktemp("squad_sp") / "train.txt"
  path.write_text("\n".join(works.tokenise_line(line) for line in sentences * 30) + "\n", encoding="utf-8")
  return spt.load_sentencepiece(spt.train_sentencepiece(str(path), vocab_size=400))


@pytest.mark.parametrize("text", ["Москва́ — столи\u0301ца России!  Пушкин, ёжик 🙂 и кто-то.",
                                  "THE Quick fox; naïve café 中文", "", "  "])
def test_piece_spans_share_out_each_word(text, sentencepiece_processor):
  pieces = spans.piece_spans(text, sentencepiece_processor)
  words = spans.word_spans(text)
  # The same pieces as the BPE input of the tokenised line.
  line = " ".join(word.token for word in words)
  expected = sentencepiece_processor.encode(line, out_type=str) if words else []
  assert [piece.token for piece in pieces] == expected
  word_starts = {word.start for word in words}
  by_word = {word: [] for word in words}
  for piece in pieces:
    if piece.start == piece.end:  # a bare "▁": empty, at the start of the next word
      assert piece.token == "\u2581" and piece.start in word_starts
      continue
    if not sentencepiece_processor.is_byte(sentencepiece_processor.piece_to_id(piece.token)):
      # The piece is the normalised surface of its characters.
      surface = text[piece.start:piece.end]
      assert works._REMOVED.sub("", surface).lower() == piece.token.lstrip("\u2581")
    owners = [word for word in words if word.start <= piece.start and piece.end <= word.end]
    assert len(owners) == 1
    if not by_word[owners[0]] or by_word[owners[0]][-1] != (piece.start, piece.end):
      by_word[owners[0]].append((piece.start, piece.end))  # byte pieces of a character share it
  for word, shares in by_word.items():
    # The word's pieces tile it: from its start, each where the last ended, to its end.
    assert shares[0][0] == word.start and shares[-1][1] == word.end
    assert all(previous[1] == following[0] for previous, following in zip(shares, shares[1:]))


def test_piece_spans_of_byte_fallback_characters(sentencepiece_processor):
  text = "ёжик 🙂"
  emoji = [piece for piece in spans.piece_spans(text, sentencepiece_processor) if piece.token.startswith("<0x")]
  assert len(emoji) == 4 and {(piece.start, piece.end) for piece in emoji} == {(5, 6)}


def test_with_ids():
  vocabulary = {"москва": 3, ",": 4}
  result = spans.with_ids(spans.word_spans("Москва, Рим"), lambda word: vocabulary.get(word, 1))
  assert result == [(3, 0, 6), (4, 6, 7), (1, 8, 11)]


# ---------------------------------------------------------------------------------------------
# Windows.

def test_answer_token_span():
  context_spans = [(1, 0, 3), (2, 4, 9), (3, 9, 10), (4, 11, 13)]
  assert qa_windows.answer_token_span(context_spans, 4, 9) == (1, 1)
  assert qa_windows.answer_token_span(context_spans, 5, 7) == (1, 1)  # inside a token
  assert qa_windows.answer_token_span(context_spans, 0, 13) == (0, 3)
  assert qa_windows.answer_token_span(context_spans, 2, 10) == (0, 2)
  assert qa_windows.answer_token_span(context_spans, 10, 11) is None  # only a space
  assert qa_windows.answer_token_span([], 0, 1) is None


def _context(num_tokens):
  """Tokens "w0 w1 ...": spans (id 100 + i, start, end) and the text."""
  words = [f"w{index}" for index in range(num_tokens)]
  text = " ".join(words)
  return [(100 + index, span.start, span.end) for index, span in enumerate(spans.word_spans(text))], text


@pytest.mark.parametrize("num_tokens,max_length,stride,question_length", [
    (0, 8, 2, 2), (1, 3, 1, 1), (5, 8, 5, 2), (6, 8, 5, 2), (97, 16, 5, 3), (97, 17, 1, 8),
    (50, 11, 100, 4),  # stride beyond the capacity: clamped, nothing skipped
    (40, 9, 3, 30),  # a long question: cut to 9 // 2 = 4 tokens
])
def test_windows_cover_every_context_token(num_tokens, max_length, stride, question_length):
  context_spans, text = _context(num_tokens)
  question = list(range(1, question_length + 1))
  windows = qa_windows.make_windows(question, context_spans, max_length=max_length, stride=stride,
                                    separator_id=99, context=text)
  kept = min(question_length, max_length // 2)
  capacity = max_length - kept - 1
  step = min(stride, capacity)
  covered = set()
  for number, window in enumerate(windows):
    assert window.context_first == number * step
    assert window.question_tokens_dropped == question_length - kept
    assert window.start_position is None and window.end_position is None  # no answer given
    length = kept + 1 + window.context_stop - window.context_first
    assert window.token_ids.shape == (max_length,) and window.token_ids.dtype == np.int32
    assert list(window.token_ids[:kept + 1]) == question[:kept] + [99]
    assert list(window.mask) == [True] * length + [False] * (max_length - length)
    assert not window.token_ids[length:].any()  # pad_id 0
    positions = np.flatnonzero(window.context_index >= 0)
    assert list(positions) == list(range(kept + 1, length))
    for position in positions:
      token_id, start, end = context_spans[window.context_index[position]]
      assert (window.token_ids[position], window.char_start[position], window.char_end[position]) == (
          token_id, start, end)
    assert (window.char_start[window.context_index < 0] == -1).all()
    covered.update(window.context_index[positions].tolist())
  assert covered == set(range(num_tokens))
  assert windows[-1].context_stop == num_tokens
  # Every character of every token is in some window (spaces between tokens belong to none).
  characters = {c for window in windows for position in np.flatnonzero(window.context_index >= 0)
                for c in range(window.char_start[position], window.char_end[position])}
  assert characters == {c for c, character in enumerate(text) if character != " "}


def test_windows_mark_the_answer_or_the_null_position():
  context_spans, text = _context(30)  # "w0 w1 ... w29"
  answer_start = text.index("w12")
  answer = (answer_start, answer_start + len("w12 w13"))
  windows = qa_windows.make_windows([7, 8], context_spans, max_length=10, stride=3, separator_id=99,
                                    context=text, answer=answer)
  holding = []
  for window in windows:
    if window.context_first <= 12 and 13 < window.context_stop:
      holding.append(window)
      assert window.context_index[window.start_position] == 12
      assert window.context_index[window.end_position] == 13
      assert text[window.char_start[window.start_position]:window.char_end[window.end_position]] == "w12 w13"
    else:
      assert window.start_position == window.end_position == qa_windows.NULL_POSITION
  assert len(holding) == 2  # capacity 7, step 3: windows starting at 9 and 12
  batch = qa_windows.stack_windows(windows)
  assert batch["token_ids"].shape == (len(windows), 10) and batch["mask"].dtype == bool
  assert list(batch["start_positions"]) == [window.start_position for window in windows]
  # An answer longer than a window's context fits none; spaces-only answers map to no token.
  long_answer = (0, len(text))
  assert all(window.start_position == 0 for window in qa_windows.make_windows(
      [7], context_spans, max_length=10, stride=3, separator_id=99, context=text, answer=long_answer))
  assert all(window.start_position == 0 for window in qa_windows.make_windows(
      [7], context_spans, max_length=10, stride=3, separator_id=99, context=text, answer=(2, 3)))
  assert "start_positions" not in qa_windows.stack_windows(qa_windows.make_windows(
      [7], context_spans, max_length=10, stride=3, separator_id=99, context=text))


def test_window_arguments_are_checked():
  context_spans, text = _context(5)
  with pytest.raises(ValueError, match="max_length=2"):
    qa_windows.make_windows([1], context_spans, max_length=2, stride=1, separator_id=9, context=text)
  with pytest.raises(ValueError, match="stride=0"):
    qa_windows.make_windows([1], context_spans, max_length=8, stride=0, separator_id=9, context=text)


# ---------------------------------------------------------------------------------------------
# Post-processing: the best span over a question's windows.

def test_best_span_over_several_windows():
  text = "Москва — столица России, а Пушкин — великий русский поэт и писатель."
  word_spans = spans.word_spans(text)
  context_spans = [(10 + index, span.start, span.end) for index, span in enumerate(word_spans)]
  tokens = [span.token for span in word_spans]
  windows = qa_windows.make_windows([1, 2], context_spans, max_length=9, stride=3, separator_id=99,
                                    context=text)
  assert len(windows) > 2
  start_logits = np.zeros((len(windows), 9), np.float32)
  end_logits = np.zeros((len(windows), 9), np.float32)
  start_logits[:, :3] = end_logits[:, :3] = 100.0  # question and separator positions never answer
  poet, writer = tokens.index("великий"), tokens.index("поэт")

  def position(window, token_index):
    return int(np.flatnonzero(window.context_index == token_index)[0])

  for number, window in enumerate(windows):
    if window.context_first <= poet and writer < window.context_stop:
      start_logits[number, position(window, poet)] = 3.0
      end_logits[number, position(window, writer)] = 4.0
    elif window.context_first <= poet < window.context_stop:
      start_logits[number, position(window, poet)] = 5.0  # a better start, but its end is elsewhere
  answers = squad_scores.predict_answers({"q": windows}, start_logits, end_logits, n_best=3,
                                         max_answer_length=5)
  assert answers == {"q": "великий русский поэт"}
  by_question = squad_scores.predict_answers({"q": windows}, {"q": start_logits}, {"q": end_logits},
                                             n_best=3, max_answer_length=5)
  assert by_question == answers
  # Too long for max_answer_length=2: the best allowed span wins instead.
  short = squad_scores.predict_answers({"q": windows}, start_logits, end_logits, n_best=3,
                                       max_answer_length=2)
  assert len(short["q"].split()) <= 2

  best = squad_scores.best_span(np.arange(9.0), np.arange(9.0)[::-1].copy(), windows[0], n_best=20,
                                max_answer_length=30)
  assert best.start_position <= best.end_position and windows[0].context_index[best.start_position] >= 0
  with pytest.raises(ValueError, match="positions"):
    squad_scores.best_span(np.zeros(8), np.zeros(8), windows[0])
  with pytest.raises(ValueError, match="rows"):
    squad_scores.predict_answers({"q": windows}, start_logits[:1], end_logits[:1])


def test_a_question_without_a_valid_span_answers_empty():
  windows = qa_windows.make_windows([1], [], max_length=4, stride=1, separator_id=9, context="")
  assert squad_scores.best_span(np.zeros(4), np.zeros(4), windows[0]) is None
  assert squad_scores.predict_answers({"q": windows}, np.zeros((1, 4)), np.zeros((1, 4))) == {"q": ""}


# ---------------------------------------------------------------------------------------------
# Reading SQuAD files, splitting by article.

def _write(path, document):
  path.write_text(document if isinstance(document, str) else json.dumps(document, ensure_ascii=False),
                  encoding="utf-8")
  return str(path)


def _document(articles=2, paragraphs=2):
  def paragraph(article, number):
    context = f"Контекст {article}.{number}: Пушкин родился в 1799 году."
    return {"context": context, "qas": [{"id": f"{article}-{number}", "question": "Когда родился Пушкин?",
                                         "answers": [{"text": "1799", "answer_start": context.index("1799")}]}]}
  return {"version": "1.1", "data": [
      {"title": f"Статья_{article}", "paragraphs": [paragraph(article, number) for number in range(paragraphs)]}
      for article in range(articles)]}


def test_read_squad(tmp_path):
  questions, report = squad.read_squad(_write(tmp_path / "good.json", _document(3, 2)))
  assert report == squad.ReadReport(articles=3, paragraphs=6, questions=6, answers=6)
  first = questions[0]
  assert (first.id, first.article_title, first.article_index, first.paragraph_index) == ("0-0", "Статья_0", 0, 0)
  text, start = first.answers[0]
  assert first.context[start:start + len(text)] == "1799" and first.question == "Когда родился Пушкин?"


def test_read_squad_errors(tmp_path):
  with pytest.raises(text_files.DataError, match="not found"):
    squad.read_squad(str(tmp_path / "missing.json"))
  with pytest.raises(text_files.DataError, match="bad.json is not JSON"):
    squad.read_squad(_write(tmp_path / "bad.json", "{\"data\": ["))
  with pytest.raises(text_files.DataError, match="top-level 'data' list"):
    squad.read_squad(_write(tmp_path / "shape.json", {"version": "1.1", "articles": []}))

  def broken(name, change):
    document = _document()
    change(document["data"][1]["paragraphs"][0])
    return _write(tmp_path / name, document)

  with pytest.raises(text_files.DataError, match="article 1 paragraph 0 has no 'context' field"):
    squad.read_squad(broken("context.json", lambda paragraph: paragraph.pop("context")))
  with pytest.raises(text_files.DataError, match="answer 0 of question id '1-0' has no 'answer_start'"):
    squad.read_squad(broken("start.json",
                            lambda paragraph: paragraph["qas"][0]["answers"][0].pop("answer_start")))
  with pytest.raises(text_files.DataError, match="question id '1-0' field 'question' is int"):
    squad.read_squad(broken("type.json", lambda paragraph: paragraph["qas"][0].update(question=5)))
  with pytest.raises(text_files.DataError, match="'0-0' occurs twice"):
    squad.read_squad(broken("duplicate.json", lambda paragraph: paragraph["qas"][0].update(id="0-0")))

  mismatched = broken("mismatch.json",
                      lambda paragraph: paragraph["qas"][0]["answers"][0].update(answer_start=3))
  with pytest.raises(text_files.DataError, match="question id '1-0' has text '1799' but .*skip_mismatched=True"):
    squad.read_squad(mismatched)
  questions, report = squad.read_squad(mismatched, skip_mismatched=True)
  assert report.skipped_mismatched == 1 and report.skipped_ids == ("1-0",) and len(questions) == 3

  no_answers = broken("empty.json", lambda paragraph: paragraph["qas"][0].update(answers=[]))
  questions, _ = squad.read_squad(no_answers)  # prediction input may have none
  assert questions[2].answers == ()
  with pytest.raises(text_files.DataError, match="question id '1-0' has no answers"):
    squad.read_squad(no_answers, require_answers=True)


def test_split_by_article():
  questions = [squad.Question(id=f"{article}-{number}", question="", context="", answers=(),
                              article_title=str(article), article_index=article, paragraph_index=0)
               for article in range(20) for number in range(3)]
  train, dev = squad.split_by_article(questions, dev_fraction=0.25)
  assert sorted({question.article_index for question in dev}) == [3, 7, 11, 15, 19]
  assert not {question.article_index for question in train} & {question.article_index for question in dev}
  assert len(train) + len(dev) == len(questions)
  # The rule reads only each article's index: fewer articles keep the same dev articles.
  _, dev_prefix = squad.split_by_article(questions[:30], dev_fraction=0.25)
  assert {question.article_index for question in dev_prefix} == {3, 7}
  assert squad.split_by_article(questions, dev_fraction=0) == (questions, [])
  # 100 * 0.29 is 28.999999999999996 in floats; the rule reads 0.29 as 29/100 exactly.
  assert squad.is_dev_article(99, 0.29) and not squad.is_dev_article(100, 0.29)
  with pytest.raises(ValueError, match="dev_fraction=1"):
    squad.split_by_article(questions, dev_fraction=1)
  with pytest.raises(ValueError, match="none of 3 articles"):
    squad.split_by_article(questions[:9], dev_fraction=0.1)


@pytest.mark.skipif(not os.path.isdir(XQUAD), reason=f"XQuAD not staged at {XQUAD} (../shared/data absent)")
def test_real_xquad_files():
  read = {language: squad.read_squad(os.path.join(XQUAD, f"xquad.{language}.json"), require_answers=True)
          for language in ("ru", "en")}
  for questions, report in read.values():
    assert (report.articles, report.paragraphs, report.questions, report.answers) == (48, 240, 1190, 1190)
  splits = {language: squad.split_by_article(questions, dev_fraction=0.1)
            for language, (questions, _) in read.items()}
  dev_ids = {language: [question.id for question in dev] for language, (_, dev) in splits.items()}
  assert dev_ids["ru"] == dev_ids["en"] and dev_ids["ru"]  # the same split in both languages
  for train, dev in splits.values():
    assert not {q.article_index for q in train} & {q.article_index for q in dev}
  # Every gold answer maps to word tokens whose characters cover it, and gold answers score 100.
  for questions, _ in read.values():
    spans_of = {}
    for question in questions:
      if question.context not in spans_of:
        spans_of[question.context] = [(0, span.start, span.end) for span in spans.word_spans(question.context)]
      text, start = question.answers[0]
      first, last = qa_windows.answer_token_span(spans_of[question.context], start, start + len(text))
      covered = (spans_of[question.context][first][1], spans_of[question.context][last][2])
      assert covered[0] <= start and start + len(text) <= covered[1], question.id
    gold = {question.id: question.answers[0][0] for question in questions}
    for normalization in squad_scores.NORMALIZATIONS:
      assert squad_scores.evaluate(questions, gold, normalization=normalization)["exact_match"] == 100.0
