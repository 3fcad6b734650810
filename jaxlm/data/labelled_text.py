"""Sentence-classification examples read from CSV / TSV files (RuCoLA, GLUE SST-2).

Each data row becomes one `Example` (id, text, label, line). The files are parsed
with the csv module: a .csv file with standard quoting (RuCoLA's sentences hold
quoted commas and doubled quotes), a .tsv file with csv.QUOTE_NONE (GLUE's TSVs
are not quoted: a `"` inside a sentence is a literal character). Texts are kept
exactly as written, trailing spaces included (SST-2's sentences end in one); only
an all-whitespace text is refused.

Labels stay strings here; `LabelSet` maps them to class ids 0..K-1, built from the
training split alone, so dev and test labels the training split lacks are an
error rather than a silent new class.
"""

import csv
import dataclasses
import io
import os

import numpy as np

from jaxlm.data import text_files

_DELIMITERS = {".csv": ",", ".tsv": "\t"}


@dataclasses.dataclass(frozen=True)
class Example:
  """One labelled (or unlabelled) sentence; `line` is its 1-based line in the file."""
  id: str
  text: str
  label: str | None
  line: int


def _delimiter_of(path: str, delimiter: str | None) -> str:
  if delimiter is not None:
    return delimiter
  name = path[:-3] if path.endswith((".gz", ".xz")) else path  # "train.tsv.gz" -> "train.tsv"
  extension = os.path.splitext(name)[1].lower()
  if extension not in _DELIMITERS:
    raise text_files.DataError(f"{path}: cannot tell the delimiter from the extension {extension!r}; "
                               f"name the file .csv or .tsv")
  return _DELIMITERS[extension]


def _column_index(header: list[str], column: str, path: str, role: str) -> int:
  if column not in header:
    raise text_files.DataError(f"{path}: no {role} column {column!r}; the header has columns {header}. "
                               f"Name the column in the file's header, or set --config.task.{role}_column "
                               f"(a trained run's predict.py --input needs the column its run read).")
  return header.index(column)


def read_labelled_text(path: str, *, text_column: str, label_column: str | None = None,
                       id_column: str | None = None, delimiter: str | None = None) -> list[Example]:
  """Every data row of a CSV / TSV file with a header row, as Examples in file order.

  Args:
    path: a .csv or .tsv file (plain, .gz or .xz), UTF-8, first row the header.
    text_column: the header name of the sentence column.
    label_column: the header name of the label column; None for unlabelled files
      (RuCoLA's test.csv, SST-2's test.tsv), whose Examples then have label None.
    id_column: the header name of an id column; None numbers the rows "0", "1", ...
      (0-based data-row index, header and blank lines not counted).
    delimiter: overrides the one inferred from the extension (.csv "," / .tsv tab).
      A .tsv file is read without quoting, any other delimiter with CSV quoting.

  Raises:
    DataError naming the file (and line) for: a missing file, a missing column, a
    row whose field count differs from the header's, an empty text, a missing label
    in a labelled file, a repeated id.
  """
  if not os.path.isfile(path):
    raise text_files.DataError(f"data file {path} not found. Check the path (--config.data.path), "
                               f"or copy the dataset there.")
  delimiter = _delimiter_of(path, delimiter)
  unquoted = delimiter == "\t"
  # read_lines decodes UTF-8 with a located error and handles .gz/.xz; rejoining the
  # lines gives the csv module the whole text, so quoted fields may span lines.
  text = "\n".join(text_files.read_lines(path)).lstrip("\ufeff")  # a byte-order mark is no column name
  reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                      quoting=csv.QUOTE_NONE if unquoted else csv.QUOTE_MINIMAL, strict=not unquoted)
  try:
    header = next(reader)
    text_index = _column_index(header, text_column, path, "text")
    label_index = None if label_column is None else _column_index(header, label_column, path, "label")
    id_index = None if id_column is None else _column_index(header, id_column, path, "id")
    examples = []
    seen_ids = {}
    end_of_previous_row = reader.line_num
    for row in reader:
      # reader.line_num is the last physical line of this row; a quoted field may span lines.
      line_number, end_of_previous_row = end_of_previous_row + 1, reader.line_num
      if not row:
        continue  # a blank line (e.g. at the end of the file) holds no example
      if len(row) != len(header):
        raise text_files.DataError(
            f"{path} line {line_number}: {len(row)} fields where the header has {len(header)} ({header}). "
            + ("A tab inside a sentence splits it; remove it." if unquoted else
               "Quote fields that contain the delimiter."))
      sentence = row[text_index]
      if not sentence.strip():
        raise text_files.DataError(f"{path} line {line_number}: empty text in column {text_column!r}; "
                                   f"remove the row or fill in the sentence.")
      label = None
      if label_index is not None:
        label = row[label_index].strip()
        if not label:
          raise text_files.DataError(f"{path} line {line_number}: no label in column {label_column!r}; "
                                     f"label the row, or read the file with label_column=None if it is unlabelled.")
      example_id = str(len(examples)) if id_index is None else row[id_index].strip()
      if example_id in seen_ids:
        raise text_files.DataError(f"{path} line {line_number}: id {example_id!r} repeats the id of line "
                                   f"{seen_ids[example_id]}; ids must identify rows (predictions are keyed by them).")
      seen_ids[example_id] = line_number
      examples.append(Example(id=example_id, text=sentence, label=label, line=line_number))
  except csv.Error as error:
    raise text_files.DataError(f"{path} line {reader.line_num}: malformed CSV ({error}); "
                               f"check the quoting near that line.") from error
  if not examples:
    raise text_files.DataError(f"{path} has a header but no data rows.")
  return examples


