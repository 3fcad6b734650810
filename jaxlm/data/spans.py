"""Tokens that keep their character spans in the original text, for span extraction.

Extractive QA predicts a start and an end token, and the answer is the ORIGINAL
context between them (with its capitals, stress marks and spacing), so every token
carries [start, end) character offsets into the text it came from:
  - `word_spans`: jaxlm's word tokens (works.tokenise_line), for word and FastText
    embedding-bag inputs (the bag works on words, so the word tokens are its tokens);
  - `piece_spans`: the SentencePiece pieces of those words, for BPE inputs.
Offsets are Python string indices (code points), as SQuAD's `answer_start` is.
"""

from typing import Callable, NamedTuple, Sequence

from jaxlm.data import works

# The very patterns of works.tokenise_line, so the two tokenisers cannot drift apart.
_TOKEN = works._TOKEN  # pylint: disable=protected-access
_REMOVED = works._REMOVED  # pylint: disable=protected-access
_STRESS_MARKS = "\u0300\u0301"  # the removed characters that belong to the word before them


def is_removed(character: str) -> bool:
  """Whether the tokeniser drops `character` (stress marks, control characters)."""
  return _REMOVED.match(character) is not None


class Span(NamedTuple):
  """A token (normalised, as the model's vocabulary has it) and where it is in the original text."""
  token: str
  start: int
  end: int  # exclusive: text[start:end] is the token's surface form


def _word_tokens(text: str) -> list[tuple[str, int, int, list[int]]]:
  """(token, start, end, origin of each of the token's characters) for each word token.

  tokenise_line removes characters, lowercases the whole line and then matches the
  token pattern, so it is repeated here on the same string, with the original index
  of every character of the lowercased string kept beside it. Lowercasing can make
  one character several ("İ" -> "i" + combining dot above): each of those points to
  the one original character, so offsets never shift, and tokens cut from one
  original character share its span.
  """
  cleaned, lengths, kept_indices = [], [], []
  for index, character in enumerate(text):
    if _REMOVED.match(character):
      continue
    cleaned.append(character)
    kept_indices.append(index)
    lengths.append(len(character.lower()))
  # The whole string is lowercased, as tokenise_line does: Python's one context rule (a
  # word-final "Σ" -> "ς") changes a character, never a length, so `lengths` still holds.
  lowered = "".join(cleaned).lower()
  origins = [index for index, length in zip(kept_indices, lengths) for _ in range(length)]
  if len(origins) != len(lowered):
    raise RuntimeError(f"lowercasing {text[:50]!r} changed lengths in context; spans would shift")
  tokens = []
  for match in _TOKEN.finditer(lowered):
    first, last = match.start(), match.end() - 1
    start, end = origins[first], origins[last] + 1
    # A stress mark right after the word is part of its surface ("домá" keeps its accent).
    while end < len(text) and text[end] in _STRESS_MARKS:
      end += 1
    tokens.append((match.group(), start, end, origins[first:last + 1]))
  return tokens


def word_spans(text: str) -> list[Span]:
  """jaxlm's word tokens of `text` (those of works.tokenise_line), each with its original span.

  " ".join(span.token ...) == works.tokenise_line(text), and text[span.start:span.end] is
  the token as written (original case; stress marks inside or right after the word
  included; removed control characters inside the word included).
  """
  return [Span(token, start, end) for token, start, end, _ in _word_tokens(text)]


def piece_spans(text: str, processor) -> list[Span]:
  """The SentencePiece pieces of `text`'s word tokens, each with its span in the original text.

  The pieces are those jaxlm's BPE inputs hold: `processor.encode` of the word tokens
  joined by single spaces (the form of jaxlm's tokenised corpus lines). A piece's span
  is its share of its word: the first piece of a word starts at the word's start, each
  next piece where the one before it ends, the last ends at the word's end. A piece
  that is only the word-start mark "▁" covers no character: its span is empty,
  (word start, word start). Byte-fallback pieces of one character (an emoji becomes 4
  byte pieces) each take that character's span.

  Args:
    processor: a sentencepiece.SentencePieceProcessor (sentencepiece_tokenizer.load_sentencepiece).
  """
  words = _word_tokens(text)
  if not words:
    return []
  line = " ".join(token for token, _, _, _ in words)
  # Line character -> (word index, character index within the word); spaces map to the next word.
  word_of, offset_in_word = [], []
  for word_index, (token, _, _, _) in enumerate(words):
    if word_index:
      word_of.append(word_index)
      offset_in_word.append(0)
    word_of.extend([word_index] * len(token))
    offset_in_word.extend(range(len(token)))
  # SentencePiece reports UTF-8 byte offsets into the line; map them to characters.
  character_at_byte = []
  for character_index, character in enumerate(line):
    character_at_byte.extend([character_index] * len(character.encode("utf-8")))
  character_at_byte.append(len(line))

  pieces = processor.encode(line, return_type="proto").pieces
  byte_ranges = [(piece.begin, piece.end) for piece in pieces]
  # The byte pieces of one character carry no bytes but the last, which carries the character.
  for index in range(len(pieces) - 2, -1, -1):
    if byte_ranges[index][0] == byte_ranges[index][1] and processor.is_byte(pieces[index].id):
      byte_ranges[index] = byte_ranges[index + 1]

  result = []
  for piece, (begin, end) in zip(pieces, byte_ranges):
    first, stop = character_at_byte[begin], character_at_byte[end]  # line characters [first, stop)
    if first < stop and line[first] == " ":
      first += 1  # the space before a word is SentencePiece's "▁", no character of the word
    if first >= stop:  # a bare "▁": empty, at the start of the word that follows
      word = words[word_of[min(stop, len(line) - 1)]]
      result.append(Span(piece.piece, word[1], word[1]))
      continue
    # Start and end are looked up in their own words: a model trained without
    # split_by_whitespace may have pieces that run across a space (jaxlm's never do).
    _, word_start, _, origins = words[word_of[first]]
    start = word_start if offset_in_word[first] == 0 else origins[offset_in_word[first]]
    _, _, word_end, origins = words[word_of[stop - 1]]
    last_char = offset_in_word[stop - 1]
    # A piece ends where the next one starts, so a stress mark between them is not lost;
    # two pieces cut from one original character ("İ" lowercased is two) share it.
    end = word_end if last_char == len(origins) - 1 else max(origins[last_char] + 1,
                                                             origins[last_char + 1])
    result.append(Span(piece.piece, start, end))
  return result


def with_ids(spans: Sequence[Span], token_to_id: Callable[[str], int]) -> list[tuple[int, int, int]]:
  """(token id, start, end) per span: the `context_spans` that qa_windows.make_windows takes.

  token_to_id: e.g. processor.piece_to_id for pieces, or
  `lambda word: vocabulary.index.get(word, unknown_id)` for words.
  """
  return [(int(token_to_id(span.token)), span.start, span.end) for span in spans]

