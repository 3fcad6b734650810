"""SQuAD v1.1 scores and the post-processing that turns span logits into answer text.

Scores: the rules of the official `evaluate-v1.1.py`, re-implemented exactly, so
numbers compare with published ones:
  - normalize_answer: lowercase; remove ASCII punctuation (`string.punctuation`);
    replace the whole words a / an / the by a space; collapse whitespace;
  - exact match: normalised strings equal; F1: over the normalised strings'
    whitespace tokens, overlap counted with multiplicity (Counter intersection),
    0 when nothing overlaps (so two empty answers score F1 0, exact match 1);
  - each question scores its best over its gold answers; the percentages are over
    EVERY question of the dataset, and a question without a prediction scores 0.
The official rules leave non-ASCII punctuation in place, so "«Пушкин»" and "Пушкин"
differ. The named variant normalization="unicode" also removes every Unicode
punctuation character (category P*: « » „ “ — – … ¿ and so on). It is reported
beside the official score, never in its place.

Post-processing (pure numpy, after the model): per window the n best start and end
positions among the context positions, spans with start <= end and at most
`max_answer_length` tokens, score = start logit + end logit; a question's answer is
its best span over all its windows, cut from the original context.
"""

import collections
import re
import string
import unicodedata
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from jaxlm.data import qa_windows

NORMALIZATIONS = ("official", "unicode")
_ASCII_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _is_unicode_punctuation(character: str) -> bool:
  return character in _ASCII_PUNCTUATION or unicodedata.category(character).startswith("P")


def normalize_answer(text: str, normalization: str = "official") -> str:
  """The official normalisation (lower, ASCII punctuation, articles, whitespace), or "unicode"."""
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization={normalization!r}; choose one of {list(NORMALIZATIONS)}")
  text = text.lower()
  if normalization == "official":
    text = "".join(character for character in text if character not in _ASCII_PUNCTUATION)
  else:
    # string.punctuation also holds symbols (category S: $ + < = > ^ ` | ~), which the
    # official rule removes; "unicode" removes them too, so it only ever removes more.
    text = "".join(character for character in text if not _is_unicode_punctuation(character))
  text = _ARTICLES.sub(" ", text)
  return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str, normalization: str = "official") -> bool:
  return normalize_answer(prediction, normalization) == normalize_answer(ground_truth, normalization)


def f1_score(prediction: str, ground_truth: str, normalization: str = "official") -> float:
  prediction_tokens = normalize_answer(prediction, normalization).split()
  ground_truth_tokens = normalize_answer(ground_truth, normalization).split()
  common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
  same = sum(common.values())
  if same == 0:
    return 0.0
  precision = same / len(prediction_tokens)
  recall = same / len(ground_truth_tokens)
  return 2 * precision * recall / (precision + recall)


def evaluate(dataset_questions: Sequence, predictions: Mapping[str, str], *,
             normalization: str = "official") -> dict[str, float | int]:
  """SQuAD v1.1 exact match and F1, in percent over every question of the dataset.

  Args:
    dataset_questions: squad.Question objects (anything with `.id` and `.answers`, a
      sequence of (text, start) pairs), each with at least one gold answer.
    predictions: question id -> predicted answer text; ids not in the dataset are ignored.
    normalization: "official" (evaluate-v1.1.py) or "unicode" (see the module docstring).
  Returns:
    {"exact_match": %, "f1": %, "questions": every question counted,
     "predicted": how many of them had a prediction}.
  """
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization={normalization!r}; choose one of {list(NORMALIZATIONS)}")
  if not dataset_questions:
    raise ValueError("evaluate needs at least one question")
  exact_match_sum = f1_sum = 0.0
  predicted = 0
  for question in dataset_questions:
    gold = [text for text, _ in question.answers]
    if not gold:
      raise ValueError(f"question id {question.id!r} has no gold answer to score against; "
                       f"read evaluation data with read_squad(..., require_answers=True)")
    if question.id not in predictions:
      continue  # an unanswered question scores 0 but still counts
    predicted += 1
    prediction = predictions[question.id]
    exact_match_sum += max(float(exact_match_score(prediction, text, normalization)) for text in gold)
    f1_sum += max(f1_score(prediction, text, normalization) for text in gold)
  total = len(dataset_questions)
  return {"exact_match": 100.0 * exact_match_sum / total, "f1": 100.0 * f1_sum / total,
          "questions": total, "predicted": predicted}


