"""A tiny synthetic corpus in RusLit's format: one JSON object per work in a .jsonl.gz."""

import gzip
import json
import os

import numpy as np

STEMS = ["кот", "ёжик", "собак", "мир", "дом", "лес", "рек", "город", "naïve", "книг"]
ENDINGS = ["", "а", "у", "ом", "и", "ами", "е", "ов"]
PUNCTUATION = [",", ".", "—", "!", "?", "«", "»"]


def marker(work_index: int) -> str:
  """A word that occurs in one work only (tokenised: lowercase, letters and digits)."""
  return f"метка{work_index}"


def write_works(folder: str, num_works: int = 60, seed: int = 0) -> str:
  """Writes folder/ruslit.jsonl.gz; each work holds its marker and random Zipf-ish words."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  with gzip.open(os.path.join(folder, "ruslit.jsonl.gz"), "wt", encoding="utf-8") as handle:
    for index in range(num_works):
      lines = []
      for _ in range(int(rng.integers(4, 10))):
        words = [STEMS[min(int(rng.zipf(1.5)) - 1, len(STEMS) - 1)] + str(rng.choice(ENDINGS))
                 for _ in range(int(rng.integers(4, 14)))]
        words.insert(int(rng.integers(len(words))), rng.choice(PUNCTUATION))
        # Capitals and a stress mark, which the tokeniser lowercases and removes.
        lines.append(" ".join(words).capitalize().replace("ом", "о\u0301м", 1))
      lines.insert(1, f"Глава {marker(index).upper()}")
      lines.insert(2, "")  # blank lines are dropped
      work = {"id": index, "author": "Тест", "title": f"Работа {index}",
              "path": f"prose/Test/Работа {index}.txt", "text": "\n".join(lines) + "\n"}
      handle.write(json.dumps(work, ensure_ascii=False) + "\n")
  return folder
