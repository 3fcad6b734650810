"""Corpora stored as whole works (RusLit): one JSON object per work in a .jsonl(.gz) file.

Works are split whole, so no work is in two splits: a work's split is a pure
function of its `path` field (its path in the source repository), through
sha256 -> [0, 100): below 90 train, below 95 valid, else test. Adding or removing
works never moves the others. (On RusLit's 373 works: 5.56M / 0.48M / 0.19M
whitespace words.)

Each work becomes lines of word-level text in the WikiText convention, so the rest
of the pipeline (TFDS array_record, vocabulary, cached token ids, FastText,
SentencePiece) reads them like any other corpus. The tokenisation, for Russian and
other alphabetic scripts:
  - stress marks (combining acute and grave accents, as in "за́мок") and control
    characters are removed, then the text is lowercased; "ё" stays distinct from "е";
  - a token is a word (letters and digits, with inner hyphens or apostrophes kept:
    "кто-то", "из-за", "о'генри") or any single other non-space character
    (punctuation, dashes, quotes: "«", "—", "…" each a token);
  - one output line per non-empty source line (a paragraph of prose, a verse line),
    tokens joined by single spaces.
"""

import hashlib
import json
import os
import re

from jaxlm.data import text_files

SPLITS = ("train", "valid", "test")
TOKENISER_VERSION = "1"  # part of the cache key: bump when the tokenisation changes
_TOKEN = re.compile(r"\w+(?:[-\u2011'\u2019]\w+)*|[^\w\s]")
_REMOVED = re.compile("[\u0300\u0301\u0000-\u0008\u000b-\u001f\u007f]")


def normalise(text: str) -> str:
  """Stress marks and control characters removed, lowercased: a token's vocabulary form."""
  return _REMOVED.sub("", text).lower()


def tokenise_line(line: str) -> str:
  """One line of raw text -> space-separated lowercase tokens ("" for a blank line)."""
  return " ".join(_TOKEN.findall(normalise(line)))


def split_of(work: dict) -> str:
  """"train", "valid" or "test" from the work's `path`: deterministic, whole works only."""
  bucket = int(hashlib.sha256(work["path"].encode("utf-8")).hexdigest(), 16) % 100
  return "train" if bucket < 90 else "valid" if bucket < 95 else "test"


def read_works(path: str) -> list[dict]:
  """Every work of a .jsonl file (plain, .gz or .xz); each needs `path` and `text` fields."""
  works = []
  for line_number, line in enumerate(text_files.read_lines(path), start=1):
    if not line.strip():
      continue
    try:
      work = json.loads(line)
    except json.JSONDecodeError as error:
      raise text_files.DataError(f"{path} line {line_number} is not JSON ({error}); the file must "
                                 f"hold one JSON object per work") from error
    if not isinstance(work, dict) or not isinstance(work.get("text"), str) or "path" not in work:
      raise text_files.DataError(f"{path} line {line_number}: a work needs a 'path' and a 'text' field")
    works.append(work)
  paths = [work["path"] for work in works]
  if len(set(paths)) != len(paths):
    raise text_files.DataError(f"{path}: two works share a 'path'; it must identify a work")
  return works


def write_split_files(works_path: str, folder: str) -> dict[str, str]:
  """Tokenises every work into folder/{train,valid,test}.txt (once); returns split -> path.

  The files are written under temporary names and renamed, train.txt last, so its
  presence marks a complete set.
  """
  files = {split: os.path.join(folder, f"{split}.txt") for split in SPLITS}
  if os.path.exists(files["train"]):
    return files
  works = read_works(works_path)
  lines = {split: [] for split in SPLITS}
  for work in works:
    split_lines = lines[split_of(work)]
    for raw in work["text"].split("\n"):
      tokens = tokenise_line(raw)
      if tokens:
        split_lines.append(tokens)
  empty = [split for split in SPLITS if not lines[split]]
  if empty:
    raise text_files.DataError(f"{works_path}: no work falls in split(s) {empty} ({len(works)} works); "
                               f"splits are drawn by work, so a corpus needs enough works for all three")
  os.makedirs(folder, exist_ok=True)
  for split in ("valid", "test", "train"):
    text_files.write_text(files[split], "\n".join(lines[split]) + "\n")
  return files
