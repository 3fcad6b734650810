"""Word-level corpora by name: local files -> TFDS array_record -> cached token ids.

`load_corpus(config.data)` returns the vocabulary (built from train) and one flat
int32 token array per split, tokenised once and cached under the cache dir, keyed
by the files' content so an edited corpus is never read stale.

Two source formats: "lines" (one WikiText-style file per split, already word-level)
and "works" (one .jsonl(.gz) of whole works, split by work and tokenised into
word-level split files in the cache by jaxlm.data.works). From the word-level text
on, every corpus takes the same path. `data.tokenizer`:
  word  the vocabulary is the train split's words (data.max_vocab: the most frequent
        N, the rest <unk>);
  bpe   SentencePiece BPE (data.bpe_vocab_size pieces) trained on the word-level train
        text, cached (or a run's own .model: load_corpus's sentencepiece_model); a line is
        its pieces then "</s>" (the end-of-line token).
`train_text_file(config.data)` is that word-level train text as a plain file, for
training FastText on exactly the words the language model sees.
"""

import contextlib
import dataclasses
import fcntl
import functools
import os

import numpy as np

from jaxlm import errors
from jaxlm.data import text_files, works
from jaxlm.data.vocabulary import Vocabulary

SHIPPED_WIKITEXT2 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wikitext-2")
SPLITS = ("train", "valid", "test")
TOKENIZERS = ("word", "bpe")


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
  file_names: dict  # split -> file name inside the corpus folder ("works" -> the works file)
  default_path: str  # "" means the user must give config.data.path
  how_to_get: str
  format: str = "lines"  # "lines": a word-level file per split; "works": jsonl of works (jaxlm.data.works)


CORPORA = {
    "wikitext2": CorpusSpec(
        {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}, SHIPPED_WIKITEXT2,
        "WikiText-2 ships in jaxlm/data/wikitext-2; if you set config.data.path, point it at a folder "
        "holding train.txt, valid.txt and test.txt (plain, .xz or .gz)."),
    "ptb": CorpusSpec(
        {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}, "",
        "Penn Treebank is LDC-licensed and never shipped: set --config.data.path to a folder with "
        "ptb.train.txt, ptb.valid.txt, ptb.test.txt (Mikolov's preprocessing), e.g. ../shared/data/ptb."),
    "ruslit": CorpusSpec(
        {"works": "ruslit.jsonl"}, "",
        "RusLit (373 public-domain Russian works, d0rj/RusLit) is never shipped: set --config.data.path "
        "to a folder holding ruslit.jsonl.gz (one JSON object per work with 'path' and 'text'), "
        "e.g. ../shared/data/ruslit.", format="works"),
}


@dataclasses.dataclass
class Corpus:
  vocabulary: Vocabulary
  splits: dict  # split -> np.ndarray int32 [num_tokens]
  fingerprint: str
  sentencepiece_model: str = ""  # data.tokenizer="bpe": the .model file, to encode new text (a prompt)


def default_cache_dir() -> str:
  return os.environ.get("JAXLM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jaxlm"))


def resolve_files(data_config) -> dict[str, str]:
  if data_config.corpus not in CORPORA:
    raise errors.ConfigError(f"config data.corpus={data_config.corpus!r} is not known; choose one of {sorted(CORPORA)}")
  spec = CORPORA[data_config.corpus]
  folder = data_config.path or spec.default_path
  if not folder:
    raise text_files.DataError(f"config data.path is empty for corpus {data_config.corpus!r}. {spec.how_to_get}")
  if not os.path.isdir(folder):
    raise text_files.DataError(f"config data.path={folder!r} is not a folder. {spec.how_to_get}")
  return {split: text_files.find_file(folder, name, spec.how_to_get) for split, name in spec.file_names.items()}


def _word_level_files(data_config, cache_root: str) -> tuple[str, dict[str, str]]:
  """(content key, split -> word-level text file): the user's files, or the works tokenised into the cache."""
  source_files = resolve_files(data_config)
  spec = CORPORA[data_config.corpus]
  if spec.format == "works":
    key = text_files.fingerprint([source_files["works"]]) + "-t" + works.TOKENISER_VERSION
    folder = os.path.join(cache_root, "text", f"{data_config.corpus}-{key}")
    return key, works.write_split_files(source_files["works"], folder)
  # Decode every file first so a bad byte is reported against the user's file.
  for path in source_files.values():
    text_files.read_lines(path)
  return text_files.fingerprint([source_files[split] for split in SPLITS]), source_files


def train_text_file(data_config) -> str:
  """The train split as word-level text, one line per line, plain UTF-8 (FastText, SentencePiece)."""
  cache_root = data_config.cache_dir or default_cache_dir()
  return _plain_train_file(data_config, cache_root, *_word_level_files(data_config, cache_root))


def _plain_train_file(data_config, cache_root: str, key: str, split_files: dict[str, str]) -> str:
  path = split_files["train"]
  if not path.endswith((".gz", ".xz")):
    return path
  plain = os.path.join(cache_root, "text", f"{data_config.corpus}-{key}", "train.txt")
  if not os.path.exists(plain):
    os.makedirs(os.path.dirname(plain), exist_ok=True)
    text_files.write_text(plain, "\n".join(text_files.read_lines(path)) + "\n")
  return plain


