"""Reading local text files (plain, .gz or .xz) with errors that say what to do."""

import csv
import gzip
import hashlib
import io
import lzma
import os
import socket

from jaxlm.errors import DataError  # text_files.DataError: what every data reader raises


def find_file(folder: str, name: str, how_to_get: str) -> str:
  """Returns folder/name, or its .xz / .gz sibling; raises DataError naming the path."""
  for suffix in ("", ".xz", ".gz"):
    path = os.path.join(folder, name + suffix)
    if os.path.isfile(path):
      if os.path.getsize(path) == 0:
        raise DataError(f"data file {path} is empty. {how_to_get}")
      return path
  raise DataError(f"data file {os.path.join(folder, name)} (or .xz/.gz) not found. {how_to_get}")


def temporary_path(path: str) -> str:
  """A name beside `path` no other process writes (host and process id): write it, then
  os.replace it onto `path`, so a reader never sees half a file, even while several
  processes (hosts that do not share the cache) build the same cache at once."""
  return f"{path}.tmp-{socket.gethostname()}-{os.getpid()}"


def write_text(path: str, text: str) -> None:
  """Writes `text` (UTF-8) to `path` through temporary_path: readers see the whole file or none."""
  temporary = temporary_path(path)
  with open(temporary, "w", encoding="utf-8") as handle:
    handle.write(text)
  os.replace(temporary, path)


def write_csv(path: str, header: list[str], rows) -> None:
  """Writes a CSV file (the header, then each row: a list of cells) through write_text: whole or none."""
  text = io.StringIO(newline="")
  writer = csv.writer(text)
  writer.writerow(header)
  writer.writerows(rows)
  write_text(path, text.getvalue())


def _open_binary(path: str):
  if path.endswith(".xz"):
    return lzma.open(path, "rb")
  if path.endswith(".gz"):
    return gzip.open(path, "rb")
  return open(path, "rb")


def read_lines(path: str) -> list[str]:
  """All lines of a UTF-8 file, without line ends. Non-UTF-8 bytes are an error."""
  try:
    with _open_binary(path) as handle:
      data = handle.read()
  except (OSError, EOFError, lzma.LZMAError) as error:
    raise DataError(f"cannot read {path}: {error}. Re-copy or re-download the file.") from error
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as error:
    line_number = data[:error.start].count(b"\n") + 1
    raise DataError(
        f"{path} is not valid UTF-8: byte {data[error.start]:#04x} at offset {error.start} (line {line_number}). "
        "Convert the file to UTF-8 (e.g. `iconv -f <encoding> -t utf-8`) and run again.") from error
  if not text.strip():
    raise DataError(f"data file {path} holds no text.")
  lines = text.split("\n")
  if lines and lines[-1] == "":
    lines.pop()  # the final newline ends the last line; it does not start a new one
  return lines


def fingerprint(paths: list[str]) -> str:
  """A short sha256 over the files' bytes: caches are keyed by content, not by path."""
  digest = hashlib.sha256()
  for path in paths:
    with open(path, "rb") as handle:
      for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
  return digest.hexdigest()[:16]
