"""Extractive question answering data in the SQuAD v1.1 JSON format (SQuAD, XQuAD, SberQuAD).

A file is `{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}]}]}]}], "version"}`; `answer_start` is a character
offset into `context` (Python string indices, i.e. code points). Reading checks every
answer against its context, because a span that does not match trains the model on
the wrong characters without any error later.

Train/dev splits are by whole article (`split_by_article`), so no paragraph, and no
question about one, is on both sides.
"""

import dataclasses
import fractions
import json
import math
import os
from typing import Sequence

from jaxlm import errors
from jaxlm.data import text_files


@dataclasses.dataclass(frozen=True)
class Question:
  """One question about one paragraph; `answers` holds (text, character start) pairs."""
  id: str
  question: str
  context: str
  answers: tuple[tuple[str, int], ...]
  article_title: str
  article_index: int  # position of the article in its file: the key of `split_by_article`
  paragraph_index: int  # position of the paragraph within its article


@dataclasses.dataclass(frozen=True)
class ReadReport:
  """What `read_squad` read and what it skipped."""
  articles: int
  paragraphs: int
  questions: int  # questions returned
  answers: int  # answers of the questions returned
  skipped_mismatched: int = 0  # questions dropped by skip_mismatched=True
  skipped_ids: tuple[str, ...] = ()  # their ids, in file order


def _field(record, name: str, kind, where: str, path: str):
  """record[name], checked to be a `kind`; a DataError naming the file and place otherwise."""
  if not isinstance(record, dict) or name not in record:
    raise text_files.DataError(f"{path}: {where} has no '{name}' field, which the SQuAD v1.1 "
                               f"format requires; fix or regenerate the file")
  value = record[name]
  # bool is an int in Python; an answer_start of `true` is still malformed.
  if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
    kind_name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
    raise text_files.DataError(f"{path}: {where} field '{name}' is {type(value).__name__}, "
                               f"expected {kind_name}")
  return value


def _load_json(path: str):
  if not os.path.isfile(path):
    raise text_files.DataError(f"SQuAD file {path} not found; give the path of a SQuAD v1.1 .json file")
  # read_lines reads plain, .gz and .xz files and names bad UTF-8; joining restores the text.
  text = "\n".join(text_files.read_lines(path))
  try:
    return json.loads(text)
  except json.JSONDecodeError as error:
    raise text_files.DataError(f"{path} is not JSON ({error}); a SQuAD file is one JSON object "
                               f"with a 'data' list") from error