def _sort_key(label: str, numeric: bool):
  return (float(label), label) if numeric else label


def _is_number(label: str) -> bool:
  try:
    float(label)
  except ValueError:
    return False
  return True


class LabelSet:
  """The classes of a classification task: label strings <-> ids 0..K-1.

  Labels are sorted: numerically when every label reads as a number (so "0", "1"
  map to 0, 1 and "2" sorts before "10"), as strings otherwise.
  """

  def __init__(self, labels):
    labels = set(labels)
    numeric = all(_is_number(label) for label in labels)
    self.labels: tuple[str, ...] = tuple(sorted(labels, key=lambda label: _sort_key(label, numeric)))
    self.index = {label: position for position, label in enumerate(self.labels)}

  def __len__(self):
    return len(self.labels)

  def __repr__(self):
    return f"LabelSet({list(self.labels)})"

  @classmethod
  def from_examples(cls, examples: list[Example], source: str) -> "LabelSet":
    """The labels of the training examples; refuses unlabelled examples and a single class."""
    unlabelled = [example for example in examples if example.label is None]
    if unlabelled:
      raise text_files.DataError(f"{source} line {unlabelled[0].line}: a training example has no label; "
                                 f"read the training file with its label_column.")
    label_set = cls(example.label for example in examples)
    if len(label_set) < 2:
      raise text_files.DataError(f"{source}: the training examples hold {len(label_set)} distinct label(s) "
                                 f"{list(label_set.labels)}; classification needs at least two.")
    return label_set

  def encode(self, label: str, source: str, line: int) -> int:
    """A label's class id; a label the training split lacks is an error naming where it is."""
    if label is None:
      raise text_files.DataError(f"{source} line {line}: the example has no label; an unlabelled file "
                                 f"(a test split) cannot be scored.")
    class_id = self.index.get(label)
    if class_id is None:
      raise text_files.DataError(f"{source} line {line}: label {label!r} is not among the training labels "
                                 f"{list(self.labels)}; fix the label or train on data that has it.")
    return class_id

  def encode_examples(self, examples: list[Example], source: str) -> np.ndarray:
    """Class ids of labelled examples -> [examples] int32."""
    return np.asarray([self.encode(example.label, source, example.line) for example in examples], np.int32)

  def decode(self, class_id: int) -> str:
    return self.labels[class_id]


def columns(path: str, delimiter: str | None = None) -> list[str]:
  """The header row's column names (e.g. to tell a labelled split from an unlabelled test file)."""
  lines = text_files.read_lines(path)
  if not lines:
    raise text_files.DataError(f"{path} is empty; it needs a header row.")
  return next(csv.reader([lines[0]], delimiter=_delimiter_of(path, delimiter)))