class SpanChoice(NamedTuple):
  """A window's best answer: positions in the window, characters in its context."""
  score: float  # start logit + end logit
  start_position: int
  end_position: int  # inclusive
  char_start: int
  char_end: int  # exclusive: window.context[char_start:char_end] is the answer


def best_span(start_logits, end_logits, window: qa_windows.Window, *, n_best: int = 20,
              max_answer_length: int = 30) -> SpanChoice | None:
  """The best-scoring answer span of one window, or None when it has no valid span.

  Candidates: the n_best highest start logits and the n_best highest end logits among
  the window's CONTEXT positions (question, separator and padding positions are never
  candidates, so a window always has some unless its context is empty); pairs with
  start <= end, at most max_answer_length tokens, and a non-empty character span.
  Ties go to the earlier start, then the earlier end.

  Args:
    start_logits, end_logits: float [max_length], the model's outputs for this window.
  """
  start_logits = np.asarray(start_logits, np.float64)
  end_logits = np.asarray(end_logits, np.float64)
  if start_logits.shape != window.token_ids.shape or end_logits.shape != window.token_ids.shape:
    raise ValueError(f"logits have shapes {start_logits.shape} and {end_logits.shape}; the window "
                     f"has {window.token_ids.shape[0]} positions")
  context_positions = np.flatnonzero(window.context_index >= 0)  # [context tokens in window]
  if not context_positions.size:
    return None
  # Stable sort on the negated logits: highest first, ties by position.
  starts = context_positions[np.argsort(-start_logits[context_positions], kind="stable")[:n_best]]
  ends = context_positions[np.argsort(-end_logits[context_positions], kind="stable")[:n_best]]
  best = None
  for start in sorted(starts):
    for end in sorted(ends):
      if end < start or end - start + 1 > max_answer_length:
        continue
      char_start, char_end = int(window.char_start[start]), int(window.char_end[end])
      if char_end <= char_start:  # only empty "▁" pieces: no text to answer with
        continue
      score = float(start_logits[start] + end_logits[end])
      if best is None or score > best.score:
        best = SpanChoice(score, int(start), int(end), char_start, char_end)
  return best


def predict_answers(windows_by_question: Mapping[str, Sequence[qa_windows.Window]], start_logits,
                    end_logits, *, n_best: int = 20, max_answer_length: int = 30) -> dict[str, str]:
  """Question id -> answer text: the best span over all of the question's windows.

  Args:
    windows_by_question: question id -> its windows (qa_windows.make_windows).
    start_logits, end_logits: either a mapping question id -> float [num_windows,
      max_length] (its windows' rows, in order), or one float [total_windows,
      max_length] array whose rows follow the windows of windows_by_question in
      iteration order (questions in dict order, each question's windows in order),
      i.e. the order of `[w for ws in windows_by_question.values() for w in ws]`.
  Returns:
    An answer for every question: context[char_start:char_end] of the best span
    (the original text, capitals and all), or "" when no window has a valid span.
    Ties between windows go to the earlier window.
  """
  flat = not isinstance(start_logits, Mapping)
  if flat:
    total = sum(len(windows) for windows in windows_by_question.values())
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    if start_logits.shape[0] != total or end_logits.shape[0] != total:
      raise ValueError(f"logits have {start_logits.shape[0]} and {end_logits.shape[0]} rows for "
                       f"{total} windows")
  answers, row = {}, 0
  for question_id, windows in windows_by_question.items():
    if flat:
      question_starts = start_logits[row:row + len(windows)]
      question_ends = end_logits[row:row + len(windows)]
      row += len(windows)
    else:
      question_starts, question_ends = start_logits[question_id], end_logits[question_id]
      if len(question_starts) != len(windows) or len(question_ends) != len(windows):
        raise ValueError(f"question id {question_id!r} has {len(windows)} windows but "
                         f"{len(question_starts)} and {len(question_ends)} rows of logits")
    best, best_window = None, None
    for window, window_starts, window_ends in zip(windows, question_starts, question_ends):
      choice = best_span(window_starts, window_ends, window, n_best=n_best,
                         max_answer_length=max_answer_length)
      if choice is not None and (best is None or choice.score > best.score):
        best, best_window = choice, window
    answers[question_id] = "" if best is None else best_window.context[best.char_start:best.char_end]
  return answers