@contextlib.contextmanager
def _one_builder_at_a_time(folder: str):
  """An exclusive flock on `folder`.lock while a cache is built there. Processes on one machine
  that build the same cache at once (grid cells started together) take turns, and the later ones
  find it built. Needed for TFDS, which cannot share a build: it renames its own temporary
  folder onto the version folder, and that fails once another process's is there. (Hosts of one
  multi-process job do not race: distributed.primary_first builds on the primary first.)"""
  os.makedirs(os.path.dirname(folder), exist_ok=True)
  with open(folder + ".lock", "a", encoding="utf-8") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def _read_split_lines(split_files: dict[str, str], tfds_dir: str) -> dict[str, list[str]]:
  """Builds (once) the TFDS array_record dataset and reads every split back in order."""
  from jaxlm.data import word_corpus  # TFDS is imported only when a corpus is first built
  with _one_builder_at_a_time(tfds_dir):
    builder = word_corpus.WordLevelCorpus(split_files=split_files, data_dir=tfds_dir, file_format="array_record")
    builder.download_and_prepare()  # a no-op once built
  sources = builder.as_data_source()
  lines = {}
  for split in split_files:
    source = sources[split]
    records = source.__getitems__(list(range(len(source))))
    lines[split] = [record["text"].decode("utf-8") for record in records]
  return lines


def _sentencepiece_encoder(model_path: str):
  """(pieces, encode(lines, source) -> ids): each line's pieces, then the end-of-line piece."""
  from jaxlm.data import tokenizer as tokenizer_lib
  pieces = tokenizer_lib.Tokenizer.from_sentencepiece(model_path)
  end_of_line = pieces.processor.eos_id()

  def encode(lines, source):
    del source  # byte fallback: every line encodes, nothing is unknown
    return [piece for line_pieces in pieces.processor.encode(lines) for piece in line_pieces + [end_of_line]]

  return pieces.words, encode


def _encode_splits(data_config, key: str, split_files: dict[str, str], cache_root: str,
                   model_path: str) -> tuple[Vocabulary, dict]:
  """(vocabulary, split -> int32 ids [tokens]) of the word-level files: their words, or model_path's pieces."""
  lines = _read_split_lines(split_files, os.path.join(cache_root, "tfds", f"{data_config.corpus}-{key}"))
  if model_path:
    pieces, encode = _sentencepiece_encoder(model_path)
    vocabulary = Vocabulary(pieces)
  else:
    # Raw text (works) has no <unk> of its own, yet valid and test hold words train lacks.
    vocabulary = Vocabulary.from_lines(lines["train"], max_size=data_config.max_vocab,
                                       with_unknown=CORPORA[data_config.corpus].format == "works")
    encode = vocabulary.encode_lines
  return vocabulary, {split: np.asarray(encode(lines[split], split_files[split]), dtype=np.int32) for split in SPLITS}


def load_corpus(data_config, sentencepiece_model: str = "") -> Corpus:
  """The corpus `data_config` names, its token ids read from (or first written to) the cache.

  sentencepiece_model: with data.tokenizer="bpe", a ready .model to encode with (a run's own
  copy in its workdir, jaxlm.training.evaluate.restore_workdir) instead of the one trained, or
  found, in the cache, so evaluating a moved workdir or one whose cache was emptied trains no
  pieces. The cache's name for the corpus's model still names the token ids and the
  fingerprint, as in the run. Ids cached under that name with other pieces (a model trained
  by another SentencePiece version) are left as they are, and the splits are encoded anew.
  """
  tokenizer, max_vocab = data_config.tokenizer, data_config.max_vocab
  if tokenizer not in TOKENIZERS:
    raise errors.ConfigError(f"config data.tokenizer={tokenizer!r} is not known; choose one of {list(TOKENIZERS)}")
  cache_root = data_config.cache_dir or default_cache_dir()
  key, split_files = _word_level_files(data_config, cache_root)
  model_path = ""
  if tokenizer == "bpe":
    from jaxlm.data import sentencepiece_tokenizer
    train_file = _plain_train_file(data_config, cache_root, key, split_files)
    settings = dict(model_type="bpe", vocab_size=data_config.bpe_vocab_size,
                    cache_dir=os.path.join(cache_root, "sentencepiece"))
    model_path = sentencepiece_model or sentencepiece_tokenizer.train_sentencepiece(train_file, **settings)
    # A ready model takes the name the cache gives this corpus's model, which names the token ids.
    cache_name = (sentencepiece_tokenizer.cached_model_path(train_file, **settings) if sentencepiece_model
                  else model_path)
    variant = "-" + os.path.splitext(os.path.basename(cache_name))[0]  # names the corpus, settings and key
  else:
    variant = f"-max{max_vocab}" if max_vocab else ""
  token_dir = os.path.join(cache_root, "tokens", f"{data_config.corpus}-{key}{variant}")
  vocabulary_path = os.path.join(token_dir, "vocabulary.txt")
  corpus = functools.partial(Corpus, fingerprint=key + variant, sentencepiece_model=model_path)
  if not os.path.exists(vocabulary_path):
    vocabulary, splits = _encode_splits(data_config, key, split_files, cache_root, model_path)
    os.makedirs(token_dir, exist_ok=True)
    for split, ids in splits.items():
      path = os.path.join(token_dir, f"{split}.npy")
      temporary = text_files.temporary_path(path)
      with open(temporary, "wb") as handle:  # a file object: np.save adds no ".npy"
        np.save(handle, ids)
      os.replace(temporary, path)
    vocabulary.save(vocabulary_path)  # written last: its presence marks a complete cache
  elif sentencepiece_model and Vocabulary.load(vocabulary_path).words != _sentencepiece_encoder(model_path)[0]:
    return corpus(*_encode_splits(data_config, key, split_files, cache_root, model_path))  # not cached
  vocabulary = Vocabulary.load(vocabulary_path)
  return corpus(vocabulary=vocabulary,
                splits={split: np.load(os.path.join(token_dir, f"{split}.npy")) for split in SPLITS})