def read_squad(path: str, *, skip_mismatched: bool = False,
               require_answers: bool = False) -> tuple[list[Question], ReadReport]:
  """Every question of a SQuAD v1.1 file, in file order, each answer checked against its context.

  Args:
    path: a .json file (or .json.gz / .json.xz).
    skip_mismatched: drop (and count in the report) questions with an answer whose text is
      not `context[answer_start:answer_start + len(text)]`, instead of raising.
    require_answers: raise on a question with no answers (training and evaluation data
      need at least one; input to prediction need not have any).
  Returns:
    (questions, report).
  Raises:
    DataError naming the file and the question id (or the missing field) for: a file that
    is not JSON, no top-level "data" list, a missing or mistyped field, a duplicate
    question id, a mismatched answer (unless skip_mismatched), an empty answer list
    (with require_answers).
  """
  document = _load_json(path)
  if not isinstance(document, dict) or not isinstance(document.get("data"), list):
    raise text_files.DataError(f"{path} is not in the SQuAD format: it needs a top-level 'data' list "
                               f"of articles ({{\"data\": [{{\"title\", \"paragraphs\": [...]}}]}})")
  questions, skipped_ids, seen_ids = [], [], set()
  paragraph_count = answer_count = 0
  for article_index, article in enumerate(document["data"]):
    where = f"article {article_index}"
    paragraphs = _field(article, "paragraphs", list, where, path)
    # The title is informative only (splits key on the index), so it may be absent.
    title = article.get("title", "") if isinstance(article, dict) else ""
    for paragraph_index, paragraph in enumerate(paragraphs):
      where = f"article {article_index} paragraph {paragraph_index}"
      context = _field(paragraph, "context", str, where, path)
      paragraph_count += 1
      for qa_index, qa in enumerate(_field(paragraph, "qas", list, where, path)):
        question_id = _field(qa, "id", (str, int), f"question {qa_index} of {where}", path)
        question_id = str(question_id)
        where_question = f"question id {question_id!r}"
        if question_id in seen_ids:
          raise text_files.DataError(f"{path}: {where_question} occurs twice; predictions are keyed "
                                     f"by id, so ids must be unique")
        seen_ids.add(question_id)
        question_text = _field(qa, "question", str, where_question, path)
        answers, mismatched = [], None
        for answer_index, answer in enumerate(_field(qa, "answers", list, where_question, path)):
          where_answer = f"answer {answer_index} of {where_question}"
          text = _field(answer, "text", str, where_answer, path)
          start = _field(answer, "answer_start", int, where_answer, path)
          if start < 0 or not text or context[start:start + len(text)] != text:
            mismatched = (f"{path}: {where_answer} has text {text!r} but context[{start}:"
                          f"{start + len(text)}] is {context[max(start, 0):start + len(text)]!r}")
          answers.append((text, start))
        if mismatched:
          if skip_mismatched:
            skipped_ids.append(question_id)
            continue
          raise text_files.DataError(f"{mismatched}; fix answer_start, or read with "
                                     f"--config.task.skip_mismatched=True to drop such questions")
        if require_answers and not answers:
          raise text_files.DataError(f"{path}: {where_question} has no answers; training and "
                                     f"evaluation data need at least one per question")
        answer_count += len(answers)
        questions.append(Question(id=question_id, question=question_text, context=context,
                                  answers=tuple(answers), article_title=str(title),
                                  article_index=article_index, paragraph_index=paragraph_index))
  report = ReadReport(articles=len(document["data"]), paragraphs=paragraph_count,
                      questions=len(questions), answers=answer_count,
                      skipped_mismatched=len(skipped_ids), skipped_ids=tuple(skipped_ids))
  return questions, report


def is_dev_article(article_index: int, dev_fraction: float) -> bool:
  """The split rule: article i is dev when floor((i + 1) * f) > floor(i * f), f = dev_fraction.

  This spreads the dev articles evenly through the file (every 1/f-th article: with
  f = 0.1, articles 9, 19, 29, ...), rather than taking one block of neighbouring
  topics, and gives exactly floor(n * f) dev articles out of the first n. It depends
  only on the article's index, so appending articles never moves earlier ones, and
  translations that keep the article order (XQuAD's languages) split identically
  whatever their titles. f is taken as the exact decimal written (Fraction(str(f))),
  so 0.29 means 29/100 and no float rounding moves an article.
  """
  fraction = fractions.Fraction(str(dev_fraction))
  return (article_index + 1) * fraction // 1 > article_index * fraction // 1


def split_by_article(questions: Sequence[Question], *,
                     dev_fraction: float) -> tuple[list[Question], list[Question]]:
  """(train, dev) questions of ONE file, whole articles on each side (`is_dev_article`).

  Deterministic, no random state: the key is `article_index`, the article's position
  in its file, shared by a dataset and its translations (XQuAD ru and en split the
  same question ids). Questions keep their order. Combine files only after splitting
  each, since indices restart in every file.
  """
  if not 0 <= dev_fraction < 1:
    raise errors.ConfigError(f"dev_fraction={dev_fraction}; it must be in [0, 1)")
  train = [question for question in questions if not is_dev_article(question.article_index, dev_fraction)]
  dev = [question for question in questions if is_dev_article(question.article_index, dev_fraction)]
  if dev_fraction > 0 and not dev:
    articles = len({question.article_index for question in questions})
    first_dev = math.ceil(1 / fractions.Fraction(str(dev_fraction))) - 1
    raise errors.ConfigError(f"dev_fraction={dev_fraction} puts none of {articles} articles in dev (the first "
                             f"dev article is index {first_dev}); raise dev_fraction or use more articles")
  if questions and not train:
    raise errors.ConfigError(f"dev_fraction={dev_fraction} leaves no article for training")
  return train, dev
