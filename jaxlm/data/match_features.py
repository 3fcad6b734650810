"""Whether each context token's word occurs in the question: a reader's exact-match features.

DrQA's reader found three binary features per context token worth several points of
SQuAD F1: does the token occur in the question exactly, lower-cased, or as a lemma.
jaxlm has no lemmatiser, so its third feature is the lower-cased word without
diacritics, which catches what a lemma would for accents alone ("café" / "Cafe",
"ёж" / "еж"):
  0 exact:       the word as written (capitals kept, stress marks dropped) is a question word
  1 lower:       its lower-cased form is (the model's own word token)
  2 unaccented:  its lower-cased form with every combining mark removed (NFKD) is; this
                 also merges letters that are distinct in their language ("й" / "и"), so
                 it is only the loosest of the three
Words are jaxlm's word tokens (jaxlm.data.spans.word_spans), so punctuation attached
to a word ("Moscow," / "Moscow?") is its own token and the word still matches.
A token of punctuation or symbols alone never matches: "?" and "," occur in most
questions and say nothing about where the answer is.

Features are per WORD and given to every model token inside it, so SentencePiece
pieces of a matching word all carry the word's features.
"""

import bisect
import unicodedata
from typing import Sequence

import numpy as np

from jaxlm.data import spans

FEATURES = ("exact", "lower", "unaccented")
NUM_FEATURES = len(FEATURES)


def _unaccented(word: str) -> str:
  return "".join(character for character in unicodedata.normalize("NFKD", word)
                 if not unicodedata.combining(character))


def _forms(text: str, span: spans.Span) -> tuple[str, str, str] | None:
  """The word's (exact, lower, unaccented) forms; None for a token without a letter or digit."""
  if not any(character.isalnum() for character in span.token):
    return None
  exact = "".join(character for character in text[span.start:span.end] if not spans.is_removed(character))
  return exact, span.token, _unaccented(span.token)


def question_forms(question: str) -> list[set[str]]:
  """For each feature, the set of the question's word forms."""
  sets = [set(), set(), set()]
  for span in spans.word_spans(question):
    forms = _forms(question, span)
    for feature, form in enumerate(forms or ()):
      sets[feature].add(form)
  return sets


def context_features(question: str, context: str, token_spans: Sequence[spans.Span]) -> np.ndarray:
  """float32 [len(token_spans), NUM_FEATURES]: each context token's features (the module docstring).

  token_spans: the model's tokens of `context` (words or pieces) with their character spans;
  a token gets the features of the context word that holds its first character.
  """
  found = question_forms(question)
  words = spans.word_spans(context)
  word_starts = [word.start for word in words]
  word_features = np.zeros((len(words) + 1, NUM_FEATURES), np.float32)  # the last row: no word
  for index, word in enumerate(words):
    forms = _forms(context, word)
    if forms is not None:
      word_features[index] = [form in found[feature] for feature, form in enumerate(forms)]
  features = np.zeros((len(token_spans), NUM_FEATURES), np.float32)
  for row, token in enumerate(token_spans):
    index = bisect.bisect_right(word_starts, token.start) - 1  # the last word starting at or before it
    inside = index >= 0 and token.start < words[index].end
    features[row] = word_features[index if inside else -1]
  return features
