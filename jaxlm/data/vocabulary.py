"""Word vocabularies: built from the training split, saved as one word per line."""

import collections

from jaxlm import errors
from jaxlm.data import text_files

END_OF_SENTENCE = "<eos>"
UNKNOWN = "<unk>"


class Vocabulary:
  """Maps words to ids. Ids follow descending train frequency, ties by first use."""

  def __init__(self, words: list[str]):
    self.words = list(words)
    self.index = {word: position for position, word in enumerate(self.words)}
    if len(self.index) != len(self.words):
      raise ValueError("vocabulary has duplicate words")

  def __len__(self):
    return len(self.words)

  @classmethod
  def from_lines(cls, lines, max_size: int = 0, with_unknown: bool = False) -> "Vocabulary":
    """Every word of `lines`; with `max_size`, the most frequent max_size - 1 and <unk>.

    <unk> then counts every occurrence of the words it replaces, and takes its place
    in the frequency order accordingly. `with_unknown` adds <unk> (last) even when no
    word is cut: for raw text, whose valid and test splits hold words train lacks.
    """
    counts = collections.Counter()
    for line in lines:
      counts.update(line.split())
      counts[END_OF_SENTENCE] += 1
    # Counter preserves first-insertion order, so the stable sort breaks ties by first use.
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    if max_size and len(ordered) > max_size:
      if max_size < 2:
        raise errors.ConfigError(f"a vocabulary of max_size={max_size} cannot hold a word and {UNKNOWN}")
      kept = [item for item in ordered if item[0] != UNKNOWN][:max_size - 1]
      kept_words = {word for word, _ in kept}
      unknown_count = sum(count for word, count in ordered if word not in kept_words)
      ordered = sorted(kept + [(UNKNOWN, unknown_count)], key=lambda item: -item[1])
    elif with_unknown and UNKNOWN not in counts:
      ordered.append((UNKNOWN, 0))
    return cls([word for word, _ in ordered])

  def save(self, path: str) -> None:
    text_files.write_text(path, "\n".join(self.words) + "\n")

  @classmethod
  def load(cls, path: str) -> "Vocabulary":
    with open(path, encoding="utf-8") as handle:
      return cls(handle.read().split("\n")[:-1])

  def encode_lines(self, lines, source: str):
    """`line.split() + ['<eos>']` per line -> ids. Unknown words map to <unk> if the
    vocabulary has it; otherwise they are an error naming the first such word."""
    unknown_id = self.index.get(UNKNOWN)
    ids = []
    for line_number, line in enumerate(lines, start=1):
      for word in line.split() + [END_OF_SENTENCE]:
        word_id = self.index.get(word, unknown_id)
        if word_id is None:
          raise errors.DataError(f"{source} line {line_number}: word {word!r} is not in the training vocabulary "
                                 f"and the vocabulary has no {UNKNOWN}; map rare words to {UNKNOWN} first.")
        ids.append(word_id)
    return ids
