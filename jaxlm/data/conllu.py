"""Token-tagging data read from CoNLL-U files (Universal Dependencies treebanks).

A tagging task needs each sentence's syntactic words and their universal POS tags
(UPOS, the 4th column). The reader follows the CoNLL-U format
(https://universaldependencies.org/format.html):
  - `#` lines are comments; `# sent_id = ...` names the sentence;
  - a token line has 10 tab-separated fields: ID FORM LEMMA UPOS XPOS FEATS HEAD
    DEPREL DEPS MISC;
  - multiword-token lines (ID "1-2") and empty nodes (ID "8.1") are skipped: the
    syntactic words under a multiword token carry the tags, and empty nodes are
    not in the text, which is what UD's own tagging evaluation scores;
  - a blank line ends a sentence (the last one may lack it).
Everything else (lemmas, features, trees) is ignored.
"""

import dataclasses
import os

from jaxlm.data import text_files

_COLUMNS = 10
_UPOS = 3  # column index of UPOS


@dataclasses.dataclass(frozen=True)
class Sentence:
  """One sentence: words[i] is tagged upos[i]; first_line is its first word's 1-based line."""
  words: tuple[str, ...]
  upos: tuple[str, ...]
  sent_id: str
  first_line: int


def read_conllu(path: str) -> list[Sentence]:
  """Every sentence of a CoNLL-U file (plain, .gz or .xz), in file order.

  A sentence without `# sent_id` gets its 0-based position in the file as its id.
  Comment-only blocks (no word lines) are skipped.

  Raises:
    DataError naming the file and line for a token line without 10 tab-separated
    fields, a non-integer word id, or word ids that are not 1, 2, 3, ... within a
    sentence; DataError for a missing or unreadable file.
  """
  if not os.path.isfile(path):
    raise text_files.DataError(f"CoNLL-U file {path} not found. Check the path (--config.data.path), or copy "
                               f"the treebank's .conllu files there.")
  sentences = []
  words, tags, sent_id, first_line = [], [], None, 0

  def end_sentence():
    nonlocal words, tags, sent_id, first_line
    if words:
      sentences.append(Sentence(words=tuple(words), upos=tuple(tags),
                                sent_id=sent_id if sent_id is not None else str(len(sentences)),
                                first_line=first_line))
    words, tags, sent_id, first_line = [], [], None, 0

  for line_number, line in enumerate(text_files.read_lines(path), start=1):
    line = line.rstrip("\r")  # files written on Windows
    if not line.strip():
      end_sentence()
      continue
    if line.startswith("#"):
      key, equals, value = line[1:].partition("=")
      if equals and key.strip() == "sent_id":
        sent_id = value.strip()
      continue
    fields = line.split("\t")
    if len(fields) != _COLUMNS:
      raise text_files.DataError(f"{path} line {line_number}: {len(fields)} tab-separated fields where CoNLL-U "
                                 f"has {_COLUMNS}; check for spaces in place of tabs, or a truncated line.")
    word_id = fields[0]
    if "-" in word_id or "." in word_id:
      continue  # multiword token range or empty node: not a syntactic word of the text
    if not (word_id.isascii() and word_id.isdigit()):
      raise text_files.DataError(f"{path} line {line_number}: word id {word_id!r} is not an integer "
                                 f"(nor a range like 1-2, nor an empty node like 8.1).")
    if int(word_id) != len(words) + 1:
      raise text_files.DataError(f"{path} line {line_number}: word id {word_id} where {len(words) + 1} was "
                                 f"expected; ids run 1, 2, 3, ... within a sentence, and a blank line must "
                                 f"separate sentences.")
    if not words:
      first_line = line_number
    words.append(fields[1])
    tags.append(fields[_UPOS])
  end_sentence()  # a file need not end in a blank line
  if not sentences:
    raise text_files.DataError(f"{path} holds no sentences (no word lines); is it a CoNLL-U file?")
  return sentences
