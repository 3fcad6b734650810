"""Word-level corpora by name: local files -> TFDS array_record -> cached token ids.

`load_corpus(config.data)` returns the vocabulary (built from train) and one flat
int32 token array per split, tokenised once and cached under the cache dir, keyed
by the files' content so an edited corpus is never read stale.
"""

import dataclasses
import os

import numpy as np

from jaxlm.data import text_files
from jaxlm.data.vocabulary import Vocabulary

SHIPPED_WIKITEXT2 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wikitext-2")
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
  file_names: dict  # split -> file name inside the corpus folder
  default_path: str  # "" means the user must give config.data.path
  how_to_get: str


CORPORA = {
    "wikitext2": CorpusSpec(
        {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}, SHIPPED_WIKITEXT2,
        "WikiText-2 ships in jaxlm/data/wikitext-2; if you set config.data.path, point it at a folder "
        "holding train.txt, valid.txt and test.txt (plain, .xz or .gz)."),
    "ptb": CorpusSpec(
        {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}, "",
        "Penn Treebank is LDC-licensed and never shipped: set --config.data.path to a folder with "
        "ptb.train.txt, ptb.valid.txt, ptb.test.txt (Mikolov's preprocessing), e.g. ../shared/data/ptb."),
}


@dataclasses.dataclass
class Corpus:
  vocabulary: Vocabulary
  splits: dict  # split -> np.ndarray int32 [num_tokens]
  fingerprint: str


def default_cache_dir() -> str:
  return os.environ.get("JAXLM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jaxlm"))


def resolve_files(data_config) -> dict[str, str]:
  if data_config.corpus not in CORPORA:
    raise ValueError(f"config data.corpus={data_config.corpus!r} is not known; choose one of {sorted(CORPORA)}")
  spec = CORPORA[data_config.corpus]
  folder = data_config.path or spec.default_path
  if not folder:
    raise text_files.DataError(f"config data.path is empty for corpus {data_config.corpus!r}. {spec.how_to_get}")
  if not os.path.isdir(folder):
    raise text_files.DataError(f"config data.path={folder!r} is not a folder. {spec.how_to_get}")
  return {split: text_files.find_file(folder, name, spec.how_to_get) for split, name in spec.file_names.items()}


def _read_split_lines(split_files: dict[str, str], tfds_dir: str) -> dict[str, list[str]]:
  """Builds (once) the TFDS array_record dataset and reads every split back in order."""
  from jaxlm.data import word_corpus  # TFDS is imported only when a corpus is first built
  builder = word_corpus.WordLevelCorpus(split_files=split_files, data_dir=tfds_dir, file_format="array_record")
  builder.download_and_prepare()
  sources = builder.as_data_source()
  lines = {}
  for split in split_files:
    source = sources[split]
    records = source.__getitems__(list(range(len(source))))
    lines[split] = [record["text"].decode("utf-8") for record in records]
  return lines


def load_corpus(data_config) -> Corpus:
  split_files = resolve_files(data_config)
  # Decode every file first so a bad byte is reported against the user's file.
  for path in split_files.values():
    text_files.read_lines(path)
  key = text_files.fingerprint([split_files[split] for split in SPLITS])
  cache_root = data_config.cache_dir or default_cache_dir()
  token_dir = os.path.join(cache_root, "tokens", f"{data_config.corpus}-{key}")
  vocabulary_path = os.path.join(token_dir, "vocabulary.txt")
  if not os.path.exists(vocabulary_path):
    lines = _read_split_lines(split_files, os.path.join(cache_root, "tfds", f"{data_config.corpus}-{key}"))
    vocabulary = Vocabulary.from_lines(lines["train"])
    os.makedirs(token_dir, exist_ok=True)
    for split in SPLITS:
      ids = np.asarray(vocabulary.encode_lines(lines[split], split_files[split]), dtype=np.int32)
      np.save(os.path.join(token_dir, f"{split}.npy.tmp.npy"), ids)
      os.replace(os.path.join(token_dir, f"{split}.npy.tmp.npy"), os.path.join(token_dir, f"{split}.npy"))
    vocabulary.save(vocabulary_path)  # written last: its presence marks a complete cache
  vocabulary = Vocabulary.load(vocabulary_path)
  splits = {split: np.load(os.path.join(token_dir, f"{split}.npy")) for split in SPLITS}
  return Corpus(vocabulary=vocabulary, splits=splits, fingerprint=key)
